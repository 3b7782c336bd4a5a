"""`infer_card`: a model in (Hub repo id, local folder or .safetensors file), its missing card fields out.

The flow (docs/infer.md): open the source, reading only small files, safetensors headers and single
tensors (`reading`); recognise its family (`adapters`); answer from exact evidence in files first
(`config.json` id2label names, adapter and pipeline files); route it to a known tree (`routing`); ask
that tree's expert what it was trained on (`experts`); keep each field whose confidence reaches the
threshold (each expert's calibrated one, or `min_confidence`), and write the suggested card and its diff
(`cards`): only fields the card lacks, nothing the owner wrote changed.

Given candidate classes, a text classifier whose files do not name its classes is run on them instead
(`head_naming`): each head row named by the candidate it answers most, calibrated like the experts. Without
candidates it is run on the example texts of its tree's classes the expert ships (`Expert.examples`), beside
the expert's reading of its weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import numpy as np

from .adapters import CLASSES_TASK, CONCEPT_TASK, Adapter, detect, read_through
from .cards import CardError, apply_suggestions, card_diff, missing_fields
from .errors import LayerMismatchError, ProbexError
from .experts.calibration.head_rows import read_head
from .experts.hub import Expert
from .experts.calibration.confidence import Calibration, top_untrained, untrained_lead
from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .experts.calibration.routes import is_root_copy
from .experts.vocabulary import vocabulary_for
from .head_naming import Candidate
from .reading import WeightSource, open_source
from .routing import UNCONFIRMED, Route, declared_bases, has_layers, route
from .suggestions import CARD_FIELDS, CardSuggestion, Edge, FieldSuggestion

#: Confidence needed for fields that come from routing by weights (the experts carry calibrated thresholds).
ROUTING_CONFIDENCE = 0.9
#: Confidence needed to name the tree's root as a model's `base_model` from its weights alone: the share of the tree's
#: training models as near the root that are its direct children (at least, `routes.DIRECT_SHARE_CREDIBILITY`), a
#: precision like each expert's threshold.
DIRECT_PARENT_CONFIDENCE = 0.95
_PLACEHOLDER_LABEL = re.compile(r"^(LABEL_\d+|\d+)$")

#: Where infer_card finds experts: a registry, expert folders / Hub repo ids, or None for the default registry.
Experts = ExpertRegistry | Iterable[str | os.PathLike] | None


def expert_registry(experts: Experts, token: str | bool | None) -> ExpertRegistry:
    """The registry `experts` names (see `Experts`); None: the default one (local file, plus the Hub's when online)."""
    if experts is None:
        return ExpertRegistry.default(token=token)
    if isinstance(experts, ExpertRegistry):
        return experts
    return ExpertRegistry.from_locations(str(e) for e in experts)


def _names(values: list) -> bool:
    """Whether class names a file gives are names: strings or whole numbers (a NaN, an object, a boolean is not)."""
    return all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)


