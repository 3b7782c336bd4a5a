"""The bot's memory: one SQLite row per repo (revision scanned, outcome, fields, PR number).

Every write is its own committed transaction (WAL, `synchronous=FULL`), so a `kill -9` loses at most the
step in flight. The order of writes makes that step safe to redo: an intent row (`pending`, with the
fields and revision) is committed before a pull request is opened, and the next run reconciles a
`pending` row with the repo's pull requests on the Hub before doing anything else.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..commands.common import default_cache_dir

__all__ = ["BotState", "RepoRecord", "default_state_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    repo_id    TEXT PRIMARY KEY,
    revision   TEXT,
    outcome    TEXT NOT NULL,
    reason     TEXT,
    fields     TEXT NOT NULL DEFAULT '[]',
    pr_num     INTEGER,
    updated_at TEXT NOT NULL
)
"""


def default_state_path() -> Path:
    """`bot.sqlite` in hf_probex's cache folder (HF_PROBEX_CACHE, else the user cache dir)."""
    return default_cache_dir() / "bot.sqlite"


@dataclass(frozen=True)
class RepoRecord:
    """What the bot last did with one repo.

    Attributes:
        repo_id: the repo.
        revision: the commit it scanned.
        outcome: "pending" (a PR is about to be opened), "proposed", "skipped" or "error".
        reason: why it was skipped, or the error message, or how a PR was found ("reconciled").
        fields: the fields proposed (or about to be).
        pr_num: the pull request's number on the repo, once known.
        updated_at: when the row was written (UTC, ISO 8601).
    """

    repo_id: str
    revision: str | None
    outcome: str
    reason: str | None
    fields: tuple[str, ...]
    pr_num: int | None
    updated_at: str


class BotState:
    """The state database; safe to share between the bot's threads (one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> BotState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, repo_id: str) -> RepoRecord | None:
        """The repo's row, or None if the bot never saw it."""
        with self._lock:
            row = self._db.execute("SELECT * FROM repos WHERE repo_id = ?", (repo_id,)).fetchone()
        return None if row is None else self._record(row)

    def put(self, repo_id: str, *, revision: str | None, outcome: str, reason: str | None = None,
            fields: tuple[str, ...] | list[str] = (), pr_num: int | None = None) -> None:
        """Replace the repo's row (committed before this returns)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO repos (repo_id, revision, outcome, reason, fields, pr_num, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo_id, revision, outcome, reason, json.dumps(list(fields)), pr_num, now))

    def records(self) -> list[RepoRecord]:
        """Every row, by repo id."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM repos ORDER BY repo_id").fetchall()
        return [self._record(row) for row in rows]

    def summary(self) -> dict:
        """Counts for `bot status`: {"repos", "outcomes": {outcome: n}, "skipped": {reason: n}, "errors", "prs"}."""
        records = self.records()
        return {
            "repos": len(records),
            "outcomes": dict(Counter(r.outcome for r in records)),
            "skipped": dict(Counter(r.reason for r in records if r.outcome == "skipped")),
            "errors": {r.repo_id: r.reason for r in records if r.outcome == "error"},
            "prs": {r.repo_id: r.pr_num for r in records if r.outcome == "proposed"},
            "pending": [r.repo_id for r in records if r.outcome == "pending"],
        }

    @staticmethod
    def _record(row: tuple) -> RepoRecord:
        repo_id, revision, outcome, reason, fields, pr_num, updated_at = row
        return RepoRecord(repo_id, revision, outcome, reason, tuple(json.loads(fields)), pr_num, updated_at)
