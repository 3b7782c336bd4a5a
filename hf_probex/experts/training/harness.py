"""The cross-validation harness: any method on any (tree, layer), scored with references and standard errors.

`load_layer_data` reads one layer of one tree into matrices and targets. `fit_expert` trains one
expert on given indices (root centring fitted on them; for Adam-trained methods a share of them is
kept aside as validation models for model selection). `cross_validate` runs k folds over the
in-distribution models and reports every metric as mean +- standard error over folds, next to the
label-blind references of `evaluation.references` and the same method trained on shuffled labels.
`cross_validate_combined` does the same for several layers of one tree, one expert per layer, their
predictions averaged (late fusion: a classification head read as a set next to a hidden layer).

LoRA trees are zero-shot: each fold's expert ranks all in-distribution concepts (top-1/top-5), and
also the held-out concepts (splits ending in `_holdout`, never trained on) for the held-out models.
The expert `train_expert` publishes also ranks an open vocabulary by default (`open_vocabulary`: the
training and held-out concepts), calibrated on every fold's decisions against it, held-out LoRAs included
(`open_calibration`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...shaping import centring, readable, stack_inputs
from ...sketch import count_sketch, sketch_kind
from ...text import DEFAULT_TEXT_ENCODER
from ...weightsets import WeightRecord, WeightSet, open_weight_set
from .evaluation import concept_metrics, kfold, label_matrix, mean_se, multilabel_metrics, references, summarise
from ..hub import Expert
from ..methods.models import METHODS
from ..methods.shaping import layer_shapes, load_matrices, root_matrix
from .fit import TrainConfig, train

if TYPE_CHECKING:
    from ..calibration.lineage import LineageCalibration


#: The default expert of each task, from the benchmark (docs/benchmarks.md): for class subsets, ridge on
#: stacked layers beat every method on every tree; for zero-shot LoRA concepts, MVProbe did.
DEFAULT_METHODS = {"multilabel": "ridge", "zeroshot": "mvprobe"}
#: What the default experts read (hf_probex.experts.methods.features): for class subsets the change's Gram, which
#: keeps the signal across recipe families that the raw change loses (docs/experts.md, "Features").
DEFAULT_FEATURES = {"multilabel": "gram", "zeroshot": "delta"}


@dataclass
class LayerData:
    """One layer of one tree: matrices, targets and what an expert's config needs to name them."""

    tree: str
    layer: str
    task: str  # "multilabel" | "zeroshot"
    x: np.ndarray  # [n, H, W] in-distribution models
    y: np.ndarray  # 0/1 [n, n_labels] (multilabel) or concept indices [n] (zeroshot)
    vocabulary: list[str]
    layer_shape: tuple[int, ...]
    model_ids: list[str]
    root: np.ndarray | None = None  # the root's matrix (None: no centring possible)
    root_id: str | None = None  # the root's Hub repo id, where known
    adapter: str | None = None
    conv_layout: str = "probex"
    text_encoder: str | None = None
    prompt: str = "{}"
    text: np.ndarray | None = None  # [len(vocabulary), text_dim]
    holdout_x: np.ndarray | None = None  # zeroshot: LoRAs of held-out concepts; multilabel: models of unseen classes
    holdout_records: list[WeightRecord] = field(default_factory=list)  # the models of `holdout_x`
    holdout_y: np.ndarray | None = None
    holdout_vocabulary: list[str] = field(default_factory=list)
    holdout_text: np.ndarray | None = None
    other_concepts: list[str] = field(default_factory=list)  # concepts the weight set names but no model here has
    inputs: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # stacked layers: (name, stored shape)
    groups: np.ndarray | None = None  # each model's recipe family, where the weight set knows it
    records: list[WeightRecord] = field(default_factory=list)  # the models, in order (what routing is fitted on)
    examples: dict[str, list[str]] = field(default_factory=dict)  # example inputs by class (`Expert.examples`)
    roots: dict[str, Path | None] = field(default_factory=dict)  # every tree's root weights in the weight set

    @property
    def targets_matrix(self) -> np.ndarray:
        """0/1 targets [n, n_labels] (one-hot concepts for zeroshot)."""
        return self.y if self.task == "multilabel" else np.eye(len(self.vocabulary), dtype=np.float32)[self.y]


def _encode(texts: list[str], encoder: str, prompt: str) -> np.ndarray:
    return _encode_cached(tuple(texts), encoder, prompt).copy()


@functools.lru_cache(maxsize=16)
def _encode_cached(texts: tuple[str, ...], encoder: str, prompt: str) -> np.ndarray:
    """Concept texts are encoded once per process: every stacked layer and every CV run asks for the same."""
    from ...text import encode_texts

    return encode_texts([prompt.format(t) for t in texts], encoder=encoder)


def candidate_layers(weights: WeightSet | str | Path, tree: str) -> dict[str, tuple[int, ...]]:
    """Layers an expert can read in `tree` ({name: stored shape}): those every model of the tree has, in one
    shape (from the headers only), and not too large to read (`shaping.readable`: embedding tables are not). LoRAs
    that adapt other module sets, or heads of other class counts, drop out here rather than failing a read."""
    weights = weights if isinstance(weights, WeightSet) else open_weight_set(weights)
    records = weights.for_tree(tree)
    if not records:
        raise ValueError(f"no tree named {tree!r}; trees: {', '.join(weights.trees)}")
    return dict(_common_layers(tuple((str(r.path), r.kind, r.base and str(r.base)) for r in records)))


