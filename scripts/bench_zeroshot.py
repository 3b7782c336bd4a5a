"""Measure zero-shot naming and LoRA routing on a zoo's LoRA tree: in- and out-of-vocabulary, through infer_card.

1. Experts: one per method (--method, default mvprobe and ridge) on --layer (repeatable: several modules, which a
   network reads one each, fusing the modules a LoRA has; default auto: what `hf-probex train --layer auto` picks on
   the training splits: the four best single modules by the tuned ridge's cross-validated top-1), trained as `hf-probex train
   --splits train,val,val_holdout` trains them (leave-one-recipe-family-out CV, calibration of the training
   vocabulary, and of the default open vocabulary on held-out concepts: the val_holdout LoRAs); the test and
   test_holdout splits stay unseen. With --sizes, also on the first N training LoRAs (the learning curve).
2. Naming through `infer_card` (the LoRA folders as the zoo wrote them), per split: top-1 / top-5 of the
   vocabulary ranked, proposals at the calibrated threshold and their precision; for the test LoRAs (concepts
   trained on) and the test_holdout LoRAs (concepts never trained on), against the expert's default vocabulary
   and, for test_holdout, against those concepts only as `candidates`.
3. Text search over the test pool (test + test_holdout LoRAs): each concept's name as the query, the LoRAs ranked
   by cosine; hit@5 / hit@10 (a LoRA of that concept among the first k), in and out of the training vocabulary.
4. Routing and reading by target-module set: every test LoRA rewritten with its self-attention modules only, its
   cross-attention ones only, without `to_out`, or as written, in its own key format (diffusers, peft, kohya);
   share routed to the tree's root, by module routing and by the expert's one layer (what routing did before), and
   share read by the first method's expert through `infer_card` (its top-1 right, its proposals and their precision).
5. LoRAs trained on fewer modules (--trained N): the first N test LoRAs trained again by the zoo's own trainer, same
   concept, seed and recipe, but targeting only the self-attention or only the cross-attention projections (peft
   `target_modules`); routed and read as in 4.

    python scripts/bench_zeroshot.py ZOO --out DIR [--tree sd] [--layer L ...] [--method mvprobe --method ridge]
                                             [--sizes 40,80]

The zoo is only read; experts and rewritten LoRAs go under --out (reused when there).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

import numpy as np

TRAIN_SPLITS = ("train", "val", "val_holdout")
#: Target-module sets a LoRA is rewritten to (a regex over the module names it keeps).
MODULE_SETS = {"attn1 only": r"\.attn1\.", "attn2 only": r"\.attn2\.", "q/k/v, no to_out": r"\.to_[qkv]$",
               "as written": r""}
#: Target modules LoRAs are trained on again (peft matches them as name suffixes).
TRAINED_SETS = {"trained on attn1 only": ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"],
                "trained on attn2 only": ["attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"]}


def train(zoo: Path, tree: str, layer: list[str], method: str, out: Path, limit: int | None) -> Path:
    """The expert of `method` on the first `limit` training LoRAs (all: None), trained once into `out`."""
    from hf_probex.experts.training.harness import load_layer_data, train_expert
    from hf_probex.weightsets import open_weight_set

    folder = out / "experts" / f"{method}-{limit or 'all'}"
    if (folder / "config.json").is_file():
        return folder
    weights = open_weight_set(zoo)
    seen = [r for r in weights.for_tree(tree, TRAIN_SPLITS) if not r.split.endswith("_holdout")]
    exclude = {r.model_id for r in seen[limit:]} if limit else set()
    data = load_layer_data(weights, tree, layer if len(layer) > 1 else layer[0], splits=TRAIN_SPLITS, exclude=exclude)
    expert, _ = train_expert(data, method)
    expert.save_pretrained(folder)
    return folder


def naming(folders: list[Path], truths: list[str], expert: Path, candidates: list[str] | None = None) -> dict:
    """infer_card on each LoRA folder: top-1, top-5, proposals and their precision (percent)."""
    from hf_probex.infer import infer_card

    top1 = top5 = proposed = right = 0
    for folder, truth in zip(folders, truths):
        result = infer_card(folder, experts=[expert], candidates=candidates)
        ranked = list(result.details.get("trained_on", {}).get("cosine_by_concept", {}))
        top1 += ranked[:1] == [truth]
        top5 += truth in ranked[:5]
        field = result.fields.get("trained_on")
        proposed += field is not None
        right += field is not None and field.value == truth
    n = len(folders)
    return {"n": n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "proposed": proposed,
            "precision": 100 * right / proposed if proposed else float("nan")}


def search(paths: list[Path], truths: list[str], expert_dir: Path, trained: set[str]) -> dict[str, dict]:
    """Text search over the LoRA files `paths`: each concept's name as the query; hit@5 / hit@10 and the median rank
    of the first LoRA of that concept, for concepts in and out of the training vocabulary."""
    from hf_probex.experts.registry import load_expert
    from hf_probex.text import encode_texts

    expert = load_expert(str(expert_dir))
    concepts = sorted(set(truths))
    text = encode_texts([expert.config["prompt"].format(c) for c in concepts], expert.config["text_encoder"])
    scores = expert.predict_files(paths, text)  # [n LoRAs, n concepts]
    rows: dict[str, list] = {"in vocabulary": [], "out of vocabulary": []}
    for j, concept in enumerate(concepts):
        order = np.argsort(-scores[:, j])
        rank = 1 + min(i for i, k in enumerate(order) if truths[k] == concept)
        rows["in vocabulary" if concept in trained else "out of vocabulary"].append(rank)
    return {kind: {"concepts": len(ranks), "hit@5": 100 * np.mean([r <= 5 for r in ranks]),
                   "hit@10": 100 * np.mean([r <= 10 for r in ranks]), "median rank": statistics.median(ranks)}
            for kind, ranks in rows.items() if ranks}


def rewrite(folder: Path, keep: str, out: Path) -> Path | None:
    """The LoRA in `folder` with only the modules whose name matches `keep` (its own key format and files); None when
    it targets no such module."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from hf_probex.adapters import detect
    from hf_probex.adapters.sd_lora import BASE_METADATA_KEYS
    from hf_probex.reading import open_source

    source = open_source(folder)
    adapter = detect(source)
    checkpoint = adapter.checkpoint(source)
    kept = {m for m in adapter.module_pairs(checkpoint) if re.search(keep, m)}
    if not kept:
        return None
    stored = {key for m, pair in adapter.module_pairs(checkpoint).items() if m in kept for key in pair}
    stems = {key.split(".")[0] for key in stored if key.startswith("lora_unet_")}  # kohya alphas go with their module
    path = folder / checkpoint.name
    tensors = load_file(str(path))
    keys = [k for k in tensors if k in stored or (k.endswith(".alpha") and k.split(".")[0] in stems)]
    out.mkdir(parents=True, exist_ok=True)
    for extra in folder.iterdir():  # adapter_config.json without its base; no card: nothing declares a base
        if extra.is_file() and extra.suffix == ".json":
            config = json.loads(extra.read_text())
            config.pop("base_model_name_or_path", None)
            (out / extra.name).write_text(json.dumps(config))
    with safe_open(str(path), framework="np") as handle:
        metadata = {k: v for k, v in (handle.metadata() or {}).items()
                    if k not in (*BASE_METADATA_KEYS, "lora_adapter_metadata")}
    save_file({k: tensors[k] for k in keys}, str(out / checkpoint.name), metadata=metadata)
    return out


