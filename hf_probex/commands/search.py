"""`hf-probex search`: models of a tree found by text, answered from its tree table (docs/scan.md#search)."""

from __future__ import annotations

import argparse
import json

from .common import UserError, hub_errors_as_user_errors


def _search(args: argparse.Namespace) -> int:
    from ..search import MAX_TOP_K, checked_query, open_search_index

    if not args.text.strip():
        raise UserError("the query is empty: type what the LoRA should draw or the models were trained on, e.g. "
                        "hf-probex search \"a corgi in the snow\" --tree ROOT_ID")
    checked_query(args.text)  # before any table is opened: a query it cannot take is one line (SearchError)
    if not 1 <= args.top_k <= MAX_TOP_K:
        raise UserError(f"--top-k must be from 1 to {MAX_TOP_K}")
    with hub_errors_as_user_errors(", or pass --table with a local table folder"):
        token = False if args.token == "" else args.token  # --token "": send none (not the stored login)
        index = open_search_index(args.tree, table=args.table, token=token, experts=args.expert or None)
        hits = index.search(args.text, args.top_k)
    if args.json:
        print(json.dumps({"query": args.text.strip(), "tree": args.tree, "table": index.table.location,
                          "commit": index.table.commit, **index.about(), "hits": [hit.as_dict() for hit in hits]}, indent=1))
        return 0
    print(f"\u201c{args.text.strip()}\u201d in the tree of {args.tree}: {index.describe()}")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:>3}. {hit.score:+.4f}  {hit.repo_id}  {_said(hit)}")
    return 0


def _said(hit) -> str:
    """What a hit's files and card say it was trained on: for a match by labels, the label that matched and its source
    first, then the others."""
    if hit.matched:
        others = [label.value for label in hit.labels if label not in hit.matched]
        matched = "; ".join(f"{label.value} ({label.source})" for label in hit.matched)
        return matched + (f"; also {', '.join(dict.fromkeys(others))}" if others else "")
    return "; ".join(dict.fromkeys(label.value for label in hit.labels)) or "(its files and card say nothing)"


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's command to the `hf-probex` parser."""
    search = commands.add_parser(
        "search", help="find the models of a tree by text, from its tree table (hf-probex scan)",
        description="Rank the models of the model tree of --tree by how well they match TEXT (any text). A LoRA tree: "
                    "the LoRAs by their weights, as the tree's zero-shot expert scores them (as infer does), from the "
                    "vectors `hf-probex scan` put in the table, through a vector index cached by the table's commit. A "
                    "tree of full models (text or image classifiers): the members by the labels their files and cards "
                    "state (id2label names, SetFit labels, trained-on tags, datasets), by the text encoder's "
                    "similarity with TEXT; members without labels are counted, not ranked. No model is read at query "
                    "time. Without --table, the table of the default scan folder of the tree is used, else the latest "
                    "on the Hub from a trusted author. See docs/scan.md#search.",
        epilog="example: hf-probex scan acme/sd-root --to acme/sd-root-tree-table && "
               "hf-probex search \"a corgi in the snow\" --tree acme/sd-root --table acme/sd-root-tree-table",
    )
    search.add_argument("text", metavar="TEXT", help="what the LoRA should draw, e.g. \"a corgi in the snow\", or what "
                                                     "the models were trained on, e.g. \"legal texts\"")
    search.add_argument("--tree", required=True, metavar="ROOT_ID", help="the root repo of the tree")
    search.add_argument("--table", metavar="REPO_ID_OR_FOLDER",
                        help="the tree table: a dataset repo id (hf-probex scan --to) or a folder (hf-probex scan --out, "
                             "or a table folder with README.md and data/*.parquet)")
    search.add_argument("--top-k", type=int, default=10, metavar="N", help="how many models to show (default: 10)")
    search.add_argument("--json", action="store_true", help="print the hits as JSON")
    search.add_argument("--expert", action="append", metavar="DIR_OR_REPO",
                        help="use this expert (repeatable; default: the local registry and, online, the Hub's experts); "
                             "it must be the one the table was scanned with")
    search.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login); never printed")
    search.set_defaults(func=_search)
