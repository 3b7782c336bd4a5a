"""The world the Space tests run in: the tiny zoo on a local Hub of their own, two experts, a launched app.

`space_world` publishes the session's tiny zoo into a hub root, plus a copy of one ViT and one LoRA
without their cards (`CARDLESS`: members no card names, and a card that lacks every field), trains a
ridge expert for the `vit` tree (class subsets) and one for the `sd` LoRA tree (zero-shot), and serves
that root with a users file (alice may write); the `resnet` tree is left without an expert on purpose. The root and the
experts are built once per session (both Space test modules reuse them); each module gets its own
server, and pull requests opened by one module are seen by the other, so tests name the repos they
write to. `space_app` launches the app in-process on 127.0.0.1 (real HTTP) and closes it after.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

USERS_YAML = "users:\n  alice: {tokens: [hf_alice_write_token]}\n"
ALICE = "hf_alice_write_token"
# Layers named directly (not `--layer auto`, a sweep of every layer): both exist in every tiny-zoo model of the tree.
EXPERT_LAYERS = {"vit": "vit.embeddings.cls_token",
                 "sd": "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v"}
MAX_UPLOAD_BYTES = 150_000  # above a tiny-zoo LoRA (~78 kB), below the oversized file the tests write
#: Cardless copies: repo id -> (tree, the zoo model whose files, all but README.md, it holds). Two ViTs: each
#: test module opens its pull request on its own.
CARDLESS = {"probex-zoo-vit/vit-nocard": ("vit", "ft-0002"), "probex-zoo-vit/vit-nocard-2": ("vit", "ft-0002"),
            "probex-zoo-sd/sd-lora-nocard": ("sd", "lora-0002")}


def _publish_without_card(root: Path, repo_id: str, folder: Path) -> None:
    from hf_probex.hub.storage import Put, Storage

    storage = Storage(root)
    storage.create_repo(repo_id, private=False, author="probex-zoo")
    with storage.lock(repo_id):
        puts = [Put(path.relative_to(folder).as_posix(), storage.put_blob(path.read_bytes()))
                for path in sorted(folder.rglob("*")) if path.is_file() and path.name != "README.md"]
        storage.commit_operations(repo_id, "refs/heads/main", puts, summary="a model without a card", description="",
                                  author="probex-zoo")


def _build(zoo, base: Path) -> None:
    """Hub root, users file and trained experts under `base` (skipped when an earlier module built them)."""
    from hf_probex.cli import main
    from hf_probex.hub.importer import import_zoo

    if (base / "ready").exists():
        return
    base.mkdir(parents=True, exist_ok=True)
    import_zoo(zoo.root, base / "hub")
    for repo_id, (tree, name) in CARDLESS.items():
        _publish_without_card(base / "hub", repo_id, zoo.model_dir(tree, name))
    (base / "users.yaml").write_text(USERS_YAML)
    for tree, layer in EXPERT_LAYERS.items():
        code = main(["train", "--zoo", str(zoo.root), "--tree", tree, "--layer", layer, "--method", "ridge",
                     "--folds", "2", "--out", str(base / "experts" / tree)])
        assert code == 0, f"training the {tree} expert failed"
    (base / "ready").touch()


@pytest.fixture(scope="module")
def space_world(tiny_zoo, tmp_path_factory, request):
    """The local Hub (huggingface_hub pointed at it, no ambient token), the experts, useful repo ids."""
    from huggingface_hub import constants

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.hub import LocalHub, use_endpoint

    base = tmp_path_factory.getbasetemp() / "space-world"
    _build(tiny_zoo, base)
    cache = tmp_path_factory.mktemp(f"hf-cache-{request.module.__name__}")
    with LocalHub(base / "hub", users_file=base / "users.yaml") as hub, pytest.MonkeyPatch.context() as patch:
        patch.delenv("HF_TOKEN", raising=False)
        patch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        patch.setattr(constants, "HF_HUB_CACHE", str(cache))
        patch.setattr(constants, "HF_TOKEN_PATH", str(cache / "no-token"))
        with use_endpoint(hub.endpoint):
            yield SimpleNamespace(
                zoo=tiny_zoo, endpoint=hub.endpoint, hub_root=base / "hub", alice=ALICE, cardless=list(CARDLESS),
                expert_dirs=sorted((base / "experts").iterdir()),
                registry=ExpertRegistry.from_locations(sorted((base / "experts").iterdir())),
                lora_file=next(tiny_zoo.model_dir("sd", s.name) for s in tiny_zoo.specs("sd") if s.role == "child")
                / "pytorch_lora_weights.safetensors",
            )


@pytest.fixture(scope="module")
def space_app(space_world):
    """The Space launched in-process on a free port of 127.0.0.1; its URL."""
    from hf_probex.space_app import create_app

    app = create_app(space_world.registry, max_upload_bytes=MAX_UPLOAD_BYTES)
    app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield app.local_url
    finally:
        app.close()