def routing(folders: list[Path], families: list[str], truths: list[str], expert: Path, out: Path) -> list[tuple]:
    """Per (module set, recipe family): LoRAs, routed to the tree by the base's modules, by the expert's layers (an
    entry without `modules`, what routing did before), read by the expert through `infer_card`, top-1 right,
    proposed, proposed right."""
    from hf_probex.infer import infer_card
    from dataclasses import replace

    from hf_probex.adapters import detect
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.reading import open_source
    from hf_probex.routing import route

    entry = ExpertRegistry.from_locations([expert]).entries[0]
    old = ExpertRegistry([replace(entry, modules=())])
    new = ExpertRegistry([entry])
    rows = []
    for name, keep in MODULE_SETS.items():
        for family in sorted(set(families)):
            counts = [0] * 7
            for folder, truth in ((f, t) for f, fam, t in zip(folders, families, truths) if fam == family):
                variant = rewrite(folder, keep, out / re.sub(r"\W+", "-", name) / folder.name)
                if variant is None:
                    continue
                source = open_source(variant)
                adapter = detect(source)
                counts[0] += 1
                counts[1] += route(source, adapter, new).root == entry.root
                counts[2] += route(source, adapter, old).root == entry.root
                result = infer_card(variant, experts=[expert])
                ranked = list(result.details.get("trained_on", {}).get("cosine_by_concept", {}))
                proposed = result.fields.get("trained_on")
                counts[3:] = [counts[3] + bool(ranked), counts[4] + (ranked[:1] == [truth]),
                              counts[5] + (proposed is not None), counts[6] + (proposed is not None and proposed.value == truth)]
            rows.append((name, family, *counts))
    return rows


