"""The scan's working folder: rows flushed in parts as they complete, a state file, the table to publish.

    OUT/
      .lock                 one scan at a time (an advisory lock, released by the OS if the scan dies)
      state.json            the tree, the settings the rows were read with, the finished parts in order
      parts/part-NNNNNN.parquet   rows as they were read (with `in_tree`: candidates routed elsewhere too)
      table/data/train-NNNNN-of-NNNNN.parquet, table/README.md   the consolidated table and its dataset card
      table.new/            the next table, while it is written and published (it replaces table/ only then)

Every file is written to a temporary name and renamed over the final one (`os.replace`), and a part is
named in state.json only after it is whole on disk, so `kill -9` at any moment leaves a folder the next
run reads correctly: a part the state does not name (killed between the two renames) and temporary files
are removed, and their repos are read again. The rows done are those of the named parts (a repo read
again lives in the later part), each at the commit it was read at: that is the state's "done repo@sha".
The table is staged in table.new/ and moves into table/ only once it is published (or, without a
repo to publish to, written whole): a run that fails leaves the table the last good run made.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProbexError
from ..settings import default_cache_dir
from .table import ScanRow, read_rows, rows_to_table, write_parquet

__all__ = ["DEFAULT_FLUSH_EVERY", "ROWS_PER_SHARD", "ScanFolder", "ScanFolderError", "default_scan_folder", "write_text"]

STATE_FORMAT = 1
#: Rows per part flushed to the working folder (what a kill can lose at most).
DEFAULT_FLUSH_EVERY = 64
#: Rows per shard of the consolidated table (a 4,096-float sketch: ~16 KB a row, so ~0.8 GB a shard).
ROWS_PER_SHARD = 50_000


class ScanFolderError(ProbexError):
    """A working folder that cannot be used: another tree's, in use by another scan, or damaged."""


def default_scan_folder(root: str) -> Path:
    """`<cache>/scans/<owner>--<name>`: where a tree's working folder goes without --out."""
    return default_cache_dir() / "scans" / root.replace("/", "--")


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file beside it, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class _State:
    root: str
    settings: str
    parts: list[str] = field(default_factory=list)
    next_part: int = 1
    published: dict = field(default_factory=dict)  # repo_id, commit, at: the last publication


