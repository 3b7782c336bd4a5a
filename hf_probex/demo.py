"""`hf-probex demo`: the core capability on a fresh machine: card fields read from the weights alone, beside the truth.

1. Build (or reuse) the `small` zoo: one ResNet tree whose 144 children come from five recipe families
   (cached under `<cache>/zoos/small-seed0`; about a minute on 2 cores), and the `text-small` zoo: the real
   all-MiniLM-L6-v2 and 26 fine-tunes of it on fortunes categories, saved as users save them (transformers
   classifiers, peft adapters, sentence-transformers and SetFit models; about a minute and a half).
2. Train the tree's expert as `hf-probex train --splits train,val,val_holdout` does: layers chosen and the threshold
   calibrated leave-one-recipe-family-out, on the train and val splits only, checked on val_holdout (cached under
   `<cache>/demo/experts/<tree>`, keyed by the models it was trained on).
3. Take the test split's children, which no choice saw, and make them undocumented as most Hub models
   are: a copy without README.md and with config.json's class names replaced by LABEL_i. Run `infer_card`
   on each copy and compare every field with the truth in the zoo's plan: `base_model` comes from routing
   by weights, `trained_on` from the expert, or it abstains below its calibrated threshold. A text classifier is
   also run on the example texts of its tree's categories the expert ships (`Expert.examples`), its head rows
   named (`head_naming`).
4. Name each held-out model's parent among the tree's finished children, as `hf-probex lineage` does given a tree
   table of them (`members_lineage`), beside the truth.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .experts.calibration.routes import DIRECT_SHARE_CREDIBILITY
from .experts.registry import ExpertRegistry
from .suggestions import CardSuggestion
from .zoo import Zoo
from .zoo.plan import ModelSpec

DEMO_PRESETS = ("small", "text-small")
#: val_holdout: the models of classes outside the vocabulary an expert's threshold is checked on (never trained on)
TRAINING_SPLITS = ("train", "val", "val_holdout")
HELD_OUT_SPLIT = "test"


@dataclass
class DemoCase:
    """One held-out model: its plan entry, what infer_card said, and the true value of each field."""

    spec: ModelSpec
    suggestion: CardSuggestion
    truth: dict[str, object]
    parent: tuple[str, float] | None = None  # the parent named among the tree's members (`lineage`), its confidence

    def verdicts(self) -> dict[str, bool]:
        """field -> whether the proposed value is right (fields without a known truth are left out)."""
        out = {}
        for name, field in self.suggestion.fields.items():
            if name not in self.truth:
                continue
            value, true = field.value, self.truth[name]
            out[name] = set(value) <= set(true) if isinstance(value, list) else value == true
        return out


def held_out(zoo: Zoo, split: str = HELD_OUT_SPLIT) -> list[ModelSpec]:
    """The finished children of `split` (default: test, which neither layer choice nor training sees)."""
    return [s for s in zoo.specs() if s.role == "child" and s.split == split and zoo.is_finished(s)]


def truth_of(zoo: Zoo, spec: ModelSpec) -> dict[str, object]:
    """The true card fields of a zoo model, from the zoo's plan."""
    from .zoo.trees import FAMILIES

    family = FAMILIES[zoo.trees[spec.tree]["family"]]
    parent = zoo.spec(spec.tree, spec.parent).repo_id if spec.parent else None
    truth: dict[str, object] = {"library_name": family.library_of(spec), "pipeline_tag": family.pipeline_of(spec),
                                "trained_on": spec.concept["name"] if spec.concept else list(spec.labels)}
    if parent:
        adapter = spec.concept or spec.hparams.get("layout") == "peft-adapter"
        truth |= {"base_model": parent, "base_model_relation": "adapter" if adapter else "finetune"}
    return truth


def undocumented_copy(zoo: Zoo, spec: ModelSpec, out: Path) -> Path:
    """A copy of a zoo model as an undocumented model on this machine is (`strip_documentation`), a peft adapter's
    base its parent's folder (as peft writes a base loaded from disk; the published one names its Hub id, which
    cannot be reached offline)."""
    return strip_documentation(zoo.model_dir(spec.tree, spec.name), out,
                               base=zoo.model_dir(spec.tree, spec.parent) if spec.parent else None)