def declared_labels(source: WeightSource) -> tuple[list[str], str]:
    """(class names, where) the model's files give exactly, when they are real names (not LABEL_0, LABEL_1...):
    config.json id2label (transformers), else config_setfit.json labels (SetFit). ([], "") when none do."""
    id2label = (source.read_json("config.json") or {}).get("id2label") or {}
    values = [v for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    found = [([str(v) for v in values] if _names(values) else [], "config.json id2label")]
    setfit = (source.read_json("config_setfit.json") or {}).get("labels") if "config_setfit.json" in source.files else None
    if isinstance(setfit, list) and _names(setfit):
        found.append(([str(v) for v in setfit], "config_setfit.json labels"))
    return next(((names, where) for names, where in found
                 if names and not any(_PLACEHOLDER_LABEL.match(n) for n in names)), ([], ""))


def _files_evidence(adapter: Adapter, source: WeightSource) -> str:
    config = source.read_json("config.json") or {}
    if config.get("model_type"):
        return f"config.json model_type {config['model_type']!r} ({adapter.family} family)"
    return f"{adapter.family} family, recognised from its files ({', '.join(source.safetensors_files[:2])})"


def _reads(entry: ExpertEntry, model: WeightSource, adapter: Adapter) -> bool:
    """Whether the expert can read the model: it has the expert's layers (for an expert that fuses modules, one of
    them is enough)."""
    if entry.fused:
        return any(has_layers(model, adapter, [pair]) for pair in entry.inputs)
    return has_layers(model, adapter, entry.inputs)


def expert_for(registry: ExpertRegistry, root: str, task: str, model: WeightSource, adapter: Adapter) -> ExpertEntry | None:
    """The tree's expert of `task`; of several (a LoRA tree's experts of different modules), the first that reads the
    model (`_reads`): a LoRA of cross-attention only is read by an expert of cross-attention modules."""
    entries = registry.for_root(root, task)
    if len(entries) > 1:  # only then is a header worth consulting
        entries = [e for e in entries if _reads(e, model, adapter)] or entries
    return entries[0] if entries else None


def _below(cut: float, asked: bool) -> str:
    """Why a confidence is not enough, for people: the minimum asked for, the calibrated threshold, or none
    (a calibrated threshold above 1: no threshold reached the target precision)."""
    if asked:
        return f"below the minimum asked ({cut:.2f})"
    return "the expert never proposes (no threshold reaches 95 % precision)" if cut > 1 else \
        f"below the expert's calibrated threshold ({cut:.2f})"


def _unseen_classes(calibration: dict) -> str:
    """Why a class the vocabulary's models alone would allow is not proposed: models trained on classes the expert
    does not know get it as confidently (`Calibration.limited_by_unseen`)."""
    checked = calibration["unseen_models"]
    return (f"it may be trained on classes this tree's expert does not know: {checked} such models read this "
            f"confidently too, so the expert proposes only at {calibration['threshold']:.2f}" if calibration["threshold"] <= 1
            else f"it may be trained on classes this tree's expert does not know: at every level where the expert is "
                 f"95 % precise on its vocabulary, more than 5 % of {checked} such models get a class too")


def _trained_on(expert: Expert, entry: ExpertEntry, matrix: np.ndarray, head: np.ndarray | None,
                threshold: float | None, candidates: Iterable[str] | None = None) -> tuple[FieldSuggestion | None, str, dict]:
    """The expert's trained-on field at its threshold (or `threshold`), or None and why not; and what it read
    (its scores and thresholds), kept whether it answered or not. `head`: the model's classification head
    rows where the expert reads them (`experts.calibration.head_rows`), else None. `candidates`: the concepts a zero-shot
    expert ranks (`_named_concept`)."""
    if not expert.calibration:
        return None, f"{entry.public_name} has no calibration (trained without cross-validation)", {}
    if expert.task == CONCEPT_TASK:
        return _named_concept(expert, entry, matrix, threshold, candidates)
    if expert.config["centred"] and is_root_copy(matrix.ravel(), expert.offset.numpy().ravel()):
        # a fine-tune that froze these layers (or trained its head only) left nothing in them to read
        layers = " + ".join(name for name, _ in entry.inputs)
        return None, f"the layers {entry.public_name} reads ({layers}) are the root's own: its fine-tune left them as they were", {}
    predictions, confidence = expert.confidences(matrix, heads=[head])
    calibration = expert.calibration_for(head)
    floor = calibration["threshold"]
    cut = floor if threshold is None else threshold
    layers = [name for name, _ in entry.inputs]
    if calibration is not expert.calibration:
        layers.append(f"{expert.row_reader.layer} (its rows, as a set)")
    evidence = _evidence(entry, layers)
    scores = {label: float(c) for label, c in zip(expert.vocabulary, confidence[0])}
    top = dict(sorted(scores.items(), key=lambda kv: -kv[1])[:10])
    details = {"confidence_by_class": top, "threshold": cut, "calibrated_threshold": floor}
    chosen = sorted((label for label, c in scores.items() if c >= cut), key=lambda label: -scores[label])  # surest first
    if not chosen:
        best = max(scores, key=scores.get)
        why = _below(cut, threshold is not None)
        if threshold is None and Calibration(**calibration).limited_by_unseen \
                and scores[best] >= calibration["vocabulary_threshold"]:  # below the level unseen classes set
            why = _unseen_classes(calibration)
        return None, f"no class is confident enough: {why} (best: {best} at {scores[best]:.2f})", details
    return FieldSuggestion("trained_on", chosen, min(scores[c] for c in chosen), evidence, "expert",
                           details=details, floor=floor), "", details


def _evidence(entry: ExpertEntry, layers: list[str]) -> str:
    named = entry.public_name if entry.public_name != entry.location else f"expert {entry.location}"
    return f"{named} ({entry.method}) on {' + '.join(layers)}"


def _named_concept(expert: Expert, entry: ExpertEntry, matrix: np.ndarray, threshold: float | None,
                   candidates: Iterable[str] | None) -> tuple[FieldSuggestion | None, str, dict]:
    """A zero-shot expert's concept: the top of the vocabulary it ranks (`experts.vocabulary`: the `candidates`,
    else its default open vocabulary), its confidence from the margin over the runner-up and its own cosine,
    calibrated for that vocabulary; the details name the vocabulary, the runner-up and the margin. Below the
    threshold, where LoRAs of a concept missing from the list score, a candidate list gets "no candidate fits". The
    calibrated threshold is the top concept's kind's (`Calibration.threshold_for`: a concept the expert never trained
    on has its own), and a concept it trained on must also lead the best one it never trained on by the
    calibration's `known_margin` (more than a LoRA of an unknown neighbour concept reaches), and a top concept its
    `least_margin` over the runner-up (`Calibration.margin_for`), else it abstains."""
    vocabulary = vocabulary_for(expert, candidates)
    predictions = expert.predict(matrix, vocabulary.text)
    present = expert.present_modules(matrix)  # a LoRA may target only some of a fused expert's modules
    calibration = Calibration(**vocabulary.calibration).for_modules(present)
    if vocabulary.kind == "candidates":
        calibration = calibration.for_candidates()
    untrained_top = bool(top_untrained(predictions, vocabulary.trained)[0])
    floor, least = calibration.threshold_for(untrained_top), calibration.margin_for(untrained_top)
    cut = floor if threshold is None else threshold
    order = np.argsort(-predictions[0])
    concept, value = vocabulary.names[order[0]], float(calibration.confidences(CONCEPT_TASK, predictions)[0])
    runner_up = vocabulary.names[order[1]] if len(order) > 1 else None
    margin = float(calibration.scores(CONCEPT_TASK, predictions)[0])
    details = {"vocabulary": vocabulary.description, "cosine_by_concept": {vocabulary.names[i]: float(predictions[0, i])
                                                                           for i in order[:5]},
               "runner_up": runner_up, "margin": margin, "confidence": value, "threshold": cut,
               "calibrated_threshold": floor, "calibrated_on": vocabulary.calibrated_on,
               "modules_read": [entry.inputs[k][0] for k in present]}
    lead = float(untrained_lead(predictions, vocabulary.trained)[0])
    if np.isfinite(lead):
        details |= {"untrained_lead": lead, "known_margin": calibration.known_margin}
    if least:
        details["least_margin"] = least
    which = "no candidate fits: the best" if vocabulary.kind == "candidates" else "the best concept"
    if value < cut:
        return None, (f"{which} of {vocabulary.description}, {concept!r} (runner-up {runner_up!r}, margin "
                      f"{margin:.3f}), has confidence {value:.2f}: {_below(cut, threshold is not None)}"), details
    if threshold is None and lead < calibration.known_margin:
        untrained = np.where(vocabulary.trained, -np.inf, predictions[0])
        return None, (f"{which} of {vocabulary.description}, {concept!r} (confidence {value:.2f}), is one the expert "
                      f"trained on and leads {vocabulary.names[int(untrained.argmax())]!r}, the best it never trained "
                      f"on, by {lead:.3f}: it asks {calibration.known_margin:.2f} (a LoRA of a concept it never "
                      f"trained on is read as a trained neighbour, but by a smaller lead)"), details
    if threshold is None and margin < least:
        return None, (f"{which} of {vocabulary.description}, {concept!r} (confidence {value:.2f}), leads the runner-up "
                      f"{runner_up!r} by {margin:.3f}: it asks {least:.2f} (a near tie between neighbouring concepts is "
                      f"where a LoRA of a concept the expert never trained on is misread)"), details
    evidence = _evidence(entry, details["modules_read"]) + \
        f", ranking {vocabulary.description}; runner-up {runner_up!r}, margin {margin:.3f}"
    return FieldSuggestion("trained_on", concept, value, evidence, "expert", details=details, floor=floor), "", details


def _pipeline_field(adapter: Adapter, model: WeightSource, reader: Adapter, weights: WeightSource,
                    abstained: dict[str, str]) -> list[FieldSuggestion]:
    """pipeline_tag from the model's files, else (an adapter that does not say its task) from the base it is read
    with; none when neither tells (the reason goes to `abstained`)."""
    pipeline = adapter.pipeline_for(model)
    if pipeline:
        return [FieldSuggestion("pipeline_tag", pipeline, 1.0, _files_evidence(adapter, model))]
    base_pipeline = reader.pipeline_for(weights) if weights is not model else None
    if base_pipeline:
        return [FieldSuggestion("pipeline_tag", base_pipeline, 1.0, f"its base: {_files_evidence(reader, weights)}")]
    abstained["pipeline_tag"] = f"the {adapter.family} family's files do not say the model's task" + \
        ("" if weights is not model else " and its base cannot be read")
    return []


def _runs_as_text_classifier(adapter: Adapter, model: WeightSource, reader: Adapter, weights: WeightSource) -> bool:
    """Whether the model is a text classifier `head_naming` can run: a text model whose files (or, for an adapter, its
    task) say text-classification."""
    return reader.family == "bert" and "text-classification" in {adapter.pipeline_for(model), reader.pipeline_for(weights)}


def _named_by_running(source: str | os.PathLike, model: WeightSource, candidates: list[str | Candidate], *,
                      revision: str | None, token: str | bool | None, base: str | os.PathLike | None,
                      threshold: float | None) -> tuple[FieldSuggestion | None, str, dict, int]:
    """trained_on of a text classifier among `candidates`, by running it on them (`head_naming.name_rows`): the rows
    named at or above the calibrated threshold (or `threshold`), or None and why; what it read; the bytes it fetched.
    A classifier that cannot be run (too large, its base out of reach, no head) only abstains."""
    from .head_naming import name_rows
    from .text_classifiers import open_text_classifier

    declared = (model.read_json("adapter_config.json") or {}).get("base_model_name_or_path")
    bases = {declared: base} if base is not None and isinstance(declared, str) else None
    try:
        classifier = open_text_classifier(source, revision=revision, token=token, bases=bases)
        naming = name_rows(classifier, candidates)
    except ProbexError as err:
        return None, f"could not run it on the candidates: {err}", {}, 0
    cut = naming.threshold if threshold is None else threshold
    rows = [{"row": r.row, "candidate": r.candidate, "confidence": r.confidence, "margin": r.margin,
             "runner_up": r.runner_up} for r in naming.rows]
    read = {"method": "ran the classifier on the candidates", "candidates": len(naming.candidates), "rows": rows,
            "calibrated_on": naming.calibration_name, "threshold": cut, "calibrated_threshold": naming.threshold}
    chosen = [r for r in naming.rows if r.candidate is not None and r.confidence >= cut]
    if not chosen:
        best = max(naming.rows, key=lambda r: r.confidence)
        why = ("by names alone no threshold reaches 95 % precision (a near class takes a row whose class is not among "
               "them): give example texts of each candidate" if cut > 1 else _below(cut, threshold is not None))
        return None, (f"no head row is named confidently enough among {len(naming.candidates)} candidates: {why} "
                      f"(best: row {best.row} as {best.candidate!r} at {best.confidence:.2f})"), read, classifier.bytes_fetched
    return (FieldSuggestion("trained_on", [r.candidate for r in chosen], min(r.confidence for r in chosen),
                            naming.evidence(), "expert", details=read, floor=naming.threshold), "", read,
            classifier.bytes_fetched)


def _either(weights: FieldSuggestion | None, weights_why: str, running: FieldSuggestion | None,
            running_why: str) -> tuple[FieldSuggestion | None, str]:
    """trained_on from what the weights say and what running the classifier on the vocabulary's examples says: the
    classes either proposes (each was calibrated to 95 % precision on its own), or why neither did. Fit for a pull
    request only where both parts are."""
    parts = [p for p in (weights, running) if p is not None]
    if not parts:
        return None, f"{weights_why}; run on the vocabulary's examples, {running_why}"
    if len(parts) == 1:
        return parts[0], ""
    value = list(dict.fromkeys([*weights.value, *running.value]))
    confidence = min(p.confidence for p in parts)
    floor = confidence if all(p.validated for p in parts) else max(p.floor for p in parts)
    return FieldSuggestion("trained_on", value, confidence, f"{weights.evidence}; and {running.evidence}", "expert",
                           details={**weights.details, "by_running": running.details}, floor=floor), ""


def _root_as_parent(found: Route) -> FieldSuggestion:
    """base_model: the root of the tree a model's weights sit in, as likely as the model is of the tree (routing's
    confidence) and is one of the root's direct children rather than a fine-tune of another member (`found.
    direct_share`, measured on the tree's training models); the weights of a grandchild whose parent moved little
    look like a child's, and the parent is not among what is read here. An expert that did not measure it
    caps the field at `UNCONFIRMED`: shown, never put in a pull request."""
    share = found.direct_share
    if share is None:
        confidence = min(found.confidence, UNCONFIRMED)
        parent = (f"a descendant of {found.root}; its expert does not say how often a model this near the root is its "
                  f"direct child (retrain it with this hf_probex)")
    else:
        confidence = min(found.confidence, share)
        parent = (f"a descendant of {found.root}: at least {share:.0%} of the tree's training models at most this near it "
                  f"are its direct children, as far as their number proves, the others fine-tunes of another member (not "
                  f"among the models read here)")
    return FieldSuggestion("base_model", found.root, confidence, f"{found.evidence}; {parent}", "weights",
                           details={"distances": found.distances, "direct_share": share}, floor=DIRECT_PARENT_CONFIDENCE)


def _parent_from_members(found: Route, edge: Edge) -> FieldSuggestion:
    """base_model from the model's edge among the tree's members (`hf_probex.lineage.recover_lineage`): the member
    that explains enough of its movement from the root, at the precision the tree's models had on that side of the
    threshold (and no surer than the model is of the tree); where no member does, the root, no surer than from its
    weights alone (`_root_as_parent`): the members read may lack its parent (a listing finds cardless ones only by
    their weights), which the tree's calibration, fitted on every member, cannot know."""
    if edge.names_member:
        parent, confidence, evidence, details = edge.parent, found.confidence, found.evidence, {"distances": found.distances}
    else:
        alone = _root_as_parent(found)
        parent, confidence, evidence, details = found.root, alone.confidence, alone.evidence, alone.details
    return FieldSuggestion("base_model", parent, min(confidence, edge.confidence),
                           f"{evidence}; among the tree's members read: {edge.evidence}", "members",
                           details={**details, "edge": edge.as_dict()}, floor=DIRECT_PARENT_CONFIDENCE)


def _routing_fields(adapter: Adapter, declared: dict[str, str], found: Route,
                    edge: Edge | None = None) -> list[FieldSuggestion]:
    """base_model, base_model_relation and the lineage finding, from the files or the route.

    A declared base cites the file that declares it. Otherwise the tree found is the base: a full fine-tune's by
    its weights; an adapter's too (a LoRA's update cannot be compared with a root, so it is placed by its modules'
    shapes, which never reaches the routing floor on its own: shown, never put in a pull request). With the model's
    `edge` among the tree's members read whole, its parent is that edge's (a member, or the root where none explains
    its movement).
    """
    if declared:  # a declared base the weights contradict or cannot confirm is worth less than one they confirm
        base_id, where = next(iter(declared.items()))
        confidence, evidence = (UNCONFIRMED, f"declared by {where}; {found.finding}") if found.finding else \
            (1.0, f"declared by {where}")
        base = FieldSuggestion("base_model", base_id, confidence, evidence, "lineage")
    elif found.root and not found.is_root and edge is not None and (edge.names_member or edge.parent == found.root):
        base = _parent_from_members(found, edge)
    elif found.root and not found.is_root:
        base = _root_as_parent(found)
    else:
        return []
    fields = [base, FieldSuggestion("base_model_relation", adapter.relation, base.confidence,
                                    f"{adapter.family} family ({'a LoRA adapter' if adapter.relation == 'adapter' else 'full weights'})",
                                    base.source, floor=base.floor)]
    if found.finding:
        fields.append(FieldSuggestion("lineage", found.finding, found.confidence, found.evidence, "weights",
                                      details={"distances": found.distances}, floor=ROUTING_CONFIDENCE))
    return fields


def infer_card(source: str | os.PathLike, *, revision: str | None = None, token: str | bool | None = None,
               experts: Experts = None, min_confidence: float | None = None,
               candidates: Iterable[str | Candidate] | None = None, base: str | os.PathLike | None = None,
               hub_only: bool = False, parents: Iterable[Edge] | None = None) -> CardSuggestion:
    """Infer the missing model-card fields of a model from its small files and a few of its weights.

    Args:
        source: a Hub repo id (`namespace/name`), a local model folder, or a single .safetensors file.
        revision: a branch, tag or commit of a Hub repo (default: main).
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none). Never logged.
        experts: where to find experts: an `ExpertRegistry`, expert folders or Hub repo ids, or None
            for the local registry file plus the Hub's experts (tag `probex-expert`) when online.
        min_confidence: propose fields at or above this confidence; None (default) uses each expert's
            threshold calibrated on held-out models (95 % precision) and 0.9 for routing by weights.
        candidates: the concepts a LoRA's concept is chosen from (any text; the zero-shot expert embeds them
            with its text encoder). None: the expert's default vocabulary, its training concepts and the
            held-out ones its weight set names. For a text classifier whose files do not name its classes, the
            classes its head rows are named among, by running it on them (`head_naming.Candidate`: a name, and
            example texts of the class where you have them; with examples it proposes far more often). Without
            them, a text classifier whose tree's expert ships examples of its classes (`Expert.examples`) is run
            on those too, and proposes the classes its weights or its runs name. Class-subset experts of other
            families ignore it (their classes are fixed).
        base: the base of a peft adapter (a local path or a Hub repo id), read merged with it; default: the base its
            files declare, where hf_probex follows it (a Hub repo id; `adapters.peft_model`).
        hub_only: `source` is a Hub repo id even where a local path of that name exists: a repo id that came from
            the network (a Hub listing, a tree table) must never read a folder of the working directory.
        parents: the tree's edges among its members (`hf_probex.lineage.recover_lineage`, `hf-probex lineage
            --json`), the model among them under `source` as given: its base_model is the member its edge names, at
            the edge's calibrated confidence. Where no member explains its movement, and without its edge, the root,
            only as sure as a model this near the root is the root's direct child.

    Returns:
        A `CardSuggestion`: the fields at or above the threshold (each with confidence and evidence),
        the questions it abstained on and why, the current and suggested README.md and their diff.

    Raises:
        ProbexError: a source that cannot be read (missing repo, no access, bad revision, no safetensors,
            a damaged file, an unknown architecture); the message says what to try.
    """
    candidates = None if candidates is None else list(candidates)
    model = open_source(source, revision=revision, token=token, local=not hub_only)
    adapter = detect(model)
    try:  # a peft adapter of a full model is read merged onto its base, by the base family's adapter
        reader, weights = read_through(model, adapter, base=base, token=token)
        unread = ""
    except ProbexError as err:  # no base to read it with: every field that needs its weights abstains, saying why
        reader, weights, unread = adapter, model, str(err)
    registry = expert_registry(experts, token)
    current = model.read_text("README.md") or ""
    abstained: dict[str, str] = {}
    details: dict[str, dict] = {}
    try:
        lacking = missing_fields(current)
    except CardError as err:
        lacking = set()  # an unreadable front matter is the owner's to fix: propose nothing into it
        abstained["card"] = str(err)
    family_evidence = _files_evidence(adapter, model)
    answers: list[FieldSuggestion] = [FieldSuggestion("library_name", adapter.library_for(model), 1.0, family_evidence)]
    answers += _pipeline_field(adapter, model, reader, weights, abstained)
    if unread:
        found = Route(None, 0.0, "", declared_bases(model, adapter), reason=unread)
    else:  # the bases the model declares are its own files' (an adapter's, not its base's)
        found = route(weights, reader, registry, token=token, declared=declared_bases(model, adapter))
        # An adapter that leaves the routing layers as its base has them is of the base's tree, never its root.
        found.is_root = found.is_root and weights is model
    edge = next((e for e in parents or () if e.child == str(source)), None)
    answers += _routing_fields(adapter, found.declared, found, edge)
    labels, labels_where = declared_labels(model)
    fetched = 0
    if labels:
        answers.append(FieldSuggestion("trained_on", labels, 1.0, labels_where))
    elif candidates is not None and _runs_as_text_classifier(adapter, model, reader, weights):
        suggestion, why, details["trained_on"], fetched = _named_by_running(
            source, model, candidates, revision=revision, token=token, base=base, threshold=min_confidence)
        answers += [suggestion] if suggestion else []
        if why:
            abstained["trained_on"] = why
    elif found.root is None:
        abstained["trained_on"] = f"no known tree: {found.reason}"
    else:
        task = CONCEPT_TASK if reader.relation == "adapter" else CLASSES_TASK
        entry = expert_for(registry, found.root, task, weights, reader)
        if entry is None:
            abstained["trained_on"] = f"no {task} expert for the tree of {found.root}"
        else:
            expert = None
            try:
                expert = load_expert(entry.location)  # an outdated format raises ValueError
                matrix = reader.read_input(weights, entry.inputs, expert.config["conv_layout"], allow_missing=expert.fused)
                rows = expert.row_reader
                head = read_head(reader, weights, rows.layer) if rows else None
                suggestion, why, read = _trained_on(expert, entry, matrix, head, min_confidence, candidates)
            except (LayerMismatchError, ValueError) as err:  # another shape, NaN / inf: this field only abstains
                suggestion, why, read = None, f"the {entry.tree} expert cannot read this model: {err}", {}
            details["trained_on"] = read
            if expert is not None and expert.examples and _runs_as_text_classifier(adapter, model, reader, weights):
                # the head's rows named by running it on the vocabulary's examples: another view of the same classes
                vocabulary = [Candidate(name, tuple(texts)) for name, texts in expert.examples.items()]
                named, named_why, by_running, fetched = _named_by_running(
                    source, model, vocabulary, revision=revision, token=token, base=base, threshold=min_confidence)
                details["trained_on"] = {**read, "by_running": by_running}
                suggestion, why = _either(suggestion, why, named, named_why)
            answers += [suggestion] if suggestion else []
            if why:
                abstained["trained_on"] = why
    if found.root is None and found.reason and not found.declared:
        abstained.setdefault("base_model", found.reason)

    fields: dict[str, FieldSuggestion] = {}
    for field in answers:
        needed = min_confidence if min_confidence is not None else \
            (field.floor if field.source in ("weights", "members") else 0.0)
        if field.source != "expert" and field.confidence < needed:
            abstained[field.name] = f"confidence {field.confidence:.2f} < {needed:.2f} ({field.evidence})"
            continue
        field.missing = field.name in lacking
        fields[field.name] = field
    fields = {name: fields[name] for name in CARD_FIELDS if name in fields}
    result = CardSuggestion(str(source), model.revision, adapter.family, found.root, fields, abstained, current,
                            details={name: read for name, read in details.items() if read})
    proposed = result.proposed
    if proposed:
        title = str(source).rstrip("/").split("/")[-1]
        try:
            result.suggested_card = apply_suggestions(current, proposed, title=title)
        except CardError as err:  # no suggested card, so no diff (against "" it would delete the owner's card)
            result.abstained["card"] = str(err)
        else:
            result.diff = card_diff(current, result.suggested_card) if result.suggested_card != current else ""
    result.bytes_read = weights.bytes_read + fetched  # a merged view counts the adapter's and its base's
    return result


__all__ = ["infer_card", "Candidate", "CardSuggestion", "FieldSuggestion", "ProbexError"]
