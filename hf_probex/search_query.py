"""What a text search takes and answers, whichever index answers it: the query's bounds, the hits, `SearchError`.

Both indexes share it, the LoRA index of `hf_probex.search` (by the weights) and the label index of
`hf_probex.label_search` (by the labels members state), so it sits below both; `hf_probex.search` re-exports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import BadTextError, ProbexError
from .scan.table import Label
from .text import check_texts

__all__ = ["DEFAULT_TOP_K", "MAX_QUERY_CHARS", "MAX_TOP_K", "SearchError", "SearchHit", "checked_query", "checked_top_k"]

DEFAULT_TOP_K = 10
MAX_TOP_K = 1_000
#: A query is a description, not a document: text encoders read a few dozen tokens.
MAX_QUERY_CHARS = 1_000


class SearchError(ProbexError):
    """A search that cannot be answered: a bad query, a tree without a zero-shot expert, an unusable table."""


@dataclass(frozen=True)
class SearchHit:
    """One model found: its repo, its score, what its files and card say it was trained on (the scan's harvested
    labels, each with its source), the commit read, its family. A LoRA's score is how much better the query fits it
    than the other concepts the expert knows (`experts.vocabulary.query_fit`); a full model's (`label_search`) the
    text encoder's cosine between the query and its best label, which `matched` names (its labels are then
    best-matching first)."""

    repo_id: str
    score: float
    labels: tuple[Label, ...] = ()
    sha: str | None = None
    family: str | None = None
    matched: tuple[Label, ...] = ()

    def as_dict(self) -> dict:
        """The hit as JSON takes it."""
        return {**asdict(self), "labels": [asdict(label) for label in self.labels],
                "matched": [asdict(label) for label in self.matched]}


def checked_query(text: str) -> str:
    """`text` stripped; SearchError when it is empty, too long for a query, or not UTF-8 text."""
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise SearchError("the query is empty: type what the LoRA should draw or the models were trained on, e.g. "
                          "'a corgi in the snow', 'legal texts'")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the query has {len(text)} characters; describe the concept in at most {MAX_QUERY_CHARS}")
    try:
        return check_texts([text])[0]
    except BadTextError as err:
        raise SearchError(f"the query {err}") from None


def checked_top_k(top_k: int) -> None:
    """SearchError unless `top_k` is a whole number from 1 to `MAX_TOP_K`."""
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise SearchError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, not {top_k!r}")
