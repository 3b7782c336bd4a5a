"""Training loops shared by the zoo's tree families (image classifiers and text-conditioned denoisers)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """[N, H, W] images in [0, 1] -> [N, 1, H, W] tensor in [-1, 1], as the zoo's models expect."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).mul(2.0).sub(1.0)


def _random_shift(batch: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2,), generator=generator)).tolist()
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=0, num_training_steps=max(total_steps, 1))


def make_optimizer(name: str, parameters, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser a recipe names (hf_probex.zoo.recipes.OPTIMIZERS): AdamW, Adam (L2 decay) or SGD with momentum."""
    parameters = [p for p in parameters if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def fit_classifier(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    scheduler: str,
    augment: bool,
    seed: int,
    optimizer: str = "adamw",
    weight_decay: float = 0.01,
    label_smoothing: float = 0.0,
) -> None:
    """Train a transformers image classifier on (images, labels): the parameters that require a gradient."""
    generator = torch.Generator().manual_seed(seed)
    pixels, targets = to_pixels(images), torch.from_numpy(labels)
    optimizer = make_optimizer(optimizer, model.parameters(), learning_rate, weight_decay)
    steps_per_epoch = math.ceil(len(pixels) / batch_size)
    lr_schedule = make_scheduler(scheduler, optimizer, epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(pixels), generator=generator)
        for start in range(0, len(pixels), batch_size):
            idx = order[start : start + batch_size]
            batch = pixels[idx]
            if augment:
                batch = _random_shift(batch, generator)
            loss = F.cross_entropy(model(pixel_values=batch).logits, targets[idx], label_smoothing=label_smoothing)
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of a classifier on (images, labels)."""
    model.eval()
    pixels, correct = to_pixels(images), 0
    for start in range(0, len(pixels), batch_size):
        logits = model(pixel_values=pixels[start : start + batch_size]).logits
        correct += int((logits.argmax(-1).numpy() == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def fit_denoiser(
    unet: torch.nn.Module,
    images: np.ndarray,
    context: np.ndarray,
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    parameters=None,
    optimizer: str = "adamw",
    weight_decay: float = 1e-4,
    scheduler: str = "constant",
) -> float:
    """Train a UNet2DConditionModel to predict DDPM noise on images given their text context [n, tokens, dim].

    Returns the mean loss of the last tenth of the steps. `parameters` restricts training (e.g. to LoRA).
    """
    from diffusers import DDPMScheduler

    generator = torch.Generator().manual_seed(seed)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    pixels = to_pixels(images)
    context = torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32))
    params = list(parameters) if parameters is not None else list(unet.parameters())
    optimizer = make_optimizer(optimizer, params, learning_rate, weight_decay)
    lr_schedule = make_scheduler(scheduler, optimizer, steps)
    unet.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(pixels), (batch_size,), generator=generator)
        clean = pixels[idx]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        prediction = unet(noisy, timesteps, encoder_hidden_states=context[idx]).sample
        loss = F.mse_loss(prediction, noise)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    unet.eval()
    tail = losses[-max(1, steps // 10) :]
    return float(np.mean(tail))


@torch.no_grad()
def denoising_error(unet: torch.nn.Module, images: np.ndarray, context: np.ndarray, *, seed: int, draws: int = 8) -> float:
    """Mean DDPM noise-prediction error of `unet` on `images` under fixed noise and timesteps (`draws` per image):
    comparable before and after a fine-tune, so a LoRA that learned its concept lowers it."""
    from diffusers import DDPMScheduler

    generator = torch.Generator().manual_seed(seed)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
    clean = to_pixels(images).repeat(draws, 1, 1, 1)
    context = torch.from_numpy(np.ascontiguousarray(context, dtype=np.float32)).repeat(draws, 1, 1)
    noise = torch.randn(clean.shape, generator=generator)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(clean),), generator=generator)
    was_training = unet.training
    unet.eval()
    prediction = unet(noise_scheduler.add_noise(clean, noise, timesteps), timesteps, encoder_hidden_states=context).sample
    unet.train(was_training)
    return float(F.mse_loss(prediction, noise))


