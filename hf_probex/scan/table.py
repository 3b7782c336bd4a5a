"""The tree table's columns: one `ScanRow` per repo, its Arrow schema, and parquet files written atomically.

This module owns what a row holds and how rows become parquet and back. `COLUMNS` names every column
with its Arrow type and its meaning (the dataset card lists them from here); `SCHEMA` is the published
table's schema. Working parts (`hf_probex.scan.folder`) add one column, `in_tree`, so a candidate
that routing placed elsewhere is remembered at its commit without being published.

Parquet files are written to a temporary name in the same folder, flushed to disk and renamed over
the final name (`os.replace`), so a reader (or a scan resumed after `kill -9`) sees a whole file or none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["COLUMNS", "PART_SCHEMA", "SCHEMA", "TABLE_FORMAT", "Label", "ScanRow", "read_rows", "rows_to_table", "write_parquet"]

_LABEL = pa.struct([("value", pa.string()), ("source", pa.string())])
_STRINGS = pa.list_(pa.string())

#: The columns' version (part of the scan's settings digest: rows of an older format are read again).
TABLE_FORMAT = 2
#: (column, Arrow type, meaning), in table order.
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("repo_id", pa.string(), "the model repo"),
    ("sha", pa.string(), "the commit read (the one the listing showed)"),
    ("found_by", pa.string(), "`card` (its card names a base in the tree) or `weights` (routed into the tree by its weights)"),
    ("member_evidence", pa.string(), "why it is a member: the card's base_model, or routing's evidence"),
    ("member_confidence", pa.float64(), "1.0 for a card; routing's confidence for weights"),
    ("family", pa.string(), "the adapter that recognised its files (vit, resnet, sd-lora, ...)"),
    ("route_root", pa.string(), "the known tree root routing found (declared lineage checked against the weights); null: none"),
    ("route_confidence", pa.float64(), "routing's confidence"),
    ("route_distance", pa.float64(), "cosine distance of its routing layers to that root (null for LoRAs: an update is a difference)"),
    ("route_evidence", pa.string(), "routing's evidence, or why there is no route"),
    ("route_finding", pa.string(), "a declared lineage the weights contradict or cannot confirm"),
    ("declared_bases", _STRINGS, "the bases its files declare (card, adapter_config.json, safetensors metadata)"),
    ("has_card", pa.bool_(), "whether it has a README.md"),
    ("card_base_model", _STRINGS, "card `base_model`"),
    ("card_datasets", _STRINGS, "card `datasets`"),
    ("card_tags", _STRINGS, "card `tags`"),
    ("card_pipeline_tag", pa.string(), "card `pipeline_tag`"),
    ("card_library_name", pa.string(), "card `library_name`"),
    ("card_license", pa.string(), "card `license`"),
    ("card_language", _STRINGS, "card `language`"),
    ("card_missing", _STRINGS, "the card fields hf_probex fills that the card lacks (`base_model`, `trained_on`, ...: "
                               "`cards.missing_fields`; all of them without a card); null when the card cannot be read"),
    ("labels", pa.list_(_LABEL), "what it was trained on, harvested from files and cards: {value, source} (source: "
                                 "`config.json id2label`, `card instance_prompt`, `card widget`, `card trained-on tag`, "
                                 "`card datasets`, `<file> metadata <key>`)"),
    ("embedding", pa.list_(pa.float32()), "the zero-shot expert's unit-norm embedding of the LoRA, or a count sketch of "
                                          "the expert's layers (see `embedding_kind`); null when none could be read"),
    ("embedding_kind", pa.string(), "what `embedding` is: `zero-shot expert <name>` or `count-sketch <dim> seed <seed>`"),
    ("embedding_layers", _STRINGS, "the layers (LoRA modules) the embedding read"),
    ("notes", _STRINGS, "problems that did not stop the row (an unreadable card, a layer the expert cannot read)"),
    ("bytes_read", pa.int64(), "bytes read from the repo: small files, safetensors headers, the layers"),
    ("error", pa.string(), "why the repo could not be read (one line); null when it was"),
    ("error_kind", pa.string(), "the error's class (HubConnectionError and unexpected errors are retried by a rerun)"),
)
SCHEMA = pa.schema([pa.field(name, kind) for name, kind, _ in COLUMNS])
PART_SCHEMA = SCHEMA.append(pa.field("in_tree", pa.bool_()))


@dataclass(frozen=True)
class Label:
    """One harvested label: what a member was trained on, and where that was read."""

    value: str
    source: str


@dataclass
class ScanRow:
    """One repo of a tree table (see `COLUMNS`); `in_tree` is False for a candidate routed out of the tree."""

    repo_id: str
    sha: str | None = None
    found_by: str = "card"
    member_evidence: str = ""
    member_confidence: float = 1.0
    family: str | None = None
    route_root: str | None = None
    route_confidence: float | None = None
    route_distance: float | None = None
    route_evidence: str | None = None
    route_finding: str | None = None
    declared_bases: list[str] = field(default_factory=list)
    has_card: bool = False
    card_base_model: list[str] = field(default_factory=list)
    card_datasets: list[str] = field(default_factory=list)
    card_tags: list[str] = field(default_factory=list)
    card_pipeline_tag: str | None = None
    card_library_name: str | None = None
    card_license: str | None = None
    card_language: list[str] = field(default_factory=list)
    card_missing: list[str] | None = None
    labels: list[Label] = field(default_factory=list)
    embedding: np.ndarray | None = None
    embedding_kind: str | None = None
    embedding_layers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_read: int = 0
    error: str | None = None
    error_kind: str | None = None
    in_tree: bool = True

    def as_record(self) -> dict:
        """The row as Arrow takes it (labels as dicts, the embedding as a list of floats)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["labels"] = [asdict(label) for label in self.labels]
        record["embedding"] = None if self.embedding is None else np.asarray(self.embedding, np.float32).tolist()
        return record

    @classmethod
    def from_record(cls, record: dict) -> ScanRow:
        """A row from a record of `read_rows` (a table without `in_tree` holds members only)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["labels"] = [Label(**label) for label in values.get("labels") or []]
        embedding = values.get("embedding")
        values["embedding"] = None if embedding is None else np.asarray(embedding, np.float32)
        for name in ("declared_bases", "card_base_model", "card_datasets", "card_tags", "card_language",
                     "embedding_layers", "notes"):
            values[name] = list(values.get(name) or [])
        if values.get("card_missing") is not None:
            values["card_missing"] = list(values["card_missing"])
        values.setdefault("in_tree", True)
        return cls(**values)


def rows_to_table(rows: Iterable[ScanRow], *, parts: bool = False) -> pa.Table:
    """Rows as an Arrow table: the published schema, or with `in_tree` for working parts (`parts`)."""
    schema = PART_SCHEMA if parts else SCHEMA
    records = [row.as_record() for row in rows]
    return pa.Table.from_pylist([{name: r[name] for name in schema.names} for r in records], schema=schema)


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` atomically: a temporary file beside it, flushed to disk, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        pq.write_table(table, handle, compression="zstd")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_rows(paths: Sequence[Path]) -> list[ScanRow]:
    """The rows of parquet files (parts or a published table), in file order."""
    rows: list[ScanRow] = []
    for path in paths:
        rows += [ScanRow.from_record(r) for r in pq.read_table(path).to_pylist()]
    return rows
