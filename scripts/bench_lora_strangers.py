"""Zero-shot naming of a stranger's LoRAs (scripts/make_lora_strangers.py), read by infer_card as a user would.

The expert was trained on the zoo's LoRAs (`hf-probex train --splits train,val,val_holdout`); the strangers were made
by another training loop (a recipe family it never saw), of concepts it trained on and of held-out concepts it never
saw. Printed:

1. Proposals at the calibrated threshold (the default vocabulary), for the strangers and the zoo's own unseen test
   LoRAs, by concepts trained on / held out: LoRAs, top-1, proposed, right, precision, recall (proposed right of all).
2. "None of these": candidate lists that lack the truth, and the proposals made anyway (each one wrong), beside a
   list that holds it: the held-out concepts as candidates for LoRAs of trained concepts; the held-out concepts but
   the LoRA's own for held-out LoRAs; the held-out concepts for held-out LoRAs (the truth listed: still named?).
3. Text search over a pool mixing the zoo's test LoRAs and the strangers: each concept's name as the query, hit@5
   (a LoRA of that concept among the first five) and the median rank of the first, for concepts trained on and held
   out, ranked by the raw cosine and as `hf-probex search` ranks (`experts.vocabulary.query_fit`).

    python scripts/bench_lora_strangers.py STRANGERS --expert DIR --zoo ZOO [--json-out OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np


def _lora_file(folder: Path) -> Path:
    return sorted(folder.glob("*.safetensors"))[0]


def pool(strangers: Path, zoo: Path, tree: str) -> list[dict]:
    """The strangers (manifest.json) and the zoo's test / test_holdout LoRAs: folder, file, truth, held out or not."""
    from hf_probex.weightsets import open_weight_set

    manifest = json.loads((strangers / "manifest.json").read_text())
    rows = [{"source": "stranger", "folder": strangers / name, "truth": truth["concept_name"],
             "held_out": bool(truth["held_out"]), "format": truth["key_format"]} for name, truth in sorted(manifest.items())]
    for split, held_out in (("test", False), ("test_holdout", True)):
        for record in open_weight_set(zoo).for_tree(tree, (split,)):
            rows.append({"source": "zoo test", "folder": Path(record.path), "truth": record.labels[0],
                         "held_out": held_out, "format": record.group})
    for row in rows:
        row["file"] = _lora_file(row["folder"])
    return rows


def read(rows: list[dict], expert: Path, candidates: list[str] | None = None, key: str = "default",
         without_truth: bool = False) -> None:
    """infer_card on each row's folder against `candidates` (None: the default vocabulary; `without_truth`: less the
    row's own concept): the top concept and the proposal (or None) go into row[key]."""
    from hf_probex.infer import infer_card

    for row in rows:
        listed = [c for c in candidates if c != row["truth"]] if without_truth else candidates
        result = infer_card(row["folder"], experts=[expert], candidates=listed)
        ranked = list(result.details.get("trained_on", {}).get("cosine_by_concept", {}))
        field = result.fields.get("trained_on")
        row[key] = {"top": ranked[0] if ranked else None, "proposed": None if field is None else field.value,
                    "why": result.abstained.get("trained_on", "")}


def _naming_row(rows: list[dict], key: str) -> dict:
    n = len(rows)
    top1 = sum(r[key]["top"] == r["truth"] for r in rows)
    proposed = [r for r in rows if r[key]["proposed"] is not None]
    right = sum(r[key]["proposed"] == r["truth"] for r in proposed)
    return {"n": n, "top1": 100 * top1 / n if n else float("nan"), "proposed": len(proposed), "right": right,
            "precision": 100 * right / len(proposed) if proposed else float("nan"),
            "recall": 100 * right / n if n else float("nan")}


