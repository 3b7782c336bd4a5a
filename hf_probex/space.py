"""What the Gradio Space does, as plain functions: testable without a browser or a Gradio server.

The Space (`hf_probex.space_app`, `spaces/app.py`) is a thin layer over these. Each function takes
the user's inputs and returns tables (pandas DataFrames, which Gradio's tables and plots take as
they are) and Markdown; a bad input raises `SpaceInputError` with a one-line message in the Space's
own words (what to do in the page, never CLI advice), and results carry `warnings` for things worth
saying that are not errors. No server path is ever shown: an upload is named by its file name, a local
expert by its tree (`PublicNames`).

- `infer`: `infer_card` on a Hub repo id or an uploaded .safetensors file (one of them), laid out for
  display: every field found at the slider's threshold, and which of them a pull request may carry.
- `open_pull_request`: the bot's own path (`hf_probex.bot.run_bot`) for one repo, with only the fields
  validated at their calibrated threshold (`CardSuggestion.pull_request_fields`), so a PR from the Space
  gets the bot's checks (opt-out, duplicates, open PRs) and never a value the slider only explored.
- `browse_tree`: a model tree from the Hub's `base_model` filter (`hf_probex.bot.walk_tree`) plus members
  known otherwise, what each model's card lacks (`hf_probex.cards.missing_fields`) and each field's coverage.
- `search_loras`: zero-shot search of a LoRA tree: the tree's expert embeds the query with its text
  encoder and ranks the tree's LoRAs by cosine similarity, from the tree's table when it has one
  (`hf_probex.search`: a cached vector index, no LoRA read), else by reading every LoRA's layers.
- `experts_table`, `resolve_registry`, `hub_experts`, `tree_examples`: the experts found, by tree, with
  their cross-validated metrics; found without waiting long on an unreachable Hub; example repos per tree.
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from .cards import CardError, apply_suggestions, card_diff, metadata_of, missing_fields, trained_on_value
from .errors import (
    AccessDeniedError, BadFileError, HubConnectionError, MissingFileError, NoSafetensorsError, ProbexError,
    RepoNotFoundError, RepoNotVisibleError, UnknownArchitectureError,
)
from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .suggestions import CARD_FIELDS, INFORMATIVE_FIELDS, ORIGINS, CardSuggestion, FieldSuggestion

if TYPE_CHECKING:
    from .bot import HubClient
    from .head_naming import Candidate

__all__ = [
    "DEFAULT_MAX_TREE_MODELS", "DEFAULT_MAX_UPLOAD_BYTES", "FIELD_COLUMNS", "HUB_TIMEOUT_S", "InferView", "PublicNames",
    "PullRequestView", "SearchView", "SpaceInputError", "TreeView", "browse_tree", "card_markdown", "experts_table",
    "diff_lines", "hub_experts", "infer", "open_pull_request", "resolve_registry", "scores_chart", "search_loras", "tree_examples",
    "zero_shot_roots",
]

DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20
"""Uploads above this are refused: a LoRA is megabytes, and a full model is better read from the Hub."""
DEFAULT_MAX_TREE_MODELS = 500
#: Candidates one visitor's inference may rank (the CLI takes an expert vocabulary's bound, 100,000): each is embedded,
#: and a text classifier is run on each class's texts.
MAX_SPACE_CANDIDATES = 1_000
"""A tree walk reads one card (browse) or one layer (search) per model: bounded so a request ends."""
HUB_TIMEOUT_S = 3.0
"""How long the Space waits for the Hub before listing its experts or examples: a Space without network
must show its page, not retry for 40 s."""
READ_THREADS = 4  # reading cards and layers is network-bound: a few at once, not more, on a shared Space
NEVER = "never proposes (no threshold reaches 95 % precision)"

T = TypeVar("T")
Progress = Callable[[float, str], None]
"""`progress(fraction done, what is happening)`; Gradio's `gr.Progress` is one."""


class SpaceInputError(ValueError):
    """An input the Space cannot work with; the message is one line saying what to do instead."""


def _no_progress(fraction: float, desc: str) -> None:
    """The default progress callback: reports nothing."""


def _as_token(token: str | None) -> str | bool:
    """The token to send: the user's, or none at all (False).

    Never None, which would make huggingface_hub fall back to the server's own token (a Space secret,
    HF_TOKEN): a visitor must not read private repos or write with the Space owner's rights.
    """
    return token.strip() if token and token.strip() else False


def _hub_api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=_as_token(token))


def _one_line(err: BaseException) -> str:
    text = (getattr(err, "server_message", None) or str(err) or type(err).__name__).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _display(value: object, most: int | None = None) -> str:
    """A value as text: a list joined by commas, its first `most` items and how many more when given."""
    if not isinstance(value, (list, tuple)):
        return str(value)
    shown = ", ".join(map(str, value[:most]))
    return shown + (f" … (+{len(value) - most} more)" if most is not None and len(value) > most else "")


def _value_text(f: FieldSuggestion) -> str:
    """A field's value for the fields table: classes each with its own confidence where the expert gave one (the
    field's confidence is the least of them), the surest first."""
    scores = f.details.get("confidence_by_class") or {}
    if isinstance(f.value, (list, tuple)) and scores:
        named = [f"{v} ({_percent(scores[v])})" if v in scores else str(v) for v in f.value]
        return _display(named, 8)
    return _display(f.value, 8)


