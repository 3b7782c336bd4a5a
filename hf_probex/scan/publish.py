"""Publishing a tree table as a Hub dataset repo, and reading a published one back.

`dataset_card` writes the README.md: `configs:` front matter pointing at `data/*.parquet` (so
`datasets.load_dataset(repo_id)` loads the table), the tree, date, counts, hf_probex version and scan
settings under `hf_probex:`, and the columns (from `table.COLUMNS`). `publish_table` creates the dataset
repo if needed (`HfApi.create_repo(repo_type="dataset", exist_ok=True)`) and uploads the table folder in
one commit (`upload_folder`), deleting shards the new table no longer has. `published_table` finds a
published table's card and shards (each name checked to stay in `data/`, each size bounded; downloaded into
huggingface_hub's cache at the repo's commit), `folder_table` a table on disk, and `published_rows` reads a
published table's rows back, so a scan with an empty working folder compares the Hub's repos with the published
rows and reads only what changed. `find_table` finds the table of a tree (a repo or folder given, the default scan
folder, else a trusted author's on the Hub) and `TableFiles.read_columns` reads the columns a consumer needs: text
search (`hf_probex.search`), `train --from-table` (`hf_probex.tableset`), the Space's browse tab and the bot
(`members.table_members`) read tables this way.
Calls go through `HubClient.call`: 429 and 5xx are retried with Retry-After or an exponential backoff.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .. import __version__
from ..bot.client import HubClient
from ..cards import CardError, metadata_of
from ..errors import BadFileError, ProbexError, hub_errors
from ..reading import MAX_SMALL_FILE_BYTES, looks_like_repo_id, safe_relpath
from .table import COLUMNS, ScanRow

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DATA_FILES", "TREE_TABLE_TAG", "TableError", "TableFiles", "TableNotFoundError", "dataset_card",
           "find_table", "folder_table", "publish_table", "published_rows", "published_table"]

#: Where a table's shards live in its dataset repo.
DATA_FILES = "data/*.parquet"
#: A published shard larger than this is not one hf_probex wrote (ROWS_PER_SHARD rows of a 4,096-float sketch: ~0.8 GB).
MAX_SHARD_BYTES = 2_000_000_000
#: More shards than this is not a table hf_probex wrote (10^7 rows at ROWS_PER_SHARD rows a shard is 200).
MAX_SHARDS = 1_000
#: Rows a table may hold (tables of 10^5 models are the design point) and decoded bytes of the columns read, in all
#: (10^5 rows' 4,096-float sketches, what lineage from a table reads, are 1.6 GiB).
MAX_TABLE_ROWS = 2_000_000
MAX_READ_BYTES = 4 * 2**30
#: Decoded bytes of one row's columns: a 4,096-float embedding, its labels and notes fit many times over.
MAX_ROW_BYTES = 256 * 1024
#: The tag every tree table's dataset card carries (`dataset_card`): how tables are found on the Hub.
TREE_TABLE_TAG = "hf-probex-tree-table"


class TableError(ProbexError):
    """A tree table that cannot be used: given but unreadable, of another tree, or of an older format."""


class TableNotFoundError(TableError):
    """No tree table of the tree was found (nothing given, none in the scan folder, none on the Hub)."""


def dataset_card(root: str, root_sha: str | None, members: list[ScanRow], *, settings: str, scanned_at: str) -> str:
    """The README.md of a tree table (see the module docstring)."""
    found_by = Counter(row.found_by for row in members)
    errors = sum(row.error is not None for row in members)
    labelled = sum(bool(row.labels) for row in members)
    embedded = sum(row.embedding is not None for row in members)
    families = ", ".join(f"{name} {n}" for name, n in sorted(Counter(r.family or "unread" for r in members).items()))
    metadata = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES}]}],
        "tags": ["hf-probex", TREE_TABLE_TAG, "model-tree"],
        "pretty_name": f"Model tree table of {root}",
        "hf_probex": {"scan_of": root, "root_sha": root_sha, "scanned_at": scanned_at, "version": __version__,
                      "rows": len(members), "settings": settings},
    }
    columns = "\n".join(f"| `{name}` | {kind} | {meaning} |" for name, kind, meaning in COLUMNS)
    return f"""---
{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip()}
---

# Model tree table of [{root}](/{root})

