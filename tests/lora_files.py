"""Real Stable-Diffusion LoRA files for tests: a tiny diffusers UNet root and peft LoRAs of it, saved in the three
key formats met in the wild (diffusers `save_lora_weights`, peft `adapter_model.safetensors`, kohya-ss)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file as save_torch_file

SD_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
FORMATS = ("diffusers", "peft", "kohya")
#: Target-module sets LoRAs are trained with (peft `target_modules` regexes over the UNet's module names).
TARGETS = {
    "attn1": r".*attn1\.(to_q|to_k|to_v|to_out\.0)",
    "attn2": r".*attn2\.(to_q|to_k|to_v|to_out\.0)",
    "qkv": r".*attn[12]\.(to_q|to_k|to_v)",
    "all": r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)",
}


def tiny_unet(cross_attention_dim: int = 16):
    """A tiny `UNet2DConditionModel` (one cross-attention block down, one up), seeded."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8,
    )


def save_root(unet, folder: Path) -> Path:
    """The UNet as a pipeline folder (model_index.json + unet/), as a tree's root is stored."""
    unet.save_pretrained(folder / "unet")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                         "unet": ["diffusers", "UNet2DConditionModel"]}))
    return folder


def lora_state(unet, target_modules: str | list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """A peft LoRA (rank 2) of `unet` on `target_modules`, with random non-zero updates: its peft state dict."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    name = f"lora{seed}"
    unet.add_adapter(LoraConfig(r=2, lora_alpha=4, init_lora_weights="gaussian", target_modules=target_modules),
                     adapter_name=name)
    with torch.no_grad():  # peft starts B at zero; give the update a value
        for param_name, param in unet.named_parameters():
            if f"lora_B.{name}" in param_name:
                param.normal_()
    state = {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name=name).items()}
    unet.delete_adapters(name)
    return state


def save_lora(state: dict[str, torch.Tensor], fmt: str, folder: Path, base: str | None = SD_BASE) -> Path:
    """Save a peft LoRA state dict in the key format `fmt` (one of `FORMATS`) into `folder`; peft and kohya files
    name `base` as their tools do (None: no base named)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya

    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "diffusers":
        StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=convert_state_dict_to_diffusers(state))
    elif fmt == "peft":
        save_torch_file({f"base_model.model.{k}": v for k, v in state.items()}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(json.dumps(
            {"peft_type": "LORA", "r": 2, "lora_alpha": 4} | ({"base_model_name_or_path": base} if base else {})))
    elif fmt == "kohya":
        kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
        metadata = {"ss_sd_model_name": "v1-5-pruned.safetensors"} | ({"pretrained_model_name_or_path": base} if base else {})
        save_torch_file({k: v.contiguous().float() for k, v in kohya.items()}, str(folder / "my_lora.safetensors"),
                        metadata=metadata)
    else:
        raise ValueError(f"unknown LoRA format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return folder
