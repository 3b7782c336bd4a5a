"""The world the Space tests run in: the tiny zoo and the real MiniLM's text tree on a local Hub of their own, three
experts, a launched app.

`space_world` publishes the session's tiny zoo into a hub root, plus a copy of one ViT and one LoRA
without their cards (`CARDLESS`: members no card names, and a card that lacks every field; a ViT's config names
its parent, as older transformers wrote it), and the text tree as
users meet it (the real all-MiniLM-L6-v2 under its own id, and `TEXT_CHILDREN`: two text-small children whose files
do not name their classes, a LABEL_i classifier and a SetFit model, with cards naming only their base); trains a ridge
expert for the `vit` tree (class subsets), one for the `sd` LoRA tree (zero-shot) and one for the `text` tree, and
serves that root with a users file (alice may write); the `resnet` tree is left without an expert on purpose. The root
and the experts are built once per session (both Space test modules reuse them); each module gets its own
server, and pull requests opened by one module are seen by the other, so tests name the repos they
write to. `space_app` launches the app in-process on 127.0.0.1 (real HTTP) and closes it after.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hf_probex.zoo.presets import MINILM

USERS_YAML = "users:\n  alice: {tokens: [hf_alice_write_token]}\n"
ALICE = "hf_alice_write_token"
# Layers named directly (not `--layer auto`, a sweep of every layer): each exists in every model of its tree.
EXPERT_LAYERS = {"vit": "vit.embeddings.cls_token",
                 "sd": "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v",
                 "text": "encoder.layer.3.attention.self.query.weight"}
MAX_UPLOAD_BYTES = 150_000  # above a tiny-zoo LoRA (~78 kB), below the oversized file the tests write
#: Cardless copies: repo id -> (tree, the zoo model whose files, all but README.md, it holds). Two ViTs: each
#: test module opens its pull request on its own.
CARDLESS = {"probex-zoo-vit/vit-nocard": ("vit", "ft-0002"), "probex-zoo-vit/vit-nocard-2": ("vit", "ft-0002"),
            "probex-zoo-sd/sd-lora-nocard": ("sd", "lora-0002")}

#: The text tree's children: repo id -> the layout of the text-small child it copies. Listed by their cards'
#: base_model, in this order, they are the Space's examples of the text tree.
TEXT_CHILDREN = {"probex-zoo-text/text-label-i": "transformers", "probex-zoo-text/text-setfit": "setfit"}


def _publish(root: Path, repo_id: str, folder: Path, card: str | None = None) -> None:
    """`folder`'s files as the public repo `repo_id`, its README.md replaced by `card` (None: no card)."""
    from hf_probex.hub.storage import Put, Storage

    storage = Storage(root)
    storage.create_repo(repo_id, private=False, author=repo_id.split("/")[0])
    with storage.lock(repo_id):
        puts = [Put(path.relative_to(folder).as_posix(), storage.put_blob(path.read_bytes()))
                for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "README.md"]
        puts += [Put("README.md", storage.put_blob(card.encode()))] if card is not None else []
        storage.commit_operations(repo_id, "refs/heads/main", puts, summary="a model as users meet it", description="",
                                  author=repo_id.split("/")[0])


def _named_parent(zoo, tree: str, name: str, scratch: Path) -> Path:
    """A copy of a zoo model as an older transformers saved it: its config.json's `_name_or_path` names the model it
    was fine-tuned from (the weights alone cannot tell a grandchild's parent). A LoRA file is left as it is."""
    import json
    import shutil

    folder = zoo.model_dir(tree, name)
    if not (folder / "config.json").is_file():
        return folder
    shutil.copytree(folder, scratch)
    config = json.loads((scratch / "config.json").read_text())
    config["_name_or_path"] = zoo.spec(tree, zoo.spec(tree, name).parent).repo_id
    (scratch / "config.json").write_text(json.dumps(config))
    return scratch


def text_copies(text_zoo) -> dict[str, str]:
    """Text repo id of `TEXT_CHILDREN` -> the name of the text-small child it copies: a held-out (test) child of the root
    of its layout where there is one (the text expert never saw it)."""
    children = sorted((s for s in text_zoo.specs("text") if s.role == "child" and s.parent == "root"),
                      key=lambda s: s.split != "test")
    return {repo_id: next(s for s in children if s.hparams["layout"] == layout).name
            for repo_id, layout in TEXT_CHILDREN.items()}


