"""Text search over a model tree, answered from its published tree table: a LoRA tree by its weights, with a vector
index (issue 15, item 4); a tree of full models by the labels its members state (`label_search`).

    from hf_probex import search
    for hit in search("a corgi in the snow", tree="acme/sd-root", table="acme/sd-root-tree-table"):
        print(hit.repo_id, hit.score, hit.labels, hit.sha)

This module owns the read side of a tree table for search: checking that its vectors are those of the expert that
embeds the query, and the index over them cached by the table's commit (`open_tree_index`). It reuses the scan's
readers (`scan.publish.find_table`, `TableFiles.read_columns`: bounded listings and downloads), the expert registry,
the text encoders (`text.encode_texts`) and the indexes of `vector_index`. The hits (`SearchHit`) and the query's
bounds, which the label index shares, are `search_query`'s, importable from here too.

Which search a tree gets (`open_search_index`) follows its table: a table of LoRAs is searched by its weights,
as below; a table of full models (classifiers, sentence encoders), whose experts name classes of a fixed
vocabulary and cannot embed a text, by the labels its members' files and cards state (`label_search.LabelIndex`).

How a LoRA query is answered: the tree's zero-shot expert embeds it with its own text encoder and prompt
(`Expert.search_vectors(text=...)`); the table's rows carry `Expert.search_vectors` of each LoRA (the scan wrote
them, with the expert's fingerprint in `embedding_kind`), so an inner product is the expert's own cosine score
and the index returns the nearest rows; those are ranked by how much better the query fits each than the other
concepts the expert knows (`experts.vocabulary.query_fit`), so a LoRA of a concept it never trained on is not
outranked by LoRAs of a neighbour it did. Rows of another expert (another training run or version) are never mixed
in: a table without rows of this expert is refused ("rescan").

The index is kept in `<cache>/search/<table>/<commit>-<expert fingerprint>-<kind>/` (cache: `HF_PROBEX_CACHE` or
the user cache folder): the float32 vectors (`.npy`, read with `allow_pickle=False`), usearch's graph file for
large tables, and the rows' ids, commits and labels (parquet). A table at a new commit gets a new index; a
local table folder is keyed by a digest of its files instead of a commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .scan.publish import TableError, TableNotFoundError, find_table
from .scan.table import Label
from .search_query import DEFAULT_TOP_K, MAX_QUERY_CHARS, MAX_TOP_K, SearchError, SearchHit, checked_query, checked_top_k

if TYPE_CHECKING:
    import pyarrow as pa

    from .experts.hub import Expert
    from .infer import Experts
    from .label_search import LabelIndex
    from .scan.publish import TableFiles
    from .vector_index import VectorIndex

__all__ = ["DEFAULT_TOP_K", "MAX_QUERY_CHARS", "MAX_TOP_K", "SearchError", "SearchHit", "TableError", "TableNotFoundError",
           "TreeIndex", "checked_query", "checked_top_k", "find_table", "open_search_index", "open_tree_index", "search"]

#: The table columns search reads (the embedding only when building an index).
_ROW_COLUMNS = ["repo_id", "sha", "family", "labels"]
_INDEX_FORMAT = 2  # 2: HNSW graphs of degree 32 (vector_index.HNSW_CONNECTIVITY)
#: LoRAs taken from the index per hit asked for (at least MIN_SHORTLIST), then ranked by their fit to the query.
SHORTLIST = 10
MIN_SHORTLIST = 100


@dataclass
class TreeIndex:
    """A tree table's index for one expert, ready to answer queries (see the module docstring).

    Attributes:
        tree: the tree's root; `entry`, `expert`: its zero-shot expert.
        table: where the table came from (`location`, `commit`).
        index: the vector index; `rows`: repo_id, sha, family, labels of each indexed row, in index order.
        folder: the index's cache folder; `built`: True when this call built it, False when it was read back.
        unindexed: members of the table without a vector of this expert (not LoRAs, unreadable, no module).
    """

    tree: str
    entry: ExpertEntry
    expert: Expert
    table: TableFiles
    index: VectorIndex
    rows: pa.Table
    folder: Path
    built: bool
    unindexed: int = 0
    _query_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def query_embedding(self, text: str) -> np.ndarray:
        """`text` as the expert's text encoder embeds it, on the expert's prompt."""
        from .text import encode_texts

        text = checked_query(text)
        if text not in self._query_cache:
            config = self.expert.config
            self._query_cache[text] = encode_texts([config["prompt"].format(text)], config["text_encoder"])[0]
        return self._query_cache[text]

    def query_vector(self, text: str) -> np.ndarray:
        """`text` as the expert scores it: `query_embedding`, then `search_vectors(text=...)`."""
        return self.expert.search_vectors(text=self.query_embedding(text)[None])[0]

    def search(self, text: str, top_k: int = DEFAULT_TOP_K) -> list[SearchHit]:
        """The `top_k` LoRAs whose weights match `text` best, best first: the index's nearest LoRAs by cosine,
        `SHORTLIST` per hit, ranked by how much better the query fits each than any other concept the expert knows
        (`experts.vocabulary.query_fit`, the hit's score)."""
        from .experts.vocabulary import query_fit

        checked_top_k(top_k)
        shortlist, _ = self.index.search(self.query_vector(text), max(SHORTLIST * top_k, MIN_SHORTLIST))
        fit = query_fit(self.expert, np.asarray(self.index.vectors)[shortlist], self.query_embedding(text))
        best = np.argsort(-fit, kind="stable")[:top_k]
        found, scores = shortlist[best], fit[best]
        rows = self.rows.take(found).to_pylist() if len(found) else []
        return [SearchHit(row["repo_id"], float(score), tuple(Label(**label) for label in row["labels"] or []),
                          row["sha"], row["family"]) for row, score in zip(rows, scores)]

    def describe(self) -> str:
        """One line for people: how many LoRAs, from which table at which commit, which index, which expert."""
        commit = f"@{self.table.commit[:8]}" if self.table.commit else " (a local folder)"
        location = self.table.location if self.table.commit else "the tree table"
        return (f"{len(self.index)} LoRAs from {location}{commit}, {self.index.kind} index, expert "
                f"{self.entry.public_name}")

    def about(self) -> dict:
        """What `hf-probex search --json` says of the index."""
        return {"index": self.index.kind, "rows": len(self.index), "expert": self.entry.public_name}


def _zero_shot_entries(registry: ExpertRegistry, tree: str) -> list[ExpertEntry]:
    from .adapters import CONCEPT_TASK

    entries = registry.for_root(tree, CONCEPT_TASK)
    if not entries:
        known = sorted({e.root for e in registry.entries if e.task == CONCEPT_TASK and e.root})
        raise SearchError(f"no zero-shot expert for the tree of {tree}: text search works on LoRA trees with one "
                          f"({', '.join(known) or 'none known here'}); pass --expert, or train one with `hf-probex "
                          f"train --tree ... --register`")
    return entries


def _location_key(table: TableFiles) -> str:
    if table.commit is not None:
        return table.location.replace("/", "--")
    return "folder-" + hashlib.sha256(str(Path(table.location).resolve()).encode()).hexdigest()[:16]


def _table_version(table: TableFiles) -> str:
    """The dataset repo's commit; for a local folder, a digest of its shards' bytes (a rescan changes it)."""
    if table.commit is not None:
        return table.commit
    digest = hashlib.sha256()
    for path in table.shards():
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "local-" + digest.hexdigest()[:24]


def _read_vectors(table: TableFiles, expert: Expert, tree: str) -> tuple[pa.Table, np.ndarray, int]:
    """(rows, vectors [n, width], members without a vector of `expert`) from the table's shards: the rows whose
    `embedding_kind` names `expert`'s fingerprint and that have an embedding.

    Raises:
        SearchError: the table holds no vectors of this expert, or vectors of the wrong width.
        TableError: the table's shards cannot be read, or lack the columns.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .scan.embedding import kind_fingerprint

    rows = table.read_columns([*_ROW_COLUMNS, "embedding", "embedding_kind"])
    fingerprint = expert.fingerprint()
    kinds = [k for k in rows["embedding_kind"].unique().to_pylist() if k is not None]
    ours = [k for k in kinds if kind_fingerprint(k) == fingerprint]
    if not ours:
        if any(k.startswith("zero-shot expert") for k in kinds):
            raise SearchError(f"the table was scanned with another expert; rescan ({table.location} has vectors of "
                              f"{kinds[0].split(',')[0]}, the tree's expert is [{fingerprint}]: `hf-probex scan "
                              f"{tree} --to ...` with it)")
        raise SearchError(f"{table.location} has no LoRA vectors of a zero-shot expert (its rows were scanned "
                          f"without one): rescan with `hf-probex scan {tree} --expert ...`")
    mask = pc.and_(pc.is_in(rows["embedding_kind"], value_set=pa.array(ours)), pc.is_valid(rows["embedding"]))
    kept = rows.filter(mask)
    width = expert.search_vectors(text=np.zeros((1, expert.config["text_dim"]), np.float32)).shape[1]
    embedding = kept["embedding"].combine_chunks()
    if len(kept) and pc.any(pc.not_equal(pc.list_value_length(embedding), width)).as_py():
        raise SearchError(f"{table.location}: vectors of another width than the expert's {width}: rescan")
    vectors = embedding.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, width)
    if not np.isfinite(vectors).all():
        raise SearchError(f"{table.location}: vectors hold NaN or inf: rescan")
    return kept.select(_ROW_COLUMNS), vectors, len(rows) - len(kept)


def _load_cached(folder: Path, kind: str | None) -> tuple[VectorIndex, pa.Table, int] | None:
    """The index kept in `folder`, or None when it is missing, damaged or of another kind than asked."""
    import pyarrow.parquet as pq

    from .bounded import load_json
    from .vector_index import INDEX_KINDS, load_index

    try:
        meta = load_json((folder / "meta.json").read_bytes(), max_bytes=10_000)
        if not isinstance(meta, dict) or meta.get("format") != _INDEX_FORMAT or meta.get("kind") not in INDEX_KINDS:
            return None
        if kind not in (None, meta["kind"]):
            return None
        index, rows = load_index(folder, meta["kind"]), pq.read_table(folder / "rows.parquet")
        if len(rows) != len(index) or rows.column_names != _ROW_COLUMNS:
            return None
        return index, rows, int(meta.get("unindexed", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(folder: Path, index: VectorIndex, rows: pa.Table, unindexed: int) -> None:
    """Write the index's folder whole: into a temporary folder beside it, then renamed into place."""
    import pyarrow.parquet as pq

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        index.save(staging)
        pq.write_table(rows, staging / "rows.parquet")
        (staging / "meta.json").write_text(json.dumps({"format": _INDEX_FORMAT, "kind": index.kind, "rows": len(rows),
                                                       "unindexed": unindexed}))
        shutil.rmtree(folder, ignore_errors=True)  # a damaged one (a loaded one is never replaced)
        os.replace(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # a read-only cache: the index still answers from memory


def _checked_tree(tree: str, kind: str | None) -> str:
    """The root repo id `tree`, stripped; SearchError for one that is not a repo id, or an unknown index kind."""
    from .reading import looks_like_repo_id
    from .vector_index import INDEX_KINDS

    tree = (tree or "").strip()
    if not looks_like_repo_id(tree):
        raise SearchError(f"--tree {tree!r} is not a Hub repo id: give the tree's root as namespace/name")
    if kind not in (None, *INDEX_KINDS):
        raise SearchError(f"unknown index kind {kind!r}: one of {', '.join(INDEX_KINDS)}")
    return tree


def _lora_index(tree: str, found: TableFiles, entries: list[ExpertEntry], kind: str | None,
                cache_dir: str | os.PathLike[str] | None) -> TreeIndex:
    """The index of the LoRA table `found` for the first of `entries` (zero-shot experts) its vectors are of, from the
    cache or built (see `open_tree_index`)."""
    from .settings import default_cache_dir
    from .vector_index import build_index

    version = _table_version(found)
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "search"
    refusal = None
    for entry in entries:  # usually one; a table scanned with one of several experts of the tree uses that one
        expert = load_expert(entry.location)
        folder = base / _location_key(found) / f"{version}-{expert.fingerprint()}-{kind or 'auto'}"
        cached = _load_cached(folder, kind)
        if cached is not None:
            return TreeIndex(tree, entry, expert, found, cached[0], cached[1], folder, built=False, unindexed=cached[2])
        try:
            rows, vectors, unindexed = _read_vectors(found, expert, tree)
        except SearchError as err:
            refusal = refusal or err
            continue
        index = build_index(vectors, kind)
        _save(folder, index, rows, unindexed)
        return TreeIndex(tree, entry, expert, found, index, rows, folder, built=True, unindexed=unindexed)
    raise refusal


def open_tree_index(tree: str, *, table: str | os.PathLike[str] | None = None, token: str | bool | None = None,
                    experts: Experts = None, kind: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> TreeIndex:
    """The index of the tree table of a LoRA tree `tree` for its zero-shot expert: read back from the cache when this
    table commit was indexed before, built (and cached) otherwise.

    Args:
        tree: the tree's root repo id.
        table: a dataset repo id, a scan's working folder or a table folder (default: see `find_table`).
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none).
        experts: an `ExpertRegistry`, expert folders or Hub repo ids (default: the local registry and the Hub's).
        kind: "exact" or "usearch" (default: by the row count, `vector_index.choose_index_kind`).
        cache_dir: where indexes are kept (default `<hf_probex cache>/search`).

    Raises:
        SearchError: no zero-shot expert for the tree, a table without its vectors.
        TableError: no usable table (`TableNotFoundError`: none found).
    """
    from .infer import expert_registry

    tree = _checked_tree(tree, kind)
    entries = _zero_shot_entries(expert_registry(experts, token), tree)
    return _lora_index(tree, find_table(tree, table, token=token), entries, kind, cache_dir)


def open_search_index(tree: str, *, table: str | os.PathLike[str] | None = None, token: str | bool | None = None,
                      experts: Experts = None, kind: str | None = None,
                      cache_dir: str | os.PathLike[str] | None = None) -> TreeIndex | LabelIndex:
    """The index that answers text search on the tree of `tree`, by what its table holds: a table of LoRAs gives the
    zero-shot expert's index (`open_tree_index`), a table of full models the index of their labels
    (`label_search.open_label_index`: the text encoder's similarity between the query and each member's labels).
    Arguments as `open_tree_index`'s (`experts`, `kind` and `cache_dir` are a LoRA index's).

    Raises:
        SearchError: a LoRA tree without a zero-shot expert, a table without its vectors.
        TableError: no usable table (`TableNotFoundError`: none found).
    """
    from .infer import expert_registry
    from .label_search import open_label_index
    from .tableset import table_kind

    tree = _checked_tree(tree, kind)
    found = find_table(tree, table, token=token)
    families = found.read_columns(["family", "error"]).to_pylist()
    if table_kind(row["family"] for row in families if row["error"] is None) != "lora":
        return open_label_index(tree, found)
    return _lora_index(tree, found, _zero_shot_entries(expert_registry(experts, token), tree), kind, cache_dir)


def search(text: str, *, tree: str, table: str | os.PathLike[str] | None = None, top_k: int = DEFAULT_TOP_K,
           token: str | bool | None = None, experts: Experts = None) -> list[SearchHit]:
    """The models of the tree of `tree` that match `text` best, from its tree table (see the module docstring): a
    LoRA tree's LoRAs by their weights, a tree of full models' members by the labels they state.

    Args:
        text: what the LoRA should draw ("a corgi in the snow"), or what the models were trained on ("legal texts");
            any text, not only the expert's vocabulary.
        tree: the tree's root repo id.
        table: the tree table: a dataset repo id, a scan's working folder or a table folder (default: `find_table`).
        top_k: how many hits (1 to `MAX_TOP_K`).
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none).
        experts: an `ExpertRegistry`, expert folders or Hub repo ids (default: the local registry and the Hub's).

    Returns:
        Up to `top_k` hits, best first: repo id, score, harvested labels (the one that matched for a full model),
        commit.

    Raises:
        SearchError: an empty query, a LoRA tree without a zero-shot expert, a table of another expert.
        TableError: no usable table (`TableNotFoundError`: none found).
    """
    checked_query(text)
    checked_top_k(top_k)
    return open_search_index(tree, table=table, token=token, experts=experts).search(text, top_k)