def _threshold_text(threshold: float) -> str:
    """A threshold for people: above 1 means calibration found none reaching 95 % precision."""
    return NEVER if threshold > 1 else f"proposes at {_percent(threshold)}"


# ---- server paths never shown --------------------------------------------------------------------------


class PublicNames:
    """Rewrites text for the page: each server path (an upload, a local expert folder, anything under the
    temporary folders) becomes what the visitor knows it by (the file name, the expert's tree)."""

    def __init__(self, registry: ExpertRegistry | None = None, upload: str | os.PathLike | None = None) -> None:
        names = {e.location: e.public_name for e in (registry.entries if registry is not None else ())}
        names.update({str(upload): Path(upload).name} if upload else {})
        # Longest first, so a folder never replaces the start of a path inside it; Hub repo ids stay as they are.
        self.names = {path: name for path, name in sorted(names.items(), key=lambda kv: -len(kv[0])) if path != name}
        temp = {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()}
        self._temp_path = re.compile("(?:" + "|".join(re.escape(t.rstrip("/")) for t in temp) + r")/[^\s'\"`),;]*")

    def __call__(self, text: str) -> str:
        """`text` with every server path replaced by its public name (a path under a temporary folder: its file name)."""
        for path, name in self.names.items():
            text = text.replace(f"expert {path}", name).replace(path, name)  # "expert <folder>" reads "the vit tree's expert"
        return self._temp_path.sub(lambda m: Path(m.group(0)).name, text)

    def suggestion(self, suggestion: CardSuggestion, source: str) -> CardSuggestion:
        """`suggestion` as the page shows it: named `source`, evidence and reasons without server paths."""
        fields = {name: dataclasses.replace(f, evidence=self(f.evidence)) for name, f in suggestion.fields.items()}
        return dataclasses.replace(suggestion, source=source, fields=fields, suggested_card=self(suggestion.suggested_card),
                                   diff=self(suggestion.diff),
                                   abstained={name: self(why) for name, why in suggestion.abstained.items()})


#: ProbexErrors in the Space's words: what to do in this page (the token box, an upload), not CLI advice. The first
#: matching class wins, so subclasses come before their bases.
_SPACE_WORDS: tuple[tuple[type[ProbexError], str], ...] = (
    (RepoNotVisibleError, "{name} was not found: check the name; if it is private or gated, paste a token that can read it"),
    (RepoNotFoundError, "{name} was not found, or the token pasted cannot read it: check the name and the token"),
    (AccessDeniedError, "the Hub refused access to {name}: paste a token that can read it (if it is gated, accept its "
                        "conditions on its page first)"),
    (HubConnectionError, "the Hub did not answer for {name}: try again in a moment"),
    (MissingFileError, "a file of {name} could not be fetched (the repo may have just changed): try again"),
    (NoSafetensorsError, "{name} has no .safetensors weights (pickled .bin/.pt files are never opened): the Hub's "
                         "safetensors convert Space makes them"),
    (UnknownArchitectureError, "{name} is of no model family hf-probex knows ({known})"),
    (BadFileError, "{name} has a damaged file: {detail}"),
)


def _space_message(err: ProbexError, name: str, public: PublicNames) -> str:
    """A `ProbexError` in the Space's words (`_SPACE_WORDS`), without server paths."""
    detail = public(_one_line(err))
    for kind, words in _SPACE_WORDS:
        if isinstance(err, kind):
            return words.format(name=name, detail=detail, known=", ".join(getattr(err, "known", ())))
    return detail


def _checked_source(repo_id: str | None, upload: str | os.PathLike | None, max_upload_bytes: int) -> str:
    """The source to infer from: an uploaded .safetensors file or a Hub repo id, one of them (never a server path)."""
    from .reading import looks_like_repo_id

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


# ---- infer ----------------------------------------------------------------------------------------------


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
#: The card fields browse counts: those of the Hub's card (`lineage` is hf_probex's own section, not one of them).
BROWSED_FIELDS = tuple(name for name in CARD_FIELDS if name != "lineage")
#: The browse table's columns, by the key of a model's row.
BROWSE_COLUMNS = {"repo": "repo", "base_model": "base_model", "missing": "fields missing", "n_missing": "how many",
                  "found by": "found by"}


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
    from .head_naming import parse_candidates

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
    from .infer import infer_card

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


# ---- pull request --------------------------------------------------------------------------------------


@dataclass
class PullRequestView:
    """What happened to a pull request request: `opened`, the PR's `url` (or an earlier one's), a `message`."""

    opened: bool
    url: str | None
    message: str


def _earlier_pull_request(client: HubClient, repo_id: str, num: int) -> str:
    """Why fields proposed before are not proposed again, by what became of that pull request."""
    try:
        status = client.call(lambda: client.api.get_discussion_details(repo_id, num)).status
    except Exception:  # noqa: BLE001 - the reason stands without the status; the link lets the visitor look
        return f"these fields were proposed on this repo before, in pull request #{num}"
    if status in ("open", "draft"):
        return f"hf-probex's pull request #{num} proposing these fields is still open"
    return f"these fields were proposed in pull request #{num}, which was {status}: they are not proposed again"


