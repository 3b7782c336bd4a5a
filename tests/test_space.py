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
import tempfile
import time
from pathlib import Path

import gradio
import pytest
import yaml
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_probex.cli import main
from hf_probex.zoo.presets import MINILM

pytest_plugins = ["space_world"]  # the space_world and space_app fixtures
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = {"/infer", "/open_pull_request", "/browse_tree", "/search_loras", "/list_experts"}


@pytest.fixture(scope="module")
def client(space_app):
    return Client(space_app, verbose=False)


REPO_INPUT, UPLOAD_INPUT = "Hub repo id", "Upload a .safetensors file"
SERVER_PATHS = re.compile(r"/tmp/|/pytest-|gradio/|experts/(vit|sd|text)")  # what a server path would show of itself


def _infer(client: Client, repo_id: str = "", upload=None, min_confidence=0.0, token: str = "", kind: str | None = None,
           candidates: str = ""):
    """/infer's outputs by name (the suggestion is session state, kept by the client for /open_pull_request); "diff" is
    the diff's text, its labelled lines as the API gives them are in "diff_lines"."""
    names = ["summary", "chart", "fields", "card", "diff_lines", "pr_button", "pr_result"]
    kind = kind or (UPLOAD_INPUT if upload else REPO_INPUT)
    out = dict(zip(names, client.predict(kind, repo_id, upload, min_confidence, token, candidates, api_name="/infer")))
    return out | {"diff": "".join(line["token"] for line in out["diff_lines"] or [])}


def _rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def _text(out: dict) -> str:
    return "\n".join(str(value) for value in out.values())


def _error(call) -> str:
    with pytest.raises(AppError) as caught:
        call()
    return str(caught.value)


