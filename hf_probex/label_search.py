"""Text search over a tree of full models (text or image classifiers, sentence encoders), by what they were trained on.

    hf-probex search "models trained on legal texts" --tree sentence-transformers/all-MiniLM-L6-v2

A LoRA tree is searched by its weights (`hf_probex.search`: a zero-shot expert puts a text and a LoRA in one space).
A tree of full models has no such expert: its experts name classes from a fixed vocabulary, and a count sketch of a
layer says nothing a query can be compared with. What such a tree's table does hold, for every member whose files or
card say it, is what it was trained on: the labels the scan harvested (`scan.harvest`: config.json `id2label` names,
SetFit's `config_setfit.json` labels, the card's `trained-on:` tags, among them those hf_probex's pull requests added,
and its `datasets`). This module answers from those, and from nothing else:

- the distinct label texts of the table are embedded once with the packaged text encoder (`text.encode_texts`,
  all-MiniLM-L6-v2 offline), and the query with the same encoder;
- a member's score is the cosine similarity between the query and its best-matching label; hits say which label
  matched and where it came from, so "law (config.json id2label)" is visibly the reason a model ranks first for
  "models trained on legal texts";
- a weights file's safetensors metadata never counts (`tableset.is_file_metadata`: a training tool's, not the
  owner's), and members without a label are not ranked: the index counts them (`unlabelled`), since their labels
  are what `hf-probex infer` and the bot propose.

No model is read at query time; the labels are encoded when the index is opened (a few seconds per thousand distinct
labels on a CPU).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .scan.table import Label
from .search_query import SearchHit, checked_query, checked_top_k
from .tableset import is_file_metadata
from .text import DEFAULT_TEXT_ENCODER

if TYPE_CHECKING:
    from .scan.publish import TableFiles

__all__ = ["LabelIndex", "open_label_index"]

#: The table columns a label search reads.
_COLUMNS = ["repo_id", "sha", "family", "labels", "error"]


def _searchable_labels(labels: Iterable[dict]) -> tuple[Label, ...]:
    """The labels of a row a search ranks it by: every harvested label but a weights file's metadata, once each."""
    return tuple(dict.fromkeys(Label(label["value"], label["source"]) for label in labels or ()
                               if label["value"] and not is_file_metadata(label["source"])))


@dataclass
class LabelIndex:
    """A tree table's members, searchable by the labels their files and cards state (see the module docstring).

    Attributes:
        tree: the tree's root; `table`: where the table came from (`location`, `commit`).
        rows: repo_id, sha, family and searchable labels of each ranked member, in table order.
        texts: the distinct label texts; `vectors`: their unit-norm embeddings [len(texts), dim], by `encoder`.
        unlabelled: members the table holds without a label to rank them by (undocumented, or unreadable).
    """

    tree: str
    table: TableFiles
    rows: list[dict]
    texts: list[str]
    vectors: np.ndarray
    encoder: str = DEFAULT_TEXT_ENCODER
    unlabelled: int = 0
    kind: str = "labels"
    _label_ids: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        position = {text: i for i, text in enumerate(self.texts)}
        self._label_ids = [np.array([position[label.value] for label in row["labels"]]) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def search(self, text: str, top_k: int) -> list[SearchHit]:
        """The `top_k` members whose labels match `text` best, best first; each hit's labels best-matching first,
        `matched` the one that gave its score."""
        from .text import encode_texts

        checked_top_k(top_k)
        query = encode_texts([checked_query(text)], self.encoder)[0]
        similarity = self.vectors @ query if len(self.texts) else np.zeros(0, np.float32)
        scores = np.array([similarity[ids].max() for ids in self._label_ids], dtype=np.float32)
        hits = []
        for i in sorted(range(len(self.rows)), key=lambda i: (-scores[i], self.rows[i]["repo_id"]))[:top_k]:
            row, ids = self.rows[i], self._label_ids[i]
            ranked = tuple(row["labels"][j] for j in np.argsort(-similarity[ids], kind="stable"))
            hits.append(SearchHit(row["repo_id"], float(scores[i]), ranked, row["sha"], row["family"],
                                  matched=ranked[:1]))
        return hits

    def describe(self) -> str:
        """One line for people: what is ranked, by what, from which table, and what is not."""
        commit = f"@{self.table.commit[:8]}" if self.table.commit else " (a local folder)"
        location = self.table.location if self.table.commit else "the tree table"
        left = (f"; {self.unlabelled} members without a label their files or card state are not ranked "
                f"(`hf-probex infer` proposes theirs)" if self.unlabelled else "")
        return (f"{len(self.rows)} members by the labels their files and cards state, from {location}{commit} "
                f"({len(self.texts)} distinct labels, text encoder {self.encoder}){left}")

    def about(self) -> dict:
        """What `hf-probex search --json` says of the index."""
        return {"index": self.kind, "rows": len(self.rows), "unlabelled": self.unlabelled, "encoder": self.encoder}


def open_label_index(tree: str, table: TableFiles, *, encoder: str = DEFAULT_TEXT_ENCODER) -> LabelIndex:
    """The label index of the tree table `table` of `tree`: its readable members with a searchable label, and the
    embeddings of the distinct labels.

    Raises:
        TableError: the table's shards cannot be read, or lack the columns.
        ValueError: the text encoder cannot be loaded.
    """
    from .text import encode_texts

    rows, unlabelled = [], 0
    for row in table.read_columns(_COLUMNS).to_pylist():
        labels = _searchable_labels(row["labels"]) if row["error"] is None else ()
        if labels:
            rows.append({"repo_id": row["repo_id"], "sha": row["sha"], "family": row["family"], "labels": labels})
        else:
            unlabelled += 1
    texts = list(dict.fromkeys(label.value for row in rows for label in row["labels"]))
    vectors = encode_texts(texts, encoder) if texts else np.zeros((0, 1), np.float32)  # in batches
    return LabelIndex(tree, table, rows, texts, vectors, encoder, unlabelled)