PULL_REQUEST_REASONS = {
    "already-proposed": "these fields were proposed on this repo before",
    "open-pr": "hf-probex already has an open pull request on this repo",
    "complete": "the card has every field now",
    "opt-out-card": "the card opts out of hf-probex proposals",
    "opt-out-owner": "the repo's owner opted out of hf-probex proposals on all their repos",
    "invalid-card": "the card's metadata does not parse (or is too complex to read safely), so no safe edit exists",
    "unsafe-edit": "adding to this card would change what its owner wrote (or it quotes hf-probex's section marker)",
    "below-threshold": "no field reaches its calibrated threshold",
    "nothing-inferred": "nothing the card lacks was inferred",
}


def open_pull_request(suggestion: CardSuggestion | None, token: str | None) -> PullRequestView:
    """Open a pull request with `suggestion`'s validated fields (`pull_request_fields`), through the bot (one
    PR per repo, never a duplicate, never on an opted-out card; fields proposed there before are not proposed
    again). Opens nothing, and says why, when no field qualifies.

    Raises:
        SpaceInputError: nothing inferred yet, an uploaded file (no repo), no token, a token the Hub refuses,
            or an error on the Hub.
    """
    from .bot import BotConfig, BotState, BotStopped, HubClient, run_bot
    from .reading import looks_like_repo_id

    if suggestion is None:
        raise SpaceInputError("infer a card first, then open the pull request")
    if not looks_like_repo_id(suggestion.source):
        raise SpaceInputError("pull requests go to Hub repos: this card was inferred from an uploaded file")
    fields = suggestion.pull_request_fields
    if not fields:
        return PullRequestView(False, None, f"No pull request opened: nothing qualifies: {_why_no_pull_request(suggestion)}.")
    if not _as_token(token):
        raise SpaceInputError("paste a Hub token with write access to open a pull request")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    try:
        client.whoami()
    except BotStopped:
        raise SpaceInputError("the Hub does not accept this token: paste a valid one (hf_...) with write access") from None
    # Only the validated fields reach the bot, so its threshold has nothing left to filter: each passed its own floor.
    validated = CardSuggestion(suggestion.source, suggestion.revision, suggestion.family, suggestion.tree, dict(fields))
    config = BotConfig(min_confidence=0.0, concurrency=1)
    with tempfile.TemporaryDirectory() as folder:
        state = BotState(Path(folder) / "state.sqlite")  # the Hub's PR markers, not this file, prevent duplicates
        try:
            report = run_bot([suggestion.source], client, infer=lambda _repo: validated, state=state, config=config)
        except BotStopped:
            raise SpaceInputError(f"this token may not open pull requests on {suggestion.source}: paste one with "
                                  "write access") from None
        finally:
            state.close()
    outcome = report.outcomes[0]
    url = f"{client.api.endpoint}/{outcome.repo_id}/discussions/{outcome.pr_num}" if outcome.pr_num else None
    if outcome.outcome == "proposed":
        return PullRequestView(True, url, f"Opened pull request #{outcome.pr_num} adding {', '.join(outcome.fields)}.")
    if outcome.outcome == "error":
        raise SpaceInputError(f"the Hub did not take the pull request ({PublicNames()(outcome.reason or '')}): "
                              "try again in a moment")
    reason = _earlier_pull_request(client, outcome.repo_id, outcome.pr_num) \
        if outcome.reason == "already-proposed" and outcome.pr_num else PULL_REQUEST_REASONS.get(outcome.reason, outcome.reason)
    return PullRequestView(False, url, f"No pull request opened: {reason}.")


# ---- browse a tree --------------------------------------------------------------------------------------


@dataclass
class TreeView:
    """A model tree: `models` (repo, declared base_model, missing fields, how it was found), `coverage` (field,
    share of the tree's models whose card states it, count), a Markdown `summary`, `warnings`, and `drawing`: the
    tree drawn in Markdown, each model under its parent (`tree_drawing`)."""

    models: pd.DataFrame
    coverage: pd.DataFrame
    summary: str
    warnings: list[str] = field(default_factory=list)
    drawing: str = ""


@dataclass
class _Tree:
    """A walked tree: the Hub client, its repos (by cards first, then by weights, then the others given) and how
    each was found ("card", "weights" or "other")."""

    client: HubClient
    repos: list[str]
    found_by: dict[str, str]
    warnings: list[str]


