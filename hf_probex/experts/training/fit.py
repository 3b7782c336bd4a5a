"""Fitting an `Expert`: Adam with validation-based model selection, or closed form (ridge).

As ProbeX trains: Adam, mini-batches, an evaluation on the validation models every `eval_every` epochs,
and the weights of the best validation score kept (per-label accuracy for class subsets, top-1 for
concepts; ties go to the lower validation loss). Without validation models the last weights are kept.
`TrainConfig()` is small and fast for CPU; `PAPER_TRAINING` is the paper's discriminative recipe.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from . import launch
from .evaluation import per_label_accuracy, top_k_accuracy
from ..hub import Expert
from ..methods.models import as_tensor


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one expert."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 128
    eval_every: int = 5
    seed: int = 0


PAPER_TRAINING = TrainConfig(epochs=500, lr=1e-3, weight_decay=1e-5, batch_size=128, eval_every=25)


def closed_form_targets(expert: Expert, y: torch.Tensor) -> torch.Tensor:
    """What a closed-form network regresses: 0/1 labels, or the text embedding of each model's concept."""
    return y if expert.task == "multilabel" else expert.concept_text[y.long()]


@torch.no_grad()
def _validate(expert: Expert, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(selection score, loss) on validation models."""
    expert.eval()
    logits = expert.logits(x)
    loss = float(expert.loss(x, y))
    if expert.task == "multilabel":
        return per_label_accuracy(torch.sigmoid(logits).cpu().numpy(), y.cpu().numpy()), loss
    return top_k_accuracy(logits.cpu().numpy(), y.cpu().numpy(), 1), loss


def train(expert: Expert, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None = None,
          y_val: np.ndarray | None = None, config: TrainConfig = TrainConfig()) -> dict:
    """Fit `expert` in place on matrices [n, H, W] and targets (0/1 [n, n_labels] or concept indices [n]).

    The expert's centring must already be set (`Expert.set_centring`). Returns a history: training
    seconds, the selected epoch and the validation curve.

    Raises:
        ValueError: no training models, or class-subset targets with a single class.
    """
    if len(x_train) == 0:
        raise ValueError("no training models")
    if expert.task == "multilabel" and np.unique(y_train).size < 2:
        raise ValueError("the training targets hold a single value: nothing to learn")
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    x, y = as_tensor(x_train), as_tensor(y_train)
    with torch.no_grad():
        expert.net.prepare(expert.shape_input(x))
    if expert.net.closed_form:
        with torch.no_grad():
            expert.net.fit_closed_form(expert.shape_input(x), closed_form_targets(expert, y),
                                       decision_offset=0.5 if expert.task == "multilabel" else 0.0)
        return {"train_seconds": time.perf_counter() - start, "config": asdict(config), "selected_epoch": None, "curve": []}
    device = launch.device()  # trained experts always come back to the CPU
    expert.to(device)
    x, y = x.to(device), y.to(device)
    has_val = x_val is not None and len(x_val) > 0
    xv, yv = (as_tensor(x_val).to(device), as_tensor(y_val).to(device)) if has_val else (None, None)
    optimiser = torch.optim.Adam(expert.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    best, best_state, best_epoch, curve = None, None, config.epochs, []
    for epoch in range(1, config.epochs + 1):
        expert.train()
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimiser.zero_grad()
            expert.loss(x[batch], y[batch]).backward()
            optimiser.step()
        if has_val and (epoch % config.eval_every == 0 or epoch == config.epochs):
            score, loss = _validate(expert, xv, yv)
            curve.append({"epoch": epoch, "val_score": score, "val_loss": loss})
            if best is None or (score, -loss) > best:
                best, best_state, best_epoch = (score, -loss), copy.deepcopy(expert.state_dict()), epoch
    if best_state is not None:
        expert.load_state_dict(best_state)
    expert.to("cpu").eval()
    return {"train_seconds": time.perf_counter() - start, "config": asdict(config), "selected_epoch": best_epoch, "curve": curve}
