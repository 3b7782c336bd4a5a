"""`hf-probex demo`: the whole flow on a fresh machine, on local defaults, against known ground truth.

1. Build the tiny zoo (cached under `<cache>/zoos/tiny-seed0`; a rerun reuses it).
2. Hold out, per tree, the children whose cards are missing something (as undocumented Hub models
   are), and train one expert per tree on the others (cached under `<cache>/demo/experts/<tree>`,
   keyed by the held-out set; the default method of each task on what `sweep.select_inputs` chooses,
   calibrated out of fold).
3. Run `infer_card` on each held-out model folder and compare every proposed field with the truth in
   the zoo's plan; print the table and the suggested card of one of them.

The tiny zoo has a handful of models per tree: enough to show routing, exact evidence and abstention,
not to train experts that reach 95 % precision (they abstain, and say why). The bench zoo is where
expert accuracy is measured (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .experts.registry import ExpertRegistry
from .suggestions import CardSuggestion
from .zoo import Zoo
from .zoo.plan import ModelSpec

HELD_OUT_PER_TREE = 1


@dataclass
class DemoCase:
    """One held-out model: its plan entry, what infer_card said, and the true value of each field."""

    spec: ModelSpec
    suggestion: CardSuggestion
    truth: dict[str, object]

    def verdicts(self) -> dict[str, bool]:
        """field -> whether the proposed value is right (fields without a known truth are left out)."""
        out = {}
        for name, field in self.suggestion.fields.items():
            if name not in self.truth:
                continue
            value, true = field.value, self.truth[name]
            out[name] = set(value) <= set(true) if isinstance(value, list) else value == true
        return out


def held_out(zoo: Zoo, per_tree: int = HELD_OUT_PER_TREE) -> list[ModelSpec]:
    """The first `per_tree` finished children of each tree whose card lacks something, the least documented first."""
    order = {"none": 0, "no_base_model": 1, "no_data": 2}
    chosen = []
    for tree in zoo.trees:
        children = [s for s in zoo.specs(tree) if s.role == "child" and s.card in order and zoo.is_finished(s)]
        chosen += sorted(children, key=lambda s: order[s.card])[:per_tree]
    return chosen


def truth_of(zoo: Zoo, spec: ModelSpec) -> dict[str, object]:
    """The true card fields of a zoo model, from the zoo's plan."""
    from .zoo.trees import FAMILIES

    family = FAMILIES[zoo.trees[spec.tree]["family"]]
    parent = zoo.spec(spec.tree, spec.parent).repo_id if spec.parent else None
    truth: dict[str, object] = {"library_name": family.library_name, "pipeline_tag": family.pipeline_tag,
                                "trained_on": spec.concept["name"] if spec.concept else list(spec.labels)}
    if parent:
        truth |= {"base_model": parent, "base_model_relation": "adapter" if spec.concept else "finetune"}
    return truth


def demo_experts(zoo: Zoo, out: Path, exclude: set[str], progress: Callable[[str], None] = print) -> ExpertRegistry:
    """One calibrated expert per tree trained without the `exclude`d models (reused when already trained so)."""
    import tempfile

    from .experts.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from .experts.sweep import select_inputs

    registry = ExpertRegistry()
    for tree in zoo.trees:
        folder = out / tree
        stamp = folder / "demo.json"
        key = {"zoo": str(zoo.root.resolve()), "exclude": sorted(exclude)}
        if not (stamp.is_file() and json.loads(stamp.read_text()) == key):
            method = DEFAULT_METHODS[tree_task(zoo.root, tree)]
            with tempfile.TemporaryDirectory() as scratch:
                layers = select_inputs(zoo.root, tree, method, Path(scratch) / "select.jsonl", folds=2)
            data = load_layer_data(zoo.root, tree, layers, exclude=exclude)
            expert, _ = train_expert(data, method, folds=2)
            expert.save_pretrained(folder)
            stamp.write_text(json.dumps(key))
            progress(f"trained the {tree} expert ({method}) on {len(data.y)} models ({data.layer})")
        registry.add(folder)
    return registry


def run_demo(cache: Path, progress: Callable[[str], None] = print) -> list[DemoCase]:
    """Build (or reuse) the tiny zoo and the experts, and infer the held-out models' cards."""
    from .infer import infer_card
    from .zoo import build_zoo

    zoo_dir = cache / "zoos" / "tiny-seed0"
    zoo = build_zoo(zoo_dir, "tiny", seed=0, progress=True) if not _complete(zoo_dir) else Zoo.open(zoo_dir)
    held = held_out(zoo)
    registry = demo_experts(zoo, cache / "demo" / "experts", {s.repo_id for s in held}, progress)
    return [DemoCase(spec, infer_card(zoo.model_dir(spec.tree, spec.name), experts=registry), truth_of(zoo, spec))
            for spec in held]


def _complete(zoo_dir: Path) -> bool:
    from .zoo.store import ZooError

    try:
        zoo = Zoo.open(zoo_dir)
    except ZooError:  # no zoo there yet (or a broken one: build_zoo resumes or explains)
        return False
    return all(zoo.is_finished(s) for s in zoo.specs())


def format_demo(cases: list[DemoCase]) -> str:
    """The inferred-vs-true table of every held-out model, precision of what was proposed, and one suggested card."""
    lines = [f"{'model':<38} {'field':<20} {'inferred (confidence)':<46} {'true':<30} ok"]
    right = proposed = 0
    for case in cases:
        verdicts = case.verdicts()
        for name, field in case.suggestion.fields.items():
            value = ", ".join(field.value) if isinstance(field.value, list) else str(field.value)
            true = case.truth.get(name, "-")
            true = ", ".join(true) if isinstance(true, list) else str(true)
            mark = {True: "yes", False: "NO"}.get(verdicts.get(name), "-")
            lines.append(f"{case.spec.repo_id:<38} {name:<20} {_clip(value, 36) + f' ({field.confidence:.2f})':<46} "
                         f"{_clip(true, 30):<30} {mark}")
            if field.missing and name in verdicts:
                proposed += 1
                right += verdicts[name]
        for name, why in case.suggestion.abstained.items():
            lines.append(f"{case.spec.repo_id:<38} {name:<20} {'abstained: ' + _clip(why, 60)}")
    lines.append(f"\nfields the cards lack that hf_probex proposed: {proposed}, right: {right}"
                 + (f" ({100 * right / proposed:.0f} %)" if proposed else ""))
    shown = next((c for c in cases if c.suggestion.diff), None)
    if shown:
        lines += [f"\nsuggested README.md change for {shown.spec.repo_id}:\n", shown.suggestion.diff]
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