def _walk(root: str, token: str | None, limit: int, progress: Progress, members: Iterable[str] | None,
          authors: Iterable[str] = (), registry: ExpertRegistry | None = None) -> _Tree:
    """The first `limit` repos of the tree of `root` (`hf_probex.members.tree_members`): those whose cards name it
    as base_model (children of children too), then the repos of `authors` that `registry`'s experts route into
    the tree by their weights, then `members` known otherwise; and warnings."""
    from huggingface_hub.errors import HfHubHTTPError

    from .bot import BotStopped, HubClient
    from .members import tree_members, weight_router
    from .reading import looks_like_repo_id

    root = (root or "").strip()
    if not looks_like_repo_id(root):
        raise SpaceInputError(f"{root!r} is not a Hub repo id: type the tree's root as namespace/name")
    authors = [a.strip() for a in authors if a.strip()]
    if not all(looks_like_repo_id(a, namespaced=False) for a in authors):
        raise SpaceInputError(f"{', '.join(authors)}: type user or organisation names, separated by commas")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    progress(0.02, f"listing the tree of {root}" + (f" and routing the models of {', '.join(authors)}" if authors else ""))
    router = weight_router(registry, token=_as_token(token)) if authors else None
    try:
        listed = tree_members(client, root, authors=authors, router=router)
    except RepoNotFoundError:
        raise SpaceInputError(f"{root}: no such model on {client.api.endpoint} (or it is private: paste a token)") from None
    except BotStopped:
        raise SpaceInputError(f"the Hub refused the token for the tree of {root}: paste a valid token, or clear the "
                              "token box to browse public models") from None
    except (HfHubHTTPError, OSError):
        raise SpaceInputError(f"the Hub did not answer the tree listing of {root}: try again in a moment") from None
    found_by = {m.repo_id: m.found_by for m in listed}
    for repo_id in dict.fromkeys(members or ()):
        found_by.setdefault(repo_id, "other")
    found_by.pop(root, None)
    repos = list(found_by)
    warnings = [] if repos else [f"no model names {root} as its base_model: the tree has only its root"]
    if len(repos) > limit:
        warnings.append(f"the tree has {len(repos)} models; only the first {limit} (by cards first) are shown")
    return _Tree(client, repos[:limit], {r: found_by[r] for r in repos[:limit]}, warnings)


def _in_parallel(func: Callable[[str], T], repos: list[str], progress: Progress, what: str) -> list[T]:
    """`func` over `repos` on a few threads, in order, reporting progress as each finishes."""
    results: list[T] = []
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for done, result in enumerate(pool.map(func, repos), start=1):
            results.append(result)
            progress(0.05 + 0.9 * done / len(repos), f"{what} {done}/{len(repos)}")
    return results


def _found_by(tree: _Tree) -> str:
    """How the tree's members were found, for the summaries."""
    counts = Counter(tree.found_by.values())
    words = {"card": "found by their cards' base_model", "weights": "by their weights", "other": "otherwise"}
    return ", ".join(f"**{counts[kind]}** {words[kind]}" for kind in words if counts[kind] or kind == "card")


def _from_table(root: str, table: str | None, token: str | None, limit: int, members: Iterable[str] | None,
                progress: Progress) -> tuple[list[dict], _Tree, str]:
    """The tree's rows from its tree table (`table`, or the one `scan.publish.find_table` finds) as `browse_tree`
    shows them, the tree they make, and a line saying which table, scanned when.

    Raises:
        TableError: no table (`TableNotFoundError`), or one that cannot be used; BadFileError: an oversized file.
    """
    from .bot import HubClient
    from .scan.publish import find_table

    progress(0.02, f"looking for the tree table of {root}")
    found = find_table(root, table, token=_as_token(token))
    columns = ["repo_id", "found_by", "has_card", "card_base_model", "card_missing", "error"]
    rows = found.read_columns(columns).to_pylist()
    found_by = {row["repo_id"]: row["found_by"] for row in rows if row["repo_id"] != root}
    for repo_id in dict.fromkeys(members or ()):
        found_by.setdefault(repo_id, "other")
    repos = list(found_by)
    warnings = [] if repos else [f"the tree table of {root} holds no model below the root"]
    if len(repos) > limit:
        warnings.append(f"the tree has {len(repos)} models; only the first {limit} of its table are shown")
    tree = _Tree(HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0), repos[:limit],
                 {r: found_by[r] for r in repos[:limit]}, warnings)
    shown = []
    for row in rows:
        if row["repo_id"] not in tree.found_by:
            continue
        missing = row["card_missing"]
        if row["error"] is not None or missing is None:
            why = f"(not read: {row['error']})" if row["error"] else "(the card's metadata does not parse)"
            shown.append({"repo": row["repo_id"], "base_model": "", "missing": why, "n_missing": None,
                          "found by": row["found_by"]})
            continue
        shown.append(_card_row(row["repo_id"], row["found_by"], row["card_base_model"] or None, set(missing),
                               bool(row["has_card"])))
    at = f"@{found.commit[:8]}" if found.commit else ""
    scanned = found.described.get("scanned_at") or "at an unknown date"
    where = f" {found.location}{at}" if found.commit else ""  # a Hub dataset; a folder of this server stays unnamed
    source = f"from the tree table{where}, scanned {scanned}: cards edited since show after its next scan"
    return shown, tree, source


def _read_card(client: HubClient, repo_id: str, found_by: str) -> dict:
    """One model of the browse table from its card on the Hub now (an unreadable one says why)."""
    try:
        raw = client.readme(repo_id, "main")
        readme = raw.decode("utf-8") if raw is not None else ""
        missing = missing_fields(readme)
        base = metadata_of(readme).get("base_model")
    except (CardError, BadFileError, UnicodeDecodeError):
        return {"repo": repo_id, "base_model": "", "missing": "(the card's metadata does not parse)", "n_missing": None,
                "found by": found_by}
    except Exception as err:  # noqa: BLE001 - one repo the Hub fails on must not hide the rest of the tree
        return {"repo": repo_id, "base_model": "", "missing": f"(not read: {_one_line(err)})", "n_missing": None,
                "found by": found_by}
    return _card_row(repo_id, found_by, base, missing, raw is not None)


