"""hf_probex.scan on the tiny zoo behind a local hub of this module's own (the scans change repos), through the real
huggingface_hub client: members by cards and by weights, one row each, the same table from the local and Ray engines,
incremental reruns, kill and resume, error rows, the CLI, and publishing as a dataset repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from conftest import HUB_USERS_YAML
from hf_probex.bot import BotStopped
from hf_probex.cards import missing_fields
from hf_probex.cli import main
from hf_probex.scan import ScanEngineError, scan_tree
from hf_probex.sketch import DEFAULT_SKETCH_DIM, sketch_kind

REPO = Path(__file__).resolve().parents[1]
SCANNER = "hf_scanner_write_token"  # a member of the zoo's organisations: the tests change zoo repos
#: Card styles of the zoo (hf_probex.zoo.plan.CARD_STYLES) whose card names the model's base.
NAMES_ITS_BASE = ("complete", "no_data")


@pytest.fixture(scope="module")
def scan_hub(tiny_zoo, tmp_path_factory):
    """A local hub of this module's own with the tiny zoo imported; `scanner` may write to the zoo's organisations."""
    from hf_probex.hub import LocalHub
    from hf_probex.hub.importer import import_zoo

    folder = tmp_path_factory.mktemp("scan-hub")
    orgs = "".join(f"  {tree['org']}: [scanner]\n" for tree in tiny_zoo.trees.values())
    (folder / "users.yaml").write_text(HUB_USERS_YAML.replace("users:\n", f"users:\n  scanner: {{tokens: [{SCANNER}]}}\n")
                                       + orgs)
    import_zoo(tiny_zoo.root, folder / "root")
    with LocalHub(folder / "root", users_file=folder / "users.yaml") as server:
        yield server


@pytest.fixture
def hub(scan_hub, tmp_path, monkeypatch):
    """The module's hub with the real client pointed at it for one test (as conftest's `hub` does)."""
    from huggingface_hub import constants

    from hf_probex.hub import use_endpoint

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with use_endpoint(scan_hub.endpoint):
        yield scan_hub


def lora_children(zoo) -> list:
    return [s for s in zoo.specs("sd") if s.role == "child"]


def sd_scan(zoo, experts, out, **kwargs):
    return scan_tree(zoo.trees["sd"]["root_repo_id"], out=out, experts=experts, token=False,
                     authors=[zoo.trees["sd"]["org"]], **kwargs)


def rows_by_repo(result) -> dict[str, dict]:
    rows = result.table().to_pylist()
    assert len(rows) == len({r["repo_id"] for r in rows}), "a repo twice in the table"
    return {r["repo_id"]: r for r in rows}


def test_a_lora_tree_table_has_every_member_with_its_labels_and_embedding(hub, tiny_zoo, experts, tmp_path):
    result = sd_scan(tiny_zoo, experts, tmp_path / "scan")
    rows = rows_by_repo(result)
    lora = {s.repo_id: s for s in lora_children(tiny_zoo)}
    assert set(rows) == set(lora)
    by_weights = {r for r, s in lora.items() if s.card not in NAMES_ITS_BASE}
    assert by_weights and {r for r, row in rows.items() if row["found_by"] == "weights"} == by_weights
    assert (result.rows, result.by_weights, result.errors) == (len(lora), len(by_weights), 0)
    api = HfApi()
    for repo_id, row in rows.items():
        spec = lora[repo_id]
        assert row["sha"] == api.model_info(repo_id).sha and row["family"] == "sd-lora"
        assert row["route_root"] == tiny_zoo.trees["sd"]["root_repo_id"] and row["error"] is None
        assert row["has_card"] == (spec.card != "none")
        readme = tiny_zoo.model_dir("sd", spec.name) / "README.md"
        assert set(row["card_missing"]) == missing_fields(readme.read_text() if readme.exists() else "")
        labels = {(label["value"], label["source"]) for label in row["labels"]}
        assert (spec.concept["prompt"], "pytorch_lora_weights.safetensors metadata instance_prompt") in labels
        assert ((spec.concept["prompt"], "card instance_prompt") in labels) == (spec.card in ("complete", "no_base_model"))
        assert row["embedding_kind"].startswith("zero-shot expert")
        # Expert.search_vectors: a fused expert's modules side by side, each unit-norm divided by how many the LoRA
        # has (zeros for a module it lacks); one unit-norm vector for an expert of one module
        blocks = np.asarray(row["embedding"]).reshape(len(row["embedding_layers"]) if "fused" in row["embedding_kind"]
                                                      else 1, -1)
        norms = np.linalg.norm(blocks, axis=1)
        present = norms > 0
        assert present.any() and np.allclose(norms[present], 1 / present.sum(), atol=1e-5)
        assert 0 < row["bytes_read"] < 100_000  # small files, a header, one module: the LoRA files are larger
    assert [p.name for p in (tmp_path / "scan" / "parts").iterdir()] == ["part-000002.parquet"]  # compacted, no temp
    card = (result.table_files[0].parent.parent / "README.md").read_text()
    assert "configs:" in card and "path: data/*.parquet" in card and f"scan_of: {tiny_zoo.trees['sd']['root_repo_id']}" in card
    assert "| `embedding` |" in card


def test_a_classifier_tree_table_carries_label_names_and_a_seeded_sketch(hub, tiny_zoo, experts, tmp_path):
    root = tiny_zoo.trees["vit"]["root_repo_id"]
    first = scan_tree(root, out=tmp_path / "a", experts=experts, token=False)
    again = scan_tree(root, out=tmp_path / "b", experts=experts, token=False)
    rows, other = rows_by_repo(first), rows_by_repo(again)
    members = [s for s in tiny_zoo.specs("vit") if s.role == "child" and s.card in NAMES_ITS_BASE]
    assert {s.repo_id for s in members} <= set(rows)
    for spec in members:
        row = rows[spec.repo_id]
        assert row["embedding_kind"] == sketch_kind() and len(row["embedding"]) == DEFAULT_SKETCH_DIM
        assert row["embedding"] == other[spec.repo_id]["embedding"]  # seeded: the same sketch every run
        named = [label["value"] for label in row["labels"] if label["source"] == "config.json id2label"]
        assert named == (list(spec.labels) if spec.named_labels else [])
        assert row["route_distance"] is not None and row["route_distance"] < 0.5


def test_lineage_reads_the_members_of_a_tree_table(hub, tiny_zoo, experts, tmp_path, capsys):
    """`hf-probex lineage ROOT --table FOLDER`: every member the scan listed, read from the Hub, gets a parent (the
    root or another member) with the tree's calibrated confidence."""
    root = tiny_zoo.trees["vit"]["root_repo_id"]
    listed = set(rows_by_repo(scan_tree(root, out=tmp_path / "scan", experts=experts, token=False)))
    expert = next(e.location for e in experts.entries if e.root == root)
    assert main(["lineage", root, "--table", str(tmp_path / "scan"), "--expert", expert, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    edges = {e["child"]: e for e in out["edges"]}
    assert set(edges) == listed and all(e["parent"] in listed | {root} for e in edges.values())
    truth = {s.repo_id: tiny_zoo.spec("vit", s.parent).repo_id for s in tiny_zoo.specs("vit") if s.role == "child"}
    right = [edges[repo]["parent"] == parent for repo, parent in truth.items()]
    assert sum(right) >= len(right) - 1, edges  # tiny models of a few steps each: one may be read the wrong way round
    calibration = out["calibration"]
    assert all(e["confidence"] in (calibration["member_precision"], calibration["root_precision"]) for e in edges.values())


def test_local_and_ray_engines_give_the_same_table(hub, tiny_zoo, experts, ray_cluster, tmp_path):
    local = sd_scan(tiny_zoo, experts, tmp_path / "local", workers=2)
    remote = sd_scan(tiny_zoo, experts, tmp_path / "ray", engine="ray", workers=2)
    assert sorted(remote.read) == sorted(local.read) and remote.rows == local.rows
    a, b = local.table(), remote.table()
    assert a.schema == b.schema
    for name in a.column_names:
        if name == "embedding":
            assert np.allclose(np.array(a[name].to_pylist()), np.array(b[name].to_pylist()), atol=1e-6)
        else:
            assert a[name].to_pylist() == b[name].to_pylist(), name


def test_a_rerun_reads_only_new_and_changed_repos_and_drops_deleted_ones(hub, tiny_zoo, experts, tmp_path):
    from hub_proxy import FaultProxy

    from hf_probex.hub import use_endpoint

    out = tmp_path / "scan"
    first = sd_scan(tiny_zoo, experts, out)
    assert sorted(first.read) == sorted(rows_by_repo(first))
    api = HfApi(token=SCANNER)
    lora = lora_children(tiny_zoo)
    changed, deleted, copied = lora[0].repo_id, lora[1].repo_id, lora[2]
    api.create_commit(changed, [CommitOperationAdd("notes.txt", b"changed")], commit_message="change")
    new = f"{tiny_zoo.trees['sd']['org']}/scan-new-{uuid.uuid4().hex[:6]}"
    api.create_repo(new)
    api.upload_folder(repo_id=new, folder_path=str(tiny_zoo.model_dir("sd", copied.name)))
    api.delete_repo(deleted)
    try:
        second = sd_scan(tiny_zoo, experts, out)
        assert sorted(second.read) == sorted([changed, new])
        assert second.removed == [deleted] and second.reused == first.rows - 2
        rows = rows_by_repo(second)
        assert new in rows and deleted not in rows and rows[changed]["sha"] == api.model_info(changed).sha

        proxy = FaultProxy(hub.endpoint, [])  # a rerun with nothing changed: listings only, through real HTTP
        try:
            with use_endpoint(proxy.endpoint):
                third = sd_scan(tiny_zoo, experts, out)
        finally:
            proxy.close()
        assert third.read == [] and third.rows == second.rows
        paths = [path for _, path in proxy.requests]
        assert paths and all(p.startswith("/api/models?") or p.startswith("/api/models/probex-zoo-sd/sd-root?")
                             for p in paths), paths
    finally:  # the module's later tests see the zoo as it was
        from hf_probex.hub.importer import import_zoo

        api.delete_repo(new)
        api.create_commit(changed, [CommitOperationDelete("notes.txt")], commit_message="back")
        import_zoo(tiny_zoo.root, hub.root)  # the deleted repo again


def _bad_member(api: HfApi, zoo) -> str:
    """A repo whose card names the LoRA tree's root but whose weights file is cut short."""
    repo_id = f"{zoo.trees['sd']['org']}/scan-broken-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    card = f"---\nbase_model: {zoo.trees['sd']['root_repo_id']}\nlicense: mit\n---\n# broken\n"
    api.create_commit(repo_id, [CommitOperationAdd("README.md", card.encode()),
                                CommitOperationAdd("pytorch_lora_weights.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{")],
                      commit_message="broken")
    return repo_id


def test_a_bad_repo_is_a_row_with_its_error_and_does_not_stop_the_scan(hub, tiny_zoo, experts, tmp_path):
    api = HfApi(token=SCANNER)
    bad = _bad_member(api, tiny_zoo)
    try:
        result = sd_scan(tiny_zoo, experts, tmp_path / "scan")
        rows = rows_by_repo(result)
        assert rows[bad]["error_kind"] == "BadSafetensorsError" and "truncated or not safetensors" in rows[bad]["error"]
        assert rows[bad]["found_by"] == "card" and rows[bad]["embedding"] is None
        assert result.errors == 1 and result.rows == len(lora_children(tiny_zoo)) + 1
        assert all(row["error"] is None for repo, row in rows.items() if repo != bad)
        assert sd_scan(tiny_zoo, experts, tmp_path / "scan").read == []  # a broken file stays broken at that commit
    finally:
        api.delete_repo(bad)


KILLED_SCAN = textwrap.dedent("""
    import os, signal, sys
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.scan import scan_tree

    def die(parts):
        if parts == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash or an OOM kill does: no cleanup at all

    root, org, out, experts = sys.argv[1:5]
    scan_tree(root, out=out, experts=ExpertRegistry.from_file(experts), token=False, authors=[org], workers=1,
              flush_every=2, on_part=die)
""")


def test_a_killed_scan_resumes_without_losing_or_repeating_rows(hub, tiny_zoo, experts, tmp_path):
    out, registry = tmp_path / "scan", tmp_path / "experts.json"
    experts.save(registry)
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    env.pop("HF_TOKEN", None)
    tree = tiny_zoo.trees["sd"]
    killed = subprocess.run([sys.executable, "-c", KILLED_SCAN, tree["root_repo_id"], tree["org"], str(out),
                             str(registry)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert len(state["parts"]) == 2
    done = {row["repo_id"] for name in state["parts"] for row in pq.read_table(out / "parts" / name).to_pylist()}
    assert len(done) == 4
    # what a kill between the part's rename and the state's leaves: a whole part the state does not name, a temp file
    (out / "parts" / "part-000099.parquet").write_bytes((out / "parts" / state["parts"][0]).read_bytes())
    (out / "parts" / ".part-000100.parquet.tmp").write_bytes(b"PAR1 half")

    resumed = sd_scan(tiny_zoo, experts, out)
    members = {s.repo_id for s in lora_children(tiny_zoo)}
    assert set(resumed.read) == members - done and resumed.reused == len(done)
    assert set(rows_by_repo(resumed)) == members  # complete, no repo twice
    assert sorted(p.name for p in (out / "parts").iterdir()) == json.loads((out / "state.json").read_text())["parts"]


def test_the_local_ray_cluster_listens_on_loopback_only_and_asks_for_a_token(ray_cluster):
    """Started as the ray engine starts its own: no Ray server of this machine is reachable from another one, and
    clients need the cluster's token."""
    import psutil
    from ray._raylet import AuthenticationMode, get_authentication_mode

    def worker_pid() -> int:
        return os.getpid()

    ray_cluster.get(ray_cluster.remote(worker_pid).remote())  # a worker is up, with its own server
    listening = [(process.name(), conn.laddr.ip) for process in psutil.Process().children(recursive=True)
                 for conn in process.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
    assert {"gcs_server", "raylet"} <= {name for name, _ in listening}
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening
    assert get_authentication_mode() == AuthenticationMode.TOKEN


def test_the_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    from hf_probex.scan import make_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ScanEngineError, match=r'pip install "hf_probex\[ray\]"'):
        make_engine("ray")


@pytest.mark.parametrize("argv", [["scan", "--help"], ["--help"]])
def test_scan_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "scan" in out and ("--engine {local,ray}" in out or argv == ["--help"])


def test_cli_scan_writes_the_table_and_errors_are_one_line(hub, tiny_zoo, experts, tmp_path, capsys):
    locations = [arg for entry in experts.entries for arg in ("--expert", entry.location)]
    tree = tiny_zoo.trees["sd"]
    assert main(["scan", tree["root_repo_id"], "--out", str(tmp_path / "scan"), "--author", tree["org"], "--quiet",
                 *locations]) == 0
    out = capsys.readouterr().out
    assert f"tree {tree['root_repo_id']}: {len(lora_children(tiny_zoo))} members" in out
    assert len(pq.read_table(next((tmp_path / "scan" / "table" / "data").glob("*.parquet")))) == len(lora_children(tiny_zoo))
    assert main(["scan", "nobody/nothing", "--out", str(tmp_path / "x"), "--quiet", *locations]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody/nothing was not found" in err[0]
    assert main(["scan", tree["root_repo_id"], "--ray-address", "auto", "--quiet"]) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err


def test_the_table_is_published_as_a_dataset_repo_and_a_fresh_folder_starts_from_it(hub, tiny_zoo, experts, tmp_path):
    import datasets

    from hf_probex.hub import use_endpoint

    target = f"scanner/table-{uuid.uuid4().hex[:6]}"
    api = HfApi(token=SCANNER)
    result = scan_tree(tiny_zoo.trees["sd"]["root_repo_id"], to=target, out=tmp_path / "a", experts=experts,
                       token=SCANNER, authors=[tiny_zoo.trees["sd"]["org"]])
    assert result.commit and result.repo_id == target
    files = api.list_repo_files(target, repo_type="dataset")
    assert "README.md" in files and [f for f in files if f.startswith("data/")] == ["data/train-00000-of-00001.parquet"]
    with use_endpoint(hub.endpoint):  # again, now that datasets (which copies the endpoint at import) is imported
        loaded = datasets.load_dataset(target, split="train", cache_dir=str(tmp_path / "datasets"))
    assert loaded.to_dict() == result.table().to_pydict()  # as users read it
    fresh = scan_tree(tiny_zoo.trees["sd"]["root_repo_id"], to=target, out=tmp_path / "b", experts=experts,
                      token=SCANNER, authors=[tiny_zoo.trees["sd"]["org"]])
    assert fresh.read == [] and fresh.rows == result.rows  # the published rows, not a second read of every repo

    commits = len(api.list_repo_commits(target, repo_type="dataset"))
    again = scan_tree(tiny_zoo.trees["sd"]["root_repo_id"], to=target, out=tmp_path / "b", experts=experts,
                      token=SCANNER, authors=[tiny_zoo.trees["sd"]["org"]])  # the folder that published last
    assert again.unchanged and again.commit == fresh.commit and "is current (nothing changed" in again.summary()
    assert len(api.list_repo_commits(target, repo_type="dataset")) == commits  # no commit for a date alone
    api.delete_repo(target, repo_type="dataset")  # gone since: published again, though no row changed
    back = scan_tree(tiny_zoo.trees["sd"]["root_repo_id"], to=target, out=tmp_path / "b", experts=experts,
                     token=SCANNER, authors=[tiny_zoo.trees["sd"]["org"]])
    assert not back.unchanged and back.commit == api.repo_info(target, repo_type="dataset").sha

    table_before = {p.name: p.read_bytes() for p in (tmp_path / "a" / "table").rglob("*") if p.is_file()}
    with pytest.raises(BotStopped, match="403 .* use a token with the rights it needs"):  # a repo it may not write to
        scan_tree(tiny_zoo.trees["sd"]["root_repo_id"], to=f"alice/table-{uuid.uuid4().hex[:6]}", out=tmp_path / "a",
                  experts=experts, token=SCANNER, authors=[tiny_zoo.trees["sd"]["org"]])
    assert {p.name: p.read_bytes() for p in (tmp_path / "a" / "table").rglob("*") if p.is_file()} == table_before
    assert not (tmp_path / "a" / "table.new").exists()  # the working table is the last good one
