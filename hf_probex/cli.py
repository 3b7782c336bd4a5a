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


def _expert_settings(args: argparse.Namespace, method: str) -> tuple[dict, object]:
    """(hyper-parameters, TrainConfig) of one method from the shared `expert` options."""
    from dataclasses import replace

    from .experts.models import PAPER
    from .experts.training import PAPER_TRAINING, TrainConfig

    config = replace(PAPER_TRAINING if args.paper else TrainConfig(), seed=args.seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs, eval_every=min(config.eval_every, args.epochs))
    return (dict(PAPER.get(method, {})) if args.paper else {}), config


def _expert_data(args: argparse.Namespace):
    import torch

    from .experts.harness import load_layer_data

    torch.set_num_threads(args.threads)
    try:
        return load_layer_data(args.zoo, args.tree, args.layer, conv_layout=args.conv_layout)
    except ValueError as err:
        raise UserError(str(err)) from None


def _check_methods(methods: list[str]) -> None:
    from .experts.models import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")


def _expert_layers(args: argparse.Namespace) -> int:
    from .experts.harness import candidate_layers

    try:
        layers = candidate_layers(args.zoo, args.tree)
    except ValueError as err:
        raise UserError(str(err)) from None
    for name, shape in layers.items():
        print(f"{name}  {list(shape)}")
    return 0


def _expert_eval(args: argparse.Namespace) -> int:
    import json

    from .experts.harness import cross_validate
    from .experts.report import format_reports

    methods = args.method or ["probex", "mvprobe", "dense", "ridge", "statnn"]
    _check_methods(methods)
    data = _expert_data(args)
    reports = []
    for method in methods:
        hparams, config = _expert_settings(args, method)
        try:
            reports.append(cross_validate(data, method, folds=args.folds, seed=args.seed, centre=not args.no_centre,
                                          hparams=hparams, config=config, temperature=args.temperature))
        except ValueError as err:
            raise UserError(f"{method}: {err}") from None
    print(format_reports(reports))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


def _expert_train(args: argparse.Namespace) -> int:
    import numpy as np

    from .experts.harness import cross_validate, fit_expert

    _check_methods([args.method])
    data = _expert_data(args)
    hparams, config = _expert_settings(args, args.method)
    settings = dict(hparams=hparams, centre=not args.no_centre, config=config, temperature=args.temperature)
    try:
        report = cross_validate(data, args.method, folds=args.folds, seed=args.seed, **settings) if args.folds else None
        expert, history = fit_expert(data, args.method, np.arange(len(data.y)), **settings)
    except ValueError as err:
        raise UserError(str(err)) from None
    if report:
        expert.metrics = {**report["metrics"], "cv_folds": args.folds, "cv_models": report["models"]}
    expert.save_pretrained(args.out)
    print(f"trained {args.method} on {len(data.y)} models of {args.tree} / {args.layer} in "
          f"{history['train_seconds']:.1f} s; saved to {args.out}")
    for name, stat in (report or {}).get("metrics", {}).items():
        print(f"  {name}: {stat['mean']:.1f} +- {stat['se']:.1f} ({args.folds}-fold CV)")
    if args.push_to_hub:
        print(f"pushed: {expert.push_to_hub(args.push_to_hub)}")
    return 0


def _expert_sweep(args: argparse.Namespace) -> int:
    from .experts.report import format_sweep
    from .experts.sweep import sweep

    methods = args.method or ["probex", "ridge"]
    _check_methods(methods)
    _, config = _expert_settings(args, methods[0])
    try:
        reports = sweep(args.zoo, args.tree, methods, Path(args.out), layers=args.layer, workers=args.workers,
                        folds=args.folds, seed=args.seed, config=config, progress=None if args.quiet else print)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(format_sweep(reports))
    return 0


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


