"""Tree scans: one pass over a model tree's members into a table published as a Hub dataset (issue 15).

    from hf_probex import scan_tree
    result = scan_tree("acme/root", to="acme/root-tree-table", engine="local", workers=4)
    result.table()        # one row per member: commit, family, route, card fields, harvested labels, embedding

Modules, one concept each:

- `run`: `scan_tree`, the flow (list, plan, read, consolidate, publish) and its `ScanResult`;
- `member`: reading one repo into one row (`read_member`), the unit of work engines run;
- `harvest`: the declared card fields and the labels harvested from files and cards;
- `embedding`: the zero-shot expert's embedding of a LoRA, or a count sketch of the expert's layers;
- `table`: the table's columns (`COLUMNS`), `ScanRow`, atomic parquet files;
- `folder`: the working folder (parts, state, the consolidated table), resumable after a kill;
- `publish`: the dataset card, publishing to a Hub dataset repo, reading a published table back;
- `engines`: `local` (threads) and `ray` (Ray tasks), one module each behind `Engine`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module defining it; imported on first use, so the CLI's --help stays fast (no torch).
_LAZY = {
    "COLUMNS": "table", "Label": "table", "ScanRow": "table",
    "ENGINES": "engines", "Engine": "engines", "ScanEngineError": "engines", "make_engine": "engines",
    "ScanFolderError": "folder", "default_scan_folder": "folder",
    "ScanResult": "run", "scan_tree": "run",
}
__all__ = ["COLUMNS", "ENGINES", "Engine", "Label", "ScanEngineError", "ScanFolderError", "ScanResult", "ScanRow",
           "default_scan_folder", "make_engine", "scan_tree"]

if TYPE_CHECKING:
    from .engines import ENGINES, Engine, ScanEngineError, make_engine
    from .folder import ScanFolderError, default_scan_folder
    from .run import ScanResult, scan_tree
    from .table import COLUMNS, Label, ScanRow


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