def search_ranks(rows: list[dict], expert_dir: Path, relative: bool) -> dict[str, list[int]]:
    """Each concept of the pool as a query: the rank of its first LoRA, by raw cosine or by `query_fit`."""
    from hf_probex.experts.registry import load_expert
    from hf_probex.experts.vocabulary import query_fit
    from hf_probex.text import encode_texts

    expert = load_expert(str(expert_dir))
    concepts = sorted({r["truth"] for r in rows})
    text = encode_texts([expert.config["prompt"].format(c) for c in concepts], expert.config["text_encoder"])
    vectors = expert.search_vectors(expert.read_files([r["file"] for r in rows]))
    held = {r["truth"] for r in rows if r["held_out"]}
    ranks: dict[str, list[int]] = {"trained on": [], "held out": []}
    for j, concept in enumerate(concepts):
        query = expert.search_vectors(text=text[j:j + 1])[0]
        scores = query_fit(expert, vectors, text[j]) if relative else vectors @ query
        order = np.argsort(-scores, kind="stable")
        rank = 1 + min(i for i, k in enumerate(order) if rows[k]["truth"] == concept)
        ranks["held out" if concept in held else "trained on"].append(rank)
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strangers", type=Path, help="a folder of scripts/make_lora_strangers.py (manifest.json)")
    parser.add_argument("--expert", type=Path, required=True, help="the tree's zero-shot expert (a folder)")
    parser.add_argument("--zoo", type=Path, required=True, help="the zoo the expert and the strangers come from")
    parser.add_argument("--tree", default="sd", help="the LoRA tree (default: sd)")
    parser.add_argument("--json-out", type=Path, help="also write every LoRA's reads here")
    args = parser.parse_args()
    if not (args.strangers / "manifest.json").is_file():
        parser.error(f"{args.strangers} has no manifest.json: make the LoRAs with scripts/make_lora_strangers.py")

    rows = pool(args.strangers, args.zoo, args.tree)
    held_names = sorted({r["truth"] for r in rows if r["held_out"]})
    read(rows, args.expert)
    print(f"expert {args.expert}; {sum(r['source'] == 'stranger' for r in rows)} stranger LoRAs, "
          f"{sum(r['source'] == 'zoo test' for r in rows)} zoo test LoRAs; {len(held_names)} held-out concepts\n")
    print("| LoRAs | concepts | n | top-1 | proposed | right | precision | recall |\n|---|---|---|---|---|---|---|---|")
    for source in ("stranger", "zoo test"):
        for held, what in ((False, "trained on"), (True, "held out")):
            part = [r for r in rows if r["source"] == source and r["held_out"] == held]
            m = _naming_row(part, "default")
            print(f"| {source} | {what} | {m['n']} | {m['top1']:.1f} | {m['proposed']} | {m['right']} | "
                  f"{m['precision']:.1f} | {m['recall']:.1f} |")

    strangers = [r for r in rows if r["source"] == "stranger"]
    trained, held = [r for r in strangers if not r["held_out"]], [r for r in strangers if r["held_out"]]
    read(trained, args.expert, held_names, "held-out candidates")
    read(held, args.expert, held_names, "without truth", without_truth=True)
    read(held, args.expert, held_names, "held-out candidates")
    print(f"\nstrangers against candidate lists (the {len(held_names)} held-out concepts)\n")
    print("| LoRAs | candidates | truth listed | n | top-1 | proposed | right | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for part, key, what, listed in ((trained, "held-out candidates", "the held-out concepts", "no"),
                                    (held, "without truth", "the held-out concepts but its own", "no"),
                                    (held, "held-out candidates", "the held-out concepts", "yes")):
        m = _naming_row(part, key)
        print(f"| {'trained on' if part is trained else 'held out'} | {what} | {listed} | {m['n']} | {m['top1']:.1f} | "
              f"{m['proposed']} | {m['right']} | {m['precision']:.1f} | {m['recall']:.1f} |")

    print(f"\ntext search over {len(rows)} LoRAs (zoo test + strangers)\n")
    print("| ranked by | concepts | n | hit@5 | median rank |\n|---|---|---|---|---|")
    for relative, how in ((False, "cosine"), (True, "fit over the known concepts (hf-probex search)")):
        for what, ranks in search_ranks(rows, args.expert, relative).items():
            print(f"| {how} | {what} | {len(ranks)} | {100 * np.mean([r <= 5 for r in ranks]):.1f} | "
                  f"{statistics.median(ranks):g} |")
    if args.json_out:
        args.json_out.write_text(json.dumps([{k: (str(v) if isinstance(v, Path) else v) for k, v in r.items()}
                                             for r in rows], indent=1))


if __name__ == "__main__":
    main()
