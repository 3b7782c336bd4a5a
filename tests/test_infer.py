"""infer_card end to end on the tiny zoo: local folders, bare safetensors files, and repos on the local Hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hf_probex import CardSuggestion, ProbexError, infer_card
from hf_probex.adapters import detect
from hf_probex.cards import missing_fields, trained_on_value
from hf_probex.cli import main
from hf_probex.demo import format_demo, held_out, run_demo, undocumented_copy
from hf_probex.errors import RepoNotFoundError
from hf_probex.reading import open_source
from hf_probex.routing import route
from hf_probex.zoo import Zoo


def _children(zoo: Zoo, tree: str):
    return [s for s in zoo.specs(tree) if s.role == "child"]


def test_a_local_folder_gets_only_its_missing_fields(tiny_zoo, experts):
    spec = next(s for s in held_out(tiny_zoo) if s.tree == "vit")
    folder = tiny_zoo.model_dir("vit", spec.name)
    result = infer_card(folder, experts=experts)
    assert isinstance(result, CardSuggestion) and result.family == "vit" and result.tree == "probex-zoo-vit/vit-root"
    assert result.fields["library_name"].value == "transformers"
    assert result.fields["pipeline_tag"].value == "image-classification"
    for field in result.fields.values():
        assert 0 <= field.confidence <= 1 and field.evidence
    current = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
    assert result.current_card == current
    assert set(result.proposed) <= missing_fields(current)
    if result.proposed:
        assert result.diff.startswith(("--- a/README.md", "--- /dev/null"))
        assert not missing_fields(result.suggested_card) & set(result.proposed)
        kept = [line for line in current.splitlines() if line.strip()]
        assert all(line in result.suggested_card.splitlines() for line in kept)  # nothing the owner wrote is lost
    assert json.loads(result.to_json())["fields"]["library_name"]["value"] == "transformers"


def test_twin_trees_are_told_apart_by_weights_alone(tiny_zoo, experts, tmp_path):
    """vit and vit-twin share the architecture; a bare weights file (no config, no card) still routes right."""
    for tree in ("vit", "vit-twin"):
        for spec in _children(tiny_zoo, tree):
            bare = tmp_path / f"{spec.name}-{tree}.safetensors"
            shutil.copy(tiny_zoo.model_dir(tree, spec.name) / "model.safetensors", bare)
            result = infer_card(bare, experts=experts)
            assert result.tree == tiny_zoo.trees[tree]["root_repo_id"], (tree, spec.name, result.abstained)
            # a handful of training models, half of them grandchildren: too few to name the root as the parent
            assert "base_model" not in result.fields and f"a descendant of {result.tree}" in result.abstained["base_model"]


def test_a_hub_repo_is_read_by_its_header_and_a_few_layers(zoo_hub, tiny_zoo, experts):
    spec = _children(tiny_zoo, "resnet")[0]
    entry = next(e for e in experts.entries if e.tree == "resnet")
    result = infer_card(spec.repo_id, experts=experts)
    assert result.tree == "probex-zoo-resnet/resnet-root" and result.revision
    source = open_source(spec.repo_id)
    small = sum(source.file_size(f) for f in ("README.md", "config.json") if f in source.files)
    layers = {name for name, _ in entry.routing_layers + entry.inputs}  # routing's layers, then the expert's
    needed = small + source.header("model.safetensors").nbytes + sum(source.checkpoint().info(n).nbytes for n in layers)
    assert result.bytes_read <= 1.05 * needed, (result.bytes_read, needed)
    assert result.bytes_read < source.size / 2


def test_declared_lineage_is_walked_through_parent_cards(zoo_hub, tiny_zoo, experts):
    grandchild = next(s for s in _children(tiny_zoo, "vit") if s.generation == 2 and s.card in ("complete", "no_data"))
    parent = tiny_zoo.spec("vit", grandchild.parent)
    source = open_source(grandchild.repo_id)
    found = route(source, detect(source), experts)
    assert found.lineage == [parent.repo_id, "probex-zoo-vit/vit-root"] and found.finding is None


def test_a_declared_base_the_weights_contradict_is_a_finding(zoo_hub, tiny_zoo, experts, tmp_path):
    twin = _children(tiny_zoo, "vit-twin")[0]
    folder = tmp_path / "mislabelled"
    shutil.copytree(tiny_zoo.model_dir("vit-twin", twin.name), folder)
    (folder / "README.md").write_text("---\nbase_model: probex-zoo-vit/vit-root\n---\n# A ViT\n")
    result = infer_card(folder, experts=experts)
    assert result.tree == "probex-zoo-vit-twin/vit-twin-root"
    assert "probex-zoo-vit/vit-root" in result.fields["lineage"].value and not result.fields["lineage"].missing


def test_bad_sources_raise_one_probex_error(hub, tmp_path, capsys):
    with pytest.raises(RepoNotFoundError):
        infer_card("nobody/nothing-here", experts=[])
    (tmp_path / "pytorch_model.bin").write_bytes(b"not opened")
    with pytest.raises(ProbexError, match="never"):
        infer_card(tmp_path, experts=[])
    assert main(["infer", str(tmp_path / "missing.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_infer_arguments_are_named_with_what_to_do(hub, capsys):
    """A misspelt option shows infer's own usage; a confidence outside [0, 1] is refused before anything is read; an id
    without a namespace that does not exist is "not found", not a network problem to retry."""
    for argv, said in ((["infer", "--jsn", "x/y"], "hf-probex infer: error: unrecognized arguments: --jsn"),
                       (["infer", "x/y", "--min-confidence", "2"], "--min-confidence: 2 is not between 0 and 1")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and said in err and "usage: hf-probex infer" in err
    assert main(["infer", "probexzoo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: probexzoo was not found") and "retry" not in err


def test_infer_cli_prints_a_table_or_json(tiny_zoo, experts, capsys):
    folder = tiny_zoo.model_dir("resnet", _children(tiny_zoo, "resnet")[0].name)
    locations = [arg for e in experts.entries for arg in ("--expert", e.location)]
    assert main(["infer", str(folder), *locations]) == 0
    table = capsys.readouterr().out
    assert "family resnet, tree probex-zoo-resnet/resnet-root" in table and "library_name" in table
    assert main(["infer", str(folder), "--json", *locations]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "resnet"
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert "safetensors" in capsys.readouterr().out


def test_infer_json_prints_only_json_when_experts_load(tiny_zoo, experts, tmp_path):
    """The installed `hf-probex` in a fresh process, so the expert folders really load (no in-process cache):
    loading an expert must print nothing to stdout (the hub mixin's "Loading weights from local directory")."""
    folder = tiny_zoo.model_dir("resnet", _children(tiny_zoo, "resnet")[0].name)
    locations = [arg for e in experts.entries for arg in ("--expert", e.location)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_PROBEX_CACHE": str(tmp_path)}
    done = subprocess.run([str(Path(sys.executable).parent / "hf-probex"), "infer", str(folder), "--json", *locations],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["family"] == "resnet"


def test_demo_reads_undocumented_held_out_models_from_their_weights(demo_cache, capsys):
    """The demo's promise: test-split models stripped of card and class names get base_model and trained_on
    from their weights alone, and what it proposes is right."""
    cases = run_demo(demo_cache, progress=lambda line: None)  # reuses the session's zoos and their experts
    assert cases and all(c.spec.split == "test" for c in cases)
    for case in cases:
        assert not case.suggestion.current_card  # no card, and config.json names no class
        trained_on = case.suggestion.fields.get("trained_on")
        assert trained_on is None or trained_on.source == "expert"
        base = case.suggestion.fields.get("base_model")
        if base is not None:  # routing by weights names the tree's root (a grandchild's true base is its parent)
            assert base.source == "weights" and (base.value == case.truth["base_model"] or case.spec.generation > 1)
    proposed = [v for c in cases if "trained_on" in c.suggestion.fields for v in c.suggestion.fields["trained_on"].value]
    right = [v for c in cases if "trained_on" in c.suggestion.fields for v in c.suggestion.fields["trained_on"].value
             if v in c.truth["trained_on"]]
    assert len(right) >= 0.8 * len(proposed), (right, proposed)
    assert all(c.suggestion.abstained.get("trained_on") for c in cases if "trained_on" not in c.suggestion.fields)
    named = [c.parent[0] == c.truth["base_model"] for c in cases if c.parent]  # given the tree's members
    assert len(named) == len(cases) and sum(named) >= 0.9 * len(named)
    assert any(c.spec.generation > 1 and c.parent[0] == c.truth["base_model"] != c.suggestion.tree for c in cases)
    text = format_demo(cases)
    assert "from the weights (confidence)" in text and "suggested README.md" in text
    assert "parent, named among the tree's members (hf-probex lineage)" in text
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "test split" in " ".join(capsys.readouterr().out.split())


def test_the_bot_proposes_what_infer_card_finds_once(zoo_hub, tiny_zoo, experts, tmp_path, monkeypatch):
    """The card bot with the real infer_card (experts from the local registry) over the imported vit tree."""
    from hf_probex.bot import BotConfig, BotState, Budgets, HubClient, run_bot, walk_tree
    from hf_probex.cards import metadata_of

    experts.save(tmp_path / "experts.json")
    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path))
    api = HfApi(endpoint=zoo_hub.endpoint, token=zoo_hub.bob)
    client = HubClient(api)
    every = BotConfig(budgets=Budgets.unlimited())  # every proposal checked here, not the first within budget
    repos = walk_tree(client, "probex-zoo-vit/vit-root")
    declared = {s.repo_id for s in _children(tiny_zoo, "vit") if s.card not in ("none", "no_base_model")}
    assert declared <= set(repos)  # the Hub's base_model filter only knows repos whose cards declare it
    state = BotState(tmp_path / "bot.sqlite")
    report = run_bot(repos, client, state=state, config=every)
    proposed = [o for o in report.outcomes if o.outcome == "proposed"]
    assert proposed, report.counts()
    for outcome in proposed:
        spec = next(s for s in _children(tiny_zoo, "vit") if s.repo_id == outcome.repo_id)
        pr = api.get_discussion_details(outcome.repo_id, outcome.pr_num)
        readme = Path(api.hf_hub_download(outcome.repo_id, "README.md", revision=pr.git_reference)).read_text()
        added = metadata_of(readme)
        if "base_model_relation" in outcome.fields:
            assert added["base_model_relation"] == "finetune"
        if "trained_on" in outcome.fields:
            assert {trained_on_value(t) for t in added["tags"] if trained_on_value(t)} <= set(spec.labels)
    again = run_bot(repos, client, state=BotState(tmp_path / "fresh.sqlite"), config=every)  # even without the local state
    assert not [o for o in again.outcomes if o.outcome == "proposed"]


def test_a_stacked_expert_reads_the_same_input_from_a_model_folder(tiny_zoo, tmp_path):
    """An expert on several layers saves, loads and reads a model's layers as it was trained on them."""
    import numpy as np

    from hf_probex.experts.training.harness import load_layer_data, train_expert
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import ExpertRegistry

    layers = ["vit.encoder.layer.0.attention.attention.value.weight", "vit.embeddings.position_embeddings"]
    data = load_layer_data(tiny_zoo.root, "vit", layers)
    expert, _ = train_expert(data, "ridge", folds=2)
    expert.save_pretrained(tmp_path / "expert")
    entry = ExpertRegistry.from_locations([tmp_path / "expert"]).entries[0]
    assert [name for name, _ in entry.inputs] == layers and "2 layers stacked" in (tmp_path / "expert" / "README.md").read_text()
    spec = _children(tiny_zoo, "vit")[0]
    source = open_source(tiny_zoo.model_dir("vit", spec.name))
    x = detect(source).read_input(source, entry.inputs)
    assert np.allclose(x[0], data.x[data.model_ids.index(spec.repo_id)])
    assert np.allclose(Expert.from_pretrained(tmp_path / "expert").predict(x), expert.predict(x))


def test_twin_experts_read_a_shared_routing_layer_once(tiny_zoo, tmp_path):
    """vit and vit-twin experts route by layers the twin roots share: a layer both compare is read once, then
    only the winner's inputs (and its head, where its expert reads one) are read, and nothing else."""
    from hf_probex.experts.training.harness import load_layer_data, train_expert
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import ExpertRegistry

    value, position, mlp = ("vit.encoder.layer.0.attention.attention.value.weight", "vit.embeddings.position_embeddings",
                            "vit.encoder.layer.0.intermediate.dense.weight")
    folders = []
    for tree, second in (("vit", position), ("vit-twin", mlp)):
        expert, _ = train_expert(load_layer_data(tiny_zoo.root, tree, [value, second]), "ridge", folds=2)
        assert expert.routing["other_roots"] == 1  # the twin's root, same architecture: routing's other side
        expert.save_pretrained(tmp_path / tree)
        folders.append(tmp_path / tree)
    registry = ExpertRegistry.from_locations(folders)
    spec = _children(tiny_zoo, "vit")[0]
    bare = tmp_path / "bare.safetensors"
    shutil.copy(tiny_zoo.model_dir("vit", spec.name) / "model.safetensors", bare)

    result = infer_card(bare, experts=registry)
    assert result.tree == tiny_zoo.trees["vit"]["root_repo_id"]
    checkpoint = open_source(bare).checkpoint()
    header = open_source(bare).header(bare.name).nbytes
    routing = {name for entry in registry.entries for name, _ in entry.routing_layers}
    reader = Expert.from_pretrained(folders[0]).row_reader
    head = {reader.layer} if reader else set()  # the head's rows, where the winner's expert reads them
    read = header + sum(checkpoint.info(n).nbytes for n in routing | {value, position} | head)  # vit-twin's MLP only if routing reads it
    assert result.bytes_read == read, (result.bytes_read, read)


def test_pull_requests_carry_only_validated_informative_fields():
    """A value shown below its calibrated floor (the Space's slider explores) never goes into a pull request, and a
    pull request made only of fields the Hub derives or config.json shows is not made at all."""
    from hf_probex.suggestions import CardSuggestion, FieldSuggestion

    def card(*fields: FieldSuggestion) -> CardSuggestion:
        return CardSuggestion("a/b", fields={f.name: f for f in fields})

    relation = FieldSuggestion("base_model_relation", "finetune", 1.0, "resnet family")
    library = FieldSuggestion("library_name", "transformers", 1.0, "config.json")
    guessed = FieldSuggestion("trained_on", "thick five", 0.16, "expert", "expert", floor=0.9)
    sure = FieldSuggestion("trained_on", "thin one", 0.97, "expert", "expert", floor=0.9)
    routed = FieldSuggestion("base_model", "a/root", 0.95, "weights", "weights", floor=0.9)
    assert card(relation, library).pull_request_fields == {}
    assert card(relation, guessed).pull_request_fields == {} and not guessed.validated
    assert set(card(relation, library, sure).pull_request_fields) == {"base_model_relation", "library_name", "trained_on"}
    assert set(card(routed, relation, guessed).pull_request_fields) == {"base_model", "base_model_relation"}
    assert card(routed, relation).to_dict()["fields"]["base_model"]["floor"] == 0.9


def test_an_adapter_gets_base_model_from_its_files_or_its_tree(tiny_zoo, experts, tmp_path):
    """A LoRA's base: the one its files declare (cited, exact), else the tree routing found by its modules' shapes:
    shown with that evidence, below the routing floor (shapes cannot tell a base from its same-shaped fine-tunes),
    so never in a pull request."""
    lora = next(s for s in tiny_zoo.specs("sd") if s.role == "child")
    folder = tmp_path / "lora"
    shutil.copytree(tiny_zoo.model_dir("sd", lora.name), folder)
    (folder / "README.md").unlink(missing_ok=True)
    routed = infer_card(folder, experts=experts, min_confidence=0.3)
    base = routed.fields["base_model"]
    assert (base.value, base.source, base.validated) == ("probex-zoo-sd/sd-root", "weights", False)
    assert "shapes" in base.evidence and "base_model" not in routed.pull_request_fields
    assert "confidence 0.50 < 0.95" in infer_card(folder, experts=experts).abstained["base_model"]
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "probex-zoo-sd/sd-root"}))
    declared = infer_card(folder, experts=experts)
    base = declared.fields["base_model"]
    assert (base.value, base.confidence, base.source) == ("probex-zoo-sd/sd-root", 1.0, "lineage")
    assert base.evidence == "declared by adapter_config.json base_model_name_or_path" and base.origin == "declared lineage"
    assert set(declared.pull_request_fields) >= {"base_model", "base_model_relation"}


