"""Expert commands: `hf-probex train`, `hf-probex bench`, and `hf-probex expert layers|eval|sweep`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..text import DEFAULT_TEXT_ENCODER
from .common import UserError, add_cv_options, hub_errors_as_user_errors, probability

WORKERS_HELP = ("parallel processes, one torch thread each (default: 1); under `accelerate launch` the launched "
                "processes are the workers, one GPU each")


def _expert_settings(args: argparse.Namespace, method: str) -> tuple[dict, object]:
    """(hyper-parameters, TrainConfig) of one method from the shared `expert` options."""
    from dataclasses import replace

    from ..experts.methods.models import PAPER
    from ..experts.training.fit import PAPER_TRAINING, TrainConfig

    config = replace(PAPER_TRAINING if args.paper else TrainConfig(), seed=args.seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs, eval_every=min(config.eval_every, args.epochs))
    return (dict(PAPER.get(method, {})) if args.paper else {}), config


def _splits(args: argparse.Namespace) -> tuple[str, ...]:
    """`--splits a,b` as a tuple (empty: every in-distribution model); `expert eval` has no such option."""
    return tuple(s for s in (getattr(args, "splits", None) or "").split(",") if s)


def _expert_data(args: argparse.Namespace):
    import torch

    from ..experts.training.harness import load_layer_data

    torch.set_num_threads(args.threads)
    if args.prompt.count("{}") != 1:
        raise UserError(f"--prompt must hold {{}} once, where the concept goes (e.g. 'a photo of a {{}}'), got {args.prompt!r}")
    try:
        return load_layer_data(args.zoo, args.tree, args.layer, conv_layout=args.conv_layout, splits=_splits(args) or None,
                               text_encoder=args.text_encoder, prompt=args.prompt)
    except ValueError as err:
        raise UserError(str(err)) from None


def _check_methods(methods: list[str]) -> None:
    from ..experts.methods.models import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")


def _expert_layers(args: argparse.Namespace) -> int:
    from ..experts.training.harness import candidate_layers

    try:
        layers = candidate_layers(args.zoo, args.tree)
    except ValueError as err:
        raise UserError(str(err)) from None
    for name, shape in layers.items():
        print(f"{name}  {list(shape)}")
    return 0


def _expert_eval(args: argparse.Namespace) -> int:
    from ..experts.training.harness import cross_validate
    from ..experts.training.report import format_reports

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
    if args.json_out:
        _write_json(args.json_out, reports)
    return 0


def _resolve_layer(args: argparse.Namespace) -> None:
    """`--method auto`: the benchmark's best method for the tree's task (`harness.DEFAULT_METHODS`);
    `--layer auto`: what that method should read (`sweep.select_inputs`: a stack of layers for ridge)."""
    import tempfile

    from ..experts.training.harness import DEFAULT_METHODS, tree_task
    from ..experts.training.sweep import MIN_MODELS_TO_SELECT, family_default, select_inputs

    splits = _splits(args)
    try:
        if args.method == "auto":
            args.method = DEFAULT_METHODS[tree_task(args.zoo, args.tree)]
        if args.layer != "auto":
            return
        by_default = family_default(args.zoo, args.tree, splits or ()) is not None
        with tempfile.TemporaryDirectory() as folder:
            args.layer = select_inputs(args.zoo, args.tree, args.method, Path(folder) / "select.jsonl",
                                       splits=splits, folds=args.folds, seed=args.seed,
                                       progress=lambda line: print(f"choosing the layer: {line}", file=sys.stderr))
    except ValueError as err:
        raise UserError(str(err)) from None
    shown = " + ".join(args.layer) if isinstance(args.layer, list) else args.layer
    on = f" on splits {', '.join(splits)}" if splits else ""
    if by_default:
        print(f"layer auto: {shown} (the family's default layer: fewer than {MIN_MODELS_TO_SELECT} models{on} to "
              f"choose among layers)")
        return
    print(f"layer auto: {shown} (best tuned-ridge cross-validated score{on}; leave-one-recipe-family-out where the "
          f"zoo records families)")


def describe_calibration(calibration: dict) -> str:
    """An expert's calibration in one line: the confidence it proposes at (a zero-shot expert's: with what each kind
    of top concept also needs), its out-of-fold precision and recall, or that it never proposes (calibration marks
    that with a threshold above 1)."""
    target = f"{calibration['precision_target'] * 100:.0f} % precision"
    if calibration["threshold"] > 1:
        return f"never proposes: no threshold reaches {target} out of fold ({calibration['decisions']} decisions)"
    lead, least = calibration.get("known_margin", 0.0), calibration.get("least_margin", 0.0)
    untrained = calibration.get("untrained_threshold")
    ahead = f"{least:.2f} ahead of the runner-up" if least else ""
    needs = [f"a concept it trained on {lead:.2f} ahead of the best one it did not"] if lead else []
    if untrained is not None:
        needs.append("one it never trained on: never" if untrained > 1 else
                     f"one it never trained on at >= {untrained:.2f}" + (f", {ahead}" if ahead else ""))
    elif ahead:
        needs.append(f"a top concept {ahead}")
    return (f"proposes at confidence >= {calibration['threshold']:.2f}" + (f" ({'; '.join(needs)})" if needs else "")
            + f": out-of-fold precision {calibration['oof_precision'] * 100:.1f} % (target {target}) and recall "
              f"{calibration['oof_recall'] * 100:.1f} %, calibrated on {calibration['decisions']} decisions")


def _report(expert, report: dict | None, args: argparse.Namespace) -> None:
    """What `train` prints after saving an expert (both sources): CV metrics, calibration; then registers, pushes."""
    from ..experts.training.report import describe_cv

    cv = describe_cv(report) if report else ""
    for name, stat in (report or {}).get("metrics", {}).items():
        print(f"  {name}: {stat['mean']:.1f} +- {stat['se']:.1f} ({cv})")
    if expert.calibration:
        print(f"  {describe_calibration(expert.calibration)}")
    if expert.head_calibration:
        print(f"  with the head {expert.row_reader.layer} read as a set of rows: {describe_calibration(expert.head_calibration)}")
    if expert.open_calibration:
        print(f"  from its default vocabulary ({len(expert.open_vocabulary)} concepts, held-out ones included): "
              f"{describe_calibration(expert.open_calibration)}")
    if args.register:
        from ..experts.registry import ExpertRegistry

        registry = ExpertRegistry.from_file()
        registry.add(Path(args.out).resolve())
        print(f"registered in {registry.save()}")
    if args.push_to_hub:
        print(f"pushed: {expert.push_to_hub(args.push_to_hub)}")


def _train(args: argparse.Namespace) -> int:
    from ..experts.training import launch
    from ..experts.training.harness import train_expert

    if launch.is_distributed():
        raise UserError("hf-probex train runs in one process on one device; launch `hf-probex bench` or "
                        "`hf-probex expert sweep` with accelerate to spread runs over several GPUs")
    if args.from_table:
        return _train_from_table(args)
    for option in ("held_out", "label_source", "propose", "revision", "json_out"):
        if getattr(args, option) not in (None, False):
            raise UserError(f"--{option.replace('_', '-')} goes with --from-table")
    _resolve_layer(args)
    _check_methods([args.method])
    data = _expert_data(args)
    hparams, config = _expert_settings(args, args.method)
    try:
        expert, report = train_expert(data, args.method, folds=args.folds, seed=args.seed, hparams=hparams,
                                      centre=not args.no_centre, config=config, temperature=args.temperature)
    except ValueError as err:
        raise UserError(str(err)) from None
    expert.save_pretrained(args.out)
    print(f"trained {args.method} on {len(data.y)} models of {args.tree} / {data.layer} in "
          f"{expert.metrics['train_seconds']:.1f} s; saved to {args.out}")
    _report(expert, report, args)
    return 0


def _train_from_table(args: argparse.Namespace) -> int:
    """`train --from-table`: an expert from a tree table's documented members (`hf_probex.from_table`)."""
    import torch

    from ..from_table import propose_for_undocumented, train_from_table

    if args.splits:
        raise UserError("--splits names a zoo's splits; with --from-table the held-out share is --held-out")
    if args.method != "auto":
        _check_methods([args.method])
    if args.prompt.count("{}") != 1:
        raise UserError(f"--prompt must hold {{}} once, where the concept goes (e.g. 'a photo of a {{}}'), got {args.prompt!r}")
    torch.set_num_threads(args.threads)
    if args.json_out and not Path(args.json_out).resolve().parent.is_dir():
        raise UserError(f"--json-out {args.json_out}: its folder does not exist; create it, or pass another path")
    hparams, config = _expert_settings(args, args.method)
    held_out = 0.2 if args.held_out is None else args.held_out
    try:
        with hub_errors_as_user_errors():
            made = train_from_table(args.from_table, args.tree, args.out, layer=args.layer, method=args.method,
                                    revision=args.revision, token=args.token, sources=args.label_source,
                                    held_out=held_out, folds=args.folds, seed=args.seed, hparams=hparams or None,
                                    config=config, text_encoder=args.text_encoder, prompt=args.prompt, progress=print)
    except ValueError as err:
        raise UserError(str(err)) from None
    expert, weights = made.expert, made.weights
    layer = " + ".join(made.layer) if isinstance(made.layer, list) else made.layer
    print(f"trained {made.method} on {expert.trained_from['trained']} documented members of {args.tree} / {layer} "
          f"(labels from {', '.join(weights.sources)}) in {expert.metrics['train_seconds']:.1f} s; saved to {args.out}")
    _report(expert, made.report, args)
    if made.held_out:
        m = made.held_out
        proposals = (f"{m['proposed']} proposed, {m['precision']:.1f} % right" if m["proposed"]
                     else "none proposed")
        print(f"  on {m['models']} held-out documented members: top-1 {m['top1']:.1f} %; at the calibrated threshold "
              f"{proposals} (recall {m['recall']:.1f} %)")
    with hub_errors_as_user_errors():
        proposals = propose_for_undocumented(args.out, weights, token=args.token) if args.propose else None
    if proposals is not None:
        named = sum(p.value is not None for p in proposals)
        print(f"proposals for the {len(proposals)} undocumented members ({named} proposed, the rest abstain):")
        for proposal in proposals:
            print(f"  {proposal.line()}")
    if args.json_out:
        _write_json(args.json_out, {
            "expert": str(Path(args.out).resolve()), "tree": args.tree, "method": made.method, "layer": made.layer,
            "trained_from": expert.trained_from, "metrics": (made.report or {}).get("metrics", {}),
            "calibration": expert.calibration, "held_out": made.held_out,
            "proposals": None if proposals is None else [dataclasses.asdict(p) for p in proposals]})
        print(f"wrote {args.json_out}")
    return 0