def strip_documentation(folder: Path, out: Path, base: Path | None = None) -> Path:
    """A copy of a model folder with nothing that names what it learnt: no README.md, config.json's class names
    LABEL_i, SetFit's labels none; a peft adapter's base `base`'s folder when given."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("README.md"))
    config_path = out / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        if "id2label" in config:
            names = [f"LABEL_{i}" for i in range(len(config["id2label"]))]
            config |= {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
            config_path.write_text(json.dumps(config, indent=2))
    setfit_path = out / "config_setfit.json"
    if setfit_path.is_file():
        setfit_path.write_text(json.dumps({**json.loads(setfit_path.read_text()), "labels": None}, indent=2))
    adapter_path = out / "adapter_config.json"
    if adapter_path.is_file() and base is not None:
        adapter_path.write_text(json.dumps({**json.loads(adapter_path.read_text()),
                                            "base_model_name_or_path": str(Path(base).resolve())}, indent=2))
    return out


def demo_experts(zoo: Zoo, out: Path, splits: tuple[str, ...] = TRAINING_SPLITS,
                 progress: Callable[[str], None] = print) -> ExpertRegistry:
    """One calibrated expert per tree, its layers chosen and trained on the models of `splits` only, as
    `hf-probex train --splits train,val,val_holdout` does (reused when already trained so)."""
    import tempfile

    from .experts.training.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from .experts.training.sweep import select_inputs

    registry = ExpertRegistry()
    for tree in zoo.trees:
        folder = out / tree
        stamp = folder / "demo.json"
        key = {"zoo": str(zoo.root.resolve()), "splits": list(splits), "format": zoo.plan["format"],
               "direct_share_credibility": DIRECT_SHARE_CREDIBILITY}  # an expert fitted by an older rule is refitted
        if not (stamp.is_file() and json.loads(stamp.read_text()) == key):
            method = DEFAULT_METHODS[tree_task(zoo.root, tree)]
            with tempfile.TemporaryDirectory() as scratch:
                layers = select_inputs(zoo.root, tree, method, Path(scratch) / "select.jsonl", folds=2, splits=splits)
            data = load_layer_data(zoo.root, tree, layers, splits=splits)
            expert, _ = train_expert(data, method, folds=2)
            expert.save_pretrained(folder)
            stamp.write_text(json.dumps(key))
            progress(f"trained the {tree} expert ({method}) on {len(data.y)} models ({data.layer})")
        registry.add(folder)
    return registry


def run_demo(cache: Path, progress: Callable[[str], None] = print) -> list[DemoCase]:
    """Build (or reuse) the demo's zoos and their experts, and infer the cards of the undocumented held-out models."""
    from .infer import infer_card
    from .zoo import build_zoo

    cases = []
    for preset in DEMO_PRESETS:
        zoo_dir = cache / "zoos" / f"{preset}-seed0"
        zoo = build_zoo(zoo_dir, preset, seed=0, progress=True) if not _complete(zoo_dir) else Zoo.open(zoo_dir)
        registry = demo_experts(zoo, cache / "demo" / "experts" / preset, progress=progress)
        copies = cache / "demo" / "undocumented" / preset
        parents = {tree: members_lineage(zoo, tree, registry) for tree in zoo.trees}
        for spec in held_out(zoo):
            copy = undocumented_copy(zoo, spec, copies / spec.tree / spec.name)
            result = infer_card(copy, experts=registry)  # a text expert runs classifiers on its own examples
            cases.append(DemoCase(spec, result, truth_of(zoo, spec), parents[spec.tree].get(spec.repo_id)))
    return cases


def members_lineage(zoo: Zoo, tree: str, registry: ExpertRegistry) -> dict[str, tuple[str, float]]:
    """Each finished child of `tree` -> (its parent's repo id, confidence) as `hf-probex lineage` names it with every
    child as a member (a tree table's rows), by the calibration the tree's expert carries; {} without one."""
    from .errors import ProbexError
    from .lineage import lineage_calibration, recover_lineage

    root = zoo.spec(tree, "root")
    try:
        calibration = lineage_calibration(registry, root.repo_id)
    except ProbexError:
        return {}
    children = {str(zoo.model_dir(tree, s.name)): s.repo_id for s in zoo.specs(tree)
                if s.role == "child" and zoo.is_finished(s)}
    edges = recover_lineage(zoo.model_dir(tree, "root"), list(children), calibration, root_id=root.repo_id)
    return {children[e.child]: (children.get(e.parent, e.parent), e.confidence) for e in edges}


