"""ProbeX against the dense expert and ridge on fewer models: where (if anywhere) ProbeX's economy pays.

For each number of models in --models, a random subset of the tree's in-distribution models (seed 0)
is cross-validated (5 folds) with ridge, the dense expert, ProbeX at our default size and ProbeX at
the paper's size (128/128/128), all root-centred, default training; prints one markdown table of
per-label accuracy (class subsets) or top-1 (concepts), mean +- SE over folds.

    python scripts/bench_probex.py ZOO --tree vit --layer vit.encoder.layer.0.attention.attention.value.weight \\
        --models 50,100,200
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

METHODS = (("ridge", "ridge", None), ("dense", "dense", None), ("probex", "probex", None), ("probex, paper size", "probex", "paper"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoo", help="zoo folder (e.g. ~/.cache/hf_probex/zoos/bench-seed0)")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--layer", required=True)
    parser.add_argument("--models", default="50,100,200", help="comma-separated subset sizes (default: 50,100,200)")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from hf_probex.experts.training.harness import cross_validate, load_layer_data
    from hf_probex.experts.methods.models import PAPER

    torch.set_num_threads(1)
    full = load_layer_data(args.zoo, args.tree, args.layer)
    metric = "per_label_acc" if full.task == "multilabel" else "top1"
    print(f"{args.tree} / {args.layer}: {metric}, {args.folds}-fold CV on random subsets of models\n")
    print("| models | " + " | ".join(name for name, _, _ in METHODS) + " |")
    print("|---" * (len(METHODS) + 1) + "|")
    for n in (int(v) for v in args.models.split(",")):
        idx = np.random.default_rng(0).permutation(len(full.y))[:n]
        data = replace(full, x=full.x[idx], y=full.y[idx], model_ids=[full.model_ids[i] for i in idx])
        cells = []
        for _, method, sizes in METHODS:
            report = cross_validate(data, method, hparams=PAPER[method] if sizes else None, folds=args.folds, shuffled=False)
            stat = report["metrics"][metric]
            cells.append(f"{stat['mean']:.1f} ± {stat['se']:.1f}")
        print(f"| {len(idx)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
