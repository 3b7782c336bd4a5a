"""Deprecated alias of `hf_probex.from_table` (experts trained on a tree table's documented members).

Training from a table reads published tables and asks `infer_card`, both above the experts, so the module lives one
floor up; this name keeps old imports working. It is the one import from the experts to a floor above them, and the
import contracts in pyproject.toml name it (`ignore_imports`).
"""

from __future__ import annotations

import warnings

from ..from_table import Proposal, TableTraining, measure_proposals, propose_for_undocumented, train_from_table

__all__ = ["Proposal", "TableTraining", "measure_proposals", "propose_for_undocumented", "train_from_table"]

warnings.warn("hf_probex.experts.from_table moved to hf_probex.from_table; import it from there",
              DeprecationWarning, stacklevel=2)
