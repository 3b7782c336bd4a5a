"""The Gradio Space through its HTTP API (`gradio_client` against an app launched in-process), its
`hf-probex space` command, and the files that make spaces/ a deployable Hub Space.

The tiny zoo's experts are weak, so these tests check behaviour (fields rendered, rankings returned,
errors said), not accuracy.
"""

from __future__ import annotations

import os
import re
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import gradio
import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_probex.cli import main

pytest_plugins = ["space_world"]  # the space_world and space_app fixtures
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = {"/infer", "/open_pull_request", "/browse_tree", "/search_loras", "/list_experts"}


@pytest.fixture(scope="module")
def client(space_app):
    return Client(space_app, verbose=False)


def _infer(client: Client, repo_id: str = "", upload=None, min_confidence=0.0, token: str = ""):
    """/infer's outputs by name (the suggestion is session state, kept by the client for /open_pull_request)."""
    names = ["summary", "chart", "scores", "fields", "card", "diff", "pr_button_label", "pr_result"]
    return dict(zip(names, client.predict(repo_id, upload, min_confidence, token, api_name="/infer")))


def _rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def _error(call) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_every_endpoint_is_in_the_api(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS


def test_infer_a_hub_repo_renders_fields_chart_card_and_diff(client):
    out = _infer(client, "probex-zoo-vit/vit-ft-0001")
    assert "probex-zoo-vit/vit-root" in out["summary"] and "**Expert**" in out["summary"]
    fields = {row["field"]: row for row in _rows(out["fields"])}
    assert {"library_name", "pipeline_tag", "trained_on"} <= set(fields)
    assert fields["library_name"]["value"] == "transformers" and fields["library_name"]["confidence"] == "100%"
    assert all(row["evidence"] for row in fields.values())
    chart = {row[0]: row[1] for row in out["chart"]["data"]}
    assert set(chart) == set(fields) and all(0 <= c <= 1 for c in chart.values())
    assert out["card"].startswith("```yaml\n") and "Inferred from weights" in out["card"]
    assert out["diff"].startswith("--- a/README.md") and "+base_model_relation: finetune" in out["diff"]


def test_an_uploaded_lora_is_read_by_the_tree_expert(client, space_world):
    """The tiny sd tree has one LoRA per concept, so its expert never named a held-out fold's concept: calibrated
    on that, it proposes nothing even at the slider's lowest setting, and says which expert abstained."""
    out = _infer(client, upload=handle_file(str(space_world.lora_file)), min_confidence=0.05)
    assert "sd-lora" in out["summary"] and "probex-zoo-sd/sd-root" in out["summary"]
    assert "experts/sd (ridge): it abstained" in out["summary"]
    assert "**trained_on**: the best concept" in out["summary"] and "< 0.05" in out["summary"]
    assert "trained_on" not in {row["field"] for row in _rows(out["fields"])}


def test_a_model_whose_tree_has_no_expert_says_so(client, space_world):
    unnamed = next(s for s in space_world.zoo.specs("resnet") if s.role == "child" and not s.named_labels)  # LABEL_i
    out = _infer(client, unnamed.repo_id)
    assert "no expert for this model's tree" in out["summary"]
    assert "trained_on" not in {row["field"] for row in _rows(out["fields"])}
    assert "library_name" in {row["field"] for row in _rows(out["fields"])}


def test_bad_inputs_get_one_clear_message(client, tmp_path):
    assert "not found" in _error(lambda: _infer(client, "nobody/no-such-model"))
    assert "type a Hub repo id" in _error(lambda: _infer(client, ""))
    assert "not a Hub repo id" in _error(lambda: _infer(client, "/etc"))  # never a path on the server
    assert "maximum value 1" in _error(lambda: _infer(client, "probex-zoo-vit/vit-ft-0001", min_confidence=2))
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    assert "safetensors" in _error(lambda: _infer(client, upload=handle_file(str(text))))
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * 200_000)
    with pytest.raises(Exception, match="(?i)size|large|limit"):  # refused by the server at upload
        _infer(client, upload=handle_file(str(big)))


def test_pull_request_through_the_bot(client, space_world):
    from huggingface_hub import HfApi

    repo_id = "probex-zoo-vit/vit-ft-0002"
    assert "infer a card first" in _error(lambda: Client(client.src, verbose=False).predict(
        "", api_name="/open_pull_request"))
    _infer(client, repo_id, token=space_world.alice)
    assert "token" in _error(lambda: client.predict("", api_name="/open_pull_request"))
    opened = client.predict(space_world.alice, api_name="/open_pull_request")
    match = re.search(r"\((http://[^)]+/discussions/(\d+))\)", opened)
    assert opened.startswith("✅") and match, opened
    prs = list(HfApi().get_repo_discussions(repo_id, discussion_type="pull_request"))
    assert [pr.num for pr in prs] == [int(match[2])]
    again = client.predict(space_world.alice, api_name="/open_pull_request")
    assert "No pull request opened" in again and match[1] in again  # the open one, not a duplicate
    assert len(list(HfApi().get_repo_discussions(repo_id, discussion_type="pull_request"))) == 1