def _card_row(repo_id: str, found_by: str, base: object, missing: set[str], has_card: bool) -> dict:
    """One model of the browse table: its declared base_model and the fields its card lacks."""
    ordered = [name for name in BROWSED_FIELDS if name in missing]
    first = base[0] if isinstance(base, list) and base else base
    return {"repo": repo_id, "base_model": _display(base) if base else "", "missing": ", ".join(ordered) or "nothing",
            "n_missing": len(ordered), "found by": found_by, "has_card": has_card, "missing_set": missing,
            "declared": first if isinstance(first, str) else None}


def tree_drawing(root: str, declared: dict[str, str | None], recovered: dict[str, tuple[str, float]] | None = None) -> str:
    """The tree of `root` as Markdown: an indented drawing in a code block, each model under its parent.

    A model's parent is the base its card declares (`declared`: repo -> its first base_model, or None) where that
    is the root or another model shown; else the one its weights name (`recovered`: repo -> (parent, confidence),
    `hf_probex.lineage`), marked with that confidence; else it hangs from the root, marked "parent unknown". Models
    whose declared bases loop (hostile cards) are listed after the tree."""
    recovered = recovered or {}
    shown = set(declared)
    parent_of: dict[str, str] = {}
    how: dict[str, str] = {}
    for repo, base in declared.items():
        if base == root or base in shown:
            parent_of[repo], how[repo] = base, "card"
        elif repo in recovered and (recovered[repo][0] == root or recovered[repo][0] in shown):
            parent_of[repo], how[repo] = recovered[repo][0], f"weights {recovered[repo][1]:.2f}"
        else:
            parent_of[repo], how[repo] = root, "parent unknown"
    children: dict[str, list[str]] = {}
    for repo, parent in parent_of.items():
        children.setdefault(parent, []).append(repo)
    lines, reached = [root], set()
    stack = [(child, "", i == len(children.get(root, [])) - 1) for i, child in enumerate(children.get(root, []))][::-1]
    while stack:  # depth-first without recursion: a tree of any depth draws
        repo, indent, last = stack.pop()
        reached.add(repo)
        lines.append(f"{indent}{'└── ' if last else '├── '}{repo}  ({how[repo]})")
        below = [c for c in children.get(repo, []) if c not in reached]
        stack += [(child, indent + ("    " if last else "│   "), i == len(below) - 1) for i, child in enumerate(below)][::-1]
    looped = [repo for repo in declared if repo not in reached]
    if looped:
        lines += ["", "declared bases that loop, never reaching the root:"] + [f"  {repo} -> {parent_of[repo]}" for repo in looped]
    return "```text\n" + "\n".join(lines).replace("`", "'") + "\n```"


def _recovered_parents(root: str, repos: list[str], registry: ExpertRegistry | None, token: str | None,
                       progress: Progress) -> tuple[dict[str, tuple[str, float]], str]:
    """Each repo's parent among `repos` and the root as its weights name it (`hf_probex.lineage`, by the calibration
    the tree's expert carries): repo -> (parent, confidence); and a warning where it could not be done."""
    from .lineage import lineage_calibration, recover_lineage

    if not repos:
        return {}, ""
    try:
        calibration = lineage_calibration(registry or resolve_registry(None), root)
    except ProbexError as err:
        return {}, f"parents not named from weights: {_one_line(err)}"
    progress(0.5, f"reading the weights of {len(repos)} models to name their parents")
    left_out: list[str] = []
    try:
        edges = recover_lineage(root, repos, calibration, root_id=root, token=_as_token(token), progress=left_out.append,
                                from_hub=set(repos))
    except ProbexError as err:
        return {}, f"parents not named from weights: {_one_line(err)}"
    note = f"{len(left_out)} models could not be read for their parents ({left_out[0]})" if left_out else ""
    return {e.child: (e.parent, e.confidence) for e in edges}, note


