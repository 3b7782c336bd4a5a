"""The expert networks, behind one interface, and their registry `METHODS`.

Every network maps a batch of layer matrices [B, H, W] (already shaped and, optionally, root-centred
by the `Expert` that holds it) to [B, out_dim]: label logits when built with `n_out` (class subsets),
or a representation to align with text when `n_out` is None (zero-shot). Networks trained by Adam
leave `fit_closed_form` alone; a closed-form network (ridge) sets `closed_form = True`; a network
that needs training-set statistics (StatNN's feature standardisation) overrides `prepare`.

- `probex`: ProbeX (Horwitz et al., CVPR 2025): learned probes on the input side X u_l, a shared
  projection V, ReLU, per-probe encoders (one linear layer over the flattened responses), a head;
- `mvprobe`: MVProbe's four views XU, XᵀV, XXᵀW, XᵀXZ (ICML 2026), each standardised per sample,
  projected, ReLU'd, then one encoder and the head;
- `dense`: the dense linear expert y = Σ_ij W_ijk X_ij (trained with Adam like the others);
- `ridge`: the tuned ridge on z-scored weights, fitted in closed form (`ridge.fit_ridge`);
- `statnn`: weight statistics (moments and quantiles of the weights, row norms and column norms)
  into a small MLP;
- `headset`: a classification head read as a permutation-invariant set of class prototypes
  (DeepSets: a shared row encoder, mean and max pooling, a head); the rows are the H axis.

`ModuleFusion` holds one network of a method per layer, for an expert that reads several modules of a LoRA
and combines what each says (`Expert`'s fusion "modules").

The constructors' defaults are small (fast on 2 CPU cores); `PAPER` holds the papers' sizes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ExpertNet(nn.Module):
    """Base of every expert network: [B, H, W] -> [B, out_dim]."""

    closed_form = False

    def __init__(self, shape: tuple[int, int], n_out: int | None):
        super().__init__()
        self.shape = tuple(shape)
        self.n_out = n_out

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def prepare(self, x_train: torch.Tensor) -> None:
        """Set statistics of the training inputs before training (default: nothing to set)."""

    def fit_closed_form(self, x: torch.Tensor, targets: torch.Tensor, decision_offset: float) -> None:
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient descent")


def _head(rep_dim: int, n_out: int | None) -> nn.Module:
    return nn.Linear(rep_dim, n_out) if n_out is not None else nn.Identity()


class ProbeX(ExpertNet):
    """ProbeX: y = T Σ_l M_l σ(Vᵀ X u_l) + b, the official module layout (`probex.py`)."""

    def __init__(self, shape, n_out, n_probes: int = 32, proj_dim: int = 32, rep_dim: int = 64):
        super().__init__(shape, n_out)
        d_h, d_w = self.shape
        self.rep_dim = rep_dim
        self.probes = nn.Linear(n_probes, d_w, bias=False)  # weight [d_W, r_U]: X @ weight = responses X u_l
        self.shared_probe_proj = nn.Linear(d_h, proj_dim, bias=False)
        self.per_probe_encoders = nn.Linear(n_probes * proj_dim, rep_dim)
        self.head = _head(rep_dim, n_out)

    @property
    def out_dim(self) -> int:
        return self.n_out if self.n_out is not None else self.rep_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        responses = x @ self.probes.weight  # [B, d_H, r_U]
        projected = torch.relu(self.shared_probe_proj(responses.transpose(1, 2)))  # [B, r_U, r_V]
        return self.head(self.per_probe_encoders(projected.flatten(1)))


def _standardise(s: torch.Tensor) -> torch.Tensor:
    """Per-sample standardisation over all entries (MVProbe): the Gram views are O(n sigma^2) larger."""
    mean = s.mean(dim=(1, 2), keepdim=True)
    std = s.std(dim=(1, 2), keepdim=True)
    return (s - mean) / (std + 1e-6)


class MVProbe(ExpertNet):
    """MVProbe: four probe views of X, standardised per sample, each projected, then one encoder and head."""

    def __init__(self, shape, n_out, n_probes: int = 32, proj_dim: int = 32, rep_dim: int = 64):
        super().__init__(shape, n_out)
        d_h, d_w = self.shape
        self.rep_dim = rep_dim
        self.u = nn.Parameter(torch.randn(d_w, n_probes) / d_w**0.5)  # XU, rows
        self.v = nn.Parameter(torch.randn(d_h, n_probes) / d_h**0.5)  # XᵀV, columns
        self.w = nn.Parameter(torch.randn(d_h, n_probes) / d_h**0.5)  # X(XᵀW), row Gram
        self.z = nn.Parameter(torch.randn(d_w, n_probes) / d_w**0.5)  # Xᵀ(XZ), column Gram
        # a view's response has d_H rows (XU, XXᵀW) or d_W rows (XᵀV, XᵀXZ); each view has its projection
        self.projections = nn.ModuleList(nn.Linear(d, proj_dim, bias=False) for d in (d_h, d_w, d_h, d_w))
        self.encoder = nn.Linear(4 * n_probes * proj_dim, rep_dim)
        self.head = _head(rep_dim, n_out)

    @property
    def out_dim(self) -> int:
        return self.n_out if self.n_out is not None else self.rep_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)
        views = (x @ self.u, xt @ self.v, x @ (xt @ self.w), xt @ (x @ self.z))  # Gram views by associativity: O(HWr)
        parts = [torch.relu(proj(_standardise(s).transpose(1, 2))).flatten(1) for proj, s in zip(self.projections, views)]
        return self.head(self.encoder(torch.cat(parts, dim=1)))


class DenseLinear(ExpertNet):
    """The dense expert: one weight per (input weight, output), y_k = Σ_ij W_ijk X_ij + b_k."""

    def __init__(self, shape, n_out, rep_dim: int = 64):
        super().__init__(shape, n_out)
        self.linear = nn.Linear(self.shape[0] * self.shape[1], n_out if n_out is not None else rep_dim)

    @property
    def out_dim(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class Ridge(ExpertNet):
    """The tuned ridge on z-scored weights, fitted in closed form; scores are shifted so 0 is the decision."""

    closed_form = True

    def __init__(self, shape, n_out):
        if n_out is None:
            raise ValueError("the ridge expert needs an explicit output size (the text embedding size for zero-shot)")
        super().__init__(shape, n_out)
        d = self.shape[0] * self.shape[1]
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.register_buffer("coef", torch.zeros(n_out, d))
        self.register_buffer("intercept", torch.zeros(n_out))

    @property
    def out_dim(self) -> int:
        return self.n_out

    def fit_closed_form(self, x: torch.Tensor, targets: torch.Tensor, decision_offset: float) -> None:
        from .ridge import fit_ridge

        fit = fit_ridge(x.flatten(1).numpy(), targets.numpy())
        for name in ("mean", "std", "coef"):
            getattr(self, name).copy_(torch.from_numpy(getattr(fit, name)))
        # ridge regresses 0/1 targets, so 0.5 is its threshold; shifting it to 0 lets the Expert read it as a logit
        self.intercept.copy_(torch.from_numpy(fit.intercept - decision_offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.flatten(1) - self.mean) / self.std) @ self.coef.T + self.intercept


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Row-wise quantiles [B, len(qs)] with linear interpolation, by sorting (torch.quantile refuses
    inputs over 16M entries, which a batch of a 768 x 768 layer exceeds)."""
    ordered = values.sort(dim=1).values
    position = torch.tensor(qs, dtype=values.dtype) * (values.shape[1] - 1)
    low, high = position.floor().long(), position.ceil().long()
    return ordered[:, low] + (ordered[:, high] - ordered[:, low]) * (position - low)


