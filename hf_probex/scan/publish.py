"""Publishing a tree table as a Hub dataset repo, and reading a published one back.

`dataset_card` writes the README.md: `configs:` front matter pointing at `data/*.parquet` (so
`datasets.load_dataset(repo_id)` loads the table), the tree, date, counts, hf_probex version and scan
settings under `hf_probex:`, and the columns (from `table.COLUMNS`). `publish_table` creates the dataset
repo if needed (`HfApi.create_repo(repo_type="dataset", exist_ok=True)`) and uploads the table folder in
one commit (`upload_folder`), deleting shards the new table no longer has. `read_table` reads a
published table back (the shards its listing names, each name checked to stay in `data/`): `train --from-table`
learns from it, and `published_rows` keeps it when it is a table of the same tree and settings, so a scan with an
empty working folder compares the Hub's repos with the published rows and reads only what changed.
Calls go through `HubClient.call`: 429 and 5xx are retried with Retry-After or an exponential backoff.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import __version__
from ..bot.client import HubClient
from ..cards import CardError, metadata_of
from ..errors import BadFileError, hub_errors
from ..reading import MAX_SMALL_FILE_BYTES, safe_relpath
from .table import COLUMNS, ScanRow, read_rows

__all__ = ["DATA_FILES", "PublishedTable", "dataset_card", "publish_table", "published_rows", "read_table"]

#: Where a table's shards live in its dataset repo.
DATA_FILES = "data/*.parquet"
#: A published shard larger than this is not one hf_probex wrote (ROWS_PER_SHARD rows of a wide embedding: ~80 MB).
MAX_SHARD_BYTES = 1_000_000_000


def dataset_card(root: str, root_sha: str | None, members: list[ScanRow], *, settings: str, scanned_at: str) -> str:
    """The README.md of a tree table (see the module docstring)."""
    found_by = Counter(row.found_by for row in members)
    errors = sum(row.error is not None for row in members)
    labelled = sum(bool(row.labels) for row in members)
    embedded = sum(row.embedding is not None for row in members)
    families = ", ".join(f"{name} {n}" for name, n in sorted(Counter(r.family or "unread" for r in members).items()))
    metadata = {
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES}]}],
        "tags": ["hf-probex", "hf-probex-tree-table", "model-tree"],
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


@dataclass
class PublishedTable:
    """A tree table read back from its dataset repo: the commit read, what its card says under `hf_probex:`
    (`scan_of`: the root; `settings`, `scanned_at`, ...), and its rows."""

    repo_id: str
    commit: str
    described: dict
    rows: list[ScanRow]

    @property
    def root(self) -> str | None:
        """The root of the tree the table is of (its card's `scan_of`)."""
        root = self.described.get("scan_of")
        return root if isinstance(root, str) else None


def read_table(client: HubClient, repo_id: str, *, revision: str | None = None) -> PublishedTable | None:
    """The tree table published at `repo_id` (at `revision`, default main): None when there is no such dataset repo,
    no card, or a card without the `hf_probex:` block scans write.

    Raises:
        BadFileError: a file of the repo is too large, or named outside `data/`.
        ProbexError: the Hub refused or could not be reached (one line, `errors.hub_errors`).
    """
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    api = client.api
    with hub_errors(repo_id, revision, authenticated=bool(api.token), endpoint=api.endpoint):
        try:
            info = client.call(lambda: api.dataset_info(repo_id, revision=revision, files_metadata=True))
        except RepositoryNotFoundError:
            return None
    sizes = {safe_relpath(s.rfilename, f"the listing of {repo_id}"): s.size or 0 for s in info.siblings or []}
    if sizes.get("README.md", 0) > MAX_SMALL_FILE_BYTES:
        raise BadFileError(f"{repo_id}: README.md has {sizes['README.md']} bytes, more than a card's")
    with hub_errors(repo_id, info.sha, authenticated=bool(api.token), endpoint=api.endpoint):
        try:
            card = Path(api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=info.sha))
        except EntryNotFoundError:
            return None
        try:
            described = metadata_of(card.read_text(encoding="utf-8")).get("hf_probex") or {}
        except CardError:
            return None
        if not isinstance(described, dict) or not described.get("scan_of"):
            return None
        shards = sorted(name for name in sizes if fnmatch.fnmatch(name, DATA_FILES) and name.count("/") == 1)
        for name in shards:
            if sizes[name] > MAX_SHARD_BYTES:
                raise BadFileError(f"{repo_id}: {name} has {sizes[name]} bytes, more than a table shard's")
        paths = [Path(api.hf_hub_download(repo_id, name, repo_type="dataset", revision=info.sha)) for name in shards]
    return PublishedTable(repo_id, info.sha, described, read_rows(paths))


def published_rows(client: HubClient, repo_id: str, *, root: str, settings: str) -> list[ScanRow] | None:
    """The rows of the table published at `repo_id` when it is a table of `root` read with the same `settings`;
    None when there is no such repo, it holds another tree's table, or older settings' (then every repo is read).

    Raises:
        BadFileError: a file of the repo is too large, or named outside `data/`.
    """
    table = read_table(client, repo_id)
    if table is None or table.root != root or table.described.get("settings") != settings:
        return None
    return table.rows
