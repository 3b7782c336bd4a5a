"""The "Infer a card" tab: `infer_card` on a Hub repo id or an uploaded .safetensors file (one of them), laid out for
display (`InferView`): the summary, the expert's scores as a chart, each field with its status, the card a pull
request would propose and its diff."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..cards import CardError, apply_suggestions, card_diff
from ..errors import ProbexError
from ..experts.registry import ExpertRegistry
from ..suggestions import INFORMATIVE_FIELDS, ORIGINS, CardSuggestion, FieldSuggestion
from .common import (
    DEFAULT_MAX_UPLOAD_BYTES, Progress, PublicNames, SpaceInputError, _as_token, _display, _no_progress, _percent,
    _space_message, _threshold_text,
)

if TYPE_CHECKING:
    from ..head_naming import Candidate

#: Candidates one visitor's inference may rank (the CLI takes an expert vocabulary's bound, 100,000): each is embedded,
#: and a text classifier is run on each class's texts.
MAX_SPACE_CANDIDATES = 1_000


def _value_text(f: FieldSuggestion) -> str:
    """A field's value for the fields table: classes each with its own confidence where the expert gave one (the
    field's confidence is the least of them), the surest first."""
    scores = f.details.get("confidence_by_class") or {}
    if isinstance(f.value, (list, tuple)) and scores:
        named = [f"{v} ({_percent(scores[v])})" if v in scores else str(v) for v in f.value]
        return _display(named, 8)
    return _display(f.value, 8)


def _checked_source(repo_id: str | None, upload: str | os.PathLike | None, max_upload_bytes: int) -> str:
    """The source to infer from: an uploaded .safetensors file or a Hub repo id, one of them (never a server path)."""
    from ..reading import looks_like_repo_id

    repo_id = (repo_id or "").strip()
    if upload and repo_id:  # which one the visitor meant is theirs to say, never ours to guess
        raise SpaceInputError("give a repo id or an uploaded file, not both: clear one of them")
    if upload:
        path = Path(upload)
        if path.suffix.lower() != ".safetensors":
            raise SpaceInputError(f"{path.name} is not a .safetensors file: upload the model's weights as .safetensors "
                                  "(pickled .bin/.pt files are never opened; the Hub's safetensors converter makes one)")
        size = path.stat().st_size
        if size > max_upload_bytes:
            raise SpaceInputError(f"{path.name} is {size / 2**20:.3g} MiB, over this Space's upload limit of "
                                  f"{max_upload_bytes / 2**20:.3g} MiB: give its Hub repo id instead (only one layer is read)")
        return str(path)
    if not repo_id:
        raise SpaceInputError("type a Hub repo id (namespace/name) or upload a .safetensors file")
    # infer_card reads an existing local path before the Hub: in a public Space that would expose the server's files.
    if not looks_like_repo_id(repo_id) or Path(repo_id).exists():
        raise SpaceInputError(f"{repo_id!r} is not a Hub repo id: type it as namespace/name, e.g. google/vit-base-patch16-224")
    return repo_id


@dataclass
class InferView:
    """One inference laid out for display.

    Attributes:
        suggestion: what `infer_card` returned, as the page names things (kept for the pull request).
        summary: Markdown: the model, its tree, the expert used, what was read, what a PR would carry.
        fields: one row per field: field, value, confidence, status (for a PR, explored, in the card), source,
            evidence.
        chart: HTML: the expert's per-class or per-concept scores with its threshold, answered or not ("" when
            no expert read the model).
        card: the README.md a pull request would propose, as Markdown (the current one when nothing qualifies).
        diff: the unified diff current -> that README.md ("" when nothing qualifies).
        warnings: things to tell the user that are not errors (no expert for this tree...).
    """

    suggestion: CardSuggestion
    summary: str
    fields: pd.DataFrame
    chart: str
    card: str
    diff: str
    warnings: list[str] = field(default_factory=list)


