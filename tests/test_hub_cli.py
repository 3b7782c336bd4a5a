"""`hf-probex hub serve` and `hf-probex hub import`, and a zoo's model trees as the client sees them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from huggingface_hub import HfApi, ModelCard

from hf_probex.cli import main
from hf_probex.hub import LocalHub, use_endpoint
from hf_probex.hub.importer import import_zoo


@pytest.mark.parametrize("argv", [["hub", "--help"], ["hub", "serve", "--help"], ["hub", "import", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0 and "usage: hf-probex hub" in capsys.readouterr().out


def test_import_of_a_missing_zoo_is_one_error_line(tmp_path, capsys):
    assert main(["hub", "import", str(tmp_path / "nowhere"), "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is not a zoo" in err[0]


def _children_with_base(zoo, tree: str, parent: str) -> set[str]:
    """Repos whose card names `parent` as base_model (cards of style no_base_model/none name nothing)."""
    return {s.repo_id for s in zoo.specs(tree)
            if s.parent == parent and zoo.is_finished(s) and s.card in ("complete", "no_data")}


def test_imported_zoo_shows_its_model_trees(tiny_zoo, tmp_path, monkeypatch, capsys):
    root = tmp_path / "hub"
    assert main(["hub", "import", str(tiny_zoo.root), "--root", str(root), "--quiet"]) == 0
    finished = [s for s in tiny_zoo.specs() if tiny_zoo.is_finished(s)]
    expected = f"{len(finished)} repos created, 0 updated, 0 unchanged, 0 unfinished models skipped"
    assert capsys.readouterr().out.strip() == expected
    assert str(import_zoo(tiny_zoo.root, root)).startswith(f"0 repos created, 0 updated, {len(finished)} unchanged")

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with LocalHub(root) as hub, use_endpoint(hub.endpoint):
        api = HfApi(token=False)
        for tree, info in tiny_zoo.trees.items():
            root_id = info["root_repo_id"]
            children = _children_with_base(tiny_zoo, tree, "root")
            assert children, f"tree {tree} has no child naming its root"
            assert {m.id for m in api.list_models(filter=f"base_model:{root_id}")} == children
            relation = "adapter" if tree == "sd" else "finetune"
            assert {m.id for m in api.list_models(filter=f"base_model:{relation}:{root_id}")} == children
            assert {m.id for m in api.list_models(author=info["org"])} == {
                s.repo_id for s in tiny_zoo.specs(tree) if tiny_zoo.is_finished(s)}
            assert api.model_info(root_id, expand=["childrenModelCount"]).children_model_count == len(children)
        # Files and cards exactly as the zoo wrote them.
        spec = next(s for s in finished if s.card == "complete" and s.role == "child")
        folder = tiny_zoo.model_dir(spec.tree, spec.name)
        expected = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert sorted(api.list_repo_files(spec.repo_id)) == sorted(expected + [".gitattributes"])
        card = ModelCard.load(spec.repo_id)
        assert card.content == (folder / "README.md").read_text()
        no_card = next((s for s in finished if s.card == "none"), None)
        if no_card is not None:
            assert "README.md" not in api.list_repo_files(no_card.repo_id)


def test_serve_command(tmp_path):
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  dana: {tokens: [hf_dana_token]}\n")
    process = subprocess.Popen([sys.executable, "-m", "hf_probex.cli", "hub", "serve", "--root", str(tmp_path / "root"),
                                "--port", "0", "--users", str(users)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {tmp_path / 'root'} at http://127.0.0.1:"), line
        endpoint = line.split(" at ")[1].split()[0]
        with use_endpoint(endpoint):
            api = HfApi(token="hf_dana_token")
            assert api.whoami()["name"] == "dana"
            api.create_repo("dana/served")
            assert HfApi(token=False).list_repo_files("dana/served") == [".gitattributes"]
    finally:
        process.terminate()
        process.wait(timeout=20)
    log = process.stdout.read() + process.stderr.read()  # uvicorn logs access to stdout, the rest to stderr
    assert "hf_dana_token" not in log and "GET /api/whoami-v2" in log  # the access log, without the token
    assert (tmp_path / "root" / "repos" / "models" / "dana" / "served" / "repo.json").is_file()


def test_serve_on_a_busy_port_is_one_error_line(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["hub", "serve", "--root", str(tmp_path / "root"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize(("users_text", "message"), [("users: [\n", "is not valid YAML"),
                                                      ("users:\n  x: {tokens: [1]}\n", "role read|write")])
def test_serve_rejects_a_bad_users_file(tmp_path, capsys, users_text, message):
    users = tmp_path / "users.yaml"
    users.write_text(users_text)
    assert main(["hub", "serve", "--root", str(tmp_path / "root"), "--users", str(users), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