def browse_tree(root: str, *, token: str | None = None, limit: int = DEFAULT_MAX_TREE_MODELS,
                authors: Iterable[str] = (), registry: ExpertRegistry | None = None,
                members: Iterable[str] | None = None, table: str | None = None,
                parents_from_weights: bool = False, progress: Progress = _no_progress) -> TreeView:
    """The models of the tree of `root` on the Hub, what each card lacks, and each field's coverage.

    The tree's table (`hf-probex scan`) answers when there is one: `table`, else the one `scan.publish.find_table`
    finds (the default scan folder, a trusted author's on the Hub); it was read at its scan, so the summary says
    when. Without one (or with `authors`, which asks for routing now), the tree is listed and each card read now.

    Args:
        authors: users or organisations whose repos are routed by their weights (with `registry`'s experts;
            default the local and trusted Hub experts): those in the tree are listed though no card names it.
        members: repo ids known to belong to the tree by other means than their card; listed last.
        table: a tree table (dataset repo id or scan folder) to read the tree from.
        parents_from_weights: also name each model's parent among the others from their weights, as `hf-probex
            lineage` does (every model read whole: slow), for the drawing of models whose card names none.

    Raises:
        SpaceInputError: not a repo id, an unknown root, a Hub that does not answer the listing, a `table` given
            that cannot be used.
    """
    from .reading import looks_like_repo_id
    from .scan.publish import TableError, TableNotFoundError

    authors = [a.strip() for a in authors if a.strip()]
    root = (root or "").strip()
    from_table, why_not = None, ""
    if not authors and looks_like_repo_id(root):
        try:
            from_table = _from_table(root, table, token, limit, members, progress)
        except TableNotFoundError:
            if table:
                raise SpaceInputError(f"{table}: no tree table of {root} there: browse without a table") from None
        except (TableError, BadFileError) as err:
            if table:
                raise SpaceInputError(_one_line(err)) from None
            why_not = f"the tree table was not used ({_one_line(err)}): the cards were read now"
        except Exception as err:  # noqa: BLE001 - a Hub that fails on the table: the walk still answers
            why_not = f"the tree table could not be read ({_one_line(err)}): the cards were read now"
    if from_table is not None:
        rows, tree, source = from_table
    else:
        tree = _walk(root, token, limit, progress, members, authors, registry)
        tree.warnings += [why_not] if why_not else []
        rows, source = [], "listed on the Hub, each card read now"
    unread = [r for r in tree.repos if r not in {row["repo"] for row in rows}]  # all of them, or members given
    if unread:
        read_now = _in_parallel(lambda r: _read_card(tree.client, r, tree.found_by[r]), unread, progress, "reading cards")
        order = {repo_id: i for i, repo_id in enumerate(tree.repos)}
        rows = sorted(rows + read_now, key=lambda row: order[row["repo"]])
    read = [r for r in rows if r["n_missing"] is not None]
    coverage = pd.DataFrame({
        "field": list(BROWSED_FIELDS),
        "documented": [sum(name not in r["missing_set"] for r in read) / len(read) if read else 0.0
                       for name in BROWSED_FIELDS],
        "models": [sum(name not in r["missing_set"] for r in read) for name in BROWSED_FIELDS],
    })
    models = pd.DataFrame([{column: r[key] for key, column in BROWSE_COLUMNS.items()} for r in rows],
                          columns=list(BROWSE_COLUMNS.values()))
    complete = sum(r["n_missing"] == 0 for r in read)
    no_card = sum(not r["has_card"] for r in read)
    summary = (f"### {root}\n\n**{len(rows)}** models below the root ({_found_by(tree)}) &nbsp;·&nbsp; "
               f"**{complete}** with every field &nbsp;·&nbsp; **{no_card}** without a card &nbsp;·&nbsp; "
               f"**{len(rows) - len(read)}** unreadable\n\n{source[0].upper()}{source[1:]}."
               + "".join(f"\n\n> ⚠ {w}" for w in tree.warnings))
    recovered: dict[str, tuple[str, float]] = {}
    if parents_from_weights:
        recovered, note = _recovered_parents(root, tree.repos, registry, token, progress)
        if note:
            tree.warnings.append(note)
            summary += f"\n\n> ⚠ {note}"
    drawing = tree_drawing(root, {r["repo"]: r.get("declared") for r in rows}, recovered)
    return TreeView(models, coverage, summary, tree.warnings, drawing)


# ---- search a LoRA tree by text -------------------------------------------------------------------------


@dataclass
class SearchView:
    """A zero-shot search: `ranking` (rank, repo, score, what its card declares), a Markdown `summary`, `warnings`."""

    ranking: pd.DataFrame
    summary: str
    warnings: list[str] = field(default_factory=list)


def zero_shot_roots(registry: ExpertRegistry) -> list[str]:
    """The tree roots with a zero-shot (LoRA concept) expert: the trees that can be searched by text."""
    from .adapters import CONCEPT_TASK

    return sorted({e.root for e in registry.entries if e.task == CONCEPT_TASK and e.root})


def _zero_shot_expert(registry: ExpertRegistry, root: str) -> ExpertEntry:
    from .adapters import CONCEPT_TASK

    entries = registry.for_root(root, CONCEPT_TASK)
    if not entries:
        known = ", ".join(zero_shot_roots(registry)) or "none yet"
        raise SpaceInputError(f"no zero-shot expert for the tree of {root}: text search works on the LoRA trees "
                              f"with one: {known}")
    return entries[0]


def _declared_concept(readme: str | None) -> str:
    """What a LoRA's card says it draws: `instance_prompt` or `trained-on:` tags ("" if it says nothing)."""
    try:
        metadata = metadata_of(readme or "")
    except CardError:
        return ""
    tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
    declared = [value for value in (trained_on_value(str(t)) for t in tags) if value]
    return str(metadata.get("instance_prompt") or ", ".join(declared))


