"""The whole flow on the text tree of the real all-MiniLM-L6-v2, on a local Hub of this module's own, run as a user
runs it (the CLI, HF_ENDPOINT and a token): `hub import` of text-small (the root under its real id,
sentence-transformers/all-MiniLM-L6-v2), `scan` (members by cards; every layout read; peft adapters read merged onto
their base), `train --from-table` on the documented members, `scan` again with that expert (members by weights too),
`search` by text, `bot run --dry-run`. Beside the zoo: a byte-identical re-upload of the root (the root, never a
member) and a peft adapter whose base cannot be read (one error row, the scan goes on)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from hf_probex.cli import main
from hf_probex.zoo.presets import MINILM
from hf_probex.sketch import sketch_kind
from hf_probex.tableset import DOCUMENTING_SOURCES


ORG = "probex-zoo-text"
TABLE = "alice/minilm-tree-table"
ALICE = "hf_alice_write_token"
#: Beside the zoo: the root again under another name (mirrors of all-MiniLM-L6-v2 abound on the Hub), a peft adapter
#: whose adapter_config.json names a base that does not exist (its card names the real root), and one whose card
#: documents it with `trained-on:` tags (a training member read through its base).
ROOT_COPY, ORPHAN, TAGGED = f"{ORG}/minilm-mirror", f"{ORG}/text-adapter-orphan", f"{ORG}/text-adapter-tagged"
LAYER = "encoder.layer.3.attention.self.query.weight"  # the layer the feasibility check found the signal in (issue 24)
#: Card styles of the zoo (hf_probex.zoo.plan.CARD_STYLES) whose card names the model's base.
NAMES_ITS_BASE = ("complete", "no_data")


def _run(argv: list[str]) -> tuple[int, str]:
    """`hf-probex ARGV` in this process: its exit status and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def _publish(hub_root: Path, repo_id: str, files: dict[str, bytes]) -> None:
    from hf_probex.hub.storage import Put, Storage

    storage = Storage(hub_root)
    storage.create_repo(repo_id, private=False, author=ORG)
    with storage.lock(repo_id):
        storage.commit_operations(repo_id, "refs/heads/main", [Put(name, storage.put_blob(data)) for name, data in files.items()],
                                  summary="uploaded", description="", author=ORG)


def _beside_the_zoo(zoo, hub_root: Path) -> None:
    """`ROOT_COPY` (the root's weights and config, no card), `ORPHAN` (a peft adapter of the root, its base renamed) and
    `TAGGED` (the same adapter, its classes in its card's tags)."""
    root = zoo.model_dir("text", "root")
    _publish(hub_root, ROOT_COPY, {name: (root / name).read_bytes() for name in ("config.json", "model.safetensors")})
    spec = next(s for s in zoo.specs("text") if s.hparams.get("layout") == "peft-adapter" and s.parent == "root")
    adapter = zoo.model_dir("text", spec.name)
    config = json.loads((adapter / "adapter_config.json").read_text())
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    orphan = config | {"base_model_name_or_path": f"{ORG}/no-such-base"}
    _publish(hub_root, ORPHAN, {"adapter_config.json": json.dumps(orphan).encode(), "adapter_model.safetensors": weights,
                                "README.md": f"---\nbase_model: {MINILM}\nlibrary_name: peft\n---\n# orphan\n".encode()})
    tags = "".join(f"- trained-on:{label}\n" for label in spec.labels)
    _publish(hub_root, TAGGED, {"adapter_config.json": json.dumps(config).encode(), "adapter_model.safetensors": weights,
                                "README.md": f"---\nbase_model: {MINILM}\ntags:\n{tags}---\n# tagged\n".encode()})