def test_browse_a_tree(client, space_world):
    summary, coverage, models = client.predict("probex-zoo-vit/vit-root", "", api_name="/browse_tree")
    rows = _rows(models)
    assert len(rows) == 6 and all(r["repo"].startswith("probex-zoo-vit/") for r in rows)
    parents = {r["base_model"] for r in rows}
    assert "probex-zoo-vit/vit-root" in parents and parents <= {"probex-zoo-vit/vit-root", *(r["repo"] for r in rows)}
    assert len(parents) > 1  # children of children are in the tree too
    share = {row[0]: row[1] for row in coverage["data"]}
    assert share["base_model"] == 1.0 and share["base_model_relation"] == 0.0  # the zoo's cards never state it
    assert "**6** models below the root" in summary
    has_children = {s.parent for s in space_world.zoo.specs("vit")}
    childless = next(s.repo_id for s in space_world.zoo.specs("vit") if s.role == "child" and s.name not in has_children)
    leaf, _, empty = client.predict(childless, "", api_name="/browse_tree")
    assert "the tree has only its root" in leaf and empty["data"] == []
    assert "no such model" in _error(lambda: client.predict("nobody/no-root", "", api_name="/browse_tree"))


def test_search_loras_by_unseen_text(client, space_world):
    from hf_probex.experts.registry import load_expert

    expert = next(e for e in space_world.registry.entries if e.tree == "sd")
    assert "giraffe" not in " ".join(load_expert(expert.location).vocabulary)  # a concept no expert saw
    summary, plot, ranking = client.predict("probex-zoo-sd/sd-root", "a purple giraffe", 3, "",
                                            api_name="/search_loras")
    rows = _rows(ranking)
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(r["repo"].startswith("probex-zoo-sd/sd-lora-") for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert "a purple giraffe" in summary and "LoRAs ranked" in summary
    assert "no zero-shot expert" in _error(lambda: client.predict("probex-zoo-resnet/resnet-root", "a dog", 5, "",
                                                                  api_name="/search_loras"))
    assert "type what the LoRA should draw" in _error(lambda: client.predict("probex-zoo-sd/sd-root", " ", 5, "",
                                                                             api_name="/search_loras"))


def test_list_experts(client):
    summary, table, browse_roots, search_roots = client.predict(api_name="/list_experts")
    rows = {r["tree"]: r for r in _rows(table)}
    assert set(rows) == {"sd", "vit"} and "**2** experts for **2** trees" in summary
    assert rows["vit"]["task"] == "multilabel" and "per_label_acc" in rows["vit"]["metrics (CV %)"]
    assert rows["sd"]["task"] == "zeroshot" and "top1" in rows["sd"]["metrics (CV %)"]
    assert search_roots["value"] == "probex-zoo-sd/sd-root"


def test_requests_queue_and_all_finish(client):
    jobs = [client.submit(f"probex-zoo-vit/vit-ft-000{i}", None, 0, "", api_name="/infer") for i in (3, 4, 5)]
    assert all(f"vit-ft-000{i}" in job.result(timeout=120)[0] for i, job in zip((3, 4, 5), jobs))


def test_the_space_folder_is_a_deployable_space(space_world):
    front = yaml.safe_load((REPO / "spaces" / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == gradio.__version__ and front["app_file"] == "app.py"
    required = {re.split(r"[<>=!~\[ ;@]", line, maxsplit=1)[0].lower().replace("_", "-")
                for line in (REPO / "spaces" / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "-"))}
    pyproject = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())
    declared = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in pyproject["project"]["dependencies"]}
    assert declared - {"gradio"} <= required  # the Space's SDK brings gradio at sdk_version
    app = runpy.run_path(str(REPO / "spaces" / "app.py"))["demo"]
    assert isinstance(app, gradio.Blocks)


def test_space_command_bad_input_is_one_error_line(capsys, tmp_path):
    assert main(["space", "--port", "70000"]) == 2
    assert main(["space", "--hub-root", str(tmp_path / "nope")]) == 2
    assert main(["space", "--hub-root", str(tmp_path), "--endpoint", "http://127.0.0.1:1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_space_command_serves_the_app_on_a_local_hub(space_world, tmp_path):
    port = _free_port()
    experts = [arg for folder in space_world.expert_dirs for arg in ("--expert", str(folder))]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HOME": str(tmp_path / "hf")}
    process = subprocess.Popen([sys.executable, "-m", "hf_probex.cli", "space", "--port", str(port), "--hub-root",
                                str(space_world.hub_root), *experts], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
                time.sleep(0.5)
        assert "**2** experts" in client.predict(api_name="/list_experts")[0]
        summary = client.predict("probex-zoo-vit/vit-ft-0006", None, 0, "", api_name="/infer")[0]
        assert "probex-zoo-vit/vit-root" in summary  # read from the local hub the command serves
    finally:
        process.terminate()
        process.wait(timeout=30)