def _complete(zoo_dir: Path) -> bool:
    from .zoo.store import ZooError

    try:
        zoo = Zoo.open(zoo_dir)
    except ZooError:  # no zoo there yet (or a broken one: build_zoo resumes or explains)
        return False
    return all(zoo.is_finished(s) for s in zoo.specs())


def _shown(value: object) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


#: How the demo names each tree it shows.
TREE_TITLES = {"resnet": "ResNet tree (small zoo: a synthetic root trained on 28x28 digits)",
               "text": "all-MiniLM-L6-v2 tree (text-small: the real pretrained root, fine-tuned on fortunes categories)"}


def format_demo(cases: list[DemoCase]) -> str:
    """Every held-out model's base_model and trained_on as read from its weights, beside the truth, tree by tree;
    the share right; and one suggested card."""
    lines: list[str] = []
    for tree in dict.fromkeys(c.spec.tree for c in cases):
        lines += ["", TREE_TITLES.get(tree, f"{tree} tree"), ""]
        lines += _tree_lines([c for c in cases if c.spec.tree == tree])
    shown = next((c for c in cases if c.suggestion.diff and "trained_on" in c.suggestion.fields),
                 next((c for c in cases if c.suggestion.diff), None))
    if shown:
        lines += [f"\nsuggested README.md for {_name(shown)} (it had none):\n", shown.suggestion.diff]
    return "\n".join(lines).lstrip("\n")


def _name(case: DemoCase) -> str:
    return case.spec.repo_id.split("/")[-1]


def _tree_lines(cases: list[DemoCase]) -> list[str]:
    lines = [f"{'model (no card, LABEL_i names)':<26} {'recipe':<21} {'field':<11} {'from the weights (confidence)':<44} ok"]
    counts = {"base_model": [0, 0], "trained_on": [0, 0]}
    grandchildren = 0  # base_model from weights names the tree's root: right tree, not the parent
    named = [0, 0, 0, 0]  # parents named among the members: models, right, later generations, right
    for case in cases:
        if case.parent:
            right = case.parent[0] == case.truth.get("base_model")
            named = [named[0] + 1, named[1] + right, named[2] + (case.spec.generation > 1),
                     named[3] + (right and case.spec.generation > 1)]
            lines.append(f"{_name(case):<26} {case.spec.recipe:<21} {'parent':<11} "
                         f"{_clip(case.parent[0].split('/')[-1], 36) + f' ({case.parent[1]:.2f})':<44} "
                         f"{'yes' if right else 'NO'}")
        verdicts = case.verdicts()
        for name in ("base_model", "trained_on"):
            field = case.suggestion.fields.get(name)
            if field is None:
                why = case.suggestion.abstained.get(name, "nothing to say")
                lines.append(f"{_name(case):<26} {case.spec.recipe:<21} {name:<11} {'abstained: ' + _clip(why, 50)}")
                continue
            in_tree = name == "base_model" and case.spec.generation > 1 and field.value == case.suggestion.tree
            mark = "yes" if verdicts.get(name) else ("tree" if in_tree else "NO")
            grandchildren += in_tree and not verdicts.get(name)
            counts[name][0] += 1
            counts[name][1] += bool(verdicts.get(name))
            lines.append(f"{_name(case):<26} {case.spec.recipe:<21} {name:<11} "
                         f"{_clip(_shown(field.value), 36) + f' ({field.confidence:.2f})':<44} {mark}")
            if not verdicts.get(name):
                lines.append(f"{'':<26} {'':<21} {'':<11} true: {_clip(_shown(case.truth.get(name, '-')), 60)}")
    lines.append("")
    for name, (proposed, right) in counts.items():
        share = f" ({100 * right / proposed:.0f} %)" if proposed else ""
        lines.append(f"{name}: {proposed} of {len(cases)} held-out models answered from their weights, {right} right{share}"
                     + (f"; {grandchildren} more name their tree's root, a grandchild's grandparent (weights tell the "
                        f"tree, not the parent)" if name == "base_model" and grandchildren else ""))
    if named[0]:
        lines.append(f"parent, named among the tree's members (hf-probex lineage): {named[1]} of {named[0]} right "
                     f"({named[3]} of {named[2]} later generations)")
    trained = [c for c in cases if "trained_on" in c.suggestion.fields]
    if trained:
        classes = sum(len(c.suggestion.fields["trained_on"].value) for c in trained)
        right = sum(len(set(c.suggestion.fields["trained_on"].value) & set(c.truth["trained_on"])) for c in trained)
        lines.append(f"trained_on classes proposed: {classes}, in the model's true classes: {right}")
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