def test_every_endpoint_is_in_the_api(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS


def test_infer_a_hub_repo_renders_fields_card_and_diff(client):
    out = _infer(client, "probex-zoo-vit/vit-ft-0005")
    assert "probex-zoo-vit/vit-root" in out["summary"] and "**Expert** none needed" in out["summary"]
    assert "**For a pull request:** base_model_relation, trained_on" in out["summary"]
    fields = {row["field"]: row for row in _rows(out["fields"])}
    assert {"library_name", "pipeline_tag", "trained_on"} <= set(fields)
    assert fields["library_name"]["value"] == "transformers" and fields["library_name"]["confidence"] == "100%"
    assert fields["library_name"]["status"] == "in the card already" and fields["trained_on"]["status"] == "for a pull request"
    assert all(row["evidence"] for row in fields.values())
    assert out["chart"] == ""  # config.json named the classes: no expert read the weights
    assert out["card"].startswith("```yaml\n") and "Read from the model's files" in out["card"]
    assert out["diff"].startswith("--- a/README.md") and "+base_model_relation: finetune" in out["diff"]
    labelled = {line["token"]: line["class_or_confidence"] for line in out["diff_lines"]}
    assert labelled["+base_model_relation: finetune\n"] == "added" and labelled["--- a/README.md\n"] is None


def test_the_chart_shows_the_experts_scores_and_threshold_also_when_it_abstains(client):
    """The tiny vit expert found no threshold reaching 95 % precision: it abstains, and says so in those words."""
    out = _infer(client, "probex-zoo-vit/vit-ft-0002")
    assert "the vit tree's expert (ridge on " in out["summary"] and "): it abstained" in out["summary"]
    assert "never proposes (no threshold reaches 95 % precision)" in out["summary"] and "1.01" not in _text(out)
    assert "confidence per class" in out["chart"] and out["chart"].count('class="probex-row"') == 10
    assert "calibrated threshold: never proposes" in out["chart"]
    assert not SERVER_PATHS.search(_text(out))


def test_a_low_slider_explores_but_a_pull_request_carries_only_validated_fields(client, space_world):
    from huggingface_hub import HfApi, hf_hub_download

    repo_id = "probex-zoo-vit/vit-nocard"  # no card: every field is missing, trained_on from the expert alone
    out = _infer(client, repo_id, min_confidence=0.05, token=space_world.alice)
    fields = {row["field"]: row for row in _rows(out["fields"])}
    assert fields["trained_on"]["status"] == "explored, below the calibrated threshold — not for a PR"
    assert fields["trained_on"]["value"].endswith("more)")  # 40 classes at 5 %: the first 8 shown, the card has all
    shown = [float(p) for p in re.findall(r"\((\d+)%\)", fields["trained_on"]["value"])]
    assert shown and shown == sorted(shown, reverse=True)  # the surest first, each with its own confidence
    assert float(fields["trained_on"]["confidence"].rstrip("%")) <= shown[-1]  # the field's: the least of them all
    assert "trained_on" not in out["summary"].split("**For a pull request:**")[1].splitlines()[0]
    assert "trained-on:" not in out["diff"] and "+base_model: probex-zoo-vit/vit-ft-0001" in out["diff"]
    opened = client.predict(space_world.alice, api_name="/open_pull_request")
    num = int(re.search(r"/discussions/(\d+)\)", opened)[1])
    assert opened.startswith("✅") and "trained_on" not in opened
    details = HfApi().get_discussion_details(repo_id, num)
    assert "trained_on" not in details.title and "trained_on" not in details.events[0].content
    readme = Path(hf_hub_download(repo_id, "README.md", revision=f"refs/pr/{num}")).read_text()
    assert "trained-on:" not in readme and "base_model: probex-zoo-vit/vit-ft-0001" in readme
    assert not SERVER_PATHS.search(readme + details.events[0].content)


def test_nothing_qualifies_no_pull_request(client, space_world):
    from huggingface_hub import HfApi

    repo_id = "probex-zoo-vit/vit-ft-0002"  # its card lacks only base_model_relation, which the Hub derives
    out = _infer(client, repo_id, min_confidence=0.05, token=space_world.alice)
    assert "nothing qualifies" in out["summary"] and out["diff"] == "(nothing qualifies for a pull request)"
    said = client.predict(space_world.alice, api_name="/open_pull_request")
    assert said.startswith("ℹ️ No pull request opened: nothing qualifies")
    assert not list(HfApi().get_repo_discussions(repo_id, discussion_type="pull_request"))


def test_a_lora_is_ranked_against_the_candidate_concepts_typed(client, space_world):
    out = _infer(client, upload=handle_file(str(space_world.lora_file)), min_confidence=0.05,
                 candidates="a giraffe on stilts\na watercolour city, a thick eight")
    typed = {"a giraffe on stilts", "a watercolour city", "a thick eight"}
    assert "the candidates vocabulary (3 concepts" in out["summary"]
    fields = {row["field"]: row for row in _rows(out["fields"])}
    if "trained_on" in fields:  # explored down to 5 %: one of the concepts typed, never a concept of its own
        assert fields["trained_on"]["value"] in typed
    else:
        assert re.search(r"no candidate fits: the best of the candidates vocabulary \(3 concepts[^)]*\), "
                         r"'(a giraffe on stilts|a watercolour city|a thick eight)'", out["summary"])
    assert "candidates: the candidate list is empty" in _error(
        lambda: _infer(client, upload=handle_file(str(space_world.lora_file)), candidates=" ,\n,"))


def test_a_text_classifier_is_run_on_the_candidates_typed(client, space_world):
    """Its config.json says LABEL_0, LABEL_1...: run on the classes typed, with example texts, each head row is named."""
    from space_world import text_candidates, text_copies

    repo_id = "probex-zoo-text/text-label-i"
    truth = space_world.text_zoo.spec("text", text_copies(space_world.text_zoo)[repo_id]).labels
    out = _infer(client, repo_id, candidates=text_candidates(space_world.text_zoo))
    assert f"**Tree** {MINILM}" in out["summary"] and "**family** bert" in out["summary"]
    assert "Each head row, as the classifier ran on 6 candidates" in out["chart"]
    assert [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"row \d+: [^<]+", out["chart"])] == \
        [f"row {i}: {label}" for i, label in enumerate(truth)]  # every row named right, in the head's order
    fields = {r["field"]: r for r in _rows(out["fields"])}
    assert "trained_on" not in fields or set(fields["trained_on"]["value"].split(", ")) <= set(truth)
    assert not SERVER_PATHS.search(_text(out))


