"""Readers of a published tree table, on the tiny zoo's LoRA tree scanned into the local hub of tests/test_scan.py
and published as a dataset repo through the real huggingface_hub client. Text search (`hf_probex.search`, `hf-probex
search`): the table's vectors are the expert's `search_vectors`, a LoRA is found by its own concept, exact numpy and
usearch agree, the index is cached by the table's commit, and bad inputs are one-line errors. The bot and the
Space's browse tab take the tree's members from the table, cardless ones included."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from huggingface_hub import HfApi
from test_scan import SCANNER, hub, lora_children, scan_hub  # noqa: F401 - fixtures: the scan tests' own local hub

from hf_probex.cards import missing_fields
from hf_probex.cli import main
from hf_probex.experts.registry import ExpertRegistry, load_expert
from hf_probex.scan.publish import TableError, find_table
from hf_probex.search import TableNotFoundError, open_tree_index, search


@pytest.fixture(scope="module")
def sd_table(scan_hub, tiny_zoo, experts, tmp_path_factory):  # noqa: F811
    """The tiny zoo's LoRA tree scanned once for this module and published to a dataset repo of `scanner`."""
    from hf_probex.hub import use_endpoint
    from hf_probex.scan import scan_tree

    tree = tiny_zoo.trees["sd"]
    repo_id = f"scanner/sd-table-{uuid.uuid4().hex[:6]}"
    out = tmp_path_factory.mktemp("sd-scan")
    with use_endpoint(scan_hub.endpoint):
        result = scan_tree(tree["root_repo_id"], to=repo_id, out=out, experts=experts, token=SCANNER,
                           authors=[tree["org"]])
    assert result.errors == 0 and result.rows == len(lora_children(tiny_zoo))
    entry = next(e for e in experts.entries if e.root == tree["root_repo_id"])
    return {"root": tree["root_repo_id"], "repo_id": repo_id, "folder": out, "entry": entry, "result": result}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """hf_probex's cache (the index cache with it) in this test's folder."""
    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path / "probex-cache"))
    return tmp_path / "probex-cache"


def test_the_table_holds_each_loras_search_vectors_of_the_expert(sd_table, tiny_zoo):
    from hf_probex.adapters import detect
    from hf_probex.reading import open_source
    from hf_probex.scan.embedding import kind_fingerprint

    entry = sd_table["entry"]
    expert = load_expert(entry.location)
    rows = {r["repo_id"]: r for r in sd_table["result"].table().to_pylist()}
    for spec in lora_children(tiny_zoo):
        source = open_source(str(tiny_zoo.model_dir("sd", spec.name)))
        matrix = detect(source).read_input(source, entry.inputs, expert.config["conv_layout"], allow_missing=expert.fused)
        row = rows[spec.repo_id]
        assert kind_fingerprint(row["embedding_kind"]) == expert.fingerprint()
        assert np.allclose(row["embedding"], expert.search_vectors(matrix)[0], atol=1e-6)


def test_search_finds_each_lora_by_its_own_concept_more_often_than_chance(hub, sd_table, tiny_zoo, experts, cache):  # noqa: F811
    specs = lora_children(tiny_zoo)
    concept_of = {s.repo_id: s.concept["prompt"] for s in specs}
    firsts, chance = 0, 0.0
    for prompt in sorted(set(concept_of.values())):
        hits = search(prompt, tree=sd_table["root"], table=sd_table["repo_id"], top_k=len(specs), token=False,
                      experts=experts)
        assert len(hits) == len(specs) and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        firsts += concept_of[hits[0].repo_id] == prompt
        chance += sum(c == prompt for c in concept_of.values()) / len(specs)
        assert all(h.sha == HfApi().model_info(h.repo_id).sha for h in hits[:1])
        labels = {(label.value, label.source) for label in hits[0].labels}
        assert (concept_of[hits[0].repo_id], "pytorch_lora_weights.safetensors metadata instance_prompt") in labels
    # measured 2026-11-30: 6 of the tiny zoo's 9 concepts (10 LoRAs) put one of their own LoRAs first: all 5 the expert
    # trained on, 1 of the 4 it never saw; chance is 1.0 in all (each concept's share of the 10 LoRAs, summed)
    assert firsts >= 4 and firsts > 2 * chance, (firsts, chance)


