"""Every LoRA of a tree routes to it, whatever modules it targets: self-attention only, cross-attention only, with or
without `to_out`, in the diffusers, peft and kohya key formats (real peft LoRAs of a tiny diffusers UNet)."""

from __future__ import annotations

import pytest
from lora_files import FORMATS, TARGETS, lora_state, save_lora, save_root, tiny_unet

from hf_probex.adapters import detect
from hf_probex.experts.registry import ExpertEntry, ExpertRegistry
from hf_probex.experts.calibration.routes import fit_lora_modules
from hf_probex.reading import open_source
from hf_probex.routing import UNCONFIRMED, route
from hf_probex.weightsets import WeightRecord

ROOT = "acme/tiny-sd"
SELF_ATTENTION_KEY = ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k", (16, 16))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A tiny UNet root, LoRAs of it on each target-module set in each format, and the tree's expert entry: it reads
    one self-attention module and knows the base's modules (`fit_lora_modules`, from the root and one LoRA)."""
    folder = tmp_path_factory.mktemp("tree")
    unet = tiny_unet()
    root = save_root(unet, folder / "root")
    loras = {(targets, fmt): save_lora(lora_state(unet, regex, seed=i), fmt, folder / f"{targets}-{fmt}", base=None)
             for i, (targets, regex) in enumerate(TARGETS.items()) for fmt in FORMATS}
    trained_on = [WeightRecord("sd", "lora", "train", ("a thin one",), loras["attn1", "diffusers"], "lora")]
    routing = fit_lora_modules(trained_on, root)
    entry = ExpertEntry("experts/sd", "sd", ROOT, "zeroshot", SELF_ATTENTION_KEY[0], "lora", "mvprobe",
                        (SELF_ATTENTION_KEY,), (), tuple((name, tuple(shape)) for name, shape in routing["modules"]))
    return {"root": root, "loras": loras, "entry": entry, "unet": unet, "folder": folder}


def _route(folder, entry):
    source = open_source(folder)
    return route(source, detect(source), ExpertRegistry([entry]))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("targets", list(TARGETS))
def test_every_target_module_set_routes_to_the_tree(tree, targets, fmt):
    found = _route(tree["loras"][targets, fmt], tree["entry"])
    assert (found.root, found.confidence) == (ROOT, 0.5), found.reason
    assert "every module it targets" in found.evidence


def test_the_base_modules_come_from_the_root(tree):
    modules = dict(tree["entry"].modules)
    assert modules[SELF_ATTENTION_KEY[0]] == SELF_ATTENTION_KEY[1]
    assert modules["unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k"] == (32, 16)  # cross-attention: text side
    assert all(name.startswith("unet.") and len(shape) == 2 for name, shape in modules.items())


def test_a_cross_attention_lora_does_not_route_by_the_experts_one_layer_alone(tree):
    """What routing did before: an expert without the base's modules only routes LoRAs that have the layer it reads."""
    old = ExpertEntry(**{**tree["entry"].__dict__, "modules": ()})
    assert _route(tree["loras"]["attn1", "peft"], old).root == ROOT
    assert _route(tree["loras"]["attn2", "peft"], old).root is None


def test_a_lora_of_another_base_does_not_route(tree):
    other = tiny_unet(cross_attention_dim=24)  # the same module names, cross-attention of another width
    folder = save_lora(lora_state(other, TARGETS["attn2"]), "diffusers", tree["folder"] / "other", base=None)
    found = _route(folder, tree["entry"])
    assert found.root is None and "in these shapes" in found.reason


def test_a_declared_base_is_checked_against_the_modules(tree):
    declared = save_lora(lora_state(tree["unet"], TARGETS["attn2"]), "peft", tree["folder"] / "declared", base=ROOT)
    assert (_route(declared, tree["entry"]).root, _route(declared, tree["entry"]).confidence) == (ROOT, 1.0)
    other = tiny_unet(cross_attention_dim=24)
    wrong = save_lora(lora_state(other, TARGETS["attn2"]), "peft", tree["folder"] / "wrong", base=ROOT)
    found = _route(wrong, tree["entry"])
    assert found.confidence == UNCONFIRMED and "do not have the shapes" in found.finding