def test_an_uploaded_lora_is_read_by_the_tree_expert(client, space_world):
    """The tiny sd tree has one LoRA per concept, so its expert never named a held-out fold's concept: calibrated
    on that, it proposes nothing even at the slider's lowest setting, and shows what it read."""
    out = _infer(client, upload=handle_file(str(space_world.lora_file)), min_confidence=0.05)
    assert out["summary"].startswith("### pytorch_lora_weights.safetensors")
    assert "sd-lora" in out["summary"] and "probex-zoo-sd/sd-root" in out["summary"]
    assert "the sd tree's expert (ridge on " in out["summary"] and "): it abstained" in out["summary"]
    assert "**trained_on**: the best concept" in out["summary"] and "below the minimum asked (0.05)" in out["summary"]
    assert "trained_on" not in {row["field"] for row in _rows(out["fields"])}
    assert "cosine similarity per concept" in out["chart"] and "your minimum: 5%" in out["chart"]
    assert not SERVER_PATHS.search(_text(out))
    assert "uploaded file" in _error(lambda: client.predict("", api_name="/open_pull_request"))


def test_one_input_at_a_time(client, space_world):
    from hf_probex.space import SpaceInputError, infer

    upload = handle_file(str(space_world.lora_file))
    by_id = _infer(client, "probex-zoo-vit/vit-ft-0004", upload=upload, kind=REPO_INPUT)
    assert by_id["summary"].startswith("### probex-zoo-vit/vit-ft-0004")  # the upload beside it is not read
    by_file = _infer(client, "probex-zoo-vit/vit-ft-0004", upload=upload, kind=UPLOAD_INPUT)
    assert by_file["summary"].startswith("### pytorch_lora_weights.safetensors")
    with pytest.raises(SpaceInputError, match="not both"):
        infer("probex-zoo-vit/vit-ft-0004", space_world.lora_file, registry=space_world.registry)


def test_a_model_whose_tree_has_no_expert_says_so(client, space_world):
    unnamed = next(s for s in space_world.zoo.specs("resnet") if s.role == "child" and not s.named_labels)  # LABEL_i
    out = _infer(client, unnamed.repo_id)
    assert "no expert for this model's tree" in out["summary"]
    assert "trained_on" not in {row["field"] for row in _rows(out["fields"])}
    assert "library_name" in {row["field"] for row in _rows(out["fields"])}


def test_bad_inputs_get_one_clear_message_in_the_spaces_words(client, tmp_path):
    missing = _error(lambda: _infer(client, "nobody/no-such-model"))
    assert "nobody/no-such-model was not found: check the name" in missing and "paste a token" in missing
    assert not re.search(r"hf auth login|HF_TOKEN|--token|token=", missing)
    assert "type a Hub repo id" in _error(lambda: _infer(client, ""))
    assert "not a Hub repo id" in _error(lambda: _infer(client, "/etc"))  # never a path on the server
    assert "maximum value 1" in _error(lambda: _infer(client, "probex-zoo-vit/vit-ft-0001", min_confidence=2))
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    refused = _error(lambda: _infer(client, upload=handle_file(str(text))))
    assert ".safetensors" in refused and not SERVER_PATHS.search(refused)  # gradio's check, or ours behind it
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\xff" * 64)
    said = _error(lambda: _infer(client, upload=handle_file(str(damaged))))
    assert said.startswith("damaged.safetensors") and not SERVER_PATHS.search(said), said
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * 200_000)
    with pytest.raises(Exception, match="(?i)size|large|limit"):  # refused by the server at upload
        _infer(client, upload=handle_file(str(big)))