def test_a_local_experts_folder_never_reaches_evidence_or_the_card(tiny_zoo, experts, tmp_path):
    """Evidence goes into pull requests on other people's repos: a local expert is named by its tree, a Hub one
    by its repo id."""
    from hf_probex.experts.registry import ExpertEntry

    folder = tmp_path / "undocumented"
    shutil.copytree(tiny_zoo.model_dir("resnet", _children(tiny_zoo, "resnet")[0].name), folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(config["id2label"]))}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").unlink()
    result = infer_card(folder, experts=experts, min_confidence=0.0)
    entry = next(e for e in experts.entries if e.tree == "resnet")
    assert result.fields["trained_on"].evidence.startswith("the resnet tree's expert (")
    assert entry.location not in result.to_json() and entry.location not in result.suggested_card
    hub_entry = ExpertEntry("hf-probex/expert-vit", "vit", "a/root", "multilabel", "w", None, "ridge", ())
    assert hub_entry.public_name == "hf-probex/expert-vit" and entry.public_name == "the resnet tree's expert"


def test_models_trained_on_classes_outside_the_vocabulary_get_no_class(small_zoo, small_experts, tmp_path):
    """Children of the small zoo trained only on inverted and thick digits, classes the expert does not know: those of
    test_holdout (seen by no training and no calibration) get no trained_on, and say why; the expert's threshold
    was checked on those of val_holdout (at most 5 % of them given a class)."""
    from hf_probex.experts.registry import load_expert

    calibration = load_expert(small_experts.entries[0].location).calibration
    assert calibration["unseen_models"] == 8 and calibration["unseen_proposed"] <= 0.05
    unseen = [s for s in small_zoo.specs("resnet") if s.split == "test_holdout"]
    assert len(unseen) == 8 and all(label.split()[0] in ("inverted", "thick") for s in unseen for label in s.labels)
    said = []
    for spec in unseen:
        result = infer_card(undocumented_copy(small_zoo, spec, tmp_path / spec.name), experts=small_experts)
        assert "trained_on" not in result.fields and result.abstained["trained_on"], spec.name
        said.append(result.abstained["trained_on"])
    # those the vocabulary's models alone would have given a class say why they get none
    assert any("it may be trained on classes this tree's expert does not know" in why for why in said)