def test_exact_and_usearch_give_the_same_top_k_on_a_small_table(hub, sd_table, tiny_zoo, experts, tmp_path):  # noqa: F811
    exact = open_tree_index(sd_table["root"], table=sd_table["repo_id"], token=False, experts=experts, kind="exact",
                            cache_dir=tmp_path)
    graph = open_tree_index(sd_table["root"], table=sd_table["repo_id"], token=False, experts=experts,
                            kind="usearch", cache_dir=tmp_path)
    assert (exact.index.kind, graph.index.kind) == ("exact", "usearch") and exact.folder != graph.folder
    for prompt in ["a rotated zero", "a purple giraffe", *sorted({s.concept["prompt"] for s in lora_children(tiny_zoo)})]:
        a, b = exact.search(prompt, 5), graph.search(prompt, 5)
        assert [h.repo_id for h in a] == [h.repo_id for h in b]  # recall@5 1.0 at 10 rows
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_the_index_is_cached_by_the_tables_commit(hub, sd_table, experts, tmp_path):  # noqa: F811
    first = open_tree_index(sd_table["root"], table=sd_table["repo_id"], token=False, experts=experts, cache_dir=tmp_path)
    again = open_tree_index(sd_table["root"], table=sd_table["repo_id"], token=False, experts=experts, cache_dir=tmp_path)
    assert first.built and not again.built and again.folder == first.folder
    assert first.table.commit in first.folder.name and sorted(p.name for p in first.folder.iterdir()) == \
        ["meta.json", "rows.parquet", "vectors.npy"]
    assert [h.repo_id for h in again.search("a rotated zero", 5)] == [h.repo_id for h in first.search("a rotated zero", 5)]

    api = HfApi(token=SCANNER)  # a new commit of the table: a new index
    card = api.hf_hub_download(sd_table["repo_id"], "README.md", repo_type="dataset")
    api.upload_file(path_or_fileobj=(open(card).read() + "\nRescanned.\n").encode(), path_in_repo="README.md",
                    repo_id=sd_table["repo_id"], repo_type="dataset")
    moved = open_tree_index(sd_table["root"], table=sd_table["repo_id"], token=False, experts=experts, cache_dir=tmp_path)
    assert moved.built and moved.folder != first.folder and moved.table.commit != first.table.commit

    local = open_tree_index(sd_table["root"], table=sd_table["folder"], token=False, experts=experts, cache_dir=tmp_path)
    assert local.built and local.table.commit is None and len(local.index) == len(first.index)
    assert not open_tree_index(sd_table["root"], table=sd_table["folder"], token=False, experts=experts,
                               cache_dir=tmp_path).built