FIELD_COLUMNS = ["field", "value", "confidence", "status", "source", "evidence"]


def _expert_line(suggestion: CardSuggestion, registry: ExpertRegistry) -> tuple[str, list[str]]:
    """Which expert answered `trained_on` (or why none did), and a warning when no expert knows the tree."""
    trained_on = suggestion.fields.get("trained_on")
    if trained_on is not None and trained_on.source == "expert":
        return trained_on.evidence, []
    if trained_on is not None:
        return f"none needed: trained_on comes from {trained_on.evidence}", []
    why = suggestion.abstained.get("trained_on", "")
    if "rows" in _reading(suggestion):  # a text classifier run on the candidates (`scores_chart`)
        return "none: the classifier itself, run on the candidates, named no head row confidently enough", []
    entries = registry.for_root(suggestion.tree) if suggestion.tree else []
    if not entries:  # routing finds only trees that have an expert: an unknown tree is a tree without one
        return "none", [f"no expert for this model's tree ({why}): trained_on cannot be inferred; "
                        "the Experts tab lists the trees that have one"]
    named = [f"{e.public_name} ({e.method} on {e.layer})" for e in entries]  # two experts of a tree differ by these
    return f"{', '.join(dict.fromkeys(named))}: {'it' if len(entries) == 1 else 'each'} abstained", []


def _status(f: FieldSuggestion, for_pr: dict[str, FieldSuggestion]) -> str:
    if not f.missing:
        return "in the card already"
    if f.name in for_pr:
        return "for a pull request"
    if not f.validated:
        return "explored, below the calibrated threshold — not for a PR"
    return f"validated, but not for a PR alone (it needs {' or '.join(sorted(INFORMATIVE_FIELDS))} beside it)"


def _pull_request_line(suggestion: CardSuggestion) -> str:
    """What a pull request would carry, or plainly why nothing qualifies."""
    for_pr = suggestion.pull_request_fields
    if for_pr:
        return f"**For a pull request:** {', '.join(for_pr)} (each at or above its calibrated threshold)"
    return f"**For a pull request:** nothing qualifies: {_why_no_pull_request(suggestion)}"


def _why_no_pull_request(suggestion: CardSuggestion) -> str:
    if "card" in suggestion.abstained:  # a card that cannot be read safely gets no proposal, whatever it lacks
        return "the card's metadata cannot be edited safely (see *card* below)"
    if not suggestion.proposed:
        return "the card has every field inferred"
    explored = [name for name, f in suggestion.proposed.items() if not f.validated]
    if explored and not any(f.validated and name in INFORMATIVE_FIELDS for name, f in suggestion.proposed.items()):
        return (f"{', '.join(explored)} only explored below the calibrated threshold, and a pull request needs "
                f"{' or '.join(sorted(INFORMATIVE_FIELDS))} validated")
    return (f"{', '.join(suggestion.proposed)} alone the Hub derives or config.json states; a pull request needs "
            f"{' or '.join(sorted(INFORMATIVE_FIELDS))} validated")


def _pull_request_card(suggestion: CardSuggestion) -> tuple[str, str]:
    """The README.md a pull request would propose (only `pull_request_fields`) and its diff; ("", "") for none."""
    for_pr = suggestion.pull_request_fields
    if not for_pr or "card" in suggestion.abstained:
        return "", ""
    try:
        suggested = apply_suggestions(suggestion.current_card, for_pr, title=suggestion.source.rstrip("/").split("/")[-1])
    except CardError:
        return "", ""
    return suggested, card_diff(suggestion.current_card, suggested) if suggested != suggestion.current_card else ""