class ScanFolder:
    """One tree's working folder (see the module docstring). Use as a context manager: it holds the lock."""

    def __init__(self, path: str | os.PathLike[str], root: str, settings: str) -> None:
        self.path = Path(path)
        self.root, self.settings = root, settings
        self.parts_dir, self.table_dir = self.path / "parts", self.path / "table"
        self.staged_dir, self.replaced_dir = self.path / "table.new", self.path / "table.old"
        self._lock_handle = None
        self.state = _State(root, settings)
        self.restarted = False  # rows read with other settings were discarded

    def __enter__(self) -> ScanFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        self.parts_dir.mkdir(exist_ok=True)
        self._lock_handle = open(self.path / ".lock", "w")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise ScanFolderError(f"another scan is using {self.path}: wait for it, or pass another --out") from None
        self._load()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # releases the lock
            self._lock_handle = None

    # ---- state --------------------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.path / "state.json"
        if path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                state = _State(raw["root"], raw["settings"], list(raw["parts"]), int(raw["next_part"]),
                               dict(raw.get("published") or {}))
            except (ValueError, KeyError, TypeError) as err:
                raise ScanFolderError(f"{path} is damaged ({err}); delete {self.path} to scan from scratch") from None
            if state.root != self.root:
                raise ScanFolderError(f"{self.path} holds the scan of another tree ({state.root}): pass another --out")
            if any(Path(name).name != name or not name.endswith(".parquet") for name in state.parts):
                raise ScanFolderError(f"{path} names parts outside {self.parts_dir}; delete {self.path} to start over")
            self.state = state
        self.discard_staged()  # a table a killed run did not publish
        if self.replaced_dir.is_dir() and not self.table_dir.exists():  # killed between install_table's two renames
            os.replace(self.replaced_dir, self.table_dir)
        shutil.rmtree(self.replaced_dir, ignore_errors=True)
        named = set(self.state.parts)
        for leftover in self.parts_dir.iterdir():  # temporary files, and parts written but never named
            if leftover.name not in named:
                leftover.unlink()
        if self.state.settings != self.settings:  # rows read by other experts or another sketch: read again
            self.restarted = bool(self.state.parts)
            for name in self.state.parts:
                (self.parts_dir / name).unlink(missing_ok=True)
            self.state = _State(self.root, self.settings, next_part=self.state.next_part,
                                published=self.state.published)
            self._save()

    def _save(self) -> None:
        state = self.state
        write_text(self.path / "state.json", json.dumps(
            {"format": STATE_FORMAT, "root": state.root, "settings": state.settings, "parts": state.parts,
             "next_part": state.next_part, "published": state.published}, indent=1))

    @property
    def published(self) -> dict:
        """Where and when the table was last published ({} if never)."""
        return self.state.published

    def set_published(self, repo_id: str, commit: str | None, at: str) -> None:
        self.state.published = {"repo_id": repo_id, "commit": commit, "at": at}
        self._save()

    # ---- rows ---------------------------------------------------------------------------------------

    def done(self) -> dict[str, ScanRow]:
        """Every repo read so far -> its latest row (members and candidates routed elsewhere alike)."""
        rows = read_rows([self.parts_dir / name for name in self.state.parts])
        return {row.repo_id: row for row in rows}

    def flush(self, rows: list[ScanRow]) -> str:
        """Write `rows` as the next part, then name it in the state; the part's name."""
        name = f"part-{self.state.next_part:06d}.parquet"
        write_parquet(rows_to_table(rows, parts=True), self.parts_dir / name)
        self.state.parts.append(name)
        self.state.next_part += 1
        self._save()
        return name

    def compact(self, rows: list[ScanRow]) -> None:
        """Replace every part by one holding `rows` (the repos the tree has now), dropping older rows."""
        old = list(self.state.parts)
        self.state.parts = []
        self.flush(rows)
        for name in old:
            (self.parts_dir / name).unlink(missing_ok=True)

    def stage_table(self, members: list[ScanRow], card: str) -> None:
        """The next consolidated table, in table.new/: `members` in shards of `ROWS_PER_SHARD` under data/, and the
        dataset card `card` as README.md. table/ is untouched until `install_table`."""
        self.discard_staged()
        data = self.staged_dir / "data"
        data.mkdir(parents=True)
        count = max(1, -(-len(members) // ROWS_PER_SHARD))
        for i in range(count):
            write_parquet(rows_to_table(members[i * ROWS_PER_SHARD:(i + 1) * ROWS_PER_SHARD]),
                          data / f"train-{i:05d}-of-{count:05d}.parquet")
        write_text(self.staged_dir / "README.md", card)

    def staged_rows_unchanged(self) -> bool:
        """Whether the staged table's shards are byte for byte those of table/ (only the card's date differs)."""
        def shards(folder: Path) -> dict[str, bytes]:
            return {p.name: p.read_bytes() for p in sorted((folder / "data").glob("*.parquet"))}

        return self.table_dir.is_dir() and shards(self.staged_dir) == shards(self.table_dir)

    def install_table(self) -> None:
        """The staged table becomes table/ (the previous one removed): two renames, so a kill leaves one whole table."""
        if self.table_dir.exists():
            os.replace(self.table_dir, self.replaced_dir)
        os.replace(self.staged_dir, self.table_dir)
        shutil.rmtree(self.replaced_dir, ignore_errors=True)

    def discard_staged(self) -> None:
        shutil.rmtree(self.staged_dir, ignore_errors=True)

    def table_shards(self) -> list[Path]:
        """The installed table's shards, in name order."""
        return sorted((self.table_dir / "data").glob("*.parquet"))
