"""The expert registry: entries from expert folders, a registry file, and the Hub (by tag), looked up by tree."""

from __future__ import annotations

import numpy as np
import pytest

from hf_probex.experts.training.harness import fit_expert, load_layer_data
from hf_probex.experts.registry import ExpertRegistry, ExpertRegistryError

VIT_LAYER = "vit.encoder.layer.0.attention.attention.value.weight"
SD_LAYER = "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_q"


@pytest.fixture(scope="module")
def expert_dirs(tiny_zoo, tmp_path_factory):
    """A class-subset expert (vit) and a zero-shot one (sd), saved as folders."""
    out = tmp_path_factory.mktemp("experts")
    for tree, layer, method in (("vit", VIT_LAYER, "ridge"), ("sd", SD_LAYER, "ridge")):
        data = load_layer_data(tiny_zoo.root, tree, layer)
        expert, _ = fit_expert(data, method, np.arange(len(data.y)))
        expert.save_pretrained(out / tree)
    return out / "vit", out / "sd"


def test_entries_come_from_expert_configs_and_are_found_by_root(expert_dirs, tiny_zoo):
    vit, sd = expert_dirs
    registry = ExpertRegistry.from_locations([vit, sd, vit])  # the same expert twice is one entry
    assert len(registry) == 2
    vit_root, sd_root = (tiny_zoo.trees[t]["root_repo_id"] for t in ("vit", "sd"))
    assert registry.roots == sorted([vit_root, sd_root])
    entry, = registry.for_root(vit_root)
    assert (entry.tree, entry.task, entry.adapter, entry.inputs) == ("vit", "multilabel", None, ((VIT_LAYER, (32, 32)),))
    assert registry.for_root(vit_root, "multilabel") == [entry] and registry.for_root(vit_root, "zeroshot") == []
    assert registry.for_root(sd_root)[0].adapter == "lora" and registry.for_root("nobody/root") == []


def test_a_registry_file_round_trips_and_a_damaged_one_says_what_to_do(expert_dirs, tmp_path):
    vit, sd = expert_dirs
    registry = ExpertRegistry()
    registry.add(vit)
    registry.add(sd)
    registry.add(vit)  # refreshed, not duplicated
    path = registry.save(tmp_path / "experts.json")
    assert ExpertRegistry.from_file(path).entries == registry.entries and len(registry) == 2
    assert len(ExpertRegistry.from_file(tmp_path / "none.json")) == 0
    path.write_text('{"experts": [{"location": 1}]}')
    with pytest.raises(ExpertRegistryError, match="damaged .* `hf-probex train --register`"):
        ExpertRegistry.from_file(path)


def test_an_expert_that_is_not_there_is_one_line_saying_why(hub, tmp_path, monkeypatch):
    """`--expert` given a misspelt repo id, a folder that does not exist, or a repo id while offline."""
    said = {}
    for location in ("nowhere/expert", str(tmp_path / "no-such-folder")):
        with pytest.raises(ExpertRegistryError) as err:
            ExpertRegistry.from_locations([location])
        said[location] = str(err.value)
    with monkeypatch.context() as offline_now, pytest.raises(ExpertRegistryError) as offline:
        # undone here, inside the hub fixture's endpoint: an undo at teardown would outlive it and leave later tests online
        offline_now.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        ExpertRegistry.from_locations(["nowhere/expert-offline"])
    assert said["nowhere/expert"].startswith(f"nowhere/expert is neither an expert folder here nor a repo on {hub.endpoint}")
    assert "is neither an expert folder nor a Hub repo id" in said[str(tmp_path / "no-such-folder")]
    assert "the Hub cache does not hold it" in str(offline.value) and "unset HF_HUB_OFFLINE" in str(offline.value)
    assert all("\n" not in message for message in [*said.values(), str(offline.value)])