def card_markdown(readme: str) -> str:
    """A README.md for display as Markdown: its YAML front matter as a code block, then the body."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(readme)
    if match is None:
        return readme
    return f"```yaml\n{match.group(2).rstrip()}\n```\n\n{readme[match.end():].lstrip()}"


def diff_lines(diff: str) -> list[tuple[str, str | None]]:
    """A unified diff as `gr.HighlightedText` takes it: each line with "added", "removed" or None (context, headers).

    The lines joined give the diff back, so the API's value stays the diff itself, one labelled line at a time.
    """
    kinds = {"+": "added", "-": "removed"}
    return [(line, None if line.startswith(("+++ ", "--- ")) else kinds.get(line[:1]))
            for line in diff.splitlines(keepends=True)]


def _reading(suggestion: CardSuggestion) -> dict:
    """What the expert read behind `trained_on`, whether it answered or abstained ({} when none read it)."""
    trained_on = suggestion.fields.get("trained_on")
    return suggestion.details.get("trained_on") or (trained_on.details if trained_on is not None else {})


def _bar(label: str, value: float, low: float, high: float, text: str, lines: Iterable[tuple[float, str]] = (),
         strong: bool = False) -> str:
    """One row of the chart: a bar from `low` to `value` on [low, high], with vertical marks at `lines`."""
    def at(x: float) -> float:
        return 100 * (min(max(x, low), high) - low) / (high - low)

    marks = "".join(f'<span class="probex-mark {kind}" style="left:{at(x):.1f}%"></span>'
                    for x, kind in lines if low <= x <= high)
    return (f'<div class="probex-row"><span class="probex-label">{html.escape(label)}</span>'
            f'<span class="probex-track"><span class="probex-fill{" strong" if strong else ""}" '
            f'style="width:{at(value):.1f}%"></span>{marks}</span><span class="probex-value">{html.escape(text)}</span></div>')


def scores_chart(reading: dict) -> str:
    """The expert's reading as an HTML bar chart: per-class confidences with the threshold lines, per-concept cosines
    and the top concept's confidence against the threshold, or (a text classifier run on the candidates) each head
    row's candidate and confidence against the threshold; "" when nothing read the model.

    The solid line is the calibrated threshold (95 % precision on held-out models: what a pull request needs),
    the dashed one the slider's minimum when it differs. A threshold above 1 is no line: the expert never proposes.
    """
    if not reading:
        return ""
    floor, cut = reading.get("calibrated_threshold", reading.get("threshold", 1.01)), reading.get("threshold", 1.01)
    lines = [(floor, "calibrated")] + ([(cut, "asked")] if cut != floor else [])
    legend = [("calibrated" if floor <= 1 else "", f"calibrated threshold: {_threshold_text(floor)}")]
    legend += [("asked", f"your minimum: {_percent(cut)}")] if cut != floor else []
    if "rows" in reading:  # a text classifier run on the candidates: each head row and the candidate it looks like
        title = f"Each head row, as the classifier ran on {reading.get('candidates', 0)} candidates: the best and its confidence"
        rows = [_bar(f"row {row['row']}: {row['candidate'] or '?'}", row["confidence"], 0, 1, _percent(row["confidence"]),
                     lines, strong=row["confidence"] >= floor) for row in reading["rows"]]
    elif "confidence_by_class" in reading:
        title = "Expert's confidence per class (top 10)"
        rows = [_bar(label, c, 0, 1, _percent(c), lines, strong=c >= floor)
                for label, c in reading["confidence_by_class"].items()]
    else:
        cosines = reading.get("cosine_by_concept", {})
        low, high = min(0.0, *cosines.values()), max(1e-9, *cosines.values())
        confidence = reading.get("confidence", 0.0)
        title = "Expert's cosine similarity per concept (top 5), and its confidence in the top one"
        rows = [_bar(label, c, low, high, f"{c:.3f}") for label, c in cosines.items()]
        rows.append(_bar(f"confidence in “{next(iter(cosines), '')}”", confidence, 0, 1, _percent(confidence), lines,
                         strong=confidence >= floor))
    return (f'<div class="probex-chart"><div class="probex-title">{html.escape(title)}</div>{"".join(rows)}'
            '<div class="probex-legend">' + " · ".join(f'<span class="probex-key {kind}"></span>{html.escape(text)}'
                                                       for kind, text in legend) + "</div></div>")


def _candidates(text: str | None) -> list[Candidate] | None:
    """Candidates typed in the Space: names one a line or comma-separated, or lines `name | example | example` (a
    text classifier's class with example texts, which name its head rows far more often; commas stay in them); None
    when blank."""
    from ..head_naming import parse_candidates

    if not (text or "").strip():
        return None
    lines = text if "|" in text else "\n".join(re.split(r"[\n,]", text))
    try:
        return parse_candidates(lines, "|", limit=MAX_SPACE_CANDIDATES)
    except ValueError as err:
        raise SpaceInputError(f"candidates: {err}") from None


def infer(repo_id: str | None = None, upload: str | os.PathLike | None = None, *, token: str | None = None,
          registry: ExpertRegistry, min_confidence: float | None = None, candidates: str | None = None,
          max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, progress: Progress = _no_progress) -> InferView:
    """`infer_card` on a Hub repo id or an uploaded .safetensors file (one of them), laid out for display.

    `min_confidence` explores: fields down to it are shown, each marked for a pull request only at or above
    its calibrated threshold (`FieldSuggestion.validated`). `candidates`: the concepts a LoRA's is chosen from, or the
    classes a text classifier whose files do not name them is run on, one per line or comma-separated, a class's
    example texts after `|` (blank: a LoRA expert's default vocabulary; `infer_card(..., candidates=)`).

    Raises:
        SpaceInputError: no input or both, not a repo id, a wrong file type or size, a confidence outside
            [0, 1], or anything `infer_card` refuses (unknown repo, no access, no safetensors...), in the Space's words.
    """
    from ..infer import infer_card

    source = _checked_source(repo_id, upload, max_upload_bytes)
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise SpaceInputError(f"the minimum confidence must be between 0 and 1, not {min_confidence}")
    concepts = _candidates(candidates)
    name = Path(source).name if upload else source
    public = PublicNames(registry, upload)
    progress(0.1, "reading the model's files and one layer")
    try:
        found = infer_card(source, token=_as_token(token), experts=registry, min_confidence=min_confidence,
                           candidates=concepts)
    except ProbexError as err:
        raise SpaceInputError(_space_message(err, name, public)) from None
    progress(0.9, "laying out the card")
    suggestion = public.suggestion(found, name)
    expert, warnings = _expert_line(suggestion, registry)
    for_pr = suggestion.pull_request_fields
    fields = pd.DataFrame([{"field": f.name, "value": _value_text(f), "confidence": _percent(f.confidence),
                            "status": _status(f, for_pr), "source": ORIGINS.get(f.source, f.source),
                            "evidence": f.evidence}
                           for f in suggestion.fields.values()], columns=FIELD_COLUMNS)
    revision = f" &nbsp;·&nbsp; **revision** `{suggestion.revision[:10]}`" if suggestion.revision else ""
    summary = "\n\n".join([
        f"### {name}",
        f"**Tree** {suggestion.tree or 'unknown'} &nbsp;·&nbsp; **family** {suggestion.family or 'unknown'} "
        f"&nbsp;·&nbsp; **read** {suggestion.bytes_read / 1024:,.1f} KiB{revision}",
        f"**Expert** {expert}",
        f"**Found for the card:** {', '.join(suggestion.proposed) or 'nothing the card lacks'}",
        _pull_request_line(suggestion),
        "\n".join(f"- *not answered:* **{what}**: {why}" for what, why in suggestion.abstained.items()),
        "\n\n".join(f"> ⚠ {w}" for w in warnings),
    ]).rstrip()
    suggested, diff = _pull_request_card(suggestion)
    card = suggested or suggestion.current_card
    card_text = card_markdown(card) if card else "*This model has no README.md, and nothing qualifies for one.*"
    return InferView(suggestion, summary, fields, scores_chart(_reading(suggestion)), card_text, diff, warnings)