def test_pull_request_through_the_bot(client, space_world):
    from huggingface_hub import HfApi

    repo_id = "probex-zoo-vit/vit-ft-0003"
    assert "infer a card first" in _error(lambda: Client(client.src, verbose=False).predict(
        "", api_name="/open_pull_request"))
    _infer(client, repo_id, token=space_world.alice)
    assert "paste a Hub token" in _error(lambda: client.predict("", api_name="/open_pull_request"))
    refused = _error(lambda: client.predict("hf_not_a_token", api_name="/open_pull_request"))
    assert "the Hub does not accept this token" in refused and "HF_TOKEN" not in refused
    opened = client.predict(space_world.alice, api_name="/open_pull_request")
    match = re.search(r"\((http://[^)]+/discussions/(\d+))\)", opened)
    assert opened.startswith("✅") and match, opened
    api = HfApi(token=space_world.alice)
    prs = list(api.get_repo_discussions(repo_id, discussion_type="pull_request"))
    assert [pr.num for pr in prs] == [int(match[2])]
    again = client.predict(space_world.alice, api_name="/open_pull_request")
    assert "No pull request opened" in again and "is still open" in again and match[1] in again  # not a duplicate
    assert "closed" not in again
    api.change_discussion_status(repo_id, int(match[2]), "closed")
    closed = client.predict(space_world.alice, api_name="/open_pull_request")
    assert f"#{match[2]}, which was closed" in closed
    assert len(list(api.get_repo_discussions(repo_id, discussion_type="pull_request"))) == 1


def test_browse_a_tree(client, space_world):
    summary, coverage, models, drawing = client.predict("probex-zoo-vit/vit-root", "", "", api_name="/browse_tree")
    rows = _rows(models)
    assert drawing.startswith("```text\nprobex-zoo-vit/vit-root\n") and all(f"{r['repo']}  (card)" in drawing for r in rows)
    assert len(rows) == 6 and all(r["repo"].startswith("probex-zoo-vit/vit-ft-") for r in rows)  # cardless: unseen
    parents = {r["base_model"] for r in rows}
    assert "probex-zoo-vit/vit-root" in parents and parents <= {"probex-zoo-vit/vit-root", *(r["repo"] for r in rows)}
    assert len(parents) > 1  # children of children are in the tree too
    share = {row[0]: row[1] for row in coverage["data"]}
    assert share["base_model"] == 1.0 and share["base_model_relation"] == 0.0  # the zoo's cards never state it
    assert "**6** models below the root (**6** found by their cards' base_model)" in summary
    has_children = {s.parent for s in space_world.zoo.specs("vit")}
    childless = next(s.repo_id for s in space_world.zoo.specs("vit") if s.role == "child" and s.name not in has_children)
    leaf, _, empty, _ = client.predict(childless, "", "", api_name="/browse_tree")
    assert "the tree has only its root" in leaf and empty["data"] == []
    assert "no such model" in _error(lambda: client.predict("nobody/no-root", "", "", api_name="/browse_tree"))


def test_browse_the_text_tree(client):
    from space_world import TEXT_CHILDREN

    summary, _, models, _ = client.predict(MINILM, "", "", api_name="/browse_tree")
    rows = {r["repo"]: r for r in _rows(models)}
    assert set(rows) == set(TEXT_CHILDREN) and {r["base_model"] for r in rows.values()} == {MINILM}
    assert all("trained_on" in r["fields missing"] for r in rows.values())  # what their owners left out
    assert "**2** models below the root" in summary


