"""hf_probex: infer the missing model-card fields of Hugging Face models from their weights.

    from hf_probex import infer_card
    suggestion = infer_card("user/model")          # or a local folder, or a .safetensors file
    suggestion.fields, suggestion.diff
    from hf_probex import scan_tree
    scan_tree("acme/root", to="acme/root-tree-table")   # a model tree's table, published as a Hub dataset
    from hf_probex import train_from_table
    train_from_table("acme/root-tree-table", "root", "experts/root")   # an expert from its documented members
    from hf_probex import search
    search("a corgi in the snow", tree="acme/root")      # its LoRAs by text, from that table

The public names are imported on first use, so `import hf_probex` (and the CLI's `--help`) stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "infer_card": "hf_probex.infer",
    "Candidate": "hf_probex.head_naming",
    "CardSuggestion": "hf_probex.suggestions",
    "FieldSuggestion": "hf_probex.suggestions",
    "ProbexError": "hf_probex.errors",
    "Expert": "hf_probex.experts.hub",
    "ExpertRegistry": "hf_probex.experts.registry",
    "scan_tree": "hf_probex.scan",
    "ScanResult": "hf_probex.scan",
    "train_from_table": "hf_probex.from_table",
    "search": "hf_probex.search",
    "SearchHit": "hf_probex.search",
}
__all__ = ["Candidate", "CardSuggestion", "Expert", "ExpertRegistry", "FieldSuggestion", "ProbexError", "ScanResult", "SearchHit",
           "__version__", "infer_card", "scan_tree", "search", "train_from_table"]

if TYPE_CHECKING:
    from .errors import ProbexError
    from .from_table import train_from_table
    from .experts.hub import Expert
    from .experts.registry import ExpertRegistry
    from .head_naming import Candidate
    from .infer import infer_card
    from .scan import ScanResult, scan_tree
    from .search import SearchHit, search
    from .suggestions import CardSuggestion, FieldSuggestion


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_probex' has no attribute {name!r}")
