"""How well a tree's classification-head rows name their class on recipe families the reader never saw.

For each recipe family F of a zoo tree, the row reader (`hf_probex.experts.calibration.head_rows.RowReader`) is fitted
on the heads of every other family and reads the heads of F: a row is right when its own most probable
class is the row's true class (`row top-1`), and when the assignment of the head's rows to distinct
classes gives it its true class (`assigned`). Printed per family, for each inverse regularisation C.

    python scripts/bench_head_rows.py ZOO --tree resnet [--c 1,10,100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--c", default="1", help="comma-separated inverse regularisations (default: 1)")
    args = parser.parse_args()

    from hf_probex.experts.calibration.head_rows import RowReader, find_head_layer, read_heads
    from hf_probex.experts.methods.shaping import layer_shapes
    from hf_probex.weightsets import open_weight_set

    weights = open_weight_set(args.zoo)
    records = weights.for_tree(args.tree)
    vocabulary = weights.vocabularies[args.tree]
    found = find_head_layer(records, [layer_shapes(r.path, r.kind, r.base) for r in records])
    if found is None:
        raise SystemExit(f"the {args.tree} tree has no head whose rows are its models' classes in label order")
    heads = read_heads(records, found[0])
    families = sorted({r.group for r in records})
    print(f"### {args.tree}: head `{found[0]}` (width {found[1]}), {len(records)} models, {len(vocabulary)} classes "
          f"(chance {100 / len(vocabulary):.1f} %)\n")
    print("| C | held out | rows | row top-1 % | assigned % |\n|---|---|---|---|---|")
    for c in [float(v) for v in args.c.split(",")]:
        start, total = time.perf_counter(), np.zeros(3)
        for family in families:
            train = [i for i, r in enumerate(records) if r.group != family]
            reader = RowReader.fit(found[0], [heads[i] for i in train], [records[i].labels for i in train], vocabulary, c=c)
            counts = np.zeros(3)
            for record, head in zip(records, heads):
                if record.group != family or not reader.can_read(head):
                    continue
                truth = np.array([vocabulary.index(label) for label in record.labels])
                probs, assigned = reader.assign(head)
                counts += [len(truth), (probs.argmax(1) == truth).sum(), (assigned == truth).sum()]
            total += counts
            print(f"| {c:g} | {family} | {int(counts[0])} | {100 * counts[1] / counts[0]:.1f} | {100 * counts[2] / counts[0]:.1f} |")
        print(f"| {c:g} | **all** | {int(total[0])} | {100 * total[1] / total[0]:.1f} | {100 * total[2] / total[0]:.1f} |"
              f"  <!-- {time.perf_counter() - start:.0f} s -->")


if __name__ == "__main__":
    main()