def test_search_finds_a_trusted_table_on_the_hub_without_being_told(hub, sd_table, experts, cache, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_PROBEX_TRUSTED_AUTHORS", "scanner")
    hits = search("a rotated zero", tree=sd_table["root"], top_k=3, token=False, experts=experts)
    assert len(hits) == 3
    monkeypatch.setenv("HF_PROBEX_TRUSTED_AUTHORS", "nobody-trusted")
    with pytest.raises(TableNotFoundError, match="no tree table of .* was found"):
        search("a rotated zero", tree=sd_table["root"], token=False, experts=experts)
    with pytest.raises(TableNotFoundError, match="roott was not found on .*: check the root's repo id"):  # misspelt
        search("a rotated zero", tree=sd_table["root"] + "t", token=False, experts=experts)


@pytest.mark.parametrize("argv", [["search", "--help"], ["--help"]])
def test_search_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "search" in out and ("--tree ROOT_ID" in out and "--table REPO_ID_OR_FOLDER" in out or argv == ["--help"])


def _expert_args(experts: ExpertRegistry) -> list[str]:
    return [arg for entry in experts.entries for arg in ("--expert", entry.location)]


def test_cli_search_prints_hits_as_json(hub, sd_table, experts, cache, capsys):  # noqa: F811
    assert main(["search", "a rotated zero", "--tree", sd_table["root"], "--table", sd_table["repo_id"], "--top-k", "3",
                 "--json", "--token", "", *_expert_args(experts)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["table"] == sd_table["repo_id"] and out["index"] == "exact" and out["rows"] == sd_table["result"].rows
    assert len(out["hits"]) == 3 and set(out["hits"][0]) == {"repo_id", "score", "labels", "sha", "family", "matched"}
    assert out["hits"][0]["family"] == "sd-lora" and out["hits"][0]["labels"][0].keys() == {"value", "source"}
    assert main(["search", "a rotated zero", "--tree", sd_table["root"], "--table", str(sd_table["folder"]),
                 "--top-k", "2", *_expert_args(experts)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "the tree table (a local folder)" in lines[0] and len(lines) == 3 and lines[1].lstrip().startswith("1.")


def _other_expert(entry, folder) -> str:
    """The tree's expert with one weight nudged: another training run, as far as its vectors go."""
    import torch

    expert = load_expert(entry.location)
    other = type(expert).from_pretrained(entry.location)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    other.save_pretrained(folder)
    return str(folder)


def test_bad_inputs_are_one_line_errors(hub, sd_table, tiny_zoo, experts, cache, tmp_path, capsys):  # noqa: F811
    table = ["--table", sd_table["repo_id"], *_expert_args(experts)]
    cases = {
        f"no zero-shot expert for the tree of {sd_table['root']}": [
            "search", "a dog", "--tree", sd_table["root"], "--table", sd_table["repo_id"],
            *_expert_args(ExpertRegistry([e for e in experts.entries if e.root != sd_table["root"]]))],
        f"is the table of {sd_table['root']}, not of nobody/nothing": ["search", "a dog", "--tree", "nobody/nothing", *table],
        "the query is empty": ["search", "  ", "--tree", sd_table["root"], *table],
        "the table was scanned with another expert; rescan": [
            "search", "a dog", "--tree", sd_table["root"], "--table", sd_table["repo_id"],
            "--expert", _other_expert(sd_table["entry"], tmp_path / "other")],
        "no tree table on": ["search", "a dog", "--tree", sd_table["root"], "--table", "scanner/no-such-table",
                             *_expert_args(experts)],
        "is not a Hub repo id": ["search", "a dog", "--tree", "not a repo!", *table],
        "--top-k must be from 1 to": ["search", "a dog", "--tree", sd_table["root"], "--top-k", "0", *table],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, expected
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], (expected, err)
    vit = tiny_zoo.trees["vit"]["root_repo_id"]
    with pytest.raises(TableError, match=f"is the table of {sd_table['root']}, not of {vit}"):
        find_table(vit, sd_table["repo_id"], token=False)


def test_the_bot_and_the_browse_tab_take_the_tree_from_its_table(hub, sd_table, tiny_zoo, capsys):  # noqa: F811
    from hf_probex.space import SpaceInputError, browse_tree

    root, repo_id = sd_table["root"], sd_table["repo_id"]
    loras = {s.repo_id: s for s in lora_children(tiny_zoo)}
    by_weights = sum(row["found_by"] == "weights" for row in sd_table["result"].table().to_pylist())
    assert 0 < by_weights < len(loras)
    bot = ["bot", "run", "--tree", root, "--dry-run", "--limit", "0", "--quiet"]
    assert main([*bot, "--table", repo_id]) == 0
    assert (f"tree {root}: {len(loras)} members from the tree table {repo_id}@" in capsys.readouterr().out)
    assert main([*bot, "--walk"]) == 0  # the Hub's listing finds members by their cards only
    assert f"tree {root}: {len(loras) - by_weights} members listed on the Hub" in capsys.readouterr().out

    other = tiny_zoo.trees["vit"]["root_repo_id"]  # a repo known otherwise, not in the table: its card is read now
    view = browse_tree(root, table=repo_id, members=[other])
    assert f"from the tree table {repo_id}@" in view.summary.lower()
    assert list(view.models["repo"])[-1] == other and set(view.models["repo"]) == {*loras, other}
    assert view.models["found by"].iloc[-1] == "other" and not view.models["fields missing"].iloc[-1].startswith("(")
    members = view.models[view.models["repo"] != other]
    assert (members["found by"] == "weights").sum() == by_weights
    for row in members.to_dict("records"):
        readme = tiny_zoo.model_dir("sd", loras[row["repo"]].name) / "README.md"
        missing = missing_fields(readme.read_text() if readme.exists() else "") - {"lineage"}  # hf_probex's, not the Hub's
        listed = set(filter(None, row["fields missing"].split(", ")))
        assert row["how many"] == len(missing) and listed <= missing | {"nothing"} and "lineage" not in listed
    assert "lineage" not in set(view.coverage["field"])
    local = browse_tree(root, table=str(sd_table["folder"]))  # a folder of the server: its path is not shown
    assert str(sd_table["folder"]) not in local.summary and "From the tree table, scanned " in local.summary
    assert "hf-probex" not in local.summary  # no command-line advice on a web page
    with pytest.raises(SpaceInputError, match="no tree table"):
        browse_tree(root, table="scanner/no-such-table")
