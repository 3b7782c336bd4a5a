"""What the Space's tabs share: its limits, `SpaceInputError`, the token a visitor sends, `PublicNames` (no server
path ever shown) and errors in the Space's own words."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import (
    AccessDeniedError, BadFileError, HubConnectionError, MissingFileError, NoSafetensorsError, ProbexError,
    RepoNotFoundError, RepoNotVisibleError, UnknownArchitectureError,
)
from ..experts.registry import ExpertRegistry
from ..suggestions import CardSuggestion

DEFAULT_MAX_UPLOAD_BYTES = 512 * 2**20
"""Uploads above this are refused: a LoRA is megabytes, and a full model is better read from the Hub."""
DEFAULT_MAX_TREE_MODELS = 500
"""A tree walk reads one card (browse) or one layer (search) per model: bounded so a request ends."""
NEVER = "never proposes (no threshold reaches 95 % precision)"

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