def text_candidates(text_zoo, per_class: int = 8) -> str:
    """The text tree's classes as the Space's candidates box takes them: a line per class, `name | example | ...`,
    its examples held-out fortunes of the class (on one line each, without the separator)."""
    from hf_probex.zoo.fortunes import load_fortunes

    categories = text_zoo.trees["text"]["vocabulary"]
    fortunes = load_fortunes(tuple(categories))
    return "\n".join(" | ".join([name, *(" ".join(t.replace("|", " ").split()) for t in fortunes.test[name][:per_class])])
                     for name in categories)


def _publish_text_tree(text_zoo, hub: Path, scratch: Path) -> None:
    """The text tree's repos: the root as it ships, the children (`TEXT_CHILDREN`) as their owners left them (no class
    names in their files, a card naming only the base)."""
    from hf_probex.demo import undocumented_copy

    root = text_zoo.model_dir("text", "root")
    _publish(hub, MINILM, root, (root / "README.md").read_text())
    for repo_id, name in text_copies(text_zoo).items():
        copy = undocumented_copy(text_zoo, text_zoo.spec("text", name), scratch / name)
        _publish(hub, repo_id, copy, f"---\nbase_model: {MINILM}\n---\n# {repo_id.split('/')[1]}\n")


def _build(zoo, text_zoo, base: Path) -> None:
    """Hub root, users file and trained experts under `base` (skipped when an earlier module built them)."""
    from hf_probex.cli import main
    from hf_probex.hub.importer import import_zoo

    if (base / "ready").exists():
        return
    base.mkdir(parents=True, exist_ok=True)
    import_zoo(zoo.root, base / "hub")
    for repo_id, (tree, name) in CARDLESS.items():
        _publish(base / "hub", repo_id, _named_parent(zoo, tree, name, base / "cardless" / repo_id))
    _publish_text_tree(text_zoo, base / "hub", base / "text-copies")
    (base / "users.yaml").write_text(USERS_YAML)
    for tree, layer in EXPERT_LAYERS.items():
        # the text tree's examples are held-out (test) children: its expert never sees them
        zoo_args = ["--zoo", str(text_zoo.root), "--splits", "train,val"] if tree == "text" else ["--zoo", str(zoo.root)]
        code = main(["train", *zoo_args, "--tree", tree, "--layer", layer, "--method", "ridge", "--folds", "2",
                     "--out", str(base / "experts" / tree)])
        assert code == 0, f"training the {tree} expert failed"
    (base / "ready").touch()


@pytest.fixture(scope="module")
def space_world(tiny_zoo, text_small_zoo, tmp_path_factory, request):
    """The local Hub (huggingface_hub pointed at it, no ambient token), the experts, useful repo ids."""
    from huggingface_hub import constants

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.hub import LocalHub, use_endpoint

    base = tmp_path_factory.getbasetemp() / "space-world"
    _build(tiny_zoo, text_small_zoo, base)
    cache = tmp_path_factory.mktemp(f"hf-cache-{request.module.__name__}")
    with LocalHub(base / "hub", users_file=base / "users.yaml") as hub, pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_TOKEN", raising=False)
        patch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-token"))
        with use_endpoint(hub.endpoint):
            yield SimpleNamespace(
                zoo=tiny_zoo, text_zoo=text_small_zoo, endpoint=hub.endpoint, hub_root=base / "hub", alice=ALICE, cardless=list(CARDLESS),
                expert_dirs=sorted((base / "experts").iterdir()),
                registry=ExpertRegistry.from_locations(sorted((base / "experts").iterdir())),
                lora_file=next(tiny_zoo.model_dir("sd", s.name) for s in tiny_zoo.specs("sd") if s.role == "child")
                / "pytorch_lora_weights.safetensors",
            )


@pytest.fixture(scope="module")
def space_app(space_world):
    """The Space launched in-process on a free port of 127.0.0.1; its URL."""
    from hf_probex.space.app import create_app

    app = create_app(space_world.registry, max_upload_bytes=MAX_UPLOAD_BYTES)
    app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield app.local_url
    finally:
        app.close()