def _rows(out: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    return {row["repo_id"]: row for path in sorted((out / "table" / "data").glob("*.parquet"))
            for row in pq.read_table(path).to_pylist()}


@pytest.fixture(scope="module")
def flow(text_small_zoo, tmp_path_factory):
    """The flow, run once for the module: each step's exit status and output, the tables after each scan."""
    from huggingface_hub import HfApi, constants

    from hf_probex.hub import LocalHub, use_endpoint

    base = tmp_path_factory.mktemp("text-flow")
    (base / "users.yaml").write_text(f"users:\n  alice: {{tokens: [{ALICE}]}}\norgs:\n  {ORG}: [alice]\n")
    steps = {"import": _run(["hub", "import", str(text_small_zoo.root), "--root", str(base / "hub"), "--quiet"])}
    _beside_the_zoo(text_small_zoo, base / "hub")
    scan = ["scan", MINILM, "--to", TABLE, "--author", ORG, "--out", str(base / "scan")]
    with LocalHub(base / "hub", users_file=base / "users.yaml") as hub, pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", ALICE)
        patch.setenv("HF_PROBEX_CACHE", str(base / "probex-cache"))  # its own expert registry and search indexes
        patch.setattr(constants, "HF_HUB_CACHE", str(base / "hf-cache"))
        with use_endpoint(hub.endpoint):
            weights = HfApi().get_paths_info(MINILM, ["model.safetensors"])[0]
            steps["root_weights_sha256"] = weights.lfs.sha256 if weights.lfs else None
            steps["scan"] = _run(scan)
            steps["first_table"] = _rows(base / "scan")
            steps["train"] = _run(["train", "--from-table", TABLE, "--tree", "text", "--out", str(base / "expert"),
                                   "--layer", LAYER, "--folds", "2", "--register", "--propose"])
            steps["rescan"] = _run(scan)
            steps["table"] = _rows(base / "scan")
            steps["search"] = _run(["search", "models trained on legal texts", "--tree", MINILM, "--table", TABLE,
                                    "--top-k", "50", "--json"])
            steps["bot"] = _run(["bot", "run", "--tree", MINILM, "--table", TABLE, "--dry-run", "--quiet",
                                 "--state", str(base / "bot-state.sqlite")])
            steps["lineage"] = _run(["lineage", MINILM, "--table", TABLE, "--sketches", "--json"])
    steps["expert"] = json.loads((base / "expert" / "config.json").read_text())
    return steps


def _children(zoo) -> dict[str, object]:
    return {s.repo_id: s for s in zoo.specs("text") if s.role == "child"}


def _by_cards(zoo) -> set[str]:
    """The children the Hub lists in the tree from cards: those whose card names their parent, below the root or
    below such a child."""
    specs = {s.name: s for s in zoo.specs("text")}

    def listed(spec) -> bool:
        parent = specs[spec.parent]
        return spec.card in NAMES_ITS_BASE and (parent.role == "root" or listed(parent))

    return {s.repo_id for s in specs.values() if s.role == "child" and listed(s)}


def test_the_zoo_is_imported_with_the_root_under_its_real_id(flow):
    import hashlib

    from hf_probex.zoo.trees.text import root_folder

    code, out = flow["import"]
    assert code == 0 and "0 unfinished models skipped" in out
    shipped = hashlib.sha256((root_folder() / "model.safetensors").read_bytes()).hexdigest()
    assert flow["root_weights_sha256"] == shipped  # the real root, byte for byte, under sentence-transformers/


def test_the_first_scan_lists_the_members_by_their_cards(flow, text_small_zoo):
    code, out = flow["scan"]
    assert code == 0 and f"published to {TABLE}@" in out
    expected = _by_cards(text_small_zoo) | {ORPHAN, TAGGED}
    assert set(flow["first_table"]) == expected
    assert f"{len(expected)} members ({len(expected)} by cards, 0 by weights" in out  # no text expert yet: no routing


def test_every_layout_is_read_and_peft_adapters_through_their_base(flow, text_small_zoo):
    rows, children = flow["table"], _children(text_small_zoo)
    read = {repo_id: row for repo_id, row in rows.items() if repo_id in children}
    assert set(read) == set(children)  # every child, by its card or by its weights
    assert {children[r].hparams["layout"] for r in read} == {"transformers", "peft-adapter", "peft-merged",
                                                              "sentence-transformers", "setfit"}
    for repo_id, row in read.items():
        assert row["error"] is None and row["route_root"] == MINILM, (repo_id, row["error"], row["route_evidence"])
        assert row["embedding_kind"] == sketch_kind() and row["embedding_layers"] == [LAYER], repo_id
        if children[repo_id].hparams["layout"] == "peft-adapter":
            assert row["family"] == "peft" and row["bytes_read"] > 1_000_000, row  # the base's layer read too
        else:
            assert row["family"] == "bert", repo_id
        labels = {label["source"] for label in row["labels"]}
        if children[repo_id].hparams["layout"] == "setfit" and children[repo_id].named_labels:
            assert labels == {"config_setfit.json labels"}, row["labels"]


def test_a_peft_adapter_whose_base_cannot_be_read_is_one_error_row(flow):
    row = flow["table"][ORPHAN]
    assert row["family"] == "peft" and row["error_kind"] == "BaseModelError", row
    assert f"{ORG}/no-such-base" in row["error"] and "\n" not in row["error"]


def test_the_root_is_found_as_the_root_and_never_a_member(flow):
    code, out = flow["rescan"]
    assert code == 0
    rows = flow["table"]
    assert MINILM not in rows and ROOT_COPY not in rows  # its own mirror routes as the root itself, not as a child
    by_weights = {r for r, row in rows.items() if row["found_by"] == "weights"}
    assert by_weights and all(MINILM in rows[r]["member_evidence"] for r in by_weights)
    assert f"{len(rows)} members ({len(rows) - len(by_weights)} by cards, {len(by_weights)} by weights, 1 unreadable)" in out


def test_train_from_the_table_learns_from_what_owners_wrote_and_proposes_for_the_rest(flow, text_small_zoo):
    code, out = flow["train"]
    assert code == 0, out
    assert out.splitlines()[0].endswith("left out: 1 unreadable"), out  # the orphan; every documented member's weights
    assert f"{TAGGED}:" not in out  # were read, the tagged adapter's through its base: it is no undocumented member
    trained_from = flow["expert"]["trained_from"]
    assert trained_from["table"] == TABLE and trained_from["root"] == MINILM
    assert set(trained_from["sources"]) >= {"config.json id2label", "config_setfit.json labels"}
    documented = {r for r, row in flow["first_table"].items() if row["error"] is None and any(
        label["source"] in DOCUMENTING_SOURCES["classifier"] for label in row["labels"])}
    assert trained_from["documented"] == len(documented) and "registered in" in out
    proposals = out.split("proposals for the ")[1].splitlines()[1:]
    undocumented = set(flow["first_table"]) - documented - {ORPHAN}
    assert {line.split(":")[0].strip() for line in proposals} == undocumented  # one line each, adapters included
    assert not [line for line in proposals if "cannot" in line]  # every one read, peft adapters through their base


def test_search_ranks_the_members_by_their_labels_and_says_which_matched(flow, text_small_zoo):
    code, out = flow["search"]
    assert code == 0
    found = json.loads(out)
    assert found["index"] == "labels" and found["table"] == TABLE
    hits = found["hits"]
    with_law = [hit for hit in hits if "law" in {label["value"] for label in hit["labels"]}]
    assert with_law and hits[:len(with_law)] == with_law  # every model trained on law first
    assert all(hit["matched"] == [hit["labels"][0]] and hit["matched"][0]["value"] == "law" for hit in with_law)
    assert {hit["matched"][0]["source"] for hit in with_law} <= {"config.json id2label", "config_setfit.json labels"}
    children = _children(text_small_zoo)
    assert all("law" in children[hit["repo_id"]].labels for hit in with_law)  # what its files say is the zoo's truth
    labelled = {r for r, row in flow["table"].items() if row["error"] is None and row["labels"]}
    assert found["rows"] == len(labelled) and found["unlabelled"] == len(flow["table"]) - len(labelled)


def test_the_bot_dry_run_covers_every_member_of_the_table(flow):
    code, out = flow["bot"]
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"tree {MINILM}: {len(flow['table'])} members from the tree table {TABLE}@")
    would = [line for line in lines if ": would propose " in line]
    assert would, out
    cardless = {r for r, row in flow["table"].items() if not row["has_card"] and row["error"] is None}
    reached = {line.split(":")[0] for line in lines if line.startswith(f"{ORG}/")}
    assert cardless <= reached  # the members no card links to the tree, found by their weights, reach the bot
    assert f"{len(flow['table'])} repos in" in lines[-1]


def test_lineage_names_every_members_parent_from_the_published_tables_sketches(flow):
    """scan -> train from the table -> rescan -> `hf-probex lineage --sketches`: each row the rescan sketched as the
    expert reads gets an edge, no weights read; the expert trained from the table carries the sketch calibration,
    fitted on the parents the table's cards declare, and each edge says how often its side was right there (few
    declared later generations in this small tree: its member side is far below a pull request's 0.95)."""
    code, out = flow["lineage"]
    assert code == 0, out
    document = json.loads(out)
    calibration = document["calibration"]
    assert calibration["sketch"] == sketch_kind() and calibration["layers"] == [LAYER] and calibration["models"] > 0
    sketched = {r for r, row in flow["table"].items() if row["embedding_kind"] == sketch_kind()}
    assert {edge["child"] for edge in document["edges"]} == sketched
    for edge in document["edges"]:
        side = calibration["root_precision"] if edge["parent"] == MINILM else calibration["member_precision"]
        assert edge["confidence"] == side and edge["parent"] in sketched | {MINILM}