def training_device() -> torch.device:
    """Where a zoo model trains: $HF_PROBEX_DEVICE if set (e.g. "cpu", "cuda:1"), else CUDA when present, else the CPU.
    The text trees use it (a MiniLM fine-tune is seconds on a GPU, tens of seconds on a CPU core); every device gives
    the same plan, not the same bits."""
    return torch.device(os.environ.get("HF_PROBEX_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token ids and attention masks of `texts`, padded to the longest (at most `max_length` tokens)."""
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def _batches(n: int, batch_size: int, epochs: int, generator: torch.Generator):
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def fit_text_classifier(model: torch.nn.Module, tokens: dict[str, torch.Tensor], labels: np.ndarray, *, epochs: int,
                        learning_rate: float, batch_size: int, scheduler: str, seed: int, optimizer: str = "adamw",
                        weight_decay: float = 0.01, label_smoothing: float = 0.0) -> None:
    """Train a transformers sequence classifier (or a peft model of one) on tokenized texts and their labels: the
    parameters that require a gradient, on the device the model and tokens are on."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(labels).to(tokens["input_ids"].device)
    optimizer = make_optimizer(optimizer, model.parameters(), learning_rate, weight_decay)
    lr_schedule = make_scheduler(scheduler, optimizer, epochs * math.ceil(len(targets) / batch_size))
    model.train()
    for idx in _batches(len(targets), batch_size, epochs, generator):
        logits = model(**{k: v[idx] for k, v in tokens.items()}).logits
        F.cross_entropy(logits, targets[idx], label_smoothing=label_smoothing).backward()
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


@torch.no_grad()
def text_accuracy(model: torch.nn.Module, tokens: dict[str, torch.Tensor], labels: np.ndarray, batch_size: int = 64) -> float:
    """Top-1 accuracy of a sequence classifier on tokenized texts."""
    model.eval()
    predicted = [model(**{k: v[start : start + batch_size] for k, v in tokens.items()}).logits.argmax(-1)
                 for start in range(0, len(labels), batch_size)]
    return float((torch.cat(predicted).cpu().numpy() == labels).mean())


def mean_pool(encoder: torch.nn.Module, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers' mean pooling makes them: token states averaged over the mask."""
    states = encoder(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def fit_contrastive(encoder: torch.nn.Module, tokens: dict[str, torch.Tensor], labels: np.ndarray, *, epochs: int,
                    learning_rate: float, batch_size: int, scheduler: str, seed: int, optimizer: str = "adamw",
                    weight_decay: float = 0.01, scale: float = 20.0) -> None:
    """Fine-tune a sentence encoder on texts of a few categories as sentence-transformers users do: each text's
    positive is another text of its category, the other positives of the batch its negatives (multiple-negatives
    ranking loss, cosine similarities times `scale`); other texts of the same category are no negatives."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(labels)  # indices stay on the CPU, which draws them; the encoder's device computes
    by_class = [(targets == c).nonzero().flatten() for c in range(int(targets.max()) + 1)]
    optimizer = make_optimizer(optimizer, encoder.parameters(), learning_rate, weight_decay)
    lr_schedule = make_scheduler(scheduler, optimizer, epochs * math.ceil(len(targets) / batch_size))
    encoder.train()
    for idx in _batches(len(targets), batch_size, epochs, generator):
        positives = torch.stack([by_class[int(c)][torch.randint(len(by_class[int(c)]), (1,), generator=generator)][0]
                                 for c in targets[idx]])
        anchors = F.normalize(mean_pool(encoder, {k: v[idx] for k, v in tokens.items()}), dim=-1)
        matches = F.normalize(mean_pool(encoder, {k: v[positives] for k, v in tokens.items()}), dim=-1)
        logits = anchors @ matches.T * scale
        same = targets[idx][:, None] == targets[idx][None, :]
        mask = (same & ~torch.eye(len(idx), dtype=torch.bool)).to(logits.device)
        F.cross_entropy(logits.masked_fill(mask, float("-inf")), torch.arange(len(idx), device=logits.device)).backward()
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
    encoder.eval()


@torch.no_grad()
def embed_texts(encoder: torch.nn.Module, tokens: dict[str, torch.Tensor], batch_size: int = 64) -> np.ndarray:
    """Mean-pooled sentence embeddings [n, width] of tokenized texts."""
    encoder.eval()
    n = len(tokens["input_ids"])
    return torch.cat([mean_pool(encoder, {k: v[start : start + batch_size] for k, v in tokens.items()})
                      for start in range(0, n, batch_size)]).cpu().numpy()
