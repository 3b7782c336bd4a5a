"""LoRAs of an sd-lora zoo tree's root made as strangers make them: by a DDPM loop of their own, not the zoo's
(`hf_probex.zoo.training.fit_denoiser`), so that a benchmark measures zero-shot experts on recipes they never saw.

The recipe (`stranger-ddpm`), its hyper-parameters drawn per LoRA from a seeded rng:

- diffusers' `DDPMScheduler(num_train_timesteps=1000)`.add_noise, epsilon MSE, plain or min-SNR-5 weighted;
- AdamW (weight decay 0 or 1e-2) with linear warmup then cosine decay (`LambdaLR`), gradients clipped to norm 1.0;
- 40-120 steps, batch 2-8 (epochs of shuffled images), learning rate log-uniform in 1e-4 .. 5e-3;
- a peft LoRA (`unet.add_adapter`): rank 4, 8 or 16, lora_alpha 1-16, dropout 0-0.1, init "gaussian" or peft's
  default, on every attention projection (attn1 and attn2) or on cross-attention (attn2) only;
- the prompt: the concept's own ("a thin handwritten four") or a stranger's wording ("thin four", "a thin four digit");
- 5-20 of the concept's training images (`load_digits().images_of(cls, "train")`);
- saved with diffusers keys, peft keys, kohya keys or peft-bare (peft's state-dict keys without `base_model.model.`,
  with adapter_config.json), 30 % in float16.

Concepts: `--trained-concepts` concepts of the tree's train split (concepts the zoo's experts trained on) and every
held-out concept (val_holdout / test_holdout: no expert saw them), `--per-concept` / `--per-held-out` LoRAs each. The
files say nothing of their concept (folder names are opaque, no concept in the safetensors metadata); each LoRA's
truth and every hyper-parameter go to manifest.json. Resumable: finished LoRA folders are kept.

    python scripts/make_lora_strangers.py --zoo ~/.cache/hf_probex/zoos/sd-bench-seed0 --out DIR [--per-concept 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

RECIPE = "stranger-ddpm"
KEY_FORMATS = ("diffusers", "peft", "kohya", "peft-bare")
PEFT_BARE_FILE = "adapter_model.safetensors"
TARGETS = {
    "all-attention": ["to_q", "to_k", "to_v", "to_out.0"],  # attn1 and attn2 (peft matches the name's end)
    "cross-attention": ["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"],
}
PROMPTS = ("{prompt}", "{name}", "{a} {name} digit", "a picture of {a} {name}")
MIN_SNR_GAMMA = 5.0


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _concepts(zoo, tree: str) -> tuple[list[dict], list[dict]]:
    """(concepts of the tree's train split, held-out concepts) as {"id", "name", "prompt"} records, sorted by id."""
    from hf_probex.zoo.data import STYLES, vocabulary
    from hf_probex.zoo.plan import HOLDOUT_SPLITS, concept_record

    by_name = {cls.name: concept_record(cls) for cls in vocabulary(tuple(STYLES))}
    held_out = {by_name[n]["id"]: by_name[n] for n in zoo.trees[tree]["holdout_concepts"] if n in by_name}
    for spec in zoo.specs(tree):
        if spec.concept and spec.split in HOLDOUT_SPLITS:
            held_out.setdefault(spec.concept["id"], spec.concept)
    trained = {s.concept["id"]: s.concept for s in zoo.specs(tree)
               if s.concept and s.split == "train" and s.concept["id"] not in held_out}
    return [trained[k] for k in sorted(trained)], [held_out[k] for k in sorted(held_out)]


def _jobs(zoo, tree: str, seed: int, trained_count: int, per_concept: int, per_held_out: int) -> list[tuple]:
    """(name, concept, held_out, index): the LoRAs to make, interleaved over concepts. A name depends only on
    (seed, concept, index), so more concepts or more LoRAs per concept keep every LoRA made before."""
    trained, held_out = _concepts(zoo, tree)
    order = np.random.default_rng([seed, 7]).permutation(len(trained))
    trained = [trained[i] for i in order[:trained_count]]
    jobs = []
    for index in range(max(per_concept, per_held_out)):
        for concepts, count, flag in ((trained, per_concept, False), (held_out, per_held_out, True)):
            if index < count:
                for concept in concepts:
                    digest = hashlib.sha1(f"{seed}/{concept['id']}/{index}".encode()).hexdigest()[:10]
                    jobs.append((f"lora-{digest}", concept, flag, index))
    return jobs


def draw_recipe(rng: np.random.Generator) -> dict:
    steps = int(rng.integers(40, 121))
    return {
        "recipe": RECIPE,
        "key_format": str(rng.choice(KEY_FORMATS)),
        "dtype": "float16" if rng.random() < 0.3 else "float32",
        "rank": int(rng.choice([4, 8, 16])),
        "alpha": int(rng.choice([1, 2, 4, 8, 16])),
        "targets": str(rng.choice(list(TARGETS))),
        "init": str(rng.choice(["gaussian", "default"])),
        "dropout": float(rng.choice([0.0, 0.05, 0.1])),
        "lr": float(math.exp(rng.uniform(math.log(1e-4), math.log(5e-3)))),
        "weight_decay": float(rng.choice([0.0, 1e-2])),
        "steps": steps,
        "warmup": int(rng.integers(0, steps // 5 + 1)),
        "batch": int(rng.integers(2, 9)),
        "loss": str(rng.choice(["plain", "min-snr"])),
        "max_grad_norm": 1.0,
        "n_images": int(rng.integers(5, 21)),
        "prompt_template": str(rng.choice(PROMPTS)),
        "seed": int(rng.integers(2**31 - 1)),
    }


def train_lora(root: Path, images: np.ndarray, context: np.ndarray, r: dict):
    """A peft LoRA of the root's UNet trained by our own DDPM loop; returns (unet with the adapter, LoraConfig,
    mean loss of the last tenth of the steps)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig

    torch.manual_seed(r["seed"])
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    unet.requires_grad_(False)
    config = LoraConfig(r=r["rank"], lora_alpha=r["alpha"], lora_dropout=r["dropout"],
                        init_lora_weights="gaussian" if r["init"] == "gaussian" else True,
                        target_modules=TARGETS[r["targets"]])
    unet.add_adapter(config)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=r["lr"], weight_decay=r["weight_decay"])
    warmup, steps = r["warmup"], r["steps"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    alphas = noise_scheduler.alphas_cumprod
    pixels = torch.from_numpy(images).unsqueeze(1) * 2.0 - 1.0  # Normalize([0.5], [0.5])
    context = torch.from_numpy(context).float()
    generator = torch.Generator().manual_seed(r["seed"])
    queue: list[int] = []
    losses = []
    unet.train()
    for _ in range(steps):
        while len(queue) < r["batch"]:  # epochs of shuffled images (a set smaller than a batch repeats)
            queue += torch.randperm(len(pixels), generator=generator).tolist()
        idx, queue = queue[: r["batch"]], queue[r["batch"]:]
        clean = pixels[idx]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=generator)
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        prediction = unet(noisy, timesteps, encoder_hidden_states=context.expand(len(idx), -1, -1)).sample
        loss = F.mse_loss(prediction.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        if r["loss"] == "min-snr":  # epsilon prediction: weight min(SNR, gamma) / SNR
            snr = alphas[timesteps] / (1.0 - alphas[timesteps])
            loss = loss * torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
        loss = loss.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, r["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    unet.eval()
    return unet, config, float(np.mean(losses[-max(1, steps // 10):]))


def save(unet, config, r: dict, out: Path) -> Path:
    """The LoRA in its key format and dtype; no metadata naming its concept."""
    import torch
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from hf_probex.zoo.trees.sd_lora import save_lora

    dtype = torch.float16 if r["dtype"] == "float16" else torch.float32
    state = {k: v.detach().to(dtype).contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    if r["key_format"] != "peft-bare":
        return save_lora(state, config, r["key_format"], out)
    path = out / PEFT_BARE_FILE  # what peft's get_peft_model_state_dict names, as some scripts write it
    save_file(state, str(path), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    return path


def make_one(root: Path, concept: dict, held_out: bool, index: int, seed: int, size: int, out: Path,
             encode) -> dict:
    from hf_probex.zoo.data import load_digits
    from hf_probex.zoo.trees.sd_lora import _concept_class, _resize

    rng = np.random.default_rng([seed, zlib.crc32(concept["id"].encode()), index])
    r = draw_recipe(rng)
    pool = load_digits().images_of(_concept_class(concept["id"]), "train")
    chosen = np.sort(rng.choice(len(pool), size=min(r["n_images"], len(pool)), replace=False))
    r["n_images"] = int(len(chosen))
    images = _resize(pool[chosen], size).astype(np.float32)
    prompt = r.pop("prompt_template").format(
        prompt=concept["prompt"], name=concept["name"], a="an" if concept["name"][0] in "aeiou" else "a")
    unet, config, loss = train_lora(root, images, encode(prompt), r)
    path = save(unet, config, r, out)
    return {"concept_id": concept["id"], "concept_name": concept["name"], "held_out": held_out, **r,
            "target_modules": TARGETS[r["targets"]], "prompt": prompt, "image_indices": chosen.tolist(),
            "final_loss": loss, "file": path.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", required=True, help="a zoo with an sd-lora tree (its root, concepts and splits)")
    parser.add_argument("--out", required=True, help="folder of the LoRAs (one folder each) and manifest.json")
    parser.add_argument("--tree", default="sd", help="the sd-lora tree of the zoo (default: sd)")
    parser.add_argument("--per-concept", type=int, default=2, help="LoRAs per trained concept (default: 2)")
    parser.add_argument("--per-held-out", type=int, default=None,
                        help="LoRAs per held-out concept (default: --per-concept)")
    parser.add_argument("--trained-concepts", type=int, default=21,
                        help="how many of the train split's concepts get LoRAs (default: 21)")
    parser.add_argument("--held-out-concepts", type=int, default=None,
                        help="how many held-out concepts get LoRAs (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from hf_probex.zoo import Zoo
    from hf_probex.zoo.errors import ZooError

    try:
        zoo = Zoo.open(args.zoo)
        trees = zoo.trees
    except ZooError as err:
        fail(str(err))
    lora_trees = [name for name, info in trees.items() if info.get("family") == "sd-lora"]
    if args.tree not in lora_trees:
        fail(f"{args.zoo} has no sd-lora tree {args.tree!r} (its sd-lora trees: {', '.join(lora_trees) or 'none'})")
    root_spec = next(s for s in zoo.specs(args.tree) if s.role == "root")
    if not zoo.is_finished(root_spec):
        fail(f"the root of tree {args.tree!r} is not built yet; finish the zoo with `hf-probex zoo build --out {args.zoo}`")
    root = zoo.model_dir(args.tree, root_spec.name)

    import torch
    from tqdm.auto import tqdm

    from hf_probex.text import encode_token_sequences
    from hf_probex.zoo.store import write_json_atomic

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    jobs = _jobs(zoo, args.tree, args.seed, args.trained_concepts, args.per_concept,
                 args.per_concept if args.per_held_out is None else args.per_held_out)
    if args.held_out_concepts is not None:
        kept = sorted({c["id"] for _, c, flag, _ in jobs if flag})[: args.held_out_concepts]
        jobs = [job for job in jobs if not job[2] or job[1]["id"] in kept]
    size = json.loads((root / "unet" / "config.json").read_text())["sample_size"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    contexts: dict[str, np.ndarray] = {}

    def encode(prompt: str) -> np.ndarray:
        if prompt not in contexts:
            contexts[prompt] = encode_token_sequences([prompt])
        return contexts[prompt]

    for name, concept, held_out, index in tqdm(jobs, desc="lora strangers", unit="lora"):
        if name in manifest and (out / name).is_dir():
            continue
        work = out / f".{name}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        truth = make_one(root, concept, held_out, index, args.seed, size, work, encode)
        shutil.rmtree(out / name, ignore_errors=True)
        os.replace(work, out / name)
        manifest[name] = {**truth, "tree": args.tree, "root": root_spec.repo_id}
        write_json_atomic(manifest_path, manifest)


if __name__ == "__main__":
    main()