def _add_cv_options(sub: argparse.ArgumentParser, *, training: bool) -> None:
    """Options shared by every cross-validated command: folds and seed (and, for experts, training)."""
    sub.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the folds, the label shuffles and training")
    if training:
        sub.add_argument("--epochs", type=int, default=None, help="training epochs (default: 100, or 500 with --paper)")
        sub.add_argument("--paper", action="store_true", help="the papers' sizes and training recipe (slow on CPU)")


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
    _add_cv_options(signal, training=False)
    signal.add_argument("--json", help="also write the full report to this JSON file")
    signal.add_argument("--quiet", action="store_true", help="no progress bar")
    signal.set_defaults(func=_zoo_signal)

    expert = commands.add_parser("expert", help="train and evaluate ProbeX experts (one layer of one tree)",
                                 description="Train, cross-validate and list the layers of per-tree experts. "
                                             "See docs/experts.md.")
    expert_commands = expert.add_subparsers(dest="expert_command", metavar="SUBCOMMAND", required=True)
    layers = expert_commands.add_parser("layers", help="list the layers an expert can read in a tree",
                                        description="List the candidate layers of a tree with their stored shapes.")
    layers.add_argument("zoo", help="zoo folder or Model-J folder")
    layers.add_argument("--tree", required=True, help="tree name")
    layers.set_defaults(func=_expert_layers)

    def add_expert_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("zoo", help="zoo folder (from `hf-probex zoo build`) or Model-J folder")
        sub.add_argument("--tree", required=True, help="tree name")
        sub.add_argument("--layer", required=True, help="layer name (see `hf-probex expert layers`)")
        _add_cv_options(sub, training=True)
        sub.add_argument("--no-centre", action="store_true", help="feed the layer as stored, not root-centred")
        sub.add_argument("--conv-layout", default="probex", choices=["probex", "rows"],
                         help="k x k convolutions as ProbeX reshapes them [in*k*k, out], or one row per filter")
        sub.add_argument("--temperature", type=float, default=1.0,
                         help="zero-shot: cosine logits are divided by it (default: 1, as ProbeX)")
        sub.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")

    expert_eval = expert_commands.add_parser(
        "eval", help="cross-validate methods on one layer, with references and standard errors",
        description="k-fold cross-validation of expert methods on one (tree, layer): every metric as mean +- SE "
                    "over folds, the same method on shuffled labels, constant / label-frequency references, "
                    "parameters and timings.",
    )
    add_expert_options(expert_eval)
    expert_eval.add_argument("--method", action="append",
                             help="probex, mvprobe, dense, ridge, statnn or headset (repeatable; default: all but headset)")
    expert_eval.add_argument("--json", help="also write the reports to this JSON file")
    expert_eval.set_defaults(func=_expert_eval)

    expert_train = expert_commands.add_parser(
        "train", help="train one expert (after cross-validating it) and save it as a Hub model folder",
        description="Cross-validate one method on one (tree, layer) for its metrics, then train it on every "
                    "in-distribution model and save it (config.json, model.safetensors, README.md).",
    )
    add_expert_options(expert_train)
    expert_train.add_argument("--method", default="probex", help="expert method (default: probex)")
    expert_train.add_argument("--out", required=True, help="folder to save the expert in")
    expert_train.add_argument("--push-to-hub", metavar="REPO", help="also push it to this Hub repo (HF_ENDPOINT, HF_TOKEN)")
    expert_train.set_defaults(func=_expert_train)

    expert_sweep = expert_commands.add_parser(
        "sweep", help="cross-validate methods on every layer of a tree (parallel, resumable)",
        description="Cross-validate methods on every candidate layer of a tree (or the --layer ones) and rank "
                    "them. Reports are appended to --out as they finish; rerunning with the same file resumes. "
                    "The best layer's score is selected on the folds it is reported on: confirm it on new models.",
    )
    expert_sweep.add_argument("zoo", help="zoo folder or Model-J folder")
    expert_sweep.add_argument("--tree", required=True, help="tree name")
    expert_sweep.add_argument("--layer", action="append", help="only this layer (repeatable; default: every layer)")
    expert_sweep.add_argument("--method", action="append", help="expert method (repeatable; default: probex and ridge)")
    expert_sweep.add_argument("--out", required=True, help="JSON-lines file of reports (appended; resumes)")
    expert_sweep.add_argument("--workers", type=int, default=1, help="parallel processes, one torch thread each (default: 1)")
    _add_cv_options(expert_sweep, training=True)
    expert_sweep.add_argument("--quiet", action="store_true", help="no line per finished report")
    expert_sweep.set_defaults(func=_expert_sweep)

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
