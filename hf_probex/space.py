"""What the Gradio Space does, as plain functions: testable without a browser or a Gradio server.

The Space (`hf_probex.space_app`, `spaces/app.py`) is a thin layer over these. Each function takes
the user's inputs and returns tables (pandas DataFrames, which Gradio's tables and plots take as
they are) and Markdown; a bad input raises `SpaceInputError` with a one-line message that the Space
shows as an error, and results carry `warnings` for things worth saying that are not errors.

- `infer`: `infer_card` on a Hub repo id or an uploaded .safetensors file, laid out for display.
- `open_pull_request`: the bot's own path (`hf_probex.bot.run_bot`) for one repo and a suggestion
  already computed, so a PR from the Space gets the bot's checks (opt-out, duplicates, open PRs).
- `browse_tree`: a model tree from the Hub's `base_model` filter (`hf_probex.bot.walk_tree`), what each
  model's card lacks (`hf_probex.cards.missing_fields`) and the coverage of each field.
- `search_loras`: zero-shot search of a LoRA tree: the tree's expert embeds the query with its text
  encoder and ranks the tree's LoRAs by cosine similarity.
- `experts_table`: the experts found, by tree, with their cross-validated metrics.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import pandas as pd

from .cards import CardError, metadata_of, missing_fields
from .errors import ProbexError
from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .suggestions import CARD_FIELDS, CardSuggestion

if TYPE_CHECKING:
    from .bot import HubClient

__all__ = [
    "DEFAULT_MAX_TREE_MODELS", "DEFAULT_MAX_UPLOAD_BYTES", "InferView", "PullRequestView", "SearchView",
    "SpaceInputError", "TreeView", "browse_tree", "card_markdown", "experts_table", "infer", "open_pull_request",
    "resolve_registry", "search_loras", "zero_shot_roots",
]

DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20
"""Uploads above this are refused: a LoRA is megabytes, and a full model is better read from the Hub."""
DEFAULT_MAX_TREE_MODELS = 500
"""A tree walk reads one card (browse) or one layer (search) per model: bounded so a request ends."""
READ_THREADS = 4  # reading cards and layers is network-bound: a few at once, not more, on a shared Space

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


def resolve_registry(experts: ExpertRegistry | Iterable[str | os.PathLike] | None) -> ExpertRegistry:
    """The experts the Space uses: a registry as given, expert folders / repo ids, or (None) the default
    registry (the local registry file, plus the Hub's experts when online)."""
    if experts is None:
        return ExpertRegistry.default(token=False)
    if isinstance(experts, ExpertRegistry):
        return experts
    return ExpertRegistry.from_locations(str(e) for e in experts)


def _one_line(err: BaseException) -> str:
    text = (getattr(err, "server_message", None) or str(err) or type(err).__name__).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _display(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# ---- infer ----------------------------------------------------------------------------------------------


@dataclass
class InferView:
    """One inference laid out for display.

    Attributes:
        suggestion: what `infer_card` returned (kept for the pull request).
        summary: Markdown: the model, its tree, the expert used, what was read, what was not answered.
        fields: one row per field: field, value, confidence, source, in the card now?, evidence.
        chart: field, confidence (0..1) and source, for a bar chart.
        scores: the expert's scores behind `trained_on` (label, score), when it answered.
        card: the suggested README.md as Markdown for display (the current one when nothing is proposed).
        diff: the unified diff current -> suggested README.md ("" when nothing is proposed).
        warnings: things to tell the user that are not errors (no expert for this tree...).
    """

    suggestion: CardSuggestion
    summary: str
    fields: pd.DataFrame
    chart: pd.DataFrame
    scores: pd.DataFrame
    card: str
    diff: str
    warnings: list[str] = field(default_factory=list)


def _checked_source(repo_id: str | None, upload: str | os.PathLike | None, max_upload_bytes: int) -> str:
    """The source to infer from: an uploaded .safetensors file, else a Hub repo id (never a server path)."""
    from .reading import looks_like_repo_id

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
    repo_id = (repo_id or "").strip()
    if not repo_id:
        raise SpaceInputError("type a Hub repo id (namespace/name) or upload a .safetensors file")
    # infer_card reads an existing local path before the Hub: in a public Space that would expose the server's files.
    if not looks_like_repo_id(repo_id) or Path(repo_id).exists():
        raise SpaceInputError(f"{repo_id!r} is not a Hub repo id: type it as namespace/name, e.g. google/vit-base-patch16-224")
    return repo_id


def _expert_line(suggestion: CardSuggestion, registry: ExpertRegistry) -> tuple[str, list[str]]:
    """Which expert answered `trained_on` (or why none did), and a warning when no expert knows the tree."""
    trained_on = suggestion.fields.get("trained_on")
    if trained_on is not None and trained_on.source == "expert":
        return trained_on.evidence, []
    if trained_on is not None:
        return f"none needed: trained_on comes from {trained_on.evidence}", []
    why = suggestion.abstained.get("trained_on", "")
    entries = registry.for_root(suggestion.tree) if suggestion.tree else []
    if not entries:  # routing finds only trees that have an expert: an unknown tree is a tree without one
        return "none", [f"no expert for this model's tree ({why}): trained_on cannot be inferred; "
                        "the Experts tab lists the trees that have one"]
    return f"{', '.join(f'{e.location} ({e.method})' for e in entries)}: it abstained", []


def _nothing_proposed(suggestion: CardSuggestion) -> str:
    if "card" in suggestion.abstained:  # a card that cannot be read safely gets no proposal, whatever it lacks
        return "nothing (see *card* below)"
    return "nothing (the card has every field inferred)"


def _card_for_display(suggestion: CardSuggestion) -> str:
    text = suggestion.suggested_card or suggestion.current_card
    return card_markdown(text) if text else "*This model has no README.md and nothing was inferred for one.*"


def card_markdown(readme: str) -> str:
    """A README.md for display as Markdown: its YAML front matter as a code block, then the body."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(readme)
    if match is None:
        return readme
    return f"```yaml\n{match.group(2).rstrip()}\n```\n\n{readme[match.end():].lstrip()}"


def _scores(suggestion: CardSuggestion) -> pd.DataFrame:
    trained_on = suggestion.fields.get("trained_on")
    details = trained_on.details if trained_on is not None else {}
    scores = details.get("confidence_by_class") or details.get("cosine_by_concept") or {}
    return pd.DataFrame({"label": pd.Series(list(scores), dtype=str),
                         "score": pd.Series([float(v) for v in scores.values()], dtype=float)})


def infer(repo_id: str | None = None, upload: str | os.PathLike | None = None, *, token: str | None = None,
          registry: ExpertRegistry, min_confidence: float | None = None,
          max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, progress: Progress = _no_progress) -> InferView:
    """`infer_card` on a Hub repo id or an uploaded .safetensors file, laid out for display.

    Raises:
        SpaceInputError: no input, not a repo id, a wrong file type or size, a confidence outside [0, 1],
            or anything `infer_card` refuses (unknown repo, no access, no safetensors...), in its words.
    """
    from .infer import infer_card

    source = _checked_source(repo_id, upload, max_upload_bytes)
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise SpaceInputError(f"the minimum confidence must be between 0 and 1, not {min_confidence}")
    progress(0.1, "reading the model's files and one layer")
    try:
        suggestion = infer_card(source, token=_as_token(token), experts=registry, min_confidence=min_confidence)
    except ProbexError as err:
        raise SpaceInputError(_one_line(err)) from None
    progress(0.9, "laying out the card")
    expert, warnings = _expert_line(suggestion, registry)
    rows = [{"field": f.name, "confidence": _percent(f.confidence), "in the card": "no: proposed" if f.missing else "yes",
             "value": _display(f.value), "source": f.source, "evidence": f.evidence}
            for f in suggestion.fields.values()]
    fields = pd.DataFrame(rows, columns=["field", "confidence", "in the card", "value", "source", "evidence"])
    chart = pd.DataFrame({"field": [f.name for f in suggestion.fields.values()],
                          "confidence": [float(f.confidence) for f in suggestion.fields.values()],
                          "source": [f.source for f in suggestion.fields.values()]})
    name = Path(source).name if upload else source
    revision = f" &nbsp;·&nbsp; **revision** `{suggestion.revision[:10]}`" if suggestion.revision else ""
    summary = "\n\n".join([
        f"### {name}",
        f"**Tree** {suggestion.tree or 'unknown'} &nbsp;·&nbsp; **family** {suggestion.family or 'unknown'} "
        f"&nbsp;·&nbsp; **read** {suggestion.bytes_read / 1024:,.1f} KiB{revision}",
        f"**Expert** {expert}",
        f"**Proposed for the card:** {', '.join(suggestion.proposed) or _nothing_proposed(suggestion)}",
        "\n".join(f"- *not answered:* **{what}**: {why}" for what, why in suggestion.abstained.items()),
        "\n\n".join(f"> ⚠ {w}" for w in warnings),
    ]).rstrip()
    return InferView(suggestion, summary, fields, chart, _scores(suggestion), _card_for_display(suggestion),
                     suggestion.diff, warnings)


# ---- pull request --------------------------------------------------------------------------------------


@dataclass
class PullRequestView:
    """What happened to a pull request request: `opened`, the PR's `url` (or an earlier one's), a `message`."""

    opened: bool
    url: str | None
    message: str


def open_pull_request(suggestion: CardSuggestion | None, token: str | None) -> PullRequestView:
    """Open a pull request with `suggestion`'s proposed fields, through the bot (one PR per repo, never a
    duplicate, never on an opted-out card; fields already proposed there are not proposed again).

    Raises:
        SpaceInputError: nothing inferred yet, an uploaded file (no repo), nothing to propose, no token,
            a token the Hub refuses, or an error on the Hub.
    """
    from .bot import BotConfig, BotState, BotStopped, HubClient, run_bot
    from .reading import looks_like_repo_id

    if suggestion is None:
        raise SpaceInputError("infer a card first, then open the pull request")
    if not looks_like_repo_id(suggestion.source):
        raise SpaceInputError("pull requests go to Hub repos: this card was inferred from an uploaded file")
    if not suggestion.proposed:
        raise SpaceInputError(f"nothing to propose: the card of {suggestion.source} already has every field inferred")
    if not _as_token(token):
        raise SpaceInputError("paste a Hub token with write access to open a pull request")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    # The suggestion holds only fields at or above their thresholds already; the person who clicked saw them.
    config = BotConfig(min_confidence=0.0, concurrency=1)
    with tempfile.TemporaryDirectory() as folder:
        state = BotState(Path(folder) / "state.sqlite")  # the Hub's PR markers, not this file, prevent duplicates
        try:
            report = run_bot([suggestion.source], client, infer=lambda _repo: suggestion, state=state, config=config)
        except BotStopped as err:
            raise SpaceInputError(str(err)) from None
        finally:
            state.close()
    outcome = report.outcomes[0]
    url = f"{client.api.endpoint}/{outcome.repo_id}/discussions/{outcome.pr_num}" if outcome.pr_num else None
    if outcome.outcome == "proposed":
        return PullRequestView(True, url, f"Opened pull request #{outcome.pr_num} adding {', '.join(outcome.fields)}.")
    if outcome.outcome == "error":
        raise SpaceInputError(f"the pull request could not be opened: {outcome.reason}")
    reasons = {
        "open-pr": "hf-probex already has an open pull request on this repo",
        "already-proposed": "these fields were proposed on this repo before (the owner may have closed that PR)",
        "complete": "the card has every field now",
        "opt-out-card": "the card opts out of hf-probex proposals",
        "invalid-card": "the card's metadata does not parse (or is too complex to read safely), so no safe edit exists",
        "unsafe-edit": "adding to this card would change what its owner wrote (or it quotes hf-probex's section marker)",
        "below-threshold": "no field reaches the confidence threshold",
        "nothing-inferred": "nothing the card lacks was inferred",
    }
    return PullRequestView(False, url, f"No pull request opened: {reasons.get(outcome.reason, outcome.reason)}.")


# ---- browse a tree --------------------------------------------------------------------------------------


@dataclass
class TreeView:
    """A model tree: `models` (repo, declared base_model, missing fields), `coverage` (field, share of
    the tree's models whose card states it, count), a Markdown `summary`, and `warnings`."""

    models: pd.DataFrame
    coverage: pd.DataFrame
    summary: str
    warnings: list[str] = field(default_factory=list)


def _walk(root: str, token: str | None, limit: int, progress: Progress) -> tuple[HubClient, list[str], list[str]]:
    """The Hub client, the first `limit` repos below `root` (children of children too), and warnings."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from .bot import BotStopped, HubClient, walk_tree
    from .reading import looks_like_repo_id

    root = (root or "").strip()
    if not looks_like_repo_id(root):
        raise SpaceInputError(f"{root!r} is not a Hub repo id: type the tree's root as namespace/name")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    progress(0.02, f"listing the tree of {root}")
    try:
        client.head(root)
        repos = walk_tree(client, root)
    except RepositoryNotFoundError:
        raise SpaceInputError(f"{root}: no such model on {client.api.endpoint} (or it is private: paste a token)") from None
    except (BotStopped, HfHubHTTPError, OSError) as err:
        raise SpaceInputError(f"the Hub did not answer the tree listing of {root}: {_one_line(err)}") from None
    warnings = [] if repos else [f"no model names {root} as its base_model: the tree has only its root"]
    if len(repos) > limit:
        warnings.append(f"the tree has {len(repos)} models; only the first {limit} (breadth first) are shown")
    return client, repos[:limit], warnings


def _in_parallel(func: Callable[[str], T], repos: list[str], progress: Progress, what: str) -> list[T]:
    """`func` over `repos` on a few threads, in order, reporting progress as each finishes."""
    results: list[T] = []
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for done, result in enumerate(pool.map(func, repos), start=1):
            results.append(result)
            progress(0.05 + 0.9 * done / len(repos), f"{what} {done}/{len(repos)}")
    return results


def browse_tree(root: str, *, token: str | None = None, limit: int = DEFAULT_MAX_TREE_MODELS,
                progress: Progress = _no_progress) -> TreeView:
    """The models below `root` on the Hub (by `base_model`), what each card lacks, and each field's coverage.

    Raises:
        SpaceInputError: not a repo id, an unknown root, or a Hub that does not answer the listing.
    """
    client, repos, warnings = _walk(root, token, limit, progress)

    def card(repo_id: str) -> dict:
        try:
            raw = client.readme(repo_id, "main")
            readme = raw.decode("utf-8") if raw is not None else ""
            missing = missing_fields(readme)
            base = metadata_of(readme).get("base_model")
        except (CardError, UnicodeDecodeError):
            return {"repo": repo_id, "base_model": "", "missing": "(the card's metadata does not parse)", "n_missing": None}
        except Exception as err:  # noqa: BLE001 - one repo the Hub fails on must not hide the rest of the tree
            return {"repo": repo_id, "base_model": "", "missing": f"(not read: {_one_line(err)})", "n_missing": None}
        ordered = [name for name in CARD_FIELDS if name in missing]
        return {"repo": repo_id, "base_model": _display(base) if base else "", "missing": ", ".join(ordered) or "nothing",
                "n_missing": len(ordered), "has_card": raw is not None, "missing_set": missing}

    rows = _in_parallel(card, repos, progress, "reading cards") if repos else []
    read = [r for r in rows if r["n_missing"] is not None]
    coverage = pd.DataFrame({
        "field": list(CARD_FIELDS),
        "documented": [sum(name not in r["missing_set"] for r in read) / len(read) if read else 0.0 for name in CARD_FIELDS],
        "models": [sum(name not in r["missing_set"] for r in read) for name in CARD_FIELDS],
    })
    models = pd.DataFrame([{k: r[k] for k in ("repo", "base_model", "missing", "n_missing")} for r in rows],
                          columns=["repo", "base_model", "missing", "n_missing"])
    complete = sum(r["n_missing"] == 0 for r in read)
    no_card = sum(not r["has_card"] for r in read)
    summary = (f"### {root.strip()}\n\n**{len(rows)}** models below the root &nbsp;·&nbsp; **{complete}** with every field "
               f"&nbsp;·&nbsp; **{no_card}** without a card &nbsp;·&nbsp; **{len(rows) - len(read)}** unreadable"
               + "".join(f"\n\n> ⚠ {w}" for w in warnings))
    return TreeView(models, coverage, summary, warnings)


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
        known = ", ".join(zero_shot_roots(registry)) or "none yet (train one: hf-probex train --tree ... on a LoRA zoo)"
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
    declared = [str(t).split(":", 1)[1] for t in tags if str(t).startswith("trained-on:")]
    return str(metadata.get("instance_prompt") or ", ".join(declared))


def search_loras(root: str, query: str, *, registry: ExpertRegistry, token: str | None = None, top_k: int = 20,
                 limit: int = DEFAULT_MAX_TREE_MODELS, progress: Progress = _no_progress) -> SearchView:
    """Rank the LoRAs below `root` by how well their weights match `query` (zero-shot: any text works).

    The tree's zero-shot expert embeds the query with its own text encoder and prompt, reads its layer
    of every LoRA in the tree, and scores each by cosine similarity in its weight-text space.

    Raises:
        SpaceInputError: an empty query, a tree without a zero-shot expert, an unknown root.
    """
    from .adapters import detect
    from .reading import open_source
    from .text import encode_texts

    query = (query or "").strip()
    if not query:
        raise SpaceInputError("type what the LoRA should draw, e.g. 'a corgi in the snow'")
    entry = _zero_shot_expert(registry, (root or "").strip())
    expert = load_expert(entry.location)
    config = expert.config
    _, repos, warnings = _walk(root, token, limit, progress)
    progress(0.05, f"embedding the query with {config['text_encoder']}")
    text = encode_texts([config["prompt"].format(query)], config["text_encoder"])

    def layer(repo_id: str) -> tuple[np.ndarray | None, str, str]:
        try:
            source = open_source(repo_id, token=_as_token(token))
            matrix = detect(source).read_input(source, entry.inputs, config["conv_layout"])
            return matrix, _declared_concept(source.read_text("README.md")), ""
        except ProbexError as err:  # not a LoRA of this tree (a full fine-tune, another format): not ranked
            return None, "", _one_line(err)

    read = _in_parallel(layer, repos, progress, "reading LoRA layers") if repos else []
    found = [(repo, matrix, declared) for repo, (matrix, declared, _) in zip(repos, read) if matrix is not None]
    skipped = [(repo, why) for repo, (matrix, _, why) in zip(repos, read) if matrix is None]
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
               f"with the expert {entry.location} ({entry.method}, layer `{entry.layer}`, text encoder "
               f"{config['text_encoder']}, prompt “{config['prompt']}”)" + "".join(f"\n\n> ⚠ {w}" for w in warnings))
    return SearchView(ranking, summary, warnings)


# ---- experts --------------------------------------------------------------------------------------------


def _metric_text(metrics: dict) -> str:
    """The cross-validated metrics as `name mean ± se` (the counts and timings left out)."""
    shown = [f"{name} {value['mean']:.1f} ± {value['se']:.1f}" for name, value in metrics.items()
             if isinstance(value, dict) and "mean" in value and "seconds" not in name]
    return ", ".join(shown) or "not evaluated"


def experts_table(registry: ExpertRegistry) -> pd.DataFrame:
    """One row per expert, by tree: root, task, method, layer, CV metrics, proposal threshold, location."""
    rows = []
    for entry in sorted(registry.entries, key=lambda e: (e.tree, e.task, e.location)):
        try:
            expert = load_expert(entry.location)
            metrics, calibration = _metric_text(expert.metrics), expert.calibration or {}
            folds = expert.metrics.get("cv_folds")
        except Exception as err:  # noqa: BLE001 - a broken expert is listed with why, not hiding the others
            metrics, calibration, folds = f"(cannot load: {_one_line(err)})", {}, None
        threshold = calibration.get("threshold")
        rows.append({"tree": entry.tree, "task": entry.task, "method": entry.method,
                     "metrics (CV %)": metrics + (f" ({folds}-fold)" if folds else ""),
                     "proposes at": "never (no precise threshold)" if threshold is not None and threshold > 1
                     else (_percent(threshold) if threshold is not None else "uncalibrated"),
                     "layer": " + ".join(name for name, _ in entry.inputs), "root": entry.root or "", "location": entry.location})
    return pd.DataFrame(rows, columns=["tree", "task", "method", "metrics (CV %)", "proposes at", "layer", "root",
                                       "location"])
