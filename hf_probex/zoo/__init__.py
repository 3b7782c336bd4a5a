"""Model zoos: real model trees with known ground truth, built on this machine.

`build_zoo` trains them (`hf-probex zoo build`), `Zoo` opens a built one, and
`hf_probex.weightsets` reads a zoo or the official Model-J layout through one interface.
"""

from .build import build_zoo
from .presets import PRESETS, get_preset
from .store import Zoo, ZooError

__all__ = ["PRESETS", "Zoo", "ZooError", "build_zoo", "get_preset"]
