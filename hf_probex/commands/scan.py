"""`hf-probex scan`: one pass over a model tree into a table, published as a Hub dataset (docs/scan.md)."""

from __future__ import annotations

import argparse

from .common import UserError, hub_errors_as_user_errors


def _scan(args: argparse.Namespace) -> int:
    from ..reading import looks_like_repo_id
    from ..scan import scan_tree

    for name, value in (("ROOT_ID", args.root), ("--to", args.to)):
        if value is not None and not looks_like_repo_id(value):
            raise UserError(f"{name} {value!r} is not a Hub repo id (namespace/name)")
    if args.workers < 1 or args.flush_every < 1:
        raise UserError("--workers and --flush-every must be at least 1")
    if args.ray_address and args.engine != "ray":
        raise UserError("--ray-address needs --engine ray")
    with hub_errors_as_user_errors():
        result = scan_tree(args.root, to=args.to, out=args.out, engine=args.engine, workers=args.workers,
                           ray_address=args.ray_address, experts=args.expert or None, token=args.token,
                           authors=args.author or (), search=args.search, private=args.private,
                           flush_every=args.flush_every, progress=not args.quiet)
    print(result.summary())
    print(f"table: {result.table_files[0].parent.parent}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's command to the `hf-probex` parser."""
    from ..scan.engines import ENGINES
    from ..scan.folder import DEFAULT_FLUSH_EVERY

    engines = "; ".join(f"{name}: {cls.description}" for name, cls in sorted(ENGINES.items()))
    scan = commands.add_parser(
        "scan", help="scan a model tree into a table (one row per member) published as a Hub dataset",
        description="Read every member of the model tree of ROOT_ID once (those whose card names a base in the "
                    "tree, and with --author / --search the models routed into it by their weights): its commit, "
                    "family, route, card fields, labels harvested from its files and card, and an embedding of the "
                    "expert's layers. Rows are written to a working folder as they complete and published as a Hub "
                    "dataset repo (--to) that datasets.load_dataset reads. A rerun reads only repos whose commit "
                    "changed; a killed scan resumes where it stopped. See docs/scan.md.",
        epilog="example: hf-probex scan acme/root --to acme/root-tree-table --author acme --engine ray --workers 8",
    )
    scan.add_argument("root", metavar="ROOT_ID", help="the root repo of the model tree")
    scan.add_argument("--to", metavar="REPO_ID",
                      help="the dataset repo to publish the table to (created if needed); without it the table stays "
                           "in the working folder")
    scan.add_argument("--engine", choices=sorted(ENGINES), default="local", help=f"how repos are read ({engines})")
    scan.add_argument("--ray-address", metavar="ADDR",
                      help="with --engine ray: the cluster to run on (e.g. ray://head:10001 or auto); default: a local "
                           "cluster of --workers CPUs")
    scan.add_argument("--workers", type=int, default=2, metavar="N", help="repos read at once (default: 2)")
    scan.add_argument("--out", metavar="DIR",
                      help="the working folder (parts, state, the table); default: scans/OWNER--NAME in the hf_probex "
                           "cache. Rerun with the same folder to update or resume")
    scan.add_argument("--author", action="append", metavar="NAME",
                      help="route the repos of this user or organisation by their weights and keep those in the tree "
                           "(reaches models without a card; repeatable)")
    scan.add_argument("--search", metavar="TEXT",
                      help="route the repos whose name contains TEXT by their weights and keep those in the tree")
    scan.add_argument("--expert", action="append", metavar="DIR_OR_REPO",
                      help="use this expert (repeatable; default: the local registry and, online, the Hub's experts)")
    scan.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login); never printed")
    scan.add_argument("--private", action="store_true", help="create the dataset repo private")
    scan.add_argument("--flush-every", type=int, default=DEFAULT_FLUSH_EVERY, metavar="N",
                      help=f"rows per part written to the working folder, at most what a kill loses (default: "
                           f"{DEFAULT_FLUSH_EVERY})")
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    scan.set_defaults(func=_scan)