One row per member of the model tree of `{root}`, read from its weights and files by
hf_probex `scan` on {scanned_at} (hf_probex {__version__}).

- **{len(members)}** members: **{found_by.get('card', 0)}** found by their card's `base_model`,
  **{found_by.get('weights', 0)}** found by their weights (no card, or a card that does not name its base)
- families: {families or 'none'}
- **{labelled}** with labels harvested from their files or card, **{embedded}** with an embedding,
  **{errors}** that could not be read (`error`)

Each repo was read as `infer_card` reads it: its small files, safetensors headers and the expert's layers,
never a pickle. A rerun of `hf-probex scan {root} --to REPO` reads only the repos whose commit changed.

```python
from datasets import load_dataset

table = load_dataset("REPO_ID", split="train")
```

## Columns

| column | type | meaning |
|---|---|---|
{columns}
"""


def publish_table(client: HubClient, table_dir: Path, repo_id: str, *, root: str, private: bool = False) -> str:
    """Upload the table folder (`data/*.parquet`, README.md) to the dataset repo `repo_id` in one commit, creating
    the repo if needed; the commit id."""
    api = client.api
    client.call(lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True))
    info = client.call(lambda: api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(table_dir), allow_patterns=[DATA_FILES, "README.md"],
        delete_patterns=[DATA_FILES], commit_message=f"hf_probex scan of {root}"))
    return info.oid


@dataclass(frozen=True)
class TableFiles:
    """A tree table on this machine: where it is from (`location`: a dataset repo id or a folder), the dataset repo's
    commit (None for a folder), its card's `hf_probex:` metadata (`described`; {} when the card has none) and its
    shards (downloaded on first use by `shards`)."""

    location: str
    commit: str | None
    described: dict
    _shards: Callable[[], list[Path]] = field(repr=False, compare=False)

    def shards(self) -> list[Path]:
        """The parquet shards, in name order (from a repo: downloaded into huggingface_hub's cache at `commit`)."""
        return self._shards()

    def read_rows(self) -> list[ScanRow]:
        """Every row whole, as `read_columns` reads (each shard's footer checked before anything is decoded).

        Raises:
            TableError: as `read_columns`.
        """
        return [ScanRow.from_record(r) for r in self.read_columns([name for name, _, _ in COLUMNS]).to_pylist()]

    def read_columns(self, columns: list[str]) -> pa.Table:
        """These columns of every row, as one Arrow table (only they are read from the shards).

        Raises:
            TableError: a shard is not a table hf_probex can read, lacks a column (an older format), or there is
                no shard.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        tree = self.described.get("scan_of") or "ROOT"
        parts, rows, size = [], 0, 0
        for path in self.shards():
            try:
                metadata = pq.ParquetFile(path).metadata  # the footer only: what reading would cost, before it is paid
                decoded = _uncompressed(metadata, columns)
                problem = _shard_problem(metadata, columns, decoded)
                rows, size = rows + metadata.num_rows, size + decoded
                if problem is None and (rows > MAX_TABLE_ROWS or size > MAX_READ_BYTES):
                    problem = (f"more than {MAX_TABLE_ROWS:,} rows or {MAX_READ_BYTES / 2**30:.0f} GiB of these "
                               f"columns in all")
                if problem is None:
                    parts.append(pq.read_table(path, columns=columns))
            except (pa.ArrowInvalid, KeyError, OSError) as err:
                problem = str(err).splitlines()[0] if str(err) else type(err).__name__
            if problem is not None:
                raise TableError(f"{self.location}: {path.name} is not a tree table shard this hf_probex can read "
                                 f"({problem}): rescan with `hf-probex scan {tree}`") from None
        if not parts:
            raise TableError(f"{self.location} holds no rows: rescan with `hf-probex scan {tree}`")
        try:
            return pa.concat_tables(parts)
        except pa.ArrowInvalid as err:  # shards whose columns differ in what the types do not say (nullability)
            raise TableError(f"{self.location}: its shards do not fit together ({str(err).splitlines()[0]}): rescan "
                             f"with `hf-probex scan {tree}`") from None


def _uncompressed(metadata, columns: list[str]) -> int:
    """Bytes the shard's `columns` take once decoded, as its footer declares them."""
    wanted = set(columns)
    return sum(group.column(j).total_uncompressed_size for i in range(metadata.num_row_groups)
               for group in [metadata.row_group(i)] for j in range(group.num_columns)
               if group.column(j).path_in_schema.split(".")[0] in wanted)


def _shard_problem(metadata, columns: list[str], decoded: int) -> str | None:
    """Why a shard (its parquet footer; `decoded`: its `columns`' bytes once decoded) is not one hf_probex wrote, for
    reading `columns`; None when it may be read:
    each column of its table type (`table.COLUMNS`, `in_tree` a boolean), at most `ROWS_PER_SHARD` rows, and no more
    decoded bytes a row than a wide embedding and its labels take (a small file may declare gigabytes)."""
    from .folder import ROWS_PER_SHARD
    from .table import PART_SCHEMA

    schema = metadata.schema.to_arrow_schema()
    for name in columns:
        if name in schema.names and name in PART_SCHEMA.names and schema.field(name).type != PART_SCHEMA.field(name).type:
            return f"its column {name} is {schema.field(name).type}, not {PART_SCHEMA.field(name).type}"
    if metadata.num_rows > ROWS_PER_SHARD:
        return f"{metadata.num_rows:,} rows, more than a shard's {ROWS_PER_SHARD:,}"
    if decoded > MAX_ROW_BYTES * metadata.num_rows + 2**20:
        return f"{decoded:,} bytes once decoded, more than {MAX_ROW_BYTES:,} a row"
    return None


def _described(card_text: str) -> dict:
    try:
        described = metadata_of(card_text).get("hf_probex") or {}
    except CardError:
        return {}
    return described if isinstance(described, dict) else {}


def _checked_shards(sizes: dict[str, int], where: str) -> list[str]:
    """The shard names of a table (`data/*.parquet`, directly in data/), each checked to be a shard's size."""
    shards = sorted(name for name in sizes if fnmatch.fnmatch(name, DATA_FILES) and name.count("/") == 1)
    if len(shards) > MAX_SHARDS:
        raise BadFileError(f"{where}: {len(shards)} shards, more than a table hf_probex writes")
    for name in shards:
        if sizes[name] > MAX_SHARD_BYTES:
            raise BadFileError(f"{where}: {name} has {sizes[name]} bytes, more than a table shard's")
    return shards


def published_table(client: HubClient, repo_id: str, *, revision: str | None = None) -> TableFiles | None:
    """The table published at the dataset repo `repo_id`, at `revision` (default: its current commit): its card
    read, its shards checked
    (names in `data/`, sizes bounded) and downloaded when asked; None when there is no such repo or it has no card.

    Raises:
        BadFileError: a file of the repo is too large, or named outside `data/`.
        ProbexError: the Hub refused the download (`hub_errors`).
    """
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    api = client.api
    try:
        info = client.call(lambda: api.dataset_info(repo_id, revision=revision, files_metadata=True))
    except RepositoryNotFoundError:
        return None
    sizes = {safe_relpath(s.rfilename, f"the listing of {repo_id}"): s.size or 0 for s in info.siblings or []}
    if sizes.get("README.md", 0) > MAX_SMALL_FILE_BYTES:
        raise BadFileError(f"{repo_id}: README.md has {sizes['README.md']} bytes, more than a card's")
    shards = _checked_shards(sizes, repo_id)
    errors = functools.partial(hub_errors, repo_id, info.sha, authenticated=bool(api.token), endpoint=api.endpoint)
    with errors():
        try:
            card = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=info.sha))
        except EntryNotFoundError:
            return None

    def download() -> list[Path]:
        with errors():
            return [Path(api.hf_hub_download(repo_id, name, repo_type="dataset", revision=info.sha)) for name in shards]

    return TableFiles(repo_id, info.sha, _described(card.read_text(encoding="utf-8", errors="replace")),
                      functools.cache(download))