def retrain(zoo: Path, tree: str, records: list, targets: list[str], out: Path) -> list[Path]:
    """The LoRAs of `records` trained again by the zoo's trainer on `targets` only (kept in `out`: reused when there)."""
    from dataclasses import replace

    from hf_probex.zoo.presets import get_preset
    from hf_probex.zoo.store import Zoo
    from hf_probex.zoo.trees import FAMILIES

    built = Zoo.open(zoo)
    preset = get_preset(built.plan["preset"]).trees[tree]
    folders = []
    for record in records:
        folder = out / Path(record.path).name
        if not folder.is_dir():
            spec = built.spec(tree, folder.name)
            spec = replace(spec, hparams={**spec.hparams, "lora_targets": targets})
            work = out / f".{folder.name}.tmp"
            work.mkdir(parents=True, exist_ok=True)
            FAMILIES[preset.family].build_child(spec, preset, built.model_dir(tree, spec.parent), work,
                                                built.spec(tree, spec.parent).repo_id)
            work.rename(folder)
        folders.append(folder)
    return folders


def trained_subsets(zoo: Path, tree: str, records: list, expert: Path, out: Path) -> list[tuple]:
    """Per module set of `TRAINED_SETS`: LoRAs, routed to the tree, read, top-1 right, proposed, proposed right."""
    from hf_probex.adapters import detect
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.infer import infer_card
    from hf_probex.reading import open_source
    from hf_probex.routing import route

    registry = ExpertRegistry.from_locations([expert])
    root = registry.entries[0].root
    rows = []
    for name, targets in TRAINED_SETS.items():
        counts = [0] * 6
        for folder, record in zip(retrain(zoo, tree, records, targets, out / re.sub(r"\W+", "-", name)), records):
            source = open_source(folder)
            result = infer_card(folder, experts=[expert])
            ranked = list(result.details.get("trained_on", {}).get("cosine_by_concept", {}))
            proposed = result.fields.get("trained_on")
            counts = [counts[0] + 1, counts[1] + (route(source, detect(source), registry).root == root),
                      counts[2] + bool(ranked), counts[3] + (ranked[:1] == [record.labels[0]]),
                      counts[4] + (proposed is not None), counts[5] + (proposed is not None and proposed.value == record.labels[0])]
        rows.append((name, *counts))
    return rows


