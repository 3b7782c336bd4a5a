"""Benchmark `train --from-table`: an expert trained on a tree table's harvested labels against one trained on the
zoo's truth, on the same test models.

    python scripts/bench_from_table.py [--zoo DIR] [--tree resnet] [--layer LAYER] [--truth EXPERT_DIR] [--work DIR]

The zoo's tree (default: the small zoo, ~/.cache/hf_probex/zoos/small-seed0) is imported into a local hub with its
cards as the zoo wrote them (complete, partial or none; the truth also sits in every file's safetensors metadata),
scanned (`scan_tree`: members by card and, with the tree's organisation as `--author`, by weights; routing uses the
truth expert below, as a tree's existing expert would be) and the table published as a dataset repo. The zoo's
`test` split is the test models, never trained on by any expert (a LoRA tree's `test_holdout` LoRAs are kept from
them all too). Experts:

- **from the table**: `train_from_table` on the table's documented members (labels their owners wrote; never file
  metadata), nothing else known (no recipe families: random folds), as a Hub user gets it;
- **from the table, recipe families given**: the same members and layers, the zoo's recipe families passed as
  `groups` (leave-one-family-out calibration), to separate the labels' effect from the folds';
- **from the truth**: the expert `make demo` trains (`demo.demo_experts`, as `hf-probex train --zoo --splits
  train,val`: every train/val model with its truth labels, leave-one-recipe-family-out calibration; reused from the
  demo's cache when it was trained on this zoo), or `--truth`, an expert already trained so.

Layers are chosen as `--layer auto` chooses them, or `--layer` for all. Each expert is scored on the test models by
`measure_proposals` (top-1, per-label accuracy, proposals at its calibrated threshold and their precision), and on the
undocumented test models alone. A LoRA's truth is its concept's name for the zoo's expert and its prompt (what a card
writes) for the table's. Work (hub, scan, experts) is cached under --work (default
~/.cache/hf_probex/bench-from-table/<zoo>-<tree>). Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from hf_probex.settings import default_cache_dir

TOKEN = "hf_bench_write_token"


def truth_expert(zoo, tree: str, folder: Path, layer: str | None):
    """The expert trained on the zoo's truth as `make demo` trains it (`demo.demo_experts`: `hf-probex train --splits
    train,val`, layers chosen on those splits, leave-one-recipe-family-out calibration), for one tree; cached in
    `folder`, or the demo's own when it was trained on this zoo."""
    import json
    import tempfile

    from hf_probex.demo import TRAINING_SPLITS
    from hf_probex.experts.training.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from hf_probex.experts.hub import Expert
    from hf_probex.experts.training.sweep import select_inputs

    demo = default_cache_dir() / "demo" / "experts" / tree
    stamp = demo / "demo.json"
    if not (folder / "config.json").is_file() and layer is None and stamp.is_file() and \
            json.loads(stamp.read_text()).get("zoo") == str(zoo.root.resolve()):
        shutil.copytree(demo, folder)
    if (folder / "config.json").is_file():
        return Expert.from_pretrained(folder)
    method = DEFAULT_METHODS[tree_task(zoo.root, tree)]
    if layer is None:
        with tempfile.TemporaryDirectory() as scratch:
            layer = select_inputs(zoo.root, tree, method, Path(scratch) / "select.jsonl", folds=2, splits=TRAINING_SPLITS)
    expert, _ = train_expert(load_layer_data(zoo.root, tree, layer, splits=TRAINING_SPLITS), method, folds=2)
    expert.save_pretrained(folder)
    return expert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(Path.home() / ".cache/hf_probex/zoos/small-seed0"))
    parser.add_argument("--tree", default="resnet")
    parser.add_argument("--layer", help="the layer(s) every expert reads, comma-separated (default: each chooses, as "
                                        "--layer auto)")
    parser.add_argument("--work", default=None)
    parser.add_argument("--truth", help="an expert folder already trained on the zoo's truth (default: train it)")
    args = parser.parse_args()
    work = Path(args.work or default_cache_dir() / "bench-from-table" / f"{Path(args.zoo).name}-{args.tree}")
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_CACHE"] = str(work / "hf-cache")  # downloads stay with the work, out of the user's cache

    import torch

    from hf_probex.from_table import measure_proposals, train_from_table
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.hub import LocalHub, use_endpoint
    from hf_probex.hub.importer import import_zoo
    from hf_probex.scan import scan_tree
    from hf_probex.scan.table import ScanRow
    from hf_probex.tableset import documented_labels
    from hf_probex.weightsets import open_weight_set
    from hf_probex.zoo import Zoo

    torch.set_num_threads(1)
    zoo = Zoo.open(args.zoo)
    tree = args.tree
    timings = {}
    started = time.monotonic()
    if args.truth and not (work / "expert-from-truth" / tree).is_dir():
        shutil.copytree(args.truth, work / "expert-from-truth" / tree)
    layer = None if args.layer is None else args.layer.split(",") if "," in args.layer else args.layer
    from_truth = truth_expert(zoo, tree, work / "expert-from-truth" / tree, layer)
    timings["from truth (or cached)"] = time.monotonic() - started
    registry = ExpertRegistry()
    registry.add(work / "expert-from-truth" / tree)
    if not (work / "hub" / ".imported").is_file():
        import_zoo(zoo.root, work / "hub", trees=[tree])
        (work / "hub" / ".imported").write_text("done\n")
    org = zoo.trees[tree]["org"]
    (work / "users.yaml").write_text(f"users:\n  bench: {{tokens: [{TOKEN}]}}\norgs:\n  {org}: [bench]\n")
    table = f"bench/{tree}-tree-table"
    weights = open_weight_set(zoo.root)
    specs = {s.repo_id: s for s in zoo.specs(tree)}
    lora = weights.for_tree(tree)[0].kind == "lora"

    def in_table_terms(record):  # a LoRA's truth as its card writes it (the prompt), not the zoo's concept name
        return replace(record, labels=(specs[record.model_id].concept["prompt"],)) if lora else record

    test_zoo = weights.for_tree(tree, ("test",))  # the zoo's unseen splits: test (and its held-out concepts')
    test = [in_table_terms(r) for r in test_zoo]
    test_ids = {r.model_id for r in weights.for_tree(tree, ("test", "test_holdout"))}
    families = {r.model_id: r.group for r in weights.for_tree(tree)}
    with LocalHub(work / "hub", users_file=work / "users.yaml") as hub, use_endpoint(hub.endpoint):
        started = time.monotonic()
        scanned = scan_tree(zoo.trees[tree]["root_repo_id"], to=table, out=work / "scan", experts=registry,
                            token=TOKEN, authors=[org], workers=2)
        timings["scan"] = time.monotonic() - started
        rows = {r["repo_id"]: ScanRow.from_record(r) for r in scanned.table().to_pylist()}
        started = time.monotonic()
        made = train_from_table(table, tree, work / "expert-from-table", layer=layer or "auto", token=TOKEN,
                                held_out=0.0, exclude=test_ids, progress=print)
        timings["from table"] = time.monotonic() - started
        started = time.monotonic()
        with_families = train_from_table(table, tree, work / "expert-from-table-families", layer=made.layer,
                                         token=TOKEN, held_out=0.0, exclude=test_ids, groups=families).expert
        timings["from table, families given"] = time.monotonic() - started
    from_table = made.expert
    kind = "lora" if lora else "classifier"
    documented_test = [r for r in test if r.model_id in rows and documented_labels(rows[r.model_id], kind)[1]]
    undocumented_test = [r for r in test if r.model_id in rows and r not in documented_test]
    undocumented_ids = {r.model_id for r in undocumented_test}
    truth = {r.model_id: in_table_terms(r) for r in weights.for_tree(tree)}
    wrong_labels = sum(set(r.labels) != set(truth[r.model_id].labels) for r in made.weights.records)

    print(f"\nzoo {zoo.root}, tree {tree}: {len(rows)} members in the table; {made.weights.summary()}; harvested "
          f"labels differing from the truth: {wrong_labels} of {len(made.weights.records)}; test models (the zoo's "
          f"test split): {len(test)}, {len(documented_test)} documented, {len(undocumented_test)} undocumented, "
          f"{len(test) - len(documented_test) - len(undocumented_test)} not in the table")
    for name, expert in (("from table", from_table), ("from table, families given", with_families),
                         ("from truth", from_truth)):
        calibration = expert.calibration or {}
        print(f"{name}: {expert.config['method']} on {expert.config['layer']}, {len(expert.vocabulary)} labels, threshold "
              f"{calibration.get('threshold', float('nan')):.3f} ({calibration.get('groups', 0)} families)"
              + (f", head read: {expert.row_reader.layer}" if expert.row_reader else ""))
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + "\n")
    print("| expert | trained on | test models | top-1 | per-label accuracy | proposed | right | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, expert, trained, models in (
            ("from the table (harvested labels)", from_table, from_table.trained_from["trained"], test),
            ("from the table, recipe families given", with_families, with_families.trained_from["trained"], test),
            ("from the zoo's truth", from_truth, from_truth.metrics.get("cv_models"), test_zoo)):
        for subset, models in (("all", models), ("undocumented", [r for r in models if r.model_id in undocumented_ids])):
            m = measure_proposals(expert, models)
            accuracy = f"{m['label_accuracy']:.1f} %" if "label_accuracy" in m else "-"
            print(f"| {name} | {trained} | {subset} {m['models']} | {m['top1']:.1f} % | {accuracy} | "
                  f"{m['proposed']} | {m['right']} | {m['precision']:.1f} % | {m['recall']:.1f} % |")


if __name__ == "__main__":
    main()