def folder_table(folder: str | os.PathLike[str]) -> TableFiles | None:
    """The table in a local folder: a scan's working folder (its `table/`) or a table folder (README.md and
    `data/*.parquet`, as published); None when the folder holds neither. Shards are size-checked as a download's."""
    path = Path(folder)
    table = path / "table" if (path / "table" / "README.md").is_file() else path
    card = table / "README.md"
    if not card.is_file() or not (table / "data").is_dir():
        return None
    linked = [p for p in ((table,) if table != path else ()) + (card, table / "data") if p.is_symlink()]
    if linked:  # a link may lead anywhere on this machine: rows and cards are read from the table's own files only
        raise BadFileError(f"{linked[0]} is a link: a table folder's README.md and data/ are read only as real files "
                           f"and folders; copy the table instead")
    if card.stat().st_size > MAX_SMALL_FILE_BYTES:
        raise BadFileError(f"{card}: {card.stat().st_size} bytes, more than a card's")
    sizes = {f"data/{p.name}": p.stat().st_size for p in (table / "data").iterdir() if p.is_file() and not p.is_symlink()}
    shards = [table / name for name in _checked_shards(sizes, str(table))]
    return TableFiles(str(table), None, _described(card.read_text(encoding="utf-8", errors="replace")),
                      lambda: list(shards))