def search_loras(root: str, query: str, *, registry: ExpertRegistry, token: str | None = None, top_k: int = 20,
                 limit: int = DEFAULT_MAX_TREE_MODELS, authors: Iterable[str] = (),
                 members: Iterable[str] | None = None, table: str | None = None,
                 progress: Progress = _no_progress) -> SearchView:
    """Rank the LoRAs of the tree of `root` by how well their weights match `query` (zero-shot: any text works).

    The tree's zero-shot expert embeds the query with its own text encoder and prompt. When the tree has a tree
    table (`table`, or one `hf_probex.scan.publish.find_table` finds: the default scan folder, a trusted author's on the
    Hub) made with this expert, the LoRAs are ranked from its vectors through the cached index (`hf_probex.search`)
    and no LoRA is read; otherwise the expert reads its layers (of an expert that fuses modules, those a LoRA has)
    of every LoRA in the tree (those whose card names a base_model in it, then those of `authors` routed into it,
    then `members`, as in `browse_tree`) and scores each by cosine similarity in its weight-text space. The summary
    says which of the two answered (and why not the table, when one was found but could not be used).

    Raises:
        SpaceInputError: an empty query, a tree without a zero-shot expert, an unknown root.
    """
    from .search import checked_query

    try:
        query = checked_query(query)  # the CLI's bounds: not empty, at most MAX_QUERY_CHARS, UTF-8 text
    except ProbexError as err:
        raise SpaceInputError(_one_line(err)) from None
    entry = _zero_shot_expert(registry, (root or "").strip())
    view, why_not = _search_table(root.strip(), query, entry, registry, token, top_k, table, progress)
    if view is not None:
        return view
    return _search_layers(root, query, entry, registry, token, top_k, limit, authors, members, progress,
                          [why_not] if why_not else [])


def _search_table(root: str, query: str, entry: ExpertEntry, registry: ExpertRegistry, token: str | None, top_k: int,
                  table: str | None, progress: Progress) -> tuple[SearchView | None, str]:
    """The search answered from the tree's table, or (None, why it was not: "" when the tree has none)."""
    from .search import SearchError, TableNotFoundError, open_tree_index

    progress(0.02, f"looking for the tree table of {root}")
    try:
        index = open_tree_index(root, table=table, token=_as_token(token),
                                experts=ExpertRegistry([entry, *(e for e in registry.entries if e != entry)]))
    except TableNotFoundError:
        return None, ""
    except SearchError as err:
        return None, f"the tree table was not used ({_one_line(err)}): every LoRA's layers were read instead"
    except Exception as err:  # noqa: BLE001 - a Hub that fails on the table: the layers still answer
        return None, f"the tree table could not be read ({_one_line(err)}): every LoRA's layers were read instead"
    progress(0.5, f"searching {len(index.index)} LoRAs of the tree table")
    hits = index.search(query, max(1, min(top_k, len(index.index) or 1)))
    ranking = pd.DataFrame({"rank": np.arange(1, len(hits) + 1), "repo": [h.repo_id for h in hits],
                            "score": [round(h.score, 4) for h in hits],
                            "card says": [", ".join(dict.fromkeys(label.value for label in h.labels
                                                                  if label.source.startswith("card"))) or "(nothing)"
                                          for h in hits]},
                           columns=["rank", "repo", "score", "card says"])
    config = index.expert.config
    source = (f"the tree table {index.table.location}@{index.table.commit[:8]}" if index.table.commit
              else "this Space's tree table")
    summary = (f"### “{query}” in the tree of {root}\n\n**{len(index.index)}** LoRAs ranked by cosine similarity "
               f"from {source} ({index.index.kind} index; no LoRA read now) with {index.entry.public_name} "
               f"({index.entry.method}, layer `{index.entry.layer}`, text encoder {config['text_encoder']}, prompt "
               f"“{config['prompt']}”)")
    warnings = [f"{index.unindexed} members of the table have no vector of this expert (not LoRAs of its modules, or "
                "unreadable) and are not ranked"] if index.unindexed else []
    return SearchView(ranking, summary + "".join(f"\n\n> ⚠ {w}" for w in warnings), warnings), ""


def _search_layers(root: str, query: str, entry: ExpertEntry, registry: ExpertRegistry, token: str | None, top_k: int,
                   limit: int, authors: Iterable[str], members: Iterable[str] | None, progress: Progress,
                   warnings: list[str]) -> SearchView:
    """The search answered by reading every LoRA's layers now (a tree without a usable table)."""
    from .adapters import detect
    from .reading import open_source
    from .text import encode_texts

    expert = load_expert(entry.location)
    config = expert.config
    tree = _walk(root, token, limit, progress, members, authors, registry)
    public = PublicNames(registry)
    progress(0.05, f"embedding the query with {config['text_encoder']}")
    text = encode_texts([config["prompt"].format(query)], config["text_encoder"])

    def layer(repo_id: str) -> tuple[np.ndarray | None, str, str]:
        try:
            source = open_source(repo_id, token=_as_token(token), local=False)  # never a server folder
            matrix = detect(source).read_input(source, entry.inputs, config["conv_layout"], allow_missing=expert.fused)
            return matrix, _declared_concept(source.read_text("README.md")), ""
        except ProbexError as err:  # not a LoRA of this tree (a full fine-tune, another format): not ranked
            return None, "", _space_message(err, repo_id, public)

    read = _in_parallel(layer, tree.repos, progress, "reading LoRA layers") if tree.repos else []
    found = [(repo, matrix, declared) for repo, (matrix, declared, _) in zip(tree.repos, read) if matrix is not None]
    skipped = [(repo, why) for repo, (matrix, _, why) in zip(tree.repos, read) if matrix is None]
    warnings = [*warnings, *tree.warnings]
    if skipped:
        warnings.append(f"{len(skipped)} models were not ranked (not LoRAs of this tree's format), "
                        f"e.g. {skipped[0][0]}: {skipped[0][1]}")
    scores = expert.predict(np.concatenate([m for _, m, _ in found]), text)[:, 0] if found else np.zeros(0)
    order = np.argsort(-scores, kind="stable")[: max(1, top_k)]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "repo": [found[i][0] for i in order],
                            "score": [round(float(scores[i]), 4) for i in order],
                            "card says": [found[i][2] or "(nothing)" for i in order]},
                           columns=["rank", "repo", "score", "card says"])
    summary = (f"### “{query}” in the tree of {root.strip()}\n\n**{len(found)}** LoRAs ranked by cosine similarity "
               f"({_found_by(tree)}; no tree table: every LoRA's layers read now) with {entry.public_name} "
               f"({entry.method}, layer `{entry.layer}`, text encoder {config['text_encoder']}, prompt "
               f"“{config['prompt']}”)" + "".join(f"\n\n> ⚠ {w}" for w in warnings))
    return SearchView(ranking, summary, warnings)