def _write_json(path: str, report: dict | list) -> None:
    """`report` as JSON at `path`, whole or not at all (a temporary file beside it, then a rename)."""
    import json
    import os

    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror}): pass another --json-out path") from None


def _bench(args: argparse.Namespace) -> int:
    import datetime
    import platform

    from ..experts.training import launch
    from ..experts.training.bench import markdown, run_bench, write_section

    methods = args.method or ["probex", "mvprobe", "dense", "ridge", "statnn"]
    _check_methods(methods)
    layers = {}
    for item in args.layer or []:
        tree, sep, layer = item.partition("=")
        if not sep:
            raise UserError(f"--layer takes TREE=LAYER, got {item!r}")
        layers[tree] = layer
    _, config = _expert_settings(args, "probex")
    try:
        results = run_bench(args.zoo, Path(args.out), trees=args.tree, layers=layers, methods=methods,
                            workers=args.workers, folds=args.folds, seed=args.seed, config=config, paper=args.paper,
                            progress=None if args.quiet else print)
    except ValueError as err:
        raise UserError(str(err)) from None
    if not launch.is_main_process():  # under `accelerate launch`: the main process reports for everyone
        return 0
    table = markdown(results)
    print(table)
    if args.write:
        import os

        cores = os.cpu_count()
        header = (f"Measured {datetime.date.today()} on {platform.machine()} with {cores} cores "
                  f"({args.workers} worker processes of one torch thread), by:\n\n"
                  f"```bash\nhf-probex bench --zoo {args.zoo} --folds {args.folds} --epochs {config.epochs} "
                  f"--workers {args.workers}{' --paper' if args.paper else ''} --write {args.write}\n```\n")
        write_section(Path(args.write), header + "\n" + table)
        print(f"wrote the tables into {args.write}")
    return 0