def test_browse_and_search_find_members_no_card_names(space_world):
    """Models without a card are reached through their author's repos, routed into the tree by their weights
    (`hf_probex.members`), and counted apart from those their cards name; repos given explicitly are listed too."""
    from hf_probex.space import SpaceInputError, browse_tree, search_loras

    view = browse_tree("probex-zoo-vit/vit-root", authors=["probex-zoo-vit"], registry=space_world.registry)
    rows = {r["repo"]: r for r in view.models.to_dict("records")}
    assert rows["probex-zoo-vit/vit-nocard"]["found by"] == "weights" and rows["probex-zoo-vit/vit-nocard-2"]["found by"] == "weights"
    assert rows["probex-zoo-vit/vit-ft-0001"]["found by"] == "card"  # a member its card names is not counted twice
    assert "(**6** found by their cards' base_model, **2** by their weights)" in view.summary
    assert "probex-zoo-vit/vit-nocard  (parent unknown)" in view.drawing  # no card names its parent
    named = browse_tree("probex-zoo-vit/vit-root", authors=["probex-zoo-vit"], registry=space_world.registry,
                        parents_from_weights=True)
    assert "probex-zoo-vit/vit-nocard  (weights " in named.drawing and "parent unknown" not in named.drawing
    given = browse_tree("probex-zoo-vit/vit-root", members=["probex-zoo-vit/vit-nocard", "probex-zoo-vit/vit-ft-0001"])
    assert "(**6** found by their cards' base_model, **1** otherwise)" in given.summary and "**1** without a card" in given.summary
    found = search_loras("probex-zoo-sd/sd-root", "a rotated zero", registry=space_world.registry, top_k=50,
                         authors=["probex-zoo-sd"])
    assert "probex-zoo-sd/sd-lora-nocard" in set(found.ranking["repo"]) and "by their weights" in found.summary
    with pytest.raises(SpaceInputError, match="type user or organisation names"):
        browse_tree("probex-zoo-vit/vit-root", authors=["not a name!"])


