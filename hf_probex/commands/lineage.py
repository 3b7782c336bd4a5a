"""`hf-probex lineage`: which member each model of a tree was fine-tuned from, by the weights (docs/infer.md, Lineage)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .common import UserError

if TYPE_CHECKING:
    from ..lineage import Edge, LineageCalibration


def _lineage(args: argparse.Namespace) -> int:
    from ..infer import expert_registry
    from ..lineage import lineage_calibration, recover_lineage

    token = False if args.token == "" else args.token  # --token "": send none (not the stored login)
    tree = args.tree or args.root
    if args.sketches:
        if args.members:
            raise UserError("--sketches reads the tree table's rows, no weights: name no MEMBER (or drop --sketches)")
        return _from_sketches(args, tree, token)
    members, listed = list(args.members), []
    if args.table or not members:  # the members a scan listed (its table), beside those named
        from ..members import table_members
        from ..scan.publish import find_table

        listed = [m.repo_id for m in table_members(find_table(tree, args.table, token=token)) if m.repo_id not in members]
        members += listed
    if not members:
        raise UserError(f"no member to read: name them, or pass --table with the tree table of {tree}")
    bases = dict(_base_copy(value) for value in args.base or [])
    calibration = lineage_calibration(expert_registry(args.expert or None, token), tree)
    edges = recover_lineage(args.root, members, calibration, root_id=tree, token=token, from_hub=set(listed),
                            local=bases, progress=lambda line: print(line, file=sys.stderr))
    return _print(args, tree, calibration, edges, f"{len(edges)} of {len(members)} members read")


def _base_copy(value: str) -> tuple[str, str]:
    """`--base REPO_ID=DIR`: a local copy of a base that members' adapters declare."""
    repo_id, sep, folder = value.partition("=")
    if not sep or not repo_id or not folder:
        raise UserError(f"--base {value!r}: give REPO_ID=DIR, a base's Hub repo id and its local copy")
    return repo_id, folder


def _from_sketches(args: argparse.Namespace, tree: str, token: str | bool | None) -> int:
    """The parents named from the tree table's sketches alone (`members.table_lineage`)."""
    from ..infer import expert_registry
    from ..lineage import lineage_calibration
    from ..members import table_lineage
    from ..scan.publish import find_table

    calibration = lineage_calibration(expert_registry(args.expert or None, token), tree, sketches=True)
    edges, left_out = table_lineage(find_table(tree, args.table, token=token), calibration, tree)
    if left_out:
        print(f"left out {left_out} of {len(edges) + left_out} rows: no {calibration.sketch} of "
              f"{', '.join(calibration.layers)} (the expert's calibration); rescan with this hf_probex and that expert",
              file=sys.stderr)
    if not edges:
        raise UserError(f"no row of the table of {tree} holds the sketch the expert is calibrated on: rescan with "
                        f"`hf-probex scan {tree}` and this hf_probex")
    return _print(args, tree, calibration, edges, f"{len(edges)} of {len(edges) + left_out} table rows read by their "
                                                  f"sketches")


def _print(args: argparse.Namespace, tree: str, calibration: LineageCalibration, edges: list[Edge], read: str) -> int:
    from ..lineage import NO_MEMBER_WHY

    if args.json:
        print(json.dumps({"root": tree, "calibration": calibration.to_dict(),
                          "edges": [edge.as_dict() for edge in edges]}, indent=1))
        return 0
    rule = (f"its calibration names no member a parent ({NO_MEMBER_WHY})" if calibration.names_no_member else
            f"a member is a parent where it explains >= {calibration.threshold:.0%} of a model's movement from the root")
    print(f"the tree of {tree}: {read}; {rule}")
    print(f"{'model':<40} {'parent':<40} {'conf.':>5}  evidence")
    for edge in edges:
        print(f"{edge.child:<40} {edge.parent:<40} {edge.confidence:>5.2f}  {edge.evidence}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's command to the `hf-probex` parser."""
    lineage = commands.add_parser(
        "lineage", help="which member each model of a tree was fine-tuned from, by the weights",
        description="Read ROOT and every MEMBER whole (Hub repo ids or local folders, or the members of a tree "
                    "table; peft adapters merged onto their bases) and name each member's parent: the member that "
                    "explains most of its movement from the root where that share reaches the tree's threshold, else "
                    "the root. The threshold and each side's precision come from the tree's expert (fitted on its "
                    "training models, whose parents are known). A member that cannot be read is left out with a line "
                    "on stderr. A tree too large to read whole (more than 2,000 members) is read from its table "
                    "with --sketches. See the Lineage section of docs/infer.md.",
        epilog="examples: hf-probex lineage acme/root acme/child-1 acme/child-2 acme/grandchild --expert experts/acme; "
               "hf-probex lineage acme/root --table acme/root-tree-table; "
               "hf-probex lineage acme/root --table acme/root-tree-table --sketches",
    )
    lineage.add_argument("root", metavar="ROOT", help="the tree's root (Hub repo id or local folder)")
    lineage.add_argument("members", metavar="MEMBER", nargs="*",
                         help="the tree's members (Hub repo ids or local folders; default: the tree table's)")
    lineage.add_argument("--table", metavar="REPO_OR_DIR",
                         help="also the members of this tree table (a dataset repo id or a scan's folder; without "
                              "MEMBERs, the table `hf-probex search` would use)")
    lineage.add_argument("--tree", metavar="ROOT_ID", help="the root's Hub repo id, where ROOT is a local copy of it")
    lineage.add_argument("--expert", action="append", metavar="DIR_OR_REPO",
                         help="the tree's expert (repeatable; default: the local registry and, online, the Hub's experts)")
    lineage.add_argument("--token", default=None, help="a Hub token (default: the saved login; \"\" sends none)")
    lineage.add_argument("--base", action="append", metavar="REPO_ID=DIR",
                         help="a local copy of a base that members' peft adapters declare (repeatable; offline, an "
                              "adapter whose base is neither the root nor given here is left out)")
    lineage.add_argument("--sketches", action="store_true",
                         help="read no weights: name the parents from the tree table's sketches alone (its rows' "
                              "embeddings; any number of rows, each member's candidates from a vector index)")
    lineage.add_argument("--json", action="store_true", help="print the edges and the calibration as JSON")
    lineage.set_defaults(func=_lineage)
