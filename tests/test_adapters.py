"""Adapters on real tiny models: transformers ViT / ResNet, a diffusers UNet with a peft LoRA saved in the three
key formats met in the wild (diffusers, peft, kohya), a peft LoRA on a tiny Llama, and the zoo's models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from safetensors.numpy import save_file

from hf_probex.adapters import (ADAPTERS, CLASSES_TASK, CONCEPT_TASK, FullModelAdapter, LayerChoice, detect,
                                get_adapter, register)
from hf_probex.errors import LayerMismatchError, NoSafetensorsError, UnknownArchitectureError
from hf_probex.shaping import to_matrices
from hf_probex.reading import open_source

from lora_files import FORMATS, SD_BASE, lora_state, save_lora, save_root, tiny_unet


# ---- models (tiny, real) ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, image_size=8,
                       patch_size=4, num_channels=1, num_labels=3)
    folder = tmp_path_factory.mktemp("vit")
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 2], num_labels=3)
    folder = tmp_path_factory.mktemp("resnet")
    ResNetForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """A tiny UNet root (diffusers pipeline layout) and one peft LoRA of it saved in all three formats."""
    unet = tiny_unet()
    root = save_root(unet, tmp_path_factory.mktemp("sd-root"))
    peft_state = lora_state(unet, ["to_q", "to_k", "to_v", "to_out.0"])
    formats = {fmt: save_lora(peft_state, fmt, tmp_path_factory.mktemp(f"lora-{fmt}")) for fmt in FORMATS}
    updates = {k.removesuffix(".lora_A.weight"): (peft_state[k.replace("lora_A", "lora_B")] @ v).numpy()
               for k, v in peft_state.items() if k.endswith("lora_A.weight")}
    return {"root": root, "formats": formats, "updates": updates}


@pytest.fixture(scope="module")
def llama_lora(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                         num_attention_heads=2, num_key_value_heads=2))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                                                  init_lora_weights=False))
    folder = tmp_path_factory.mktemp("llama-lora")
    peft_model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "meta-llama/Llama-3.2-1B"  # as a Hub-loaded base records it
    (folder / "adapter_config.json").write_text(json.dumps(config))
    state = get_peft_model_state_dict(peft_model)
    update = (state["base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight"]
              @ state["base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"]).detach().numpy()
    return folder, update


# ---- detection -----------------------------------------------------------------------------------------------


def test_detect_each_family(vit_dir, resnet_dir, sd, llama_lora):
    expected = {vit_dir: "vit", resnet_dir: "resnet", sd["root"]: "sd-unet", llama_lora[0]: "peft-llm",
                vit_dir / "model.safetensors": "vit", sd["root"] / "unet" / "diffusion_pytorch_model.safetensors": "sd-unet",
                **{folder: "sd-lora" for folder in sd["formats"].values()}}
    for path, family in expected.items():
        assert detect(open_source(path)).family == family, path
    assert set(ADAPTERS) == {"vit", "resnet", "sd-unet", "sd-lora", "peft-llm", "bert", "peft"}


def test_card_fields_per_family():
    rows = {a.family: (a.library_name, a.pipeline_tag, a.relation) for a in ADAPTERS.values()}
    assert rows["vit"] == ("transformers", "image-classification", "finetune")
    assert rows["sd-lora"] == ("diffusers", "text-to-image", "adapter")
    assert rows["peft-llm"] == ("peft", "text-generation", "adapter")
    assert rows["bert"] == ("transformers", "feature-extraction", "finetune")  # the layout decides (test_bert_adapter.py)
    assert rows["peft"][::2] == ("peft", "adapter")  # its task or its base's decides (test_peft_adapters.py)


def test_unknown_architecture_lists_known_families(tmp_path):
    save_file({"encoder.foo.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(UnknownArchitectureError,
                       match=r"encoder\.foo\.weight.*bert, peft, peft-llm, resnet, sd-lora, sd-unet, vit"):
        detect(open_source(tmp_path / "x.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnknownArchitectureError, match="'gpt2'"):
        detect(open_source(tmp_path))


def test_detect_refuses_pickled_models(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pretend pickle")
    with pytest.raises(NoSafetensorsError, match="pytorch_model.bin"):
        detect(open_source(tmp_path))


def test_get_adapter():
    assert get_adapter("vit") is ADAPTERS["vit"]
    with pytest.raises(UnknownArchitectureError, match="'gpt2'"):
        get_adapter("gpt2")


def test_a_new_family_is_one_registered_class(tmp_path):
    class ToyAdapter(FullModelAdapter):
        family, library_name, pipeline_tag = "toy", "transformers", "image-classification"
        key_pattern = r"toy\."

        def default_layer(self, root_id, source=None):
            return LayerChoice("toy.w", r"toy\.(\d+)", 0, 1)

    register(ToyAdapter)
    try:
        save_file({"toy.w": np.ones((2, 3), np.float32)}, str(tmp_path / "t.safetensors"))
        adapter = detect(open_source(tmp_path / "t.safetensors"))
        assert adapter.family == "toy" and adapter.target_layer(CLASSES_TASK) == "toy.w"
        with pytest.raises(ValueError, match="two adapters"):
            register(ToyAdapter)
    finally:
        ADAPTERS.pop("toy")


# ---- layers --------------------------------------------------------------------------------------------------


def test_model_j_defaults():
    vit, resnet = ADAPTERS["vit"], ADAPTERS["resnet"]
    assert vit.target_layer(CLASSES_TASK, "google/vit-base-patch16-224") == "vit.encoder.layer.7.attention.output.dense.weight"
    assert vit.target_layer(CLASSES_TASK, "facebook/dino-vitb16") == "vit.encoder.layer.7.attention.output.dense.weight"
    assert vit.target_layer(CLASSES_TASK, "facebook/vit-mae-base") == "vit.encoder.layer.8.attention.attention.value.weight"
    assert resnet.target_layer(CLASSES_TASK, "microsoft/resnet-101") == \
        "resnet.encoder.stages.2.layers.19.layer.0.convolution.weight"
    assert ADAPTERS["sd-lora"].target_layer(CONCEPT_TASK, SD_BASE) == \
        "unet.down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_q"
    assert ADAPTERS["peft-llm"].target_layer(CONCEPT_TASK) == "model.layers.16.self_attn.q_proj"
    with pytest.raises(ValueError, match="tasks"):
        vit.target_layer(CONCEPT_TASK)


def test_layer_choice_keeps_the_relative_depth():
    choice = LayerChoice("m.layer.7.w", r"(?:.*\.)?layer\.(\d+)\.w", index=7, depth=12)
    assert choice.resolve(None) == "m.layer.7.w"
    assert choice.resolve([f"x.layer.{i}.w" for i in range(24)]) == "x.layer.15.w"
    assert choice.resolve(["x.layer.0.w", "x.layer.1.w"]) == "x.layer.1.w"
    assert choice.resolve(["other"]) == "m.layer.7.w"


def test_vit_layers(vit_dir):
    from safetensors.numpy import load_file

    source = open_source(vit_dir)
    adapter = detect(source)
    layers = adapter.candidate_layers(adapter.checkpoint(source))
    assert "vit.encoder.layer.0.attention.attention.query.weight" in layers
    assert all(not name.endswith("bias") for name in layers)
    layer = adapter.target_layer(CLASSES_TASK, names=layers)
    assert layer == "vit.encoder.layer.1.attention.output.dense.weight"  # block 7 of 0..11 -> 1 of 0..2
    assert adapter.target_layer(CLASSES_TASK, "facebook/vit-mae-base", layers) == \
        "vit.encoder.layer.1.attention.attention.value.weight"
    flat, shape = adapter.read_layer(source, layer, expected_shape=(32, 32))
    assert shape == (32, 32) and flat.shape == (1024,)
    np.testing.assert_array_equal(flat, load_file(str(vit_dir / "model.safetensors"))[layer].ravel())
    with pytest.raises(LayerMismatchError, match=r"\[32, 32\], not \[768, 768\]"):
        adapter.read_layer(source, layer, expected_shape=(768, 768))
    with pytest.raises(LayerMismatchError, match="no layer"):
        adapter.read_layer(source, "vit.encoder.layer.7.attention.output.dense.weight")


def test_vit_mae_config_selects_the_value_layer(tmp_path, vit_dir):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit_mae"}))
    (tmp_path / "model.safetensors").write_bytes((vit_dir / "model.safetensors").read_bytes())
    source = open_source(tmp_path)
    assert ADAPTERS["vit"].target_layer(CLASSES_TASK, source=source).endswith("attention.attention.value.weight")


def test_declared_bases_from_config(tmp_path, vit_dir):
    config = json.loads((vit_dir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((vit_dir / "model.safetensors").read_bytes())
    for name_or_path, expected in (("google/vit-base-patch16-224", {"google/vit-base-patch16-224": "config.json _name_or_path"}),
                                   ("./outputs/checkpoint-500", {}), ("/home/me/vit", {})):
        (tmp_path / "config.json").write_text(json.dumps({**config, "_name_or_path": name_or_path}))
        assert ADAPTERS["vit"].declared_bases(open_source(tmp_path)) == expected


def test_resnet_conv_layer_and_matrix(resnet_dir):
    source = open_source(resnet_dir)
    adapter = detect(source)
    layer = adapter.target_layer(CLASSES_TASK, names=adapter.candidate_layers(adapter.checkpoint(source)))
    assert layer == "resnet.encoder.stages.2.layers.1.layer.0.convolution.weight"
    flat, shape = adapter.read_layer(source, layer)
    assert len(shape) == 4  # a convolution, shaped as the experts read it
    np.testing.assert_array_equal(adapter.read_matrix(source, layer), to_matrices(flat.reshape(1, -1), shape))


def test_sd_unet_root(sd):
    source = open_source(sd["root"])
    adapter = detect(source)
    layers = adapter.candidate_layers(adapter.checkpoint(source))
    layer = adapter.target_layer(CONCEPT_TASK, names=layers)
    assert layer == "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q.weight"
    assert adapter.read_layer(source, layer)[1] == (16, 16)


def test_sd_lora_three_formats_agree(sd):
    results = {}
    for fmt, folder in sd["formats"].items():
        source = open_source(folder)
        adapter = detect(source)
        modules = adapter.candidate_layers(adapter.checkpoint(source))
        results[fmt] = {m: adapter.read_layer(source, m) for m in modules}
    assert results["diffusers"].keys() == results["peft"].keys() == results["kohya"].keys()
    modules = sorted(results["diffusers"])
    assert len(modules) == len(sd["updates"]) and all(m.startswith("unet.") for m in modules)
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q" in modules
    assert "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0" in modules
    for module in modules:
        expected = sd["updates"][module.removeprefix("unet.")]
        for fmt in results:
            flat, shape = results[fmt][module]
            assert shape == expected.shape
            np.testing.assert_allclose(flat, expected.ravel(), rtol=1e-6, atol=1e-6, err_msg=f"{fmt} {module}")


def test_sd_lora_default_layer_and_bases(sd):
    adapter = ADAPTERS["sd-lora"]
    source = open_source(sd["formats"]["diffusers"])
    names = adapter.candidate_layers(adapter.checkpoint(source))
    assert adapter.target_layer(CONCEPT_TASK, names=names) == \
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"
    assert adapter.declared_bases(source) == {}
    peft = adapter.declared_bases(open_source(sd["formats"]["peft"]))
    assert peft == {SD_BASE: "adapter_config.json base_model_name_or_path"}
    kohya = adapter.declared_bases(open_source(sd["formats"]["kohya"]))  # not ss_sd_model_name, a local file name
    assert kohya == {SD_BASE: "my_lora.safetensors metadata pretrained_model_name_or_path"}
    assert adapter.normalise("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_q.alpha") is None
    assert adapter.normalise("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight") is None


def test_peft_llm_lora(llama_lora):
    folder, update = llama_lora
    source = open_source(folder)
    adapter = detect(source)
    modules = adapter.candidate_layers(adapter.checkpoint(source))
    assert modules[:2] == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"] and len(modules) == 8
    layer = adapter.target_layer(CONCEPT_TASK, names=modules)
    assert layer == "model.layers.2.self_attn.q_proj"  # the middle of 4 blocks
    flat, shape = adapter.read_layer(source, layer)
    assert shape == (32, 32)
    np.testing.assert_allclose(flat, update.ravel(), rtol=1e-6, atol=1e-6)
    assert adapter.declared_bases(source) == {"meta-llama/Llama-3.2-1B": "adapter_config.json base_model_name_or_path"}


def test_lora_layer_reads_only_its_two_factors_from_the_hub(hub, sd):
    repo_id = hub.repo_id()
    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=sd["formats"]["diffusers"], repo_id=repo_id)
    source = open_source(repo_id)
    adapter = detect(source)
    module = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"
    flat, _ = adapter.read_layer(source, module)
    np.testing.assert_allclose(flat, sd["updates"][module.removeprefix("unet.")].ravel(), rtol=1e-6, atol=1e-6)
    checkpoint = adapter.checkpoint(source)
    factors = sum(checkpoint.info(k).nbytes for k in adapter.module_pairs(checkpoint)[module])
    header = source.header(checkpoint.name).nbytes
    assert source.bytes_read <= (header + factors) * 1.05


def test_zoo_models_are_recognised(tiny_zoo):
    families = {"vit": "vit", "vit-twin": "vit", "resnet": "resnet"}
    models = sorted(p for p in (tiny_zoo.root / "models").glob("*/*") if p.is_dir())
    assert models
    for folder in models:
        tree = folder.parent.name
        source = open_source(folder)
        adapter = detect(source)
        family = families.get(tree) or ("sd-unet" if folder.name == "root" else "sd-lora")
        assert adapter.family == family, folder
        layers = adapter.candidate_layers(adapter.checkpoint(source))
        layer = adapter.target_layer(adapter.tasks[0], names=layers)
        assert layer in layers
        flat, shape = adapter.read_layer(source, layer)
        assert flat.size == np.prod(shape) and np.isfinite(flat).all()