def _share(count: int, n: int) -> str:
    return f"{100 * count / max(n, 1):.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", type=Path, help="a built zoo (only read)")
    parser.add_argument("--out", type=Path, required=True, help="where experts and rewritten LoRAs go")
    parser.add_argument("--tree", default="sd", help="the LoRA tree (default: sd)")
    parser.add_argument("--layer", action="append", help="a layer the experts read (repeatable: modules fused; default: "
                                                         "auto, as `hf-probex train --layer auto`)")
    parser.add_argument("--method", action="append", help="expert methods (repeatable; default: mvprobe and ridge)")
    parser.add_argument("--trained", type=int, default=0, help="also train the first N test LoRAs again on the "
                                                                 "self- or cross-attention projections only, and read them")
    parser.add_argument("--sizes", default="", help="learning curve: also train on the first N training LoRAs, "
                                                    "comma-separated (e.g. 40,80)")
    args = parser.parse_args()

    from hf_probex.weightsets import open_weight_set

    weights = open_weight_set(args.zoo)
    test = weights.for_tree(args.tree, ("test",))
    held = weights.for_tree(args.tree, ("test_holdout",))
    trained = {r.labels[0] for r in weights.for_tree(args.tree, ("train", "val"))}
    held_names = sorted({r.labels[0] for r in held})
    sizes = [None] + [int(s) for s in args.sizes.split(",") if s]
    if not args.layer:
        from hf_probex.experts.training.sweep import select_inputs

        chosen = select_inputs(args.zoo, args.tree, (args.method or ["mvprobe"])[0], args.out / "select.jsonl",
                               splits=TRAIN_SPLITS, workers=2)
        args.layer = chosen if isinstance(chosen, list) else [chosen]
    print(f"zoo {args.zoo}, tree {args.tree}, layers {' + '.join(args.layer)}; test LoRAs {len(test)} (in vocabulary), "
          f"test_holdout LoRAs {len(held)} ({len(held_names)} concepts never trained on)\n")
    print("| method | training LoRAs | LoRAs named | vocabulary | n | top-1 | top-5 | proposed | precision |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for method in args.method or ["mvprobe", "ridge"]:
        for size in sizes:
            expert = train(args.zoo, args.tree, args.layer, method, args.out, size)
            config = json.loads((expert / "config.json").read_text())
            n_train = config["metrics"].get("cv_models", "?")
            vocabulary = len(config["open_vocabulary"])
            cases = [("test (in vocabulary)", test, None, f"default ({vocabulary})"),
                     ("test_holdout (never trained on)", held, None, f"default ({vocabulary})"),
                     ("test_holdout (never trained on)", held, held_names, f"candidates ({len(held_names)})")]
            for what, records, candidates, vocab in cases:
                row = naming([r.path for r in records], [r.labels[0] for r in records], expert, candidates)
                results[method, size, what, vocab] = row
                print(f"| {method} | {n_train} | {what} | {vocab} | {row['n']} | {row['top1']:.1f} | {row['top5']:.1f} "
                      f"| {row['proposed']} | {row['precision']:.1f} |")
            print(f"|  | | calibration: training vocabulary threshold {config['calibration']['threshold']:.3f}, "
                  f"open vocabulary threshold {(config['open_calibration'] or {}).get('threshold', float('nan')):.3f} "
                  f"(out-of-fold recall {100 * (config['open_calibration'] or {}).get('oof_recall', float('nan')):.1f} %) "
                  f"| | | | | | |")
    pool = test + held
    expert = train(args.zoo, args.tree, args.layer, (args.method or ["mvprobe"])[0], args.out, None)
    print(f"\ntext search over the {len(pool)} test LoRAs ({expert.name})\n")
    print("| concepts | n | hit@5 | hit@10 | median rank |\n|---|---|---|---|---|")
    for kind, row in search([r.path for r in pool], [r.labels[0] for r in pool], expert, trained).items():
        print(f"| {kind} | {row['concepts']} | {row['hit@5']:.1f} | {row['hit@10']:.1f} | {row['median rank']:g} |")
    print("\nrouting of the test LoRAs rewritten to each target-module set (no card, no declared base)\n")
    print("| modules | recipe family (format) | LoRAs | routed by the base's modules | by the expert's layers "
          "| read | top-1 | proposed (right) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = routing([r.path for r in pool], [r.group for r in pool], [r.labels[0] for r in pool], expert,
                   args.out / "routing")
    for name, family, n, new, old, read, top1, proposed, right in rows:
        print(f"| {name} | {family} | {n} | {_share(new, n)} | {_share(old, n)} | {_share(read, n)} | {_share(top1, n)} "
              f"| {proposed} ({right}) |")

    if args.trained:
        print(f"\nthe first {args.trained} test LoRAs trained again on fewer modules (zoo trainer, same concept and seed)\n")
        print("| modules | LoRAs | routed | read | top-1 | proposed (right) |\n|---|---|---|---|---|---|")
        for name, n, routed, read, top1, proposed, right in trained_subsets(args.zoo, args.tree, test[:args.trained],
                                                                             expert, args.out / "trained"):
            print(f"| {name} | {n} | {_share(routed, n)} | {_share(read, n)} | {_share(top1, n)} | {proposed} ({right}) |")


if __name__ == "__main__":
    main()