def published_rows(client: HubClient, repo_id: str, *, root: str, settings: str) -> list[ScanRow] | None:
    """The rows of the table published at `repo_id` when it is a table of `root` read with the same `settings`;
    None when there is no such repo, it holds another tree's table, or older settings' (then every repo is read).

    Raises:
        BadFileError: a file of the repo is too large, or named outside `data/`.
    """
    table = published_table(client, repo_id)
    if table is None or table.described.get("scan_of") != root or table.described.get("settings") != settings:
        return None
    return table.read_rows()


def _hub_tables(client, tree: str, token: str | bool | None) -> TableFiles | None:
    """The most recently changed tree table of `tree` on the Hub from a trusted author (as experts are trusted: a
    table decides what a search shows), or None."""
    from ..experts.registry import trusted_authors

    for author in trusted_authors(token):
        listed = client.call(lambda author=author: list(client.api.list_datasets(
            filter=TREE_TABLE_TAG, author=author, sort="lastModified", limit=100)))
        for dataset in listed:
            table = published_table(client, dataset.id)
            if table is not None and table.described.get("scan_of") == tree:
                return table
    return None


def find_table(tree: str, table: str | os.PathLike[str] | None = None, *, token: str | bool | None = None) -> TableFiles:
    """The tree table to search `tree` in: `table` (a dataset repo id, a scan's working folder or a table folder);
    without it, the table of the scan folder `hf-probex scan` uses by default for `tree`, else the latest table of
    `tree` on the Hub from a trusted author (`experts.registry.trusted_authors`; not when HF_HUB_OFFLINE is set).

    Raises:
        TableNotFoundError: no table was given or found (or, online, the root `tree` does not exist).
        TableError: the table given cannot be read, or is another tree's.
        BadFileError: a file of the table is too large, or named outside `data/`.
    """
    from huggingface_hub import HfApi, constants

    from .folder import default_scan_folder

    client = HubClient(HfApi(token=token))
    if table is not None:
        if Path(table).exists():
            found = folder_table(table)
            if found is None:
                raise TableError(f"{table} holds no tree table (README.md and data/*.parquet): pass the folder "
                                  f"`hf-probex scan --out` wrote, or a dataset repo id")
        elif looks_like_repo_id(str(table)):
            found = published_table(client, str(table))
            if found is None:
                raise TableNotFoundError(f"{table}: no tree table on {client.api.endpoint}: publish one with "
                                         f"`hf-probex scan {tree} --to {table}`")
        else:
            raise TableError(f"--table {table!r} is neither a folder nor a dataset repo id (namespace/name)")
    else:
        found = folder_table(default_scan_folder(tree))
        if found is None and not constants.HF_HUB_OFFLINE:
            found = _hub_tables(client, tree, token)
        if found is None and not constants.HF_HUB_OFFLINE and not client.call(lambda: client.api.repo_exists(tree)):
            raise TableNotFoundError(f"{tree} was not found on {client.api.endpoint}: check the root's repo id (--tree)")
        if found is None:
            raise TableNotFoundError(f"no tree table of {tree} was found (no scan in {default_scan_folder(tree)}, none "
                                     f"on the Hub from a trusted author): run `hf-probex scan {tree} --to OWNER/NAME`, "
                                     f"then pass --table OWNER/NAME")
    scan_of = found.described.get("scan_of")
    if scan_of != tree:
        raise TableError(f"{found.location} is the table of {scan_of or 'no tree hf_probex scanned'}, not of {tree}: "
                          f"pass the table of {tree}" + (f", or --tree {scan_of}" if scan_of else ""))
    return found