# ---- experts --------------------------------------------------------------------------------------------


def hub_experts(*, timeout_s: float = HUB_TIMEOUT_S) -> tuple[ExpertRegistry, str]:
    """The Hub's experts (trusted authors, tag `probex-expert`; anonymous), and "" or why none were listed:
    HF_HUB_OFFLINE is set, or the Hub did not answer within `timeout_s` (one try: huggingface_hub's own
    retries take about 40 s on a machine without network)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return ExpertRegistry(), "HF_HUB_OFFLINE is set: only this Space's local experts are used"
    try:
        get_session().get(f"{constants.ENDPOINT}/api/models", params={"limit": 1}, timeout=timeout_s).raise_for_status()
        return ExpertRegistry.from_hub(token=False), ""
    except Exception:  # noqa: BLE001 - no network, a slow or failing Hub: the local experts still work
        return ExpertRegistry(), (f"the Hub ({constants.ENDPOINT}) did not answer within {timeout_s:g} s: only this "
                                  "Space's local experts are used; refresh the list to try again")


def resolve_registry(experts: ExpertRegistry | Iterable[str | os.PathLike] | None) -> ExpertRegistry:
    """The experts the Space uses: a registry as given, expert folders / repo ids, or (None) the local registry
    file plus the Hub's experts when it answers quickly (`hub_experts`)."""
    if experts is None:
        return ExpertRegistry.from_file() + hub_experts()[0]
    if isinstance(experts, ExpertRegistry):
        return experts
    return ExpertRegistry.from_locations(str(e) for e in experts)


def tree_examples(registry: ExpertRegistry, *, per_tree: int = 2, timeout_s: float = HUB_TIMEOUT_S) -> list[list[str]]:
    """Example repo ids for the Infer tab, `[repo id, tree]`: a few models whose card names each expert's root as
    base_model, listed on the Hub (a tree the Hub does not answer for within `timeout_s` gets none)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    examples: list[list[str]] = []
    if constants.HF_HUB_OFFLINE:
        return examples
    for root in registry.roots:
        tree = next(e.tree for e in registry.entries if e.root == root)
        try:
            response = get_session().get(f"{constants.ENDPOINT}/api/models", timeout=timeout_s,
                                         params={"filter": f"base_model:{root}", "limit": per_tree})
            response.raise_for_status()
            examples += [[model["id"], tree] for model in response.json()[:per_tree]]
        except Exception:  # noqa: BLE001 - no examples for this tree is better than no page
            continue
    return examples


def _metric_text(metrics: dict) -> str:
    """The cross-validated metrics as `name mean ± se` (the counts and timings left out)."""
    shown = [f"{name} {value['mean']:.1f} ± {value['se']:.1f}" for name, value in metrics.items()
             if isinstance(value, dict) and "mean" in value and "seconds" not in name]
    return ", ".join(shown) or "not evaluated"


def experts_table(registry: ExpertRegistry) -> pd.DataFrame:
    """One row per expert, by tree: root, task, method, layer, CV metrics, proposal threshold, where it comes from
    (its Hub repo id, or "local")."""
    rows = []
    for entry in sorted(registry.entries, key=lambda e: (e.tree, e.task, e.location)):
        try:
            expert = load_expert(entry.location)
            metrics, calibration = _metric_text(expert.metrics), expert.calibration or {}
            folds = expert.metrics.get("cv_folds")
        except Exception as err:  # noqa: BLE001 - a broken expert is listed with why, not hiding the others
            metrics, calibration, folds = f"(cannot load: {PublicNames(registry)(_one_line(err))})", {}, None
        threshold = calibration.get("threshold")
        public = entry.public_name
        rows.append({"tree": entry.tree, "task": entry.task, "method": entry.method,
                     "metrics (CV %)": metrics + (f" ({folds}-fold)" if folds else ""),
                     "proposes at": _threshold_text(threshold).removeprefix("proposes at ") if threshold is not None
                     else "uncalibrated",
                     "layer": " + ".join(name for name, _ in entry.inputs), "root": entry.root or "",
                     "location": public if public == entry.location else "local"})
    return pd.DataFrame(rows, columns=["tree", "task", "method", "metrics (CV %)", "proposes at", "layer", "root",
                                       "location"])