def test_search_loras_by_unseen_text(client, space_world):
    from hf_probex.experts.registry import load_expert

    expert = next(e for e in space_world.registry.entries if e.tree == "sd")
    assert "giraffe" not in " ".join(load_expert(expert.location).vocabulary)  # a concept no expert saw
    summary, plot, ranking = client.predict("probex-zoo-sd/sd-root", "a purple giraffe", 3, "", "",
                                            api_name="/search_loras")
    rows = _rows(ranking)
    assert [r["rank"] for r in rows] == [1, 2, 3] and all(r["repo"].startswith("probex-zoo-sd/sd-lora-") for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert "a purple giraffe" in summary and "LoRAs ranked" in summary and "the sd tree's expert" in summary
    assert not SERVER_PATHS.search(summary)
    assert "no zero-shot expert" in _error(lambda: client.predict("probex-zoo-resnet/resnet-root", "a dog", 5, "", "",
                                                                  api_name="/search_loras"))
    assert "type what the LoRA should draw" in _error(lambda: client.predict("probex-zoo-sd/sd-root", " ", 5, "", "",
                                                                             api_name="/search_loras"))


def test_list_experts_and_examples(client):
    from space_world import TEXT_CHILDREN

    summary, table, browse_roots, search_roots, examples = client.predict(api_name="/list_experts")
    rows = {r["tree"]: r for r in _rows(table)}
    assert set(rows) == {"sd", "vit", "text"} and "**3** experts for **3** trees" in summary
    assert rows["vit"]["task"] == "multilabel" and "per_label_acc" in rows["vit"]["metrics (CV %)"]
    assert rows["sd"]["task"] == "zeroshot" and "top1" in rows["sd"]["metrics (CV %)"]
    assert rows["vit"]["proposes at"] == "never proposes (no threshold reaches 95 % precision)"
    assert {r["location"] for r in rows.values()} == {"local"}  # never the server's folder
    assert search_roots["value"] == "probex-zoo-sd/sd-root"
    samples = examples["samples"]
    assert {tree for _, tree in samples} == {"sd", "vit", "text"} and all(repo.startswith("probex-zoo-") for repo, _ in samples)
    assert [repo for repo, tree in samples if tree == "text"] == list(TEXT_CHILDREN)  # a LABEL_i classifier, a SetFit model


def test_requests_queue_and_all_finish(client):
    jobs = [client.submit(REPO_INPUT, f"probex-zoo-vit/vit-ft-000{i}", None, 0, "", api_name="/infer") for i in (3, 4, 5)]
    assert all(f"vit-ft-000{i}" in job.result(timeout=120)[0] for i, job in zip((3, 4, 5), jobs))


def test_public_names_hide_server_paths(space_world, tmp_path):
    from hf_probex.space import PublicNames

    upload = Path(tempfile.gettempdir()) / "gradio" / "0123abcd" / "my-lora.safetensors"
    public = PublicNames(space_world.registry, upload)
    vit = next(e for e in space_world.registry.entries if e.tree == "vit")
    assert public(f"expert {vit.location} (ridge) on a layer") == "the vit tree's expert (ridge) on a layer"
    assert public(f"{upload}: header cut short") == "my-lora.safetensors: header cut short"
    assert public(f"see {tempfile.gettempdir()}/elsewhere/model.safetensors.") == "see model.safetensors."
    assert public("probex-zoo-vit/vit-root at https://huggingface.co") == "probex-zoo-vit/vit-root at https://huggingface.co"


def test_scores_chart_draws_the_thresholds():
    from hf_probex.space import scores_chart

    assert scores_chart({}) == ""
    never = scores_chart({"confidence_by_class": {"a": 0.5, "<b>": 0.2}, "threshold": 1.01, "calibrated_threshold": 1.01})
    assert "never proposes (no threshold reaches 95 % precision)" in never and "probex-mark" not in never
    assert "&lt;b&gt;" in never and "<b>" not in never
    explored = scores_chart({"confidence_by_class": {"a": 0.5, "b": 0.2}, "threshold": 0.1, "calibrated_threshold": 0.4})
    assert explored.count("probex-mark calibrated") == 2 and explored.count("probex-mark asked") == 2
    assert explored.count("probex-fill strong") == 1 and "your minimum: 10%" in explored  # only a ≥ 0.4
    concept = scores_chart({"cosine_by_concept": {"dog": 0.3, "cat": -0.1}, "confidence": 0.7, "threshold": 0.6,
                            "calibrated_threshold": 0.6})
    assert "confidence in “dog”" in concept and concept.count("probex-mark calibrated") == 1


def test_diff_lines_label_what_a_pull_request_adds_and_removes():
    from hf_probex.cards import card_diff
    from hf_probex.space import diff_lines

    diff = card_diff("---\nlicense: mit\n---\nbody", "---\nbase_model: a/b\n---\nbody")
    lines = diff_lines(diff)
    assert "".join(text for text, _ in lines) == diff  # the API's value is still the whole diff
    assert ("+base_model: a/b\n", "added") in lines and ("-license: mit\n", "removed") in lines
    assert {kind for text, kind in lines if text.startswith(("--- ", "+++ ", "@@", " "))} == {None}
    assert diff_lines("") == []

def _silent_server() -> socket.socket:
    """A port that accepts connections and never answers: a Hub behind a dead network."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_without_a_hub_the_space_starts_at_once(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.hub import use_endpoint
    from hf_probex.space import hub_experts, resolve_registry, tree_examples
    from hf_probex.space.app import create_app

    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path))  # no registry file: the Hub's experts only
    registry = ExpertRegistry.from_locations([])
    with _silent_server() as server, use_endpoint(f"http://127.0.0.1:{server.getsockname()[1]}"):
        started = time.monotonic()
        create_app()
        assert time.monotonic() - started < 5  # the Hub is listed in the background
        found, note = hub_experts(timeout_s=0.5)
        assert len(found) == 0 and "did not answer within 0.5 s" in note and time.monotonic() - started < 8
        with monkeypatch.context() as offline:  # undone inside use_endpoint: an undo at teardown would leave later tests online
            offline.setattr(constants, "HF_HUB_OFFLINE", True)
            started = time.monotonic()
            assert "HF_HUB_OFFLINE" in hub_experts()[1] and len(resolve_registry(None)) == 0
            assert tree_examples(registry) == [] and time.monotonic() - started < 1


def test_on_a_space_visitors_sign_in_with_the_hub_and_a_pasted_token_wins(space_world, monkeypatch):
    """Gradio's OAuth works on Spaces only: there the page has "Sign in with Hugging Face", served elsewhere it has the
    token box alone; a token typed in the box is used before the sign-in's, and without either no token is sent."""
    from hf_probex.space.app import create_app, on_a_space, visitor_token

    assert not create_app(space_world.registry).expects_oauth
    assert not on_a_space()  # gradio.utils.get_space: SYSTEM=spaces and SPACE_ID, which a Space sets
    monkeypatch.setattr("hf_probex.space.app.on_a_space", lambda: True)
    monkeypatch.setenv("HF_TOKEN", space_world.alice)  # off a Space, gradio mocks the sign-in with the machine's login
    assert create_app(space_world.registry).expects_oauth
    signed_in = gradio.OAuthToken(token="hf_signed_in", scope="openid profile write-discussions", expires_at=0)
    assert visitor_token("", signed_in) == "hf_signed_in" and visitor_token(" hf_typed ", signed_in) == "hf_typed"
    assert visitor_token("  ", None) is None


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
        assert "**3** experts" in client.predict(api_name="/list_experts")[0]
        summary = client.predict(REPO_INPUT, "probex-zoo-vit/vit-ft-0006", None, 0, "", api_name="/infer")[0]
        assert "probex-zoo-vit/vit-root" in summary  # read from the local hub the command serves
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_tree_drawing_puts_each_model_under_its_parent_and_survives_looping_cards():
    from hf_probex.space import tree_drawing

    drawing = tree_drawing("o/root", {"o/a": "o/root", "o/b": "o/a", "o/c": None, "o/d": "x/elsewhere", "o/e": "o/f",
                                      "o/f": "o/e"}, {"o/c": ("o/b", 0.9)})
    assert drawing.splitlines()[1:6] == ["o/root", "├── o/a  (card)", "│   └── o/b  (card)",
                                         "│       └── o/c  (weights 0.90)", "└── o/d  (parent unknown)"]
    assert "o/e -> o/f" in drawing and "o/f -> o/e" in drawing  # cards naming each other never reach the root
    deep = {f"o/m{i}": f"o/m{i - 1}" if i else "o/root" for i in range(3000)}  # deeper than Python's recursion limit
    assert tree_drawing("o/root", deep).count("\n") == 3000 + 2


def test_browse_names_parents_from_the_tables_sketches_without_reading_a_weight(space_world, tmp_path):
    """A tree read from its table gets its parents from the table's sketches (`members.table_lineage`): the rows
    here name repos no Hub holds, so reading their weights could name nothing."""
    from hf_probex.lineage import lineage_calibration, open_model
    from hf_probex.scan.embedding import member_embedding
    from hf_probex.scan.publish import dataset_card
    from hf_probex.scan.table import ScanRow, rows_to_table, write_parquet
    from hf_probex.space import browse_tree

    root = "probex-zoo-vit/vit-root"
    calibration = lineage_calibration(space_world.registry, root, sketches=True)
    rows = []
    for i, spec in enumerate(s for s in space_world.zoo.specs("vit") if s.role == "child"):
        adapter, source = open_model(space_world.zoo.model_dir("vit", spec.name))
        embedding = member_embedding(source, adapter, root, space_world.registry)
        assert embedding.kind == calibration.sketch
        rows.append(ScanRow(f"acme/vit-copy-{i}", found_by="weights", embedding=embedding.vector,
                            embedding_kind=embedding.kind, embedding_layers=embedding.layers, card_missing=["base_model"]))
    (tmp_path / "data").mkdir()
    write_parquet(rows_to_table(rows), tmp_path / "data" / "train-00000.parquet")
    (tmp_path / "README.md").write_text(dataset_card(root, None, rows, settings="test", scanned_at="today"))
    view = browse_tree(root, table=str(tmp_path), registry=space_world.registry, parents_from_weights=True)
    assert view.drawing.count("(weights ") == len(rows) and "parent unknown" not in view.drawing
    assert not any("could not be read" in warning for warning in view.warnings)