def _expert_sweep(args: argparse.Namespace) -> int:
    from ..experts.training import launch
    from ..experts.training.report import format_sweep
    from ..experts.training.sweep import sweep

    methods = args.method or ["probex", "ridge"]
    _check_methods(methods)
    _, config = _expert_settings(args, methods[0])
    try:
        reports = sweep(args.zoo, args.tree, methods, Path(args.out), layers=args.layer, workers=args.workers,
                        folds=args.folds, seed=args.seed, config=config, progress=None if args.quiet else print)
    except ValueError as err:
        raise UserError(str(err)) from None
    if launch.is_main_process():
        print(format_sweep(reports))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `hf-probex` parser."""
    expert = commands.add_parser("expert", help="train and evaluate ProbeX experts (one layer of one tree)",
                                 description="Train, cross-validate and list the layers of per-tree experts. "
                                             "See docs/experts.md.")
    expert_commands = expert.add_subparsers(dest="expert_command", metavar="SUBCOMMAND", required=True)
    layers = expert_commands.add_parser("layers", help="list the layers an expert can read in a tree",
                                        description="List the candidate layers of a tree with their stored shapes.")
    layers.add_argument("zoo", help="zoo folder or Model-J folder")
    layers.add_argument("--tree", required=True, help="tree name")
    layers.set_defaults(func=_expert_layers)

    def add_expert_options(sub: argparse.ArgumentParser, zoo_option: bool = False) -> None:
        if zoo_option:
            source = sub.add_mutually_exclusive_group(required=True)
            source.add_argument("--zoo", help="zoo folder (from `hf-probex zoo build`) or Model-J folder")
            source.add_argument("--from-table", metavar="REPO_ID",
                                help="a tree table on the Hub (`hf-probex scan ROOT --to REPO_ID`): train on its documented "
                                     "members' labels, hold out --held-out of them to measure (docs/scan.md)")
            sub.add_argument("--layer", default="auto",
                             help="layer name, or auto (default): for ridge, the layers stacked while the cross-validated "
                                  "score rises; for other methods, the layer where the tuned ridge cross-validates best")
        else:
            sub.add_argument("zoo", help="zoo folder (from `hf-probex zoo build`) or Model-J folder")
            sub.add_argument("--layer", required=True, help="layer name (see `hf-probex expert layers`)")
        sub.add_argument("--tree", required=True, help="tree name")
        add_cv_options(sub, training=True)
        sub.add_argument("--no-centre", action="store_true", help="feed the layer as stored, not root-centred")
        sub.add_argument("--conv-layout", default="probex", choices=["probex", "rows"],
                         help="k x k convolutions as ProbeX reshapes them [in*k*k, out], or one row per filter")
        sub.add_argument("--temperature", type=float, default=1.0,
                         help="zero-shot: cosine logits are divided by it (default: 1, as ProbeX)")
        sub.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER, metavar="NAME_OR_DIR",
                         help="zero-shot: the text encoder concepts are embedded with, recorded in the expert: CLIP's "
                              "text tower (e.g. openai/clip-vit-large-patch14, as the paper) or a sentence encoder "
                              f"(default: the packaged {DEFAULT_TEXT_ENCODER}, offline)")
        sub.add_argument("--prompt", default="{}", help="zero-shot: template a concept is written into, e.g. "
                                                        "'a photo of a {}' (default: the concept alone)")
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
    expert_eval.add_argument("--json-out", metavar="FILE", help="also write the reports to this JSON file")
    expert_eval.set_defaults(func=_expert_eval)

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
    expert_sweep.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    add_cv_options(expert_sweep, training=True)
    expert_sweep.add_argument("--quiet", action="store_true", help="no line per finished report")
    expert_sweep.set_defaults(func=_expert_sweep)

    train = commands.add_parser(
        "train", help="train one expert for a tree (after cross-validating it) and save it as a Hub model",
        description="Cross-validate one method on one (tree, layer) for its metrics, then train it on every "
                    "in-distribution model and save it (config.json, model.safetensors, README.md). See docs/experts.md. "
                    "With --from-table, the models are the documented members of a tree table on the Hub (docs/scan.md).",
    )
    add_expert_options(train, zoo_option=True)
    train.add_argument("--method", default="auto",
                       help="expert method: auto (default: the benchmark's best for the tree's task: ridge on stacked "
                            "layers for class subsets, mvprobe for LoRA concepts), ridge, probex, mvprobe, dense, statnn, "
                            "headset")
    train.add_argument("--out", required=True, help="folder to save the expert in")
    train.add_argument("--splits", help="train only on models of these splits, comma-separated (e.g. train,val; "
                                        "default: every in-distribution model)")
    train.add_argument("--held-out", type=probability, metavar="SHARE",
                       help="--from-table: share of the documented members kept out of training and calibration to "
                            "measure the expert (default: 0.2; chosen by a hash of the seed and the repo id)")
    train.add_argument("--label-source", action="append", metavar="SOURCE",
                       help="--from-table: a label source that documents a member (repeatable, in order of trust; "
                            "default: config.json id2label, card trained-on tag, card datasets for classifiers; card "
                            "instance_prompt, card trained-on tag, card widget for LoRAs). A weights file's metadata "
                            "never counts")
    train.add_argument("--revision", help="--from-table: the table's branch, tag or commit (default: main)")
    train.add_argument("--token", default=None, help="--from-table: a Hub token (default: the saved one or HF_TOKEN)")
    train.add_argument("--propose", action="store_true",
                       help="--from-table: then list what the expert proposes for each undocumented member (as "
                            "`hf-probex infer` would, at the commit the table read)")
    train.add_argument("--json-out", metavar="FILE",
                       help="--from-table: also write what was trained (table, commit, metrics, calibration, held-out "
                            "scores) and, with --propose, the proposals to this JSON file")
    train.add_argument("--register", action="store_true",
                       help="add it to the local expert registry (<cache>/experts.json), where infer_card looks")
    train.add_argument("--push-to-hub", metavar="REPO", help="also push it to this Hub repo (HF_ENDPOINT, HF_TOKEN)")
    train.set_defaults(func=_train)

    bench = commands.add_parser(
        "bench", help="benchmark every expert method on every tree of a zoo (parallel, resumable)",
        description="Cross-validate ProbeX, MVProbe, dense, ridge and StatNN (plus raw inputs, the head as a set, "
                    "and fusions) on each tree's layer, same folds, and print one table per tree; --write puts the "
                    "tables into a markdown file (docs/benchmarks.md). Reports are appended to --out as they finish; "
                    "rerunning resumes.",
    )
    bench.add_argument("--zoo", required=True, help="zoo folder or Model-J folder")
    bench.add_argument("--tree", action="append", help="only this tree (repeatable; default: every tree)")
    bench.add_argument("--layer", action="append", metavar="TREE=LAYER",
                       help="the layer of a tree (repeatable; default: selected by the tuned ridge)")
    bench.add_argument("--method", action="append", help="methods (repeatable; default: probex mvprobe dense ridge statnn)")
    bench.add_argument("--out", default="bench.jsonl", help="JSON-lines file of reports (appended; resumes; default: bench.jsonl)")
    bench.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    add_cv_options(bench, training=True)
    bench.add_argument("--write", metavar="MARKDOWN", help="also write the tables into this file (between bench markers)")
    bench.add_argument("--quiet", action="store_true", help="no line per finished report")
    bench.set_defaults(func=_bench)
