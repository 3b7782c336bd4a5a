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
from ..training import denoising_error, fit_denoiser
from .base import TreeFamily, write_safetensors_metadata

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
#: The weight file each LoRA key format is saved in (kohya-ss names its files after the run).
LORA_FILES = {"diffusers": LORA_WEIGHTS_NAME, "peft": "adapter_model.safetensors", "kohya": "lora.safetensors"}
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(images).unsqueeze(1)
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area").squeeze(1).numpy()


def _concept_class(concept_id: str) -> DigitClass:
    style, digit = concept_id.rsplit("-", 1)
    return DigitClass(int(digit), style)


def save_lora(state: dict[str, torch.Tensor], config, key_format: str, out: Path) -> Path:
    """Save a UNet LoRA (peft state dict, `get_peft_model_state_dict`) the way its tool does; returns the file.

    - diffusers: `save_lora_weights` keys (`unet.<module>.lora.down.weight`) and the peft config as metadata;
    - peft: `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` keys and adapter_config.json;
    - kohya: `lora_unet_<module_with_underscores>.lora_down.weight` keys, one `.alpha` tensor per module.
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    path = out / LORA_FILES[key_format]
    if key_format == "diffusers":
        StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=convert_state_dict_to_diffusers(state),
                                                  unet_lora_adapter_metadata=config.to_dict())
    elif key_format == "peft":
        save_file({f"base_model.model.{k}": v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
        config.save_pretrained(str(out))
    else:
        kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
        dtype = next(iter(state.values())).dtype
        kohya = {k: (torch.tensor(float(config.lora_alpha), dtype=dtype) if k.endswith(".alpha") else v.contiguous())
                 for k, v in kohya.items()}
        save_file(kohya, str(path), metadata={"format": "pt", "ss_network_dim": str(config.r),
                                              "ss_network_alpha": str(config.lora_alpha)})
    return path


class SDLoraFamily(TreeFamily):
    library_name = "diffusers"
    pipeline_tag = "text-to-image"

    def weight_files(self, spec: ModelSpec) -> list[str]:
        if spec.role == "root":
            return [UNET_WEIGHTS]
        return [LORA_FILES[spec.hparams.get("key_format", "diffusers")]]

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
            weight_decay=hp["weight_decay"], scheduler=hp["lr_scheduler_type"],
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

    def build_child(self, spec: ModelSpec, tree: TreePreset, parent_dir: Path, out: Path, parent_repo_id: str) -> dict:
        from diffusers import UNet2DConditionModel
        from peft import LoraConfig
        from peft.utils import get_peft_model_state_dict

        data = load_digits()
        cls = _concept_class(spec.concept["id"])
        hp = spec.hparams
        rng = np.random.default_rng(spec.seed)
        pool = data.images_of(cls, "train")
        chosen = pool[rng.choice(len(pool), size=hp["n_training_samples"], replace=False)]
        images = _resize(chosen, tree.architecture["sample_size"])
        context = np.repeat(encode_token_sequences([cls.prompt]), len(images), axis=0)
        unet = UNet2DConditionModel.from_pretrained(parent_dir, subfolder="unet")
        unet.requires_grad_(False)
        before = denoising_error(unet, images, context, seed=spec.seed)
        lora_config = LoraConfig(r=hp["lora_rank"], lora_alpha=hp["lora_alpha"], init_lora_weights="gaussian",
                                 target_modules=list(hp["lora_targets"]))
        torch.manual_seed(spec.seed)
        unet.add_adapter(lora_config)
        trainable = [p for p in unet.parameters() if p.requires_grad]
        loss = fit_denoiser(
            unet, images, context, steps=hp["max_train_steps"], learning_rate=hp["learning_rate"],
            batch_size=hp["batch_size"], seed=spec.seed, parameters=trainable, optimizer=hp["optimizer"],
            weight_decay=hp["weight_decay"], scheduler=hp["lr_scheduler_type"],
        )
        after = denoising_error(unet, images, context, seed=spec.seed)
        state = {k: v.to(DTYPES[hp.get("dtype", "float32")]) for k, v in get_peft_model_state_dict(unet).items()}
        path = save_lora(state, lora_config, hp.get("key_format", "diffusers"), out)
        write_safetensors_metadata(
            path,
            {
                "concept_id": spec.concept["id"],
                "concept_name": spec.concept["name"],
                "instance_prompt": spec.concept["prompt"],
                "tree": spec.tree,
                "seed": str(spec.seed),
                "recipe": spec.recipe,
                **{k: str(v) for k, v in hp.items()},
            },
        )
        return {"final_loss": loss, "denoising_error_root": before, "denoising_error": after,
                "train_images": int(len(images)), "style": STYLES[cls.style].name}

    def card_facts(self, spec: ModelSpec) -> dict:
        tags = ["text-to-image", "diffusers", "lora", "hf-probex-zoo"]
        facts = {"tags": tags if spec.role == "child" else tags[:2] + tags[3:]}
        if spec.concept:
            facts["instance_prompt"] = spec.concept["prompt"]
        return facts
