"""Compare expert methods on one (tree, layer) of a zoo: k-fold CV, mean +- SE, references, cost.

Rows: every method on the layer (root-centred where the root is known); ProbeX and MVProbe (if asked
for) on the raw layer too, to show what centring buys (ridge is invariant to it: z-scoring removes
the root and the scale); with --head-layer, the head read as a set, alone and combined with ProbeX
on the layer.
Columns: the task's metrics, the same method on shuffled labels, parameters, training seconds per
fold, prediction milliseconds per model.

    python scripts/bench_experts.py ZOO --tree vit --layer vit.encoder.layer.0.attention.attention.value.weight \\
        [--head-layer classifier.weight] [--folds 5] [--epochs 100] [--paper] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="zoo folder or Model-J folder")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--layer", required=True, help="the hidden layer every method reads")
    parser.add_argument("--head-layer", help="a classification head to read as a set (alone and with --layer)")
    parser.add_argument("--methods", default="probex,mvprobe,dense,ridge,statnn", help="comma-separated")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: 100 (500 with --paper)")
    parser.add_argument("--paper", action="store_true", help="the papers' sizes and training recipe")
    parser.add_argument("--temperature", type=float, default=1.0, help="zero-shot cosine temperature")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write every report to this JSON file")
    args = parser.parse_args()

    import torch

    from hf_probex.experts.harness import cross_validate, cross_validate_combined, load_layer_data
    from hf_probex.experts.models import PAPER
    from hf_probex.experts.report import format_reports
    from hf_probex.experts.training import PAPER_TRAINING, TrainConfig

    torch.set_num_threads(args.threads)
    config = replace(PAPER_TRAINING if args.paper else TrainConfig(), seed=args.seed)
    if args.epochs is not None:
        config = replace(config, epochs=args.epochs, eval_every=min(config.eval_every, args.epochs))
    options = dict(folds=args.folds, seed=args.seed, config=config, temperature=args.temperature)

    def hparams(method: str) -> dict:
        return dict(PAPER.get(method, {})) if args.paper else {}

    data = load_layer_data(args.zoo, args.tree, args.layer)
    methods = args.methods.split(",")
    runs = [(m, lambda m=m: cross_validate(data, m, hparams=hparams(m), **options)) for m in methods]
    if data.root is not None:  # measure what root centring buys
        runs += [(f"{m} (raw)", lambda m=m: cross_validate(data, m, hparams=hparams(m), centre=False, **options))
                 for m in ("probex", "mvprobe") if m in methods]
    if args.head_layer:
        head = load_layer_data(args.zoo, args.tree, args.head_layer)
        runs += [
            ("headset (head)", lambda: cross_validate(head, "headset", **options)),
            ("headset + probex", lambda: cross_validate_combined(
                [(head, "headset", None), (data, "probex", hparams("probex"))], **options)),
        ]
    labels, reports = [], []
    for label, run in runs:
        labels.append(label)
        reports.append(run())
        print(f"done: {label}", flush=True)
    print(format_reports(reports, labels))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(zip(labels, reports)), indent=2))


if __name__ == "__main__":
    main()
