"""The expert registry: entries from expert folders, a registry file, and the Hub (by tag), looked up by tree."""

from __future__ import annotations

import numpy as np
import pytest

from hf_probex.experts.harness import fit_expert, load_layer_data
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


def test_experts_pushed_to_the_hub_are_found_by_their_tag(expert_dirs, hub):
    from hf_probex.experts.hub import Expert

    vit, _ = expert_dirs
    repo_id = hub.repo_id()
    Expert.from_pretrained(vit).push_to_hub(repo_id, token=hub.alice)
    found = {e.location: e for e in ExpertRegistry.from_hub(token=hub.alice).entries}  # the session hub holds others
    assert found[repo_id].tree == "vit" and found[repo_id].inputs == ((VIT_LAYER, (32, 32)),)
    assert repo_id in {e.location for e in ExpertRegistry.default(token=hub.alice).entries}
