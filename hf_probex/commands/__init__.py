"""The `hf-probex` command groups, one module per group, each with a `register(subparsers)` function.

Adding a group is a module here and one entry in `GROUPS`; `hf_probex.cli` builds the parser from it.
"""

from __future__ import annotations

from . import bot, expert, hub, infer, lineage, scan, search, space, zoo

GROUPS = [infer, lineage, zoo, expert, hub, bot, scan, search, space]
