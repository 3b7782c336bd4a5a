"""`hf-probex zoo`: build, inspect and signal-check model zoos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import default_cache_dir
from .common import add_cv_options


def _zoo_build(args: argparse.Namespace) -> int:
    from ..zoo import build_zoo, get_preset
    from ..zoo.report import format_summary

    get_preset(args.preset)  # fail on an unknown preset before anything touches the disk
    out = Path(args.out) if args.out else default_cache_dir() / "zoos" / f"{args.preset}-seed{args.seed}"
    zoo = build_zoo(out, args.preset, seed=args.seed, workers=args.workers, progress=not args.quiet,
                    warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    print(format_summary(zoo))
    return 0


def _zoo_info(args: argparse.Namespace) -> int:
    from ..zoo import Zoo
    from ..zoo.report import check_zoo, format_summary

    zoo = Zoo.open(args.zoo)
    print(format_summary(zoo))
    problems = check_zoo(zoo) if args.check else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _zoo_signal(args: argparse.Namespace) -> int:
    from ..zoo import Zoo
    from ..experts.training.signal import format_signal_report, signal_check

    zoo = Zoo.open(args.zoo)
    report = signal_check(zoo, trees=args.tree, folds=args.folds, seed=args.seed, progress=not args.quiet)
    print(format_signal_report(report))
    if args.json_out:
        Path(args.json_out).write_text(__import__("json").dumps(report, indent=2))
    return 0 if report["passed"] else 1


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `hf-probex` parser."""
    zoo = commands.add_parser("zoo", help="build and inspect model zoos (real model trees with known ground truth)",
                              description="Build and inspect model zoos: real model trees with known ground truth.")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)

    build = zoo_commands.add_parser(
        "build", help="train a zoo (resumable)",
        description="Train a zoo of model trees into a folder. Rerunning resumes: finished models are kept, "
                    "half-written ones are rebuilt.",
    )
    build.add_argument("--preset", default="tiny",
                       help="tiny (~20 s, for tests), small (~1.5 min; the smallest zoo whose weights carry a signal, "
                            "for the expert tests), text-small (~2 min; the real all-MiniLM-L6-v2 and its fine-tunes, "
                            "for the tests and the demo), text-bench and bench (the benchmarks: hours), sd-bench "
                            "(bench's LoRA tree alone, ~30 min), text-lineage (a real-root tree half fine-tunes of "
                            "fine-tunes, for lineage: ~40 min); times on 2 cores; default: tiny")
    build.add_argument("--out", help="zoo folder (default: <cache>/zoos/<preset>-seed<N>, cache = $HF_PROBEX_CACHE or ~/.cache/hf_probex)")
    build.add_argument("--seed", type=int, default=0, help="seed of every draw; the same seed builds the same zoo (default: 0)")
    build.add_argument("--workers", type=int, default=None, help="parallel training processes (default: one per core)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(func=_zoo_build)

    info = zoo_commands.add_parser("info", help="print a zoo's trees, splits, counts and accuracies",
                                   description="Print a zoo's trees, splits, model counts, sizes and accuracies.")
    info.add_argument("zoo", help="zoo folder")
    info.add_argument("--check", action="store_true", help="also verify every finished model's weight files")
    info.set_defaults(func=_zoo_info)

    signal = zoo_commands.add_parser(
        "signal", help="measure the weight signal of each tree (ridge, 5-fold CV, with references)",
        description="Check that a zoo carries a real weight signal: a tuned ridge on z-scored weights of each "
                    "candidate layer, k-fold cross-validated, beside constant / label-frequency / shuffled-label "
                    "references, with standard errors and a learning curve. Exits 1 if a discriminative tree's "
                    "best layer is not 10 points above the shuffled-label reference.",
    )
    signal.add_argument("zoo", help="zoo folder")
    signal.add_argument("--tree", action="append", help="only this tree (repeatable; default: all)")
    add_cv_options(signal, training=False)
    signal.add_argument("--json-out", metavar="FILE", help="also write the full report to this JSON file")
    signal.add_argument("--quiet", action="store_true", help="no progress bar")
    signal.set_defaults(func=_zoo_signal)