def test_experts_pushed_to_the_hub_are_found_by_their_tag(expert_dirs, hub):
    from hf_probex.experts.hub import Expert

    vit, _ = expert_dirs
    repo_id = hub.repo_id()
    Expert.from_pretrained(vit).push_to_hub(repo_id, token=hub.alice)
    found = {e.location: e for e in ExpertRegistry.from_hub(token=hub.alice).entries}  # the session hub holds others
    assert found[repo_id].tree == "vit" and found[repo_id].inputs == ((VIT_LAYER, (32, 32)),)
    assert repo_id in {e.location for e in ExpertRegistry.default(token=hub.alice).entries}


# ---- trust: experts decide what the bot proposes on strangers' repos ------------------------------------------

def _push_with_config(expert_dir, hub, repo_id, token, **changes):
    """Upload an expert folder as is, its config.json changed by `changes` (None deletes a key)."""
    import json

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id)
    config = json.loads((expert_dir / "config.json").read_text())
    config = {k: v for k, v in {**config, **changes}.items() if v is not None}
    api.upload_folder(folder_path=expert_dir, repo_id=repo_id, ignore_patterns=["config.json"])
    api.upload_file(path_or_fileobj=json.dumps(config).encode(), path_in_repo="config.json", repo_id=repo_id)


def test_hub_experts_come_only_from_trusted_authors(expert_dirs, hub, monkeypatch):
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import trusted_authors

    vit, _ = expert_dirs
    strangers = hub.repo_id("bob")
    Expert.from_pretrained(vit).push_to_hub(strangers, token=hub.bob)
    monkeypatch.delenv("HF_PROBEX_TRUSTED_AUTHORS", raising=False)
    assert trusted_authors(hub.alice) == ["hf-probex", "alice", "acme"] and trusted_authors(False) == ["hf-probex"]
    assert strangers not in {e.location for e in ExpertRegistry.from_hub(token=hub.alice).entries}
    assert strangers not in {e.location for e in ExpertRegistry.default(token=hub.alice).entries}
    monkeypatch.setenv("HF_PROBEX_TRUSTED_AUTHORS", "bob, carol")
    assert trusted_authors(hub.alice) == ["bob", "carol"]
    assert strangers in {e.location for e in ExpertRegistry.from_hub(token=hub.alice).entries}


