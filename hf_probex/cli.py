"""The `hf-probex` command line.

Every command has `--help`. Heavy libraries (torch, transformers, diffusers) are imported inside the
commands, never at module import, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A bad input: printed as one `error:` line, exit status 2."""


def default_cache_dir() -> Path:
    """Where bench zoos and other large artefacts are cached (HF_PROBEX_CACHE, else the user cache dir)."""
    if "HF_PROBEX_CACHE" in os.environ:
        return Path(os.environ["HF_PROBEX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_probex"


def _zoo_build(args: argparse.Namespace) -> int:
    from .zoo import build_zoo, get_preset
    from .zoo.report import format_summary

    get_preset(args.preset)  # fail on an unknown preset before anything touches the disk
    out = Path(args.out) if args.out else default_cache_dir() / "zoos" / f"{args.preset}-seed{args.seed}"
    zoo = build_zoo(out, args.preset, seed=args.seed, workers=args.workers, progress=not args.quiet,
                    warn=lambda line: print(f"warning: {line}", file=sys.stderr))
    print(format_summary(zoo))
    return 0


def _zoo_info(args: argparse.Namespace) -> int:
    from .zoo import Zoo
    from .zoo.report import check_zoo, format_summary

    zoo = Zoo.open(args.zoo)
    print(format_summary(zoo))
    problems = check_zoo(zoo) if args.check else []
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _zoo_signal(args: argparse.Namespace) -> int:
    from .zoo import Zoo
    from .zoo.signal import format_signal_report, signal_check

    zoo = Zoo.open(args.zoo)
    report = signal_check(zoo, trees=args.tree, folds=args.folds, seed=args.seed, progress=not args.quiet)
    print(format_signal_report(report))
    if args.json:
        Path(args.json).write_text(__import__("json").dumps(report, indent=2))
    return 0 if report["passed"] else 1


def _hub_serve(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from .hub.auth import UsersFileError
    from .hub.runner import uvicorn_log_config
    from .hub.server import create_app

    root = Path(args.root)
    users = Path(args.users) if args.users else (root / "users.yaml" if (root / "users.yaml").is_file() else None)
    try:
        app = create_app(root, users_file=users, max_upload_bytes=int(args.max_upload_mb * 1024**2))
    except UsersFileError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot use {root} as the hub root ({err.strerror})") from None
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror})") from None
    sock.listen(2048)  # listening before the line below: clients that read it may connect at once
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {root} at http://{host}:{port} (users: {users or 'none, read-only'})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(), lifespan="off")).run(sockets=[sock])
    return 0


def _hub_import(args: argparse.Namespace) -> int:
    from .hub.importer import import_zoo

    report = import_zoo(args.zoo, args.root, progress=None if args.quiet else print)
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-probex",
        description="Infer the missing model-card fields of Hugging Face models from their weights.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('hf_probex').__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    zoo = commands.add_parser("zoo", help="build and inspect model zoos (real model trees with known ground truth)",
                              description="Build and inspect model zoos: real model trees with known ground truth.")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)

    build = zoo_commands.add_parser(
        "build", help="train a zoo (resumable)",
        description="Train a zoo of model trees into a folder. Rerunning resumes: finished models are kept, "
                    "half-written ones are rebuilt.",
    )
    build.add_argument("--preset", default="tiny", help="tiny (seconds, for tests) or bench (the benchmark zoo); default: tiny")
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
    signal.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    signal.add_argument("--seed", type=int, default=0, help="seed of the folds and the label shuffles")
    signal.add_argument("--json", help="also write the full report to this JSON file")
    signal.add_argument("--quiet", action="store_true", help="no progress bar")
    signal.set_defaults(func=_zoo_signal)

    hub = commands.add_parser("hub", help="a local Hub-API-compatible server (for tests and offline use)",
                              description="A local server speaking the Hugging Face Hub API that huggingface_hub "
                                          "uses: repos, downloads with ranges, commits, pull requests, discussions. "
                                          "See docs/local-hub.md.")
    hub_commands = hub.add_subparsers(dest="hub_command", metavar="SUBCOMMAND", required=True)
    serve = hub_commands.add_parser(
        "serve", help="serve a hub root over HTTP",
        description="Serve the repos under --root (created if missing). Point clients at it with "
                    "HF_ENDPOINT=http://HOST:PORT. Writing needs a token from the users file.",
    )
    serve.add_argument("--root", required=True, help="folder holding the hub's repos and objects")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--users", help="users file, YAML or JSON: users, their tokens, org members "
                                       "(default: ROOT/users.yaml if present, else nobody can write)")
    serve.add_argument("--max-upload-mb", type=float, default=2048,
                       help="largest request body accepted, in MiB; larger uploads get 413 (default: 2048)")
    serve.set_defaults(func=_hub_serve)
    hub_import = hub_commands.add_parser(
        "import", help="publish a zoo into a hub root (one repo per model, one org per tree)",
        description="Publish every finished model of a zoo into the hub root: one public repo per model, named "
                    "as in the zoo plan (an org per tree), files and cards as the zoo wrote them. Writes to the "
                    "root directly, so it works whether or not a server is running on it; reruns commit only "
                    "what changed.",
    )
    hub_import.add_argument("zoo", help="zoo folder (from `hf-probex zoo build`)")
    hub_import.add_argument("--root", required=True, help="hub root folder (as given to `hub serve --root`)")
    hub_import.add_argument("--quiet", action="store_true", help="print only the summary line")
    hub_import.set_defaults(func=_hub_import)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from .zoo.store import ZooError

    try:
        return func(args)
    except (UserError, ZooError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hf-probex` console script."""
    args = build_parser().parse_args(argv)
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