@functools.lru_cache(maxsize=32)
def _common_layers(models: tuple[tuple[str, str, str | None], ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The (name, shape) layers all `models` ((weights path, kind, adapter base) triples) share; read once per process
    (every layer load of a sweep asks for them)."""
    first, *rest = models
    common = {name: shape for name, shape in layer_shapes(Path(first[0]), first[1], first[2]).items() if readable(shape)}
    for path, kind, base in rest:
        shapes = layer_shapes(Path(path), kind, base)
        common = {name: shape for name, shape in common.items() if shapes.get(name) == shape}
    return tuple(sorted(common.items()))


def tree_task(weights: WeightSet | str | Path, tree: str) -> str:
    """The expert task of a tree: "zeroshot" for LoRA trees (concepts against text), else "multilabel"."""
    weights = weights if isinstance(weights, WeightSet) else open_weight_set(weights)
    records = weights.for_tree(tree)
    if not records:
        raise ValueError(f"no tree named {tree!r}; trees: {', '.join(weights.trees)}")
    return "zeroshot" if records[0].kind == "lora" else "multilabel"


def routable_layers(weights: WeightSet | str | Path, tree: str) -> list[str]:
    """The candidate layers of `tree` an expert can also route by: those the root has in the same shape
    (its copy travels with the expert as the centring offset; see hf_probex.routing). Every layer of a
    LoRA tree or of a tree without a known root (routing does not compare those with a root)."""
    weights = weights if isinstance(weights, WeightSet) else open_weight_set(weights)
    layers = candidate_layers(weights, tree)
    root = weights.roots.get(tree)
    if root is None or weights.for_tree(tree)[0].kind == "lora":
        return list(layers)
    stored = layer_shapes(root, "classifier")
    return [name for name, shape in layers.items() if stored.get(name) == shape]


def _root_repo_id(weights: WeightSet, tree: str) -> str | None:
    """The tree root's Hub repo id where the weight set knows it (`WeightSet.root_ids`, a zoo's plan), else None."""
    from ...zoo import Zoo
    from ...zoo.store import PLAN_FILE

    if tree in weights.root_ids:
        return weights.root_ids[tree]
    if not (Path(weights.source) / PLAN_FILE).is_file():
        return None
    return Zoo.open(weights.source).trees[tree].get("root_repo_id")


def load_layer_data(weights: WeightSet | str | Path, tree: str, layer: str | Sequence[str], *,
                    conv_layout: str = "probex", text_encoder: str = DEFAULT_TEXT_ENCODER, prompt: str = "{}",
                    splits: tuple[str, ...] | None = None, exclude: Collection[str] = (),
                    groups: Collection[str] | None = None) -> LayerData:
    """Read `layer` of every finished model of `tree` (a zoo or Model-J folder, or an open WeightSet),
    or only of the models in `splits` (e.g. ("train", "val"), keeping "test" unseen) and of the recipe
    families in `groups` (e.g. all but one: what an expert that never saw that family learns from),
    leaving out the model ids in `exclude`.

    Several layers are stacked: each model's layers flattened and concatenated into one [1, D] input
    (and the root's the same way), for the experts that read a weight vector (ridge, dense); `inputs`
    then names them. The first layer stays `layer` / `layer_shape`.

    Raises:
        ValueError: unknown tree, no models, or a layer that is missing, inconsistent or not finite.
    """
    weights = weights if isinstance(weights, WeightSet) else open_weight_set(weights)
    names = [layer] if isinstance(layer, str) else list(layer)
    options = {"conv_layout": conv_layout, "text_encoder": text_encoder, "prompt": prompt, "splits": splits,
               "exclude": exclude, "groups": groups}
    parts = [_load_one(weights, tree, name, **options) for name in names]
    if len(parts) == 1:
        return parts[0]
    first, roots = parts[0], [p.root for p in parts]
    comparable = all(r is not None and r.shape == p.x.shape[1:] for r, p in zip(roots, parts))
    return replace(
        first, layer=" + ".join(names), x=stack_inputs([p.x for p in parts]),
        root=stack_inputs([r[None] for r in roots])[0] if comparable else None,
        holdout_x=None if first.holdout_x is None else stack_inputs([p.holdout_x for p in parts]),
        inputs=[(p.layer, tuple(p.layer_shape)) for p in parts],
    )


def _load_one(weights: WeightSet, tree: str, layer: str, *, conv_layout: str, text_encoder: str, prompt: str,
              splits: tuple[str, ...] | None, exclude: Collection[str], groups: Collection[str] | None) -> LayerData:
    layers = candidate_layers(weights, tree)
    if layer not in layers:
        raise ValueError(f"tree {tree!r} has no layer {layer!r}; layers: {', '.join(layers)}")
    records = [r for r in weights.for_tree(tree, splits)
               if r.model_id not in exclude and (groups is None or r.group in groups)]
    if not records:
        raise ValueError(f"tree {tree!r} has no models in splits {', '.join(splits or ())}"
                         + (f" of recipe families {', '.join(groups)}" if groups is not None else ""))
    kind = records[0].kind
    root_path, root_id = weights.roots.get(tree), _root_repo_id(weights, tree)
    if kind != "lora":
        # held-out models were trained on classes outside the vocabulary: no expert trains on them; its threshold
        # must hold on them (`calibration.fit_calibration(unseen=...)`)
        held = [r for r in records if (r.split or "").endswith("_holdout")]
        records = [r for r in records if r not in held]
        x, shape = load_matrices(records, layer, conv_layout)
        vocabulary = weights.vocabularies[tree]
        return LayerData(tree, layer, "multilabel", x, label_matrix([r.labels for r in records], vocabulary), vocabulary,
                         shape, [r.model_id for r in records], root=root_matrix(root_path, layer, kind, conv_layout),
                         root_id=root_id, conv_layout=conv_layout, groups=_groups(records), records=records,
                         roots=dict(weights.roots), examples=weights.class_examples(tree, vocabulary),
                         holdout_x=load_matrices(held, layer, conv_layout)[0] if held else None, holdout_records=held)
    seen = [r for r in records if not (r.split or "").endswith("_holdout")]
    held = [r for r in records if (r.split or "").endswith("_holdout")]
    x, shape = load_matrices(seen, layer, conv_layout)
    vocabulary = sorted({r.labels[0] for r in seen})
    data = LayerData(tree, layer, "zeroshot", x, np.array([vocabulary.index(r.labels[0]) for r in seen]), vocabulary,
                     shape, [r.model_id for r in seen], root_id=root_id, adapter="lora",
                     conv_layout=conv_layout, text_encoder=text_encoder, prompt=prompt,
                     text=_encode(vocabulary, text_encoder, prompt), groups=_groups(seen), records=seen,
                     roots=dict(weights.roots))
    named = set(vocabulary) | {r.labels[0] for r in held}
    data.other_concepts = sorted(set(weights.vocabularies.get(tree, [])) - named)  # e.g. the test split's held-out ones
    if held:
        data.holdout_x, data.holdout_records = load_matrices(held, layer, conv_layout)[0], held
        data.holdout_vocabulary = sorted({r.labels[0] for r in held})
        data.holdout_y = np.array([data.holdout_vocabulary.index(r.labels[0]) for r in held])
        data.holdout_text = _encode(data.holdout_vocabulary, text_encoder, prompt)
    return data


def open_vocabulary(data: LayerData) -> tuple[list[str], np.ndarray]:
    """A zero-shot tree's open vocabulary (names, text embeddings): its training concepts, the held-out ones, then
    the other concepts its weight set names (their names only: no model of them was read)."""
    names = list(data.vocabulary) + list(data.holdout_vocabulary)
    texts = [data.text] + ([data.holdout_text] if data.holdout_text is not None else [])
    if data.other_concepts:
        texts.append(_encode(data.other_concepts, data.text_encoder, data.prompt))
    return names + list(data.other_concepts), np.concatenate(texts)


#: The group of held-out concepts' decisions in the open calibration: the threshold must hold on them too.
HELD_OUT_CONCEPTS = "held-out concepts"
#: The group of the concept-out reads' decisions (`concepts_out`) in the open calibration: the threshold must hold on
#: them as a group, but they stay out of the pooled precision (they are a world where a third of the concepts are
#: unknown to the expert, not the mix of LoRAs it will read).
CONCEPTS_OUT = "concepts the reading expert never trained on"
#: How many groups a zero-shot tree's training concepts are split into for `concepts_out`.
CONCEPT_FOLDS = 3


def _without_concepts(data: LayerData, kept: np.ndarray) -> tuple[LayerData, np.ndarray]:
    """`data` restricted to the LoRAs of the concepts `kept` (indices into its vocabulary), its vocabulary too; and
    the indices of those LoRAs in `data`."""
    idx = np.flatnonzero(np.isin(data.y, kept))
    remap = {int(k): i for i, k in enumerate(kept)}
    return replace(data, x=data.x[idx], y=np.array([remap[int(c)] for c in data.y[idx]]),
                   vocabulary=[data.vocabulary[k] for k in kept], text=data.text[kept],
                   model_ids=[data.model_ids[i] for i in idx], records=[data.records[i] for i in idx],
                   groups=None if data.groups is None else data.groups[idx], holdout_x=None, holdout_records=[]), idx


def concepts_out(data: LayerData, method: str, *, seed: int = 0, **settings) -> dict[str, np.ndarray]:
    """Every LoRA of a zero-shot tree read against the open vocabulary (`open_vocabulary`) by an expert that never
    trained on its concept: the training concepts are split into `CONCEPT_FOLDS` groups, and each group's LoRAs are
    read by an expert trained on the other groups' LoRAs alone (their concepts its whole vocabulary). The held-out
    concepts' LoRAs are few; these are how a LoRA of a concept the expert does not know is read, with the confusions
    that matter (a neighbouring digit of a style it trained on), for the open calibration's held-out group.

    Returns {"predictions": [n, V_open], "trained": [n, V_open] (whether the expert that read each LoRA trained on
    each concept)} and, for a fused expert, "module_predictions" ([n, k, V_open]); {} when the tree has fewer than
    two concepts per group.
    """
    if len(data.vocabulary) < 2 * CONCEPT_FOLDS:
        return {}
    text = open_vocabulary(data)[1]
    group = np.random.default_rng(seed).permutation(len(data.vocabulary)) % CONCEPT_FOLDS
    predictions = np.zeros((len(data.y), len(text)))
    trained = np.zeros((len(data.y), len(text)), dtype=bool)
    modules = []
    for fold in range(CONCEPT_FOLDS):
        known, kept = _without_concepts(data, np.flatnonzero(group != fold))
        expert, _ = fit_expert(known, method, np.arange(len(kept)), **settings)
        read = np.setdiff1d(np.arange(len(data.y)), kept)
        predictions[read] = expert.predict(data.x[read], text)
        trained[np.ix_(read, np.flatnonzero(group != fold))] = True
        if expert.fused:
            modules.append((read, expert.predict_members(data.x[read], text)))
    out = {"predictions": predictions, "trained": trained}
    if modules:
        out["module_predictions"] = np.zeros((len(data.y), *modules[0][1].shape[1:]))
        for read, values in modules:
            out["module_predictions"][read] = values
    return out


def _open_calibration(data: LayerData, seen: np.ndarray, held: np.ndarray, held_models: list[int],
                      groups: np.ndarray | None, unknown: np.ndarray, unknown_trained: np.ndarray) -> dict:
    """The calibration of the open vocabulary (`open_vocabulary`), fitted on three kinds of decisions: the out-of-fold
    decisions of the in-vocabulary models (`seen`, [n, V_open]); those on the held-out models (`held`, [m, V_open]:
    of the held-out models `held_models`, each from an expert that never saw its concept, nor its recipe family where
    the folds are families); and the in-vocabulary models read by experts that never trained on their concept
    (`unknown`, [n, V_open] or none, `concepts_out`; `unknown_trained` says which concepts each of those experts
    trained on). The threshold holds pooled over the first two kinds, within each recipe family, on the held-out
    models as a group (`HELD_OUT_CONCEPTS`) and on the concept-out reads as a group (`CONCEPTS_OUT`: a LoRA of a
    concept the expert does not know is read as a trained neighbour, often surely, so a trained concept must also
    lead the best untrained one by `known_margin`, and an untrained top concept has its own threshold), and on the
    last two kinds once more with their concept withheld from the list (a LoRA of a concept the tree names nowhere):
    at most 5 % of those proposed (`calibration.fit_calibration`).

    `lists`, what a caller's candidates are read with (`Calibration.for_candidates`): fitted on all those decisions
    each among a short list drawn around its concept (`candidate_lists`: a list's margins are wider), and once more
    with its concept withheld, one threshold for both kinds of top concept."""
    from ..calibration.confidence import fit_calibration, withheld_concepts

    unknown_y = data.y if len(unknown) else data.y[:0]  # none where the tree has too few concepts to split
    y = np.concatenate([data.y, len(data.vocabulary) + data.holdout_y[np.asarray(held_models, dtype=int)], unknown_y])
    seen_groups = groups.astype(str) if groups is not None else np.full(len(seen), "in vocabulary")
    labels = np.concatenate([seen_groups, np.full(len(held), HELD_OUT_CONCEPTS), np.full(len(unknown), CONCEPTS_OUT)])
    decisions = np.concatenate([seen, held, unknown])
    known = np.arange(decisions.shape[1]) < len(data.vocabulary)  # the open vocabulary starts with the training one
    trained = np.concatenate([np.broadcast_to(known, (len(seen) + len(held), len(known))),
                              np.asarray(unknown_trained, dtype=bool).reshape(len(unknown), len(known))])

    # "none of these" from the default vocabulary: a LoRA of a concept the tree names nowhere, so one the expert never
    # trained on and on no list: the held-out and concept-out reads with their concept withheld (a trained concept
    # is always in the default vocabulary)
    unknown_to_reader = np.arange(len(y)) >= len(seen)
    default = fit_calibration(data.task, decisions, y, labels,
                              unseen=withheld_concepts(decisions[unknown_to_reader], y[unknown_to_reader]),
                              trained=trained, pooled=labels != CONCEPTS_OUT,
                              unseen_trained=withheld_concepts(trained[unknown_to_reader], y[unknown_to_reader]) > 0.5)
    # a caller's list is often of concepts the expert never trained on alone, unlike the lists drawn here: one
    # threshold for every top concept, every decision pooled
    listed = candidate_lists(decisions, y)
    lists = fit_calibration(data.task, listed, y, labels, unseen=withheld_concepts(listed, y)).to_dict()
    return {**default.to_dict(), "lists": lists}


#: How many concepts a simulated candidate list holds: a caller's list is short, its margins wider than the default's.
LIST_SIZES = (3, 16)


def candidate_lists(decisions: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each decision ([n, C] cosines, true concept `y`) again as if read against a short list a caller gave: the
    true concept and others drawn at random (`LIST_SIZES` in all), the rest of the row -inf (never ranked): what the
    open calibration's `lists` is fitted on, a short list's margins being wider than the default vocabulary's."""
    rng = np.random.default_rng(seed)
    listed = np.full_like(np.asarray(decisions, dtype=np.float64), -np.inf)
    for i, (row, truth) in enumerate(zip(np.asarray(decisions, dtype=np.float64), y)):
        others = np.delete(np.arange(len(row)), truth)
        size = min(int(rng.integers(LIST_SIZES[0], LIST_SIZES[1] + 1)), len(row)) - 1
        kept = np.append(rng.choice(others, size=size, replace=False), truth)
        listed[i, kept] = row[kept]
    return listed


def _groups(records: list[WeightRecord]) -> np.ndarray | None:
    return np.array([r.group for r in records]) if all(r.group for r in records) else None


def _fuses(data: LayerData, method: str) -> bool:
    """Whether an expert of `method` on `data` reads each layer by its own network (`Expert.fused`): a zero-shot expert
    of several layers (LoRA modules), unless its method fits one closed form over them all (ridge stacks them)."""
    return data.task == "zeroshot" and len(data.inputs) > 1 and method in METHODS and not METHODS[method].closed_form


def make_expert(data: LayerData, method: str, *, hparams: dict | None = None, centre: bool = True,
                temperature: float = 1.0, features: str | None = None) -> Expert:
    """An untrained expert for `data`'s tree, layer and task (`features`: default the task's, `DEFAULT_FEATURES`),
    fusing its layers where `_fuses`."""
    return Expert(
        method=method, task=data.task, input_shape=list(data.x.shape[1:]), vocabulary=data.vocabulary, layer=data.layer,
        layer_shape=list(data.layer_shape), tree=data.tree, root=data.root_id, adapter=data.adapter, hparams=hparams,
        centred=centre and data.root is not None and data.root.shape == data.x.shape[1:], conv_layout=data.conv_layout,
        text_encoder=data.text_encoder, text_dim=None if data.text is None else int(data.text.shape[1]),
        prompt=data.prompt, temperature=temperature, inputs=[[name, list(shape)] for name, shape in data.inputs],
        features=features or DEFAULT_FEATURES[data.task], fusion="modules" if _fuses(data, method) else None,
    )


def fit_expert(data: LayerData, method: str, train_idx: np.ndarray, *, hparams: dict | None = None, centre: bool = True,
               config: TrainConfig = TrainConfig(), val_fraction: float = 0.15, temperature: float = 1.0,
               y: np.ndarray | None = None, features: str | None = None) -> tuple[Expert, dict]:
    """Train one expert on the models `train_idx` (targets `y`, default `data.y`); returns (expert, history).

    `features`: "delta" or "gram" (hf_probex.experts.methods.features); default the task's (`DEFAULT_FEATURES`).
    """
    y = data.y if y is None else y
    torch.manual_seed(config.seed)  # the network's random initialisation: the seed fixes it too, not only training
    expert = make_expert(data, method, hparams=hparams, centre=centre, temperature=temperature, features=features)
    train_idx = np.asarray(train_idx)
    val_idx = train_idx[:0]
    if not expert.net.closed_form and len(train_idx) >= 3:  # a closed-form fit tunes itself (GCV): it uses all
        order = np.random.default_rng(config.seed).permutation(train_idx)
        n_val = max(1, int(round(val_fraction * len(order))))
        val_idx, train_idx = order[:n_val], order[n_val:]
    expert.set_centring(*centring(data.x[train_idx], data.root if expert.config["centred"] else None))
    if data.text is not None:
        expert.concept_text.copy_(torch.from_numpy(data.text))
    history = train(expert, data.x[train_idx], y[train_idx], data.x[val_idx], y[val_idx], config)
    return expert, history


def predict(experts: list[Expert], members: list[LayerData], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions for the in-distribution models `idx` and (zeroshot) every held-out model, averaged over
    `experts` (each reading its own member's layer of the same models: late fusion)."""
    seen = np.mean([e.predict(d.x[idx]) for e, d in zip(experts, members)], axis=0)
    if members[0].holdout_x is None:
        return seen, None
    return seen, np.mean([e.predict(d.holdout_x, d.holdout_text) for e, d in zip(experts, members)], axis=0)


def predict_open(experts: list[Expert], members: list[LayerData], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot predictions against the open vocabulary (`open_vocabulary`) for the in-distribution models `idx`
    and every held-out model, averaged over `experts` as `predict`."""
    text = open_vocabulary(members[0])[1]
    seen = np.mean([e.predict(d.x[idx], text) for e, d in zip(experts, members)], axis=0)
    return seen, np.mean([e.predict(d.holdout_x, text) for e, d in zip(experts, members)], axis=0)


def _by_module(expert: Expert, data: LayerData, idx: np.ndarray, opened: bool) -> dict[str, list]:
    """A fused expert's predictions module by module ([n, k, C] each, `Expert.predict_members`) for the models `idx`
    (against its vocabulary; with `opened`, also against the open one, and of every held-out model)."""
    out = {"module_predictions": expert.predict_members(data.x[idx]).tolist()}
    if opened:
        text = open_vocabulary(data)[1]
        out["open_module_predictions"] = expert.predict_members(data.x[idx], text).tolist()
        out["holdout_open_module_predictions"] = expert.predict_members(data.holdout_x, text).tolist()
    return out


def _subset_calibrations(calibrate: Callable[[list[np.ndarray]], dict], modules: list[np.ndarray]) -> dict:
    """A fused expert's calibration (`calibrate` applied to its decisions' scores, each a [n, k, C] array of
    module scores averaged over the modules kept) for all its modules, with `modules` and `subsets`: the same for
    every proper subset of them (`calibration.Calibration.for_modules`)."""
    from itertools import combinations

    from ..calibration.confidence import subset_key

    k = modules[0].shape[1]
    subsets = {subset_key(kept): calibrate([m[:, list(kept)].mean(axis=1) for m in modules])
               for size in range(1, k) for kept in combinations(range(k), size)}
    return {**calibrate([m.mean(axis=1) for m in modules]), "modules": k, "subsets": subsets}


def metrics_of(data: LayerData, seen: np.ndarray, held: np.ndarray | None, idx: np.ndarray) -> dict[str, float]:
    """The task's metrics of predictions (from `predict`) for the in-distribution models `idx` (and held-out ones)."""
    if data.task == "multilabel":
        return multilabel_metrics(seen, data.y[idx])
    metrics = concept_metrics(seen, data.y[idx])
    if held is not None:
        metrics |= concept_metrics(held, data.holdout_y, prefix="holdout_")
    return metrics


def evaluate(experts: list[Expert], members: list[LayerData], idx: np.ndarray) -> dict[str, float]:
    """The task's metrics on the in-distribution models `idx` (zeroshot: plus every held-out model)."""
    return metrics_of(members[0], *predict(experts, members, idx), idx)


def _chance(data: LayerData) -> dict:
    if data.task != "zeroshot" or data.holdout_x is None:
        return {}
    n = len(data.holdout_vocabulary)
    return {"holdout_top1": 100.0 / n, "holdout_top5": 100.0 * min(5, n) / n}


def cross_validate(data: LayerData, method: str, *, hparams: dict | None = None, **options) -> dict:
    """k-fold cross-validation of `method` on `data` (see the module docstring); a JSON-ready report.

    Options (as `cross_validate_combined`): folds=5, seed=0, centre=True, config=TrainConfig(),
    shuffled=True (also train on shuffled labels), temperature=1.0.
    """
    return cross_validate_combined([(data, method, hparams)], **options)


def _by_family(data: LayerData, by_group: bool) -> bool:
    return by_group and data.groups is not None and len(set(data.groups.tolist())) >= 2


def cv_splits(data: LayerData, folds: int, seed: int, by_group: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cross-validation folds: one per recipe family (leave-one-family-out) when the models' families are
    known and there are at least two, so every score and out-of-fold prediction comes from an expert that
    never saw the model's recipe; otherwise `folds` random folds."""
    if _by_family(data, by_group):
        return [(np.flatnonzero(data.groups != g), np.flatnonzero(data.groups == g)) for g in sorted(set(data.groups.tolist()))]
    return kfold(len(data.y), folds, seed)


def unseen_folds(data: LayerData, splits: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Which held-out models (`holdout_x`: a class-subset tree's models of unseen classes, a LoRA tree's LoRAs of
    held-out concepts) each fold's expert predicts: those of the recipe family it was trained without (the first
    fold when the family has none, or the folds are random), so each is read as a stranger's model would be, by an
    expert that saw neither its classes nor, where the folds are families, its recipe."""
    chosen = [np.zeros(0, dtype=int) for _ in splits]
    families = [str(data.groups[test[0]]) if data.groups is not None and len(test) else None for _, test in splits]
    for j, record in enumerate(data.holdout_records):
        fold = families.index(record.group) if record.group in families else 0
        chosen[fold] = np.append(chosen[fold], j)
    return chosen


def cross_validate_combined(members: list[tuple[LayerData, str, dict | None]], *, folds: int = 5, seed: int = 0,
                            centre: bool = True, config: TrainConfig = TrainConfig(), shuffled: bool = True,
                            temperature: float = 1.0, keep_predictions: bool = False, features: str | None = None,
                            by_group: bool = True) -> dict:
    """Cross-validation of experts on several layers of one tree, their predictions averaged.

    Folds are `cv_splits`: one per recipe family when the weight set knows them (`by_group`), else `folds`
    random folds; the report's `cv` says which, and `by_group` holds each held-out family's metrics.
    `members` are (layer data, method, hyper-parameters); each fold trains one expert per member on the
    same models. With `keep_predictions` the report also holds `predictions`: every in-distribution
    model's out-of-fold prediction (a list per model, in model order; what calibration is fitted on), and for
    zero-shot trees with held-out concepts `open_predictions` (the same against the open vocabulary) and
    `holdout_open_predictions` (the held-out models' predictions against it: where the folds are recipe families,
    each model's by the fold that never saw its family, fold after fold (`unseen_folds`); else every fold's); for
    class-subset trees with models of unseen classes, `unseen_predictions` (each such model's, `unseen_folds`).
    One member is plain `cross_validate`; a classification head read as a set next to a
    hidden layer is the combination this exists for. With several members, the report's `centred` and
    `hparams` are lists (one entry per member).

    Raises:
        ValueError: members that do not hold the same models in the same order.
    """
    datas = [m[0] for m in members]
    data = datas[0]
    if any(d.model_ids != data.model_ids or d.task != data.task for d in datas):
        raise ValueError("combined experts must read layers of the same models (one tree, one task)")
    splits = cv_splits(data, folds, seed, by_group)
    grouped = _by_family(data, by_group)
    rng = np.random.default_rng(seed + 1)
    settings = dict(centre=centre, config=config, temperature=temperature, features=features)
    scores, shuffled_scores, seconds, predict_ms = [], [], [], []
    out_of_fold: list = [None] * len(data.y)
    opened = keep_predictions and data.task == "zeroshot" and data.holdout_x is not None
    open_out_of_fold: list = [None] * len(data.y)
    held_open: list = []
    by_module = keep_predictions and _fuses(data, members[0][1])
    module_out: list = [None] * len(data.y)
    open_module_out: list = [None] * len(data.y)
    held_module: list = []
    unseen = unseen_folds(data, splits) if keep_predictions else [np.zeros(0, dtype=int)] * len(splits)
    unseen_out: list = [None] * sum(len(u) for u in unseen)
    # held-out concepts' LoRAs calibrate as strangers' LoRAs are read: by the expert that never saw their family
    held_read = unseen if grouped else [np.arange(0 if data.holdout_x is None else len(data.holdout_x))] * len(splits)
    for fold, ((train_idx, test_idx), unseen_idx) in enumerate(zip(splits, unseen)):
        fitted = [fit_expert(d, method, train_idx, hparams=hp, **settings) for d, method, hp in members]
        experts = [expert for expert, _ in fitted]
        start = time.perf_counter()
        seen, held = predict(experts, datas, test_idx)
        predict_ms.append((time.perf_counter() - start) * 1000 / len(test_idx))
        scores.append(metrics_of(data, seen, held, test_idx))
        for i, row in zip(test_idx, seen.tolist()):
            out_of_fold[i] = row
        for j in unseen_idx:
            unseen_out[j] = held[j].tolist()
        if opened:
            seen_open, held_now = predict_open(experts, datas, test_idx)
            for i, row in zip(test_idx, seen_open.tolist()):
                open_out_of_fold[i] = row
            held_open += held_now[held_read[fold]].tolist()
        if by_module:
            modules = _by_module(experts[0], data, test_idx, opened)
            for i, row in zip(test_idx, modules["module_predictions"]):
                module_out[i] = row
            for i, row in zip(test_idx, modules.get("open_module_predictions", [])):
                open_module_out[i] = row
            held_module += [modules["holdout_open_module_predictions"][j] for j in held_read[fold]] if opened else []
        seconds.append(sum(history["train_seconds"] for _, history in fitted))
        if shuffled:
            y = data.y.copy()
            y[train_idx] = data.y[rng.permutation(train_idx)]
            shuffled_experts = [fit_expert(d, method, train_idx, hparams=hp, y=y, **settings)[0] for d, method, hp in members]
            shuffled_scores.append(evaluate(shuffled_experts, datas, test_idx))
    if data.task == "multilabel":
        refs = references(data.y, "multilabel", splits, multilabel_metrics)
    else:
        refs = references(data.targets_matrix, "multiclass", splits, lambda pred, y: concept_metrics(pred, y.argmax(1)))
    return {
        "tree": data.tree, "layer": " + ".join(d.layer for d in datas), "method": " + ".join(m[1] for m in members),
        "task": data.task, "models": len(data.y), "holdout_models": 0 if data.holdout_x is None else len(data.holdout_x),
        "folds": len(splits), "seed": seed, "cv": "leave-one-recipe-family-out" if grouped else "k-fold",
        "by_group": {str(data.groups[test[0]]): score for (_, test), score in zip(splits, scores)} if grouped else {},
        "centred": [e.config["centred"] for e in experts] if len(experts) > 1 else experts[0].config["centred"],
        "features": experts[0].features,
        "hparams": [dict(m[2] or {}) for m in members] if len(members) > 1 else dict(members[0][2] or {}),
        "train_config": fitted[0][1]["config"],
        "metrics": summarise(scores), "shuffled": summarise(shuffled_scores) if shuffled else None,
        "references": refs, "chance": _chance(data), "parameters": sum(e.n_parameters for e in experts),
        "train_seconds": mean_se(seconds), "predict_ms_per_model": float(np.mean(predict_ms)),
    } | ({"predictions": out_of_fold} if keep_predictions else {}) | (
        {"unseen_predictions": unseen_out} if unseen_out else {}) | (
        {"open_predictions": open_out_of_fold, "holdout_open_predictions": held_open,
         "holdout_open_models": np.concatenate(held_read).tolist()} if opened else {}) | (
        {"module_predictions": module_out} if by_module else {}) | (
        {"open_module_predictions": open_module_out, "holdout_open_module_predictions": held_module}
        if by_module and opened else {})


def _read_heads_too(expert: Expert, data: LayerData, predictions: np.ndarray, groups: np.ndarray | None,
                    splits: list[tuple[np.ndarray, np.ndarray]], unseen: np.ndarray | None = None,
                    unseen_y: np.ndarray | None = None) -> None:
    """Teach `expert` to read the classification head as a set of rows too (`head_rows`), where the models have
    one in their labels' order: the row reader fitted on every model, the joint calibration on the out-of-fold
    row scores (the same folds as `predictions`) of the models whose head a reader could read; and only when
    that calibration, fitted without each recipe family, held on it (`calibration.holds_out_of_family`). The
    models of unseen classes (`unseen`: their predictions, `unseen_folds`) check its threshold as they check the
    hidden layers' one, their rows read by the same folds' readers."""
    from ..calibration.confidence import fit_calibration, holds_out_of_family
    from ..calibration.head_rows import RowReader, find_head_layer, out_of_fold_scores, read_heads

    found = find_head_layer(data.records, [layer_shapes(r.path, r.kind, r.base) for r in data.records]) if data.records else None
    if found is None:
        return
    layer, _ = found
    n = len(data.records)
    held = data.holdout_records if unseen is not None else []
    heads, labels = read_heads(data.records + held, layer), [r.labels for r in data.records]
    with_unseen = [(train, np.concatenate([test, n + chosen])) for (train, test), chosen in zip(splits, unseen_folds(data, splits))]
    all_scores = out_of_fold_scores(layer, heads, labels + [[]] * len(held), data.vocabulary, with_unseen if held else splits)
    row_scores = all_scores[:n]
    readable = ~np.isnan(row_scores).any(axis=1)
    if readable.sum() < 2:
        return
    decisions = (data.task, predictions[readable], data.y[readable], None if groups is None else groups[readable])
    if not holds_out_of_family(*decisions, head_scores=row_scores[readable]):
        return  # rows that name classes on some recipes and mislead on others: the hidden layers answer alone
    unseen_rows = all_scores[n:]
    unseen_readable = ~np.isnan(unseen_rows).any(axis=1)
    joint = fit_calibration(*decisions, head_scores=row_scores[readable],
                            unseen=None if unseen is None else unseen[unseen_readable],
                            unseen_head_scores=unseen_rows[unseen_readable] if len(unseen_rows) else None,
                            unseen_y=None if unseen_y is None else unseen_y[unseen_readable])
    expert.set_head(RowReader.fit(layer, heads, labels, data.vocabulary), joint.to_dict())


def _sketch_lineage(expert: Expert, data: LayerData) -> LineageCalibration | None:
    """The lineage calibration of a tree table's count sketches (`calibration.lineage.sketch_lineage`): each model's
    input centred by `expert` and sketched as a scan sketches a member (`hf_probex.scan.embedding`); None for an
    expert that is not root-centred (its table rows are not movements from the root)."""
    from ..calibration.lineage import sketch_lineage

    if not expert.config["centred"]:
        return None
    offset, scale = expert.offset.numpy(), float(expert.scale)
    sketches = np.stack([count_sketch((x - offset) / scale) for x in data.x])  # float32, as a table holds them
    return sketch_lineage(data.records, sketches, data.root_id, sketch_kind(), [name for name, _ in expert.config["inputs"]])


def train_expert(data: LayerData, method: str, *, folds: int = 5, seed: int = 0, hparams: dict | None = None,
                 centre: bool = True, config: TrainConfig = TrainConfig(), temperature: float = 1.0,
                 features: str | None = None, by_group: bool = True) -> tuple[Expert, dict | None]:
    """The expert `hf-probex train` publishes: cross-validated for its metrics and calibration (out-of-fold
    predictions: leave-one-recipe-family-out where the families are known, `cv_splits`; the threshold must
    hold in every family), then trained on every model of `data`, with what routing needs (`routes.fit_routing`
    when the tree has a root; a LoRA tree's base modules, `routes.fit_lora_modules`). A zero-shot expert also
    gets its open vocabulary, calibrated on held-out concepts where `data` has them (`_open_calibration`).
    `folds=0` skips cross-validation (no metrics, no calibration: such an expert cannot propose fields). The
    examples of its classes `data` has (a text tree's) ship with it (`Expert.examples`).
    Returns (expert, CV report or None).
    """
    from ..calibration.confidence import fit_calibration, withheld_concepts
    from ..calibration.lineage import fit_lineage
    from ..calibration.routes import fit_lora_modules, fit_routing

    settings = {"hparams": hparams, "centre": centre, "config": config, "temperature": temperature, "features": features}
    report = cross_validate(data, method, folds=folds, seed=seed, keep_predictions=True, by_group=by_group,
                            **settings) if folds else None
    expert, history = fit_expert(data, method, np.arange(len(data.y)), **settings)
    groups = data.groups if report and report["cv"] != "k-fold" else None
    if report:
        predictions = np.array(report.pop("predictions"))
        unseen = np.array(report.pop("unseen_predictions")) if "unseen_predictions" in report else None
        unseen_y = None
        if data.task == "multilabel" and unseen is not None:
            unseen_y = label_matrix([[c for c in r.labels if c in data.vocabulary] for r in data.holdout_records],
                                    data.vocabulary)
        elif data.task == "zeroshot":  # LoRAs of concepts missing from the list: each decision with its concept withheld
            unseen = withheld_concepts(predictions, data.y)
        expert.calibration = _subset_calibrations(
            lambda scores: fit_calibration(data.task, scores[0], data.y, groups,
                                           unseen=withheld_concepts(scores[0], data.y)).to_dict(),
            [np.array(report.pop("module_predictions"))],
        ) if expert.fused else fit_calibration(data.task, predictions, data.y, groups, unseen=unseen,
                                               unseen_y=unseen_y).to_dict()
        expert.metrics = {**report["metrics"], "cv": report["cv"], "cv_folds": report["folds"], "cv_models": report["models"]}
        if data.task == "multilabel":
            _read_heads_too(expert, data, predictions, groups, cv_splits(data, folds, seed, by_group), unseen, unseen_y)
    if data.task == "zeroshot":
        held = report.pop("holdout_open_predictions", None) if report else None
        seen = report.pop("open_predictions", None) if report else None
        held_models = report.pop("holdout_open_models", None) if report else None
        calibration = None
        unknown = concepts_out(data, method, seed=seed, **settings) if held else {}
        unknown_trained = unknown.get("trained", np.zeros((0, len(open_vocabulary(data)[0])), dtype=bool))
        if held and expert.fused:
            open_modules = np.array(report.pop("open_module_predictions"))
            calibration = _subset_calibrations(
                lambda scores: _open_calibration(data, scores[0], scores[2], held_models, groups, scores[1],
                                                 unknown_trained),
                [open_modules, unknown.get("module_predictions", open_modules[:0]),
                 np.array(report.pop("holdout_open_module_predictions"))])
        elif held:
            calibration = _open_calibration(data, np.array(seen), np.array(held), held_models, groups,
                                            unknown.get("predictions", np.array(seen)[:0]), unknown_trained)
        expert.set_open_vocabulary(*open_vocabulary(data), calibration)
    expert.metrics["train_seconds"] = history["train_seconds"]
    root = data.roots.get(data.tree)
    if data.adapter == "lora" and data.records:  # a LoRA routes by its modules' shapes: no root copy to compare
        expert.set_routing(fit_lora_modules(data.records, root), np.zeros(0, dtype=np.float32))
    elif root is not None and data.task == "multilabel" and data.records:
        others = [path for tree, path in data.roots.items() if tree != data.tree and path is not None]
        routing, root_layers = fit_routing(data.records, root, others, data.root_id)
        lineages = {"lineage": fit_lineage(data.records, root, data.root_id),
                    "sketch_lineage": _sketch_lineage(expert, data)} if data.root_id else {}
        expert.set_routing({**routing, **{key: found.to_dict() for key, found in lineages.items() if found}},
                           root_layers)
    if data.examples:
        expert.set_examples(data.examples)
    return expert, report