BAD_CONFIGS = {
    "an unknown method": {"method": "pickle"},
    "an unknown task": {"task": "anything"},
    "a gigantic hidden size": {"hparams": {"hidden": 10**9}},
    "a float hyper-parameter": {"hparams": {"hidden": 1.5}},
    "a gigantic input": {"input_shape": [65_536, 65_536]},
    "a negative shape": {"input_shape": [-1, 32]},
    "routing layers of a string shape": {"routing": {"layers": [["w", "32x32"]]}},
    "a vocabulary of objects": {"vocabulary": [{"a": 1}]},
    "no layer": {"layer": None},
    "a head without its calibration": {"head": {"layer": "classifier.weight", "width": 8}},
    "examples of a class outside the vocabulary": {"examples": {"not-a-class": ["a text"]}},
    "examples as a list": {"examples": ["a text"]},
    "a calibration that is a list": {"calibration": [1, 2, 3]},
    "calibration coefficients as strings": {"calibration": {"a": "1.0", "b": 0.0, "threshold": 0.9}},
    "a NaN threshold": {"calibration": {"a": 1.0, "b": 0.0, "threshold": float("nan")}},
    "label means of another length": {"calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "label_mean": [0.0]}},
    "malformed subsets": {"calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "subsets": {"x": 1}}},
    "subsets within subsets": {"open_calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "subsets": {
        "0": {"a": 1.0, "b": 0.0, "threshold": 0.9, "subsets": {"0": {"a": 1.0, "b": 0.0, "threshold": 0.9}}}}}},
    "lists within lists": {"open_calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "lists": {
        "a": 1.0, "b": 0.0, "threshold": 0.9, "lists": {"a": 1.0, "b": 0.0, "threshold": 0.9}}}},
    "a list calibration that is not one": {"open_calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "lists": [1]}},
    "a head calibration with unknown keys": {"head": {"layer": "classifier.weight", "width": 8},
                                             "head_calibration": {"a": 1.0, "b": 0.0, "threshold": 0.9, "eval": 1}},
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_expert_on_the_hub_is_skipped_with_a_warning_and_the_others_stay(expert_dirs, hub, case):
    from hf_probex.experts.hub import Expert

    vit, _ = expert_dirs
    good, bad = hub.repo_id(), hub.repo_id()
    Expert.from_pretrained(vit).push_to_hub(good, token=hub.alice)
    _push_with_config(vit, hub, bad, hub.alice, **BAD_CONFIGS[case])
    with pytest.warns(UserWarning, match=f"skipping the expert {bad}: .*not a valid hf_probex expert config"):
        found = {e.location for e in ExpertRegistry.from_hub(token=hub.alice, authors=["alice"]).entries}
    assert good in found and bad not in found
    with pytest.raises(ExpertRegistryError, match="bad "):
        ExpertRegistry.from_locations([bad])  # named explicitly: an error, not a silent skip


def test_experts_load_from_safetensors_only(expert_dirs, hub, tmp_path):
    """A repo with pytorch_model.bin and no model.safetensors is never unpickled (the mixin would fall back to it)."""
    import shutil

    import torch

    from hf_probex.experts.hub import Expert
    from hf_probex.experts.registry import load_expert

    vit, _ = expert_dirs
    folder = tmp_path / "pickled"
    shutil.copytree(vit, folder)
    torch.save(Expert.from_pretrained(vit).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    repo_id = hub.repo_id()
    _push_with_config(folder, hub, repo_id, hub.alice)
    for location in (repo_id, folder):  # one line each, never a pickle read
        with pytest.raises(ValueError, match="cannot be loaded .*model.safetensors is missing"):
            load_expert(str(location))


def test_an_expert_whose_weights_do_not_fit_its_config_is_one_line_and_infer_goes_on(expert_dirs, hub, tiny_zoo, tmp_path):
    """Weights of other shapes than config.json declares (a fused module, a layer re-declared): loading is one
    ValueError, and `infer_card` abstains on trained_on with it instead of failing for every model of the tree."""
    import json
    import shutil

    from hf_probex import infer_card
    from hf_probex.experts.registry import load_expert

    vit, _ = expert_dirs
    folder = tmp_path / "misfit"
    shutil.copytree(vit, folder)
    config = json.loads((folder / "config.json").read_text())
    config["input_shape"] = [config["input_shape"][0], config["input_shape"][1] + 1]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cannot be loaded .*does not fit its config.json"):
        load_expert(str(folder))
    child = next(s for s in tiny_zoo.specs("vit") if s.role == "child")
    result = infer_card(tiny_zoo.model_dir("vit", child.name), experts=[str(folder)])
    assert "cannot be loaded" in result.abstained.get("trained_on", "") or "trained_on" in result.fields


def test_an_expert_on_stacked_layers_wider_than_one_dimension_bound_loads(tmp_path):
    """Stacked layers are one [1, D] row (D: every layer's size summed); two 3x3 convolutions of 128 channels
    make D = 221,184, above the per-dimension bound, and such an expert must still load."""
    from hf_probex.experts.hub import Expert

    inputs = [("a.weight", (128, 128, 3, 3)), ("b.weight", (128, 64, 3, 3))]
    Expert(method="ridge", task="multilabel", input_shape=[1, 221_184], vocabulary=["x", "y"], layer="a.weight",
           inputs=inputs, features="gram").save_pretrained(tmp_path / "stacked")
    entry = ExpertRegistry.from_locations([tmp_path / "stacked"]).entries[0]
    assert entry.inputs == tuple(inputs)