def weight_statistics(x: torch.Tensor) -> torch.Tensor:
    """[B, H, W] -> [B, 21]: mean, std and the 0/25/50/75/100 % quantiles of the weights, row norms, column norms."""

    def describe(values: torch.Tensor) -> torch.Tensor:
        return torch.cat([values.mean(1, keepdim=True), values.std(1, keepdim=True),
                          _quantiles(values, (0.0, 0.25, 0.5, 0.75, 1.0))], 1)

    return torch.cat([describe(x.flatten(1)), describe(x.norm(dim=2)), describe(x.norm(dim=1))], 1)


class StatNN(ExpertNet):
    """StatNN: weight statistics (`weight_statistics`), standardised on the training set, into an MLP."""

    def __init__(self, shape, n_out, hidden: int = 64):
        super().__init__(shape, n_out)
        self.register_buffer("feature_mean", torch.zeros(21))
        self.register_buffer("feature_std", torch.ones(21))
        self.mlp = nn.Sequential(nn.Linear(21, hidden), nn.ReLU(), nn.Linear(hidden, n_out if n_out is not None else hidden))

    @property
    def out_dim(self) -> int:
        return self.mlp[-1].out_features

    def prepare(self, x_train: torch.Tensor) -> None:
        features = weight_statistics(x_train)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=1e-8) if len(features) > 1 else torch.ones(21))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((weight_statistics(x) - self.feature_mean) / self.feature_std)


