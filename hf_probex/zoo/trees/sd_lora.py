"""The LoRA tree: a small text-conditioned diffusers UNet root and peft LoRA children, one concept each.

The root learns to denoise plain digits given the MiniLM token states of "a handwritten seven". Each
child is a peft LoRA on the root's attention projections, fine-tuned on a handful of images of ONE
concept the root never drew ("a rotated seven"), saved in the diffusers format
(`pytorch_lora_weights.safetensors`) with the concept in the safetensors metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...text import DEFAULT_TEXT_ENCODER, encode_token_sequences
from ..data import DigitClass, STYLES, load_digits, vocabulary
from ..plan import ModelSpec
from ..presets import TreePreset
from ..training import fit_denoiser
from .base import TreeFamily, write_safetensors_metadata

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(images).unsqueeze(1)
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area").squeeze(1).numpy()


def _concept_class(concept_id: str) -> DigitClass:
    style, digit = concept_id.rsplit("-", 1)
    return DigitClass(int(digit), style)


class SDLoraFamily(TreeFamily):
    library_name = "diffusers"
    pipeline_tag = "text-to-image"

    def weight_files(self, spec: ModelSpec) -> list[str]:
        return [UNET_WEIGHTS] if spec.role == "root" else [LORA_WEIGHTS_NAME]

    @staticmethod
    def _unet(architecture: dict):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(
            sample_size=architecture["sample_size"],
            in_channels=1,
            out_channels=1,
            layers_per_block=architecture["layers_per_block"],
            block_out_channels=tuple(architecture["block_out_channels"]),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=384,
            attention_head_dim=architecture["attention_head_dim"],
            norm_num_groups=architecture["norm_num_groups"],
        )

    def build_root(self, spec: ModelSpec, tree: TreePreset, out: Path) -> dict:
        from diffusers import DDPMScheduler

        data = load_digits()
        size = tree.architecture["sample_size"]
        classes = vocabulary(tree.root_styles)
        images = _resize(data.train_images, size)
        prompts = encode_token_sequences([c.prompt for c in classes])
        torch.manual_seed(spec.seed)
        unet = self._unet(tree.architecture)
        hp = spec.hparams
        loss = fit_denoiser(
            unet, images, prompts[data.train_digits], steps=hp["max_train_steps"],
            learning_rate=hp["learning_rate"], batch_size=hp["batch_size"], seed=spec.seed,
        )
        unet.save_pretrained(out / "unet")
        write_safetensors_metadata(out / UNET_WEIGHTS, {"tree": spec.tree, "text_encoder": DEFAULT_TEXT_ENCODER})
        DDPMScheduler(num_train_timesteps=1000).save_pretrained(out / "scheduler")
        (out / "model_index.json").write_text(
            json.dumps(
                {
                    "_class_name": "DigitDiffusionPipeline",
                    "_diffusers_version": __import__("diffusers").__version__,
                    "scheduler": ["diffusers", "DDPMScheduler"],
                    "unet": ["diffusers", "UNet2DConditionModel"],
                    "text_encoder_name": DEFAULT_TEXT_ENCODER,
                },
                indent=2,
            )
        )
        return {"final_loss": loss, "train_images": int(len(images))}

    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path) -> dict:
        from diffusers import StableDiffusionPipeline, UNet2DConditionModel
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict

        data = load_digits()
        cls = _concept_class(spec.concept["id"])
        hp = spec.hparams
        rng = np.random.default_rng(spec.seed)
        pool = data.images_of(cls, "train")
        chosen = pool[rng.choice(len(pool), size=hp["n_training_samples"], replace=False)]
        images = _resize(chosen, tree.architecture["sample_size"])
        prompt = encode_token_sequences([cls.prompt])
        unet = UNet2DConditionModel.from_pretrained(parent_dir, subfolder="unet")
        unet.requires_grad_(False)
        rank = tree.architecture["lora_rank"]
        lora_config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
        torch.manual_seed(spec.seed)
        unet.add_adapter(lora_config)
        trainable = [p for p in unet.parameters() if p.requires_grad]
        loss = fit_denoiser(
            unet, images, np.repeat(prompt, len(images), axis=0), steps=hp["max_train_steps"],
            learning_rate=hp["learning_rate"], batch_size=hp["batch_size"], seed=spec.seed, parameters=trainable,
        )
        lora_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(
            out, unet_lora_layers=lora_layers, unet_lora_adapter_metadata=lora_config.to_dict()
        )
        write_safetensors_metadata(
            out / LORA_WEIGHTS_NAME,
            {
                "concept_id": spec.concept["id"],
                "concept_name": spec.concept["name"],
                "instance_prompt": spec.concept["prompt"],
                "tree": spec.tree,
                "seed": str(spec.seed),
                "rank": str(rank),
                **{k: str(v) for k, v in hp.items()},
            },
        )
        return {"final_loss": loss, "train_images": int(len(images)), "style": STYLES[cls.style].name}

    def card_facts(self, spec: ModelSpec) -> dict:
        tags = ["text-to-image", "diffusers", "lora", "hf-probex-zoo"]
        facts = {"tags": tags if spec.role == "child" else tags[:2] + tags[3:]}
        if spec.concept:
            facts["instance_prompt"] = spec.concept["prompt"]
        return facts
