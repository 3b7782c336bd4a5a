"""The tuned ridge on z-scored weights: the baseline every expert must beat (docs/experts.md).

Each weight is standardised with the training models' mean and standard deviation, then a ridge
regression onto the targets is fitted with its penalty chosen by generalised (leave-one-out)
cross-validation inside the training set. The zoo's signal check and the `ridge` expert both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHAS = np.logspace(-1, 6, 8)


@dataclass
class RidgeFit:
    """A fitted z-scored ridge: predictions = ((x - mean) / std) @ coef.T + intercept."""

    mean: np.ndarray  # [d]
    std: np.ndarray  # [d]
    coef: np.ndarray  # [n_targets, d]
    intercept: np.ndarray  # [n_targets]
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.coef.T + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: np.ndarray = ALPHAS) -> RidgeFit:
    """Fit the tuned ridge of [n, d] features `x` onto [n, n_targets] targets `y`."""
    import warnings

    from sklearn.linear_model import RidgeCV

    mean, std = x.mean(0), x.std(0)
    std[std < 1e-8] = 1.0  # constant weights carry nothing; keep them at zero instead of dividing by 0
    with warnings.catch_warnings():  # GCV divides 0 by 0 for penalties it then skips, on very few models
        warnings.simplefilter("ignore", RuntimeWarning)
        ridge = RidgeCV(alphas=alphas).fit((x - mean) / std, y)
    coef = np.atleast_2d(ridge.coef_).astype(np.float32)
    return RidgeFit(mean.astype(np.float32), std.astype(np.float32), coef,
                    np.atleast_1d(ridge.intercept_).astype(np.float32), float(ridge.alpha_))