class HeadSet(ExpertNet):
    """A classification head [n_rows, d] read as a set of class prototypes (DeepSets, permutation-invariant).

    Each row goes through a shared MLP; the set is pooled by mean and max (order-free); a head maps the
    pooled vector to the outputs. Suits the head of a discriminative child: its rows are the classes
    it learned, in an order that carries no meaning across children.
    """

    def __init__(self, shape, n_out, hidden: int = 64, rep_dim: int = 64):
        super().__init__(shape, n_out)
        self.rep_dim = rep_dim
        self.row_encoder = nn.Sequential(nn.Linear(self.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.pooled = nn.Sequential(nn.Linear(2 * hidden, rep_dim), nn.ReLU())
        self.head = _head(rep_dim, n_out)

    @property
    def out_dim(self) -> int:
        return self.n_out if self.n_out is not None else self.rep_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.row_encoder(x)  # [B, n_rows, hidden]
        return self.head(self.pooled(torch.cat([rows.mean(1), rows.amax(1)], dim=1)))


class ModuleFusion(ExpertNet):
    """One network of `method` per layer: the input is the layers flattened and concatenated [B, 1, D] (2-D
    layers, `shapes` [H, W] each, in order); each member reads its own layer as a matrix. Output [B, k, out_dim]:
    one representation per layer, so the `Expert` holding it can combine the layers a model has."""

    def __init__(self, method: str, shapes: list[tuple[int, int]], **hparams):
        super().__init__((1, sum(h * w for h, w in shapes)), None)
        self.shapes = [tuple(s) for s in shapes]
        self.members = nn.ModuleList(build_net(method, s, None, **hparams) for s in self.shapes)

    @property
    def out_dim(self) -> int:
        return self.members[0].out_dim

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 1, D] -> each layer as [B, H, W]."""
        flat = x.reshape(len(x), -1)
        sizes = [h * w for h, w in self.shapes]
        return [part.reshape(len(x), *shape) for part, shape in zip(flat.split(sizes, dim=1), self.shapes)]

    def prepare(self, x_train: torch.Tensor) -> None:
        for member, part in zip(self.members, self.split(x_train)):
            member.prepare(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(part) for member, part in zip(self.members, self.split(x))], dim=1)


METHODS: dict[str, type[ExpertNet]] = {
    "probex": ProbeX,
    "mvprobe": MVProbe,
    "dense": DenseLinear,
    "ridge": Ridge,
    "statnn": StatNN,
    "headset": HeadSet,
}

PAPER: dict[str, dict] = {
    "probex": dict(n_probes=128, proj_dim=128, rep_dim=128),
    "mvprobe": dict(n_probes=128, proj_dim=128, rep_dim=512),
}


def build_net(method: str, shape: tuple[int, int], n_out: int | None, **hparams) -> ExpertNet:
    """Build the `method` network for [H, W] inputs (ValueError naming the known methods)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[method](tuple(shape), n_out, **hparams)


def count_parameters(net: nn.Module) -> int:
    """Learned numbers: trainable parameters, plus the fitted buffers of closed-form networks (ridge)."""
    learned = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if getattr(net, "closed_form", False):
        learned += sum(b.numel() for b in net.buffers())
    return int(learned)


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """float32 tensor of a numpy array (no copy when already float32, contiguous and writable: a layer as read from
    a model is read-only, shared with its next reader, and torch's tensors may be written)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return torch.from_numpy(x if x.flags.writeable else x.copy())
