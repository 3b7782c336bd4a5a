"""Experts from the Hub itself: train on a tree table's documented members, propose for the undocumented ones.

`train_from_table` is `hf-probex train --from-table`: the documented members of a published tree table
(`hf_probex.tableset`: labels their owners wrote, never a weights file's metadata) become the weight set, and the
expert is made exactly as `hf-probex train` makes one from a zoo (`harness.train_expert`: the layer chosen by
the tuned ridge on the training members, cross-validated, calibrated out of fold, leave-one-recipe-family-out
where the table knows the families; open vocabulary and routing as usual). A held-out share of the documented
members is never trained or calibrated on: `measure_proposals` scores the finished expert on them (the
`held_out_*` metrics), as it scores any expert on any models whose truth is known. The expert's config and
card record the table, its commit and the counts (`Expert.trained_from`).

`propose_for_undocumented` then asks `infer_card`, with that expert, about each undocumented member at the
commit the table read: what `hf-probex infer` (and the bot) would propose for it.

This module reads published tables (`tableset`) and asks `infer_card`, so it sits above the experts and inference;
it was `hf_probex.experts.from_table`, a name that still imports it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .experts.hub import Expert
from .experts.training.fit import TrainConfig
from .tableset import TableWeightSet, open_table_weight_set
from .text import DEFAULT_TEXT_ENCODER
from .weightsets import WeightRecord

__all__ = ["Proposal", "TableTraining", "measure_proposals", "propose_for_undocumented", "train_from_table"]


@dataclass
class TableTraining:
    """What `train_from_table` made: the expert (saved in `out`), its weight set, CV report and held-out scores."""

    expert: Expert
    weights: TableWeightSet
    method: str
    layer: str | list[str]
    report: dict | None
    held_out: dict = field(default_factory=dict)  # `measure_proposals` on the held-out documented members
    out: Path | None = None


@dataclass
class Proposal:
    """What the expert proposes for one undocumented member (`trained_on`), or why it abstains."""

    repo_id: str
    sha: str | None
    value: str | list[str] | None  # None: abstained
    confidence: float | None
    reason: str  # the evidence, or why it abstained

    def line(self) -> str:
        """One line for people."""
        if self.value is None:
            return f"{self.repo_id}: abstains ({self.reason})"
        shown = ", ".join(self.value) if isinstance(self.value, list) else self.value
        return f"{self.repo_id}: trained_on {shown} (confidence {self.confidence:.2f})"


def measure_proposals(expert: Expert, records: Sequence[WeightRecord]) -> dict:
    """Score `expert` on models whose truth is known (`records`' labels), reading each as `infer_card` does.

    Returns the models, `top1` (% whose best-scored label is one of theirs), the decisions it proposes at its
    calibrated threshold (`proposed`, `right`, `precision` and `recall` in %, `models_with_proposal`) and, for class
    subsets, `label_accuracy` (% of (model, class) decisions right at score 0.5). Percentages are NaN where undefined.
    """
    from .experts.calibration.head_rows import read_head
    from .experts.methods.shaping import layer_reader

    top1, proposed, right, truths, with_proposal, decisions = [], 0, 0, 0, 0, []
    vocabulary = expert.vocabulary
    for record in records:
        adapter, source = layer_reader(record.path, record.kind, record.base)  # a peft adapter: merged onto its base
        matrix = adapter.read_input(source, [(n, tuple(s)) for n, s in expert.config["inputs"]],
                                    expert.config["conv_layout"], allow_missing=expert.fused)
        head = read_head(adapter, source, expert.row_reader.layer) if expert.row_reader else None
        truth = set(record.labels)
        truths += len(truth)
        if expert.calibration:
            predictions, confidence = expert.confidences(matrix, heads=[head])
            threshold = expert.calibration_for(head)["threshold"]
        else:
            predictions, confidence, threshold = expert.predict(matrix), None, np.inf
        scores = predictions[0]
        top1.append(vocabulary[int(np.argmax(scores))] in truth)
        if expert.task == "multilabel":
            chosen = [v for v, c in zip(vocabulary, confidence[0]) if c >= threshold] if confidence is not None else []
            decisions += [(s >= 0.5) == (v in truth) for v, s in zip(vocabulary, scores)]
        else:
            best = vocabulary[int(np.argmax(scores))]
            chosen = [best] if confidence is not None and confidence[0] >= threshold else []
        proposed += len(chosen)
        right += len(truth & set(chosen))
        with_proposal += bool(chosen)

    def pct(a: float, b: float) -> float:
        return 100.0 * a / b if b else float("nan")

    out = {"models": len(records), "top1": pct(sum(top1), len(top1)), "proposed": proposed, "right": right,
           "precision": pct(right, proposed), "recall": pct(right, truths), "models_with_proposal": with_proposal}
    if expert.task == "multilabel":
        out["label_accuracy"] = pct(sum(decisions), len(decisions))
    return out


def train_from_table(table: str, tree: str, out: str | Path, *, layer: str | list[str] = "auto", method: str = "auto",
                     revision: str | None = None, token: str | bool | None = None, sources: Iterable[str] | None = None,
                     held_out: float = 0.2, groups: Mapping[str, str] | None = None, exclude: Collection[str] = (),
                     folds: int = 5, seed: int = 0,
                     hparams: dict | None = None, config: TrainConfig | None = None,
                     text_encoder: str = DEFAULT_TEXT_ENCODER, prompt: str = "{}", workers: int = 4,
                     progress: Callable[[str], None] | None = None) -> TableTraining:
    """Train an expert for tree `tree` on the documented members of the tree table `table` and save it in `out`.

    Args:
        table: the dataset repo of a tree table (`hf-probex scan ROOT --to REPO`).
        tree: the tree's name in the expert (its registry and Hub tag, `hf-probex-tree-<tree>`).
        out: the folder to save the expert in (config.json, model.safetensors, README.md).
        layer: a layer, a list of layers (stacked), or "auto": chosen by the tuned ridge on the training members.
        method: an expert method, or "auto": the benchmark's best for the tree's task (`harness.DEFAULT_METHODS`).
        revision: the table's branch, tag or commit (default main).
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none). Never logged.
        sources, held_out, groups, exclude: which label sources document a member, the share of documented members
            held out to measure the expert, recipe families known from elsewhere, repo ids left out entirely
            (`tableset.open_table_weight_set`).
        folds, seed, hparams, config: cross-validation and training, as `hf-probex train`; fewer folds (one per
            model) where fewer members than `folds` are documented, said through `progress`.
        text_encoder, prompt: zero-shot (LoRA) trees: how concepts are embedded.
        workers: downloads at once.
        progress: called with a line per step.

    Raises:
        RepoNotFoundError: no tree table at `table`.
        NoDocumentedMembersError: no documented member to train on.
        ValueError: a bad layer or method, or too few members to cross-validate.
        ProbexError: the Hub refused or could not be reached.
    """
    from .experts.training.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from .experts.training.sweep import select_inputs

    say = progress or (lambda line: None)
    weights = open_table_weight_set(table, tree, revision=revision, token=token, sources=sources, held_out=held_out,
                                    seed=seed, groups=groups, exclude=exclude, workers=workers)
    say(weights.summary())
    trained = weights.for_tree(tree, ("train",))
    if len(trained) < 2:
        raise ValueError(f"{table}: {len(trained)} documented member(s) to train on, too few to cross-validate: "
                         "document more members (their cards), or lower --held-out")
    if len(trained) < folds:  # a young tree: as many folds as it allows, rather than no expert at all
        say(f"{len(trained)} documented members to train on: cross-validating with {len(trained)} folds instead of "
            f"{folds}")
        folds = len(trained)
    method = DEFAULT_METHODS[tree_task(weights, tree)] if method == "auto" else method
    if layer == "auto":
        with tempfile.TemporaryDirectory() as folder:
            layer = select_inputs(weights, tree, method, Path(folder) / "select.jsonl", splits=("train",),
                                  folds=folds, seed=seed)
        say(f"layer auto: {' + '.join(layer) if isinstance(layer, list) else layer}")
    data = load_layer_data(weights, tree, layer, splits=("train",), text_encoder=text_encoder, prompt=prompt)
    expert, report = train_expert(data, method, folds=folds, seed=seed, hparams=hparams, config=config or TrainConfig())
    test = weights.for_tree(tree, ("test",))
    measured = measure_proposals(expert, test) if test else {}
    expert.metrics.update({f"held_out_{name}": value for name, value in measured.items()})
    expert.set_trained_from({
        "table": table, "commit": weights.commit, "root": weights.root, "documented": weights.documented,
        "trained": len(trained), "held_out": len(test), "undocumented": len(weights.undocumented),
        "sources": list(weights.sources), "groups_known": data.groups is not None,
    })
    Path(out).mkdir(parents=True, exist_ok=True)
    expert.save_pretrained(out)
    return TableTraining(expert, weights, method, layer, report, measured, Path(out))


def propose_for_undocumented(expert: str | Path, weights: TableWeightSet, *, token: str | bool | None = None,
                             min_confidence: float | None = None) -> list[Proposal]:
    """What `infer_card`, asking only `expert` (a folder or Hub repo id), proposes as `trained_on` for each undocumented
    member of `weights`, read at the commit its table row was read at; a member that cannot be read abstains."""
    from .errors import ProbexError
    from .infer import infer_card

    proposals = []
    for row in weights.undocumented:
        try:
            result = infer_card(row.repo_id, revision=row.sha, token=token, experts=[str(expert)], hub_only=True,
                                min_confidence=min_confidence)
        except ProbexError as err:
            proposals.append(Proposal(row.repo_id, row.sha, None, None, str(err)))
            continue
        found = result.fields.get("trained_on")
        if found is not None and found.source == "expert":
            proposals.append(Proposal(row.repo_id, row.sha, found.value, found.confidence, found.evidence))
        else:
            why = result.abstained.get("trained_on") or (found.evidence if found else "no proposal")
            proposals.append(Proposal(row.repo_id, row.sha, None, None, why))
    return proposals
