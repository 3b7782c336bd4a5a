"""The bot's memory: what it did with each repo, and the ledger of every contact it made with an owner.

- `repos`: one row per repo: revision scanned, outcome, fields, PR (or digest) number, and whether the owner
  asked for a pull request (accepted it in a digest).
- `contacts`: every pull request and digest the bot opened or is about to open, by owner, with when and its
  status on the Hub as last seen. The budgets (`etiquette`) are counted from it, so they survive restarts.
- `owners`: owners who refused the bot for all their repos (closed its pull requests without merging any, or
  refused a digest), and why.

Every write is its own committed transaction (WAL, `synchronous=FULL`), so a `kill -9` loses at most the
step in flight. The order of writes makes that step safe to redo: an intent (a `pending` repo row and a
`pending` contact, in one transaction) is committed before a pull request or a digest is opened, and the
next run reconciles it with the Hub before doing anything else (see `run`).

Schema versions (`PRAGMA user_version`): 0, the first (`repos` alone), 1 (contacts and owners), and 2 (this
one: what the bot has answered in each digest). Opening an older file migrates it in one transaction (a kill
in the middle leaves it as it was): a version 0 file's proposed and pending pull requests become contacts,
so they count against the budgets.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..settings import default_cache_dir

__all__ = ["OPEN_STATUSES", "SCHEMA_VERSION", "BotState", "Contact", "RepoRecord", "default_state_path"]

SCHEMA_VERSION = 2
DAY_S = 86_400.0
#: Contact statuses that hold an owner's attention: a pull request or digest not yet answered (an intent counts
#: too, in case its pull request was opened before a crash).
OPEN_STATUSES = ("pending", "open", "draft")

_REPOS = """
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
_OWNER_OF = "substr(repo_id, 1, instr(repo_id, '/') - 1)"
_MIGRATIONS = {
    1: [
        "ALTER TABLE repos ADD COLUMN requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE repos ADD COLUMN priority REAL",
        """CREATE TABLE contacts (
            id        INTEGER PRIMARY KEY,
            owner     TEXT NOT NULL,
            repo_id   TEXT NOT NULL,
            kind      TEXT NOT NULL,
            num       INTEGER,
            status    TEXT NOT NULL,
            opened_at REAL NOT NULL,
            listed    TEXT NOT NULL DEFAULT '[]',
            accepted  TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX contacts_by_owner ON contacts (owner, status)",
        "CREATE TABLE owners (owner TEXT PRIMARY KEY, refused TEXT NOT NULL, since REAL NOT NULL)",
        # Version 0 knew its pull requests only as repo rows; their time is the row's.
        f"""INSERT INTO contacts (owner, repo_id, kind, num, status, opened_at)
            SELECT {_OWNER_OF}, repo_id, 'pr', pr_num, CASE outcome WHEN 'pending' THEN 'pending' ELSE 'open' END,
                   CAST(strftime('%s', updated_at) AS REAL)
            FROM repos WHERE outcome = 'pending' OR (outcome = 'proposed' AND pr_num IS NOT NULL)""",
    ],
    2: ["ALTER TABLE contacts ADD COLUMN answered TEXT NOT NULL DEFAULT '[]'"],
}


def default_state_path() -> Path:
    """`bot.sqlite` in hf_probex's cache folder (HF_PROBEX_CACHE, else the user cache dir)."""
    return default_cache_dir() / "bot.sqlite"


def owner_of(repo_id: str) -> str:
    """The user or organisation a repo id belongs to."""
    return repo_id.split("/", 1)[0]


@dataclass(frozen=True)
class RepoRecord:
    """What the bot last did with one repo.

    Attributes:
        repo_id: the repo.
        revision: the commit it scanned.
        outcome: "pending" (a PR is about to be opened), "proposed", "skipped", "deferred" (waits for budget),
            "digested" (listed in a digest) or "error".
        reason: why it was skipped or deferred, or the error message, or how a PR was found ("reconciled").
        fields: the fields proposed (or about to be, or listed in a digest).
        pr_num: the pull request's number on the repo once known; for "digested", the digest's number.
        updated_at: when the row was written (UTC, ISO 8601).
        requested: the owner asked for a pull request (accepted it in a digest); cleared once one is
            opened or the repo is skipped.
        priority: a deferred proposal's `etiquette.priority`, when it was computed.
    """

    repo_id: str
    revision: str | None
    outcome: str
    reason: str | None
    fields: tuple[str, ...]
    pr_num: int | None
    updated_at: str
    requested: bool = False
    priority: float | None = None


@dataclass(frozen=True)
class Contact:
    """One pull request or digest of the bot, as the ledger knows it.

    Attributes:
        id: its row.
        owner: the user or organisation it addresses.
        repo_id: the repo it is on.
        kind: "pr" or "digest".
        num: its number on the repo (None while pending).
        status: "pending" (about to be opened), the Hub's "open", "draft", "merged" or "closed", "gone" (the
            repo or thread disappeared), and for a digest "accepted" or "refused" once its owner answered.
        opened_at: when it was reserved (seconds since the epoch, the state's clock).
        listed: a digest's entries, each {"repo_id", "revision", "fields"}.
        accepted: the repos of a digest its owner accepted.
        answered: the accepted repos whose pull request (or why there is none) the bot has told the owner of, in
            the digest.
    """

    id: int
    owner: str
    repo_id: str
    kind: str
    num: int | None
    status: str
    opened_at: float
    listed: tuple[dict, ...] = ()
    accepted: tuple[str, ...] = ()
    answered: tuple[str, ...] = ()


class BotState:
    """The state database; safe to share between the bot's threads (one connection behind a lock).

    Args:
        path: the SQLite file (":memory:" for a scratch ledger, as a dry run uses).
        clock: seconds since the epoch: when rows are stamped and budgets counted (tests pass a fake one).

    Raises:
        sqlite3.DatabaseError: the file is not a bot state, or one written by a newer hf_probex.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(_REPOS)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"its schema version {version} is newer than this hf_probex's "
                                            f"({SCHEMA_VERSION}): upgrade hf_probex")
            if version < 0:
                raise sqlite3.DatabaseError(f"its schema version {version} is not one hf_probex writes")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {step}")
            for table, columns in _COLUMNS.items():
                found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                if found != list(columns):
                    raise sqlite3.DatabaseError(f"its table {table} " + ("is missing" if not found else
                                                f"has the columns {', '.join(found)}, not {', '.join(columns)}"))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction (rolled back on error), under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> BotState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.clock(), timezone.utc).isoformat(timespec="seconds")

    # ---- repos ------------------------------------------------------------------------------------------

    def get(self, repo_id: str) -> RepoRecord | None:
        """The repo's row, or None if the bot never saw it."""
        with self._lock:
            row = self._db.execute(f"SELECT {_REPO_COLUMNS} FROM repos WHERE repo_id = ?", (repo_id,)).fetchone()
        return None if row is None else _record(row)

    def put(self, repo_id: str, *, revision: str | None, outcome: str, reason: str | None = None,
            fields: tuple[str, ...] | list[str] = (), pr_num: int | None = None, priority: float | None = None) -> None:
        """Replace the repo's row (committed before this returns), and keep the ledger in step with it.

        A "proposed" row turns the repo's pending contact into the open pull request `pr_num` (or records that
        pull request, found on the Hub, if the ledger never had it); any other settled outcome drops a pending
        contact (no pull request was opened). "proposed" and "skipped" also clear `requested`.
        """
        with self._transaction() as db:
            db.execute(
                "INSERT INTO repos (repo_id, revision, outcome, reason, fields, pr_num, updated_at, priority) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repo_id) DO UPDATE SET revision = excluded.revision, "
                "outcome = excluded.outcome, reason = excluded.reason, fields = excluded.fields, "
                "pr_num = excluded.pr_num, updated_at = excluded.updated_at, priority = excluded.priority, "
                "requested = CASE WHEN excluded.outcome IN ('proposed', 'skipped') THEN 0 ELSE repos.requested END",
                (repo_id, revision, outcome, reason, json.dumps(list(fields)), pr_num, self._now_iso(), priority))
            if outcome == "pending":
                return
            known = db.execute("SELECT 1 FROM contacts WHERE repo_id = ? AND kind = 'pr' AND num = ?",
                               (repo_id, pr_num)).fetchone()
            if outcome == "proposed" and pr_num is not None and known is None:  # not adopted from the Hub already
                opened = db.execute("UPDATE contacts SET status = 'open', num = ? WHERE repo_id = ? AND kind = 'pr' "
                                    "AND status = 'pending'", (pr_num, repo_id)).rowcount
                if not opened:
                    db.execute("INSERT INTO contacts (owner, repo_id, kind, num, status, opened_at) "
                               "VALUES (?, ?, 'pr', ?, 'open', ?)", (owner_of(repo_id), repo_id, pr_num, self.clock()))
            db.execute("DELETE FROM contacts WHERE repo_id = ? AND kind = 'pr' AND status = 'pending'", (repo_id,))

    def records(self) -> list[RepoRecord]:
        """Every row, by repo id."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_REPO_COLUMNS} FROM repos ORDER BY repo_id").fetchall()
        return [_record(row) for row in rows]

    def requested(self) -> list[str]:
        """The repos whose owner asked for a pull request that is not opened yet, by repo id."""
        with self._lock:
            rows = self._db.execute("SELECT repo_id FROM repos WHERE requested = 1 ORDER BY repo_id").fetchall()
        return [row[0] for row in rows]

    # ---- the ledger ---------------------------------------------------------------------------------------

    def reserve_pr(self, repo_id: str, *, revision: str, fields: Iterable[str]) -> None:
        """The intent to open a pull request, now: a pending repo row and a pending contact, in one transaction."""
        fields = list(fields)
        with self._transaction() as db:
            db.execute("DELETE FROM contacts WHERE repo_id = ? AND kind = 'pr' AND status = 'pending'", (repo_id,))
            db.execute("INSERT INTO contacts (owner, repo_id, kind, status, opened_at) VALUES (?, ?, 'pr', 'pending', ?)",
                       (owner_of(repo_id), repo_id, self.clock()))
            db.execute(
                "INSERT INTO repos (repo_id, revision, outcome, fields, updated_at) VALUES (?, ?, 'pending', ?, ?) "
                "ON CONFLICT (repo_id) DO UPDATE SET revision = excluded.revision, outcome = 'pending', reason = NULL, "
                "fields = excluded.fields, pr_num = NULL, updated_at = excluded.updated_at",
                (repo_id, revision, json.dumps(fields), self._now_iso()))

    def reserve_digest(self, owner: str, repo_id: str, listed: list[dict]) -> int:
        """The intent to open a digest for `owner` on `repo_id`, listing `listed` ({"repo_id", "revision", "fields"});
        its contact id."""
        with self._transaction() as db:
            return db.execute("INSERT INTO contacts (owner, repo_id, kind, status, opened_at, listed) "
                              "VALUES (?, ?, 'digest', 'pending', ?, ?)",
                              (owner, repo_id, self.clock(), json.dumps(listed))).lastrowid

    def digest_opened(self, contact_id: int, num: int) -> None:
        """The digest is open as discussion `num`: its contact and the rows of the repos it lists, in one transaction."""
        with self._transaction() as db:
            listed = _json_list(db.execute("SELECT listed FROM contacts WHERE id = ?", (contact_id,)).fetchone()[0],
                                "contacts", "listed", dict)
            db.execute("UPDATE contacts SET status = 'open', num = ? WHERE id = ?", (num, contact_id))
            for entry in listed:
                db.execute(
                    "INSERT INTO repos (repo_id, revision, outcome, fields, pr_num, updated_at) VALUES (?, ?, 'digested', ?, ?, ?) "
                    "ON CONFLICT (repo_id) DO UPDATE SET revision = excluded.revision, outcome = 'digested', reason = NULL, "
                    "fields = excluded.fields, pr_num = excluded.pr_num, updated_at = excluded.updated_at",
                    (entry["repo_id"], entry["revision"], json.dumps(entry["fields"]), num, self._now_iso()))

    def adopt(self, owner: str, repo_id: str, kind: str, num: int, status: str, listed: Iterable[dict] = (), *,
              opened_at: float | None = None) -> None:
        """Record a contact found on the Hub that the ledger lacks (a lost or older state file), opened at
        `opened_at` (now when unknown)."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM contacts WHERE repo_id = ? AND kind = ? AND num = ?", (repo_id, kind, num)).fetchone():
                return
            db.execute("INSERT INTO contacts (owner, repo_id, kind, num, status, opened_at, listed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (owner, repo_id, kind, num, status, self.clock() if opened_at is None else opened_at,
                        json.dumps(list(listed))))

    def drop(self, contact_id: int) -> None:
        """Forget a pending contact that never reached the Hub."""
        with self._transaction() as db:
            db.execute("DELETE FROM contacts WHERE id = ? AND status = 'pending'", (contact_id,))

    def set_status(self, contact_id: int, status: str) -> None:
        """A contact's status as the Hub now shows it."""
        with self._transaction() as db:
            db.execute("UPDATE contacts SET status = ? WHERE id = ?", (status, contact_id))

    def accept(self, contact_id: int, repo_ids: Iterable[str]) -> list[str]:
        """The owner accepted these repos of a digest: each is requested (a pull request is opened for it however
        the owner budgets stand); the repos newly accepted."""
        with self._transaction() as db:
            before = json.loads(db.execute("SELECT accepted FROM contacts WHERE id = ?", (contact_id,)).fetchone()[0])
            new = [r for r in dict.fromkeys(repo_ids) if r not in before]
            db.execute("UPDATE contacts SET status = 'accepted', accepted = ? WHERE id = ?",
                       (json.dumps(before + new), contact_id))
            for repo_id in new:
                db.execute("INSERT INTO repos (repo_id, outcome, updated_at, requested) VALUES (?, 'digested', ?, 1) "
                           "ON CONFLICT (repo_id) DO UPDATE SET requested = 1", (repo_id, self._now_iso()))
        return new

    def answer(self, contact_id: int, repo_ids: Iterable[str]) -> None:
        """The bot told the owner, in the digest, what became of these accepted repos."""
        with self._transaction() as db:
            before = json.loads(db.execute("SELECT answered FROM contacts WHERE id = ?", (contact_id,)).fetchone()[0])
            db.execute("UPDATE contacts SET answered = ? WHERE id = ?",
                       (json.dumps(list(dict.fromkeys([*before, *repo_ids]))), contact_id))

    def contacts(self, *, owner: str | None = None, statuses: Iterable[str] | None = None) -> list[Contact]:
        """The ledger, oldest first, for one owner and / or some statuses."""
        query, args = f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE 1", []
        if owner is not None:
            query, args = query + " AND owner = ?", [*args, owner]
        if statuses is not None:
            statuses = list(statuses)
            query, args = query + f" AND status IN ({','.join('?' * len(statuses))})", [*args, *statuses]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY opened_at, id", args).fetchall()
        return [_contact(row) for row in rows]

    def new_since(self, since: float, owner: str | None = None) -> int:
        """How many contacts were opened (or reserved) after `since`, for one owner or in all."""
        query, args = "SELECT COUNT(*) FROM contacts WHERE opened_at > ?", [since]
        if owner is not None:
            query, args = query + " AND owner = ?", [*args, owner]
        with self._lock:
            return self._db.execute(query, args).fetchone()[0]

    def open_count(self, owner: str) -> int:
        """The owner's contacts that wait for an answer (`OPEN_STATUSES`)."""
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM contacts WHERE owner = ? AND status IN "
                                    f"({','.join('?' * len(OPEN_STATUSES))})", (owner, *OPEN_STATUSES)).fetchone()[0]

    def last_opened_at(self) -> float | None:
        """When the latest contact was opened (or reserved), None before the first."""
        with self._lock:
            return self._db.execute("SELECT MAX(opened_at) FROM contacts").fetchone()[0]

    # ---- owners ---------------------------------------------------------------------------------------

    def refuse(self, owner: str, reason: str) -> None:
        """The owner refused the bot for all their repos (kept: a refusal is not undone by the bot)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO owners (owner, refused, since) VALUES (?, ?, ?)", (owner, reason, self.clock()))

    def refusal(self, owner: str) -> str | None:
        """Why the owner refused the bot, or None."""
        with self._lock:
            row = self._db.execute("SELECT refused FROM owners WHERE owner = ?", (owner,)).fetchone()
        return None if row is None else row[0]

    # ---- reporting --------------------------------------------------------------------------------------

    def summary(self) -> dict:
        """What `bot status` shows.

        {"repos", "outcomes": {outcome: n}, "skipped": {reason: n}, "waiting": {reason: n}, "errors": {repo: message},
        "prs": {repo: number}, "pending": [repo], "new_24h": n, "last_opened_at": ISO time or None,
        "owners": {owner: {"open": [{"repo_id", "kind", "num", "status"}], "new_24h", "waiting", "requested",
        "refused"}}}.
        """
        records, contacts, now = self.records(), self.contacts(), self.clock()
        with self._lock:
            refused = dict(self._db.execute("SELECT owner, refused FROM owners").fetchall())
        owners: dict[str, dict] = {}

        def owner(name: str) -> dict:
            return owners.setdefault(name, {"open": [], "new_24h": 0, "waiting": 0, "requested": 0,
                                            "refused": refused.get(name)})

        for contact in contacts:
            entry = owner(contact.owner)
            if contact.status in OPEN_STATUSES:
                entry["open"].append({"repo_id": contact.repo_id, "kind": contact.kind, "num": contact.num,
                                      "status": contact.status})
            entry["new_24h"] += contact.opened_at > now - DAY_S
        for record in records:
            if record.outcome == "deferred":
                owner(owner_of(record.repo_id))["waiting"] += 1
            if record.requested:
                owner(owner_of(record.repo_id))["requested"] += 1
        for name in refused:
            owner(name)
        last = max((c.opened_at for c in contacts), default=None)
        return {
            "repos": len(records),
            "outcomes": dict(Counter(r.outcome for r in records)),
            "skipped": dict(Counter(r.reason for r in records if r.outcome == "skipped")),
            "waiting": dict(Counter(r.reason for r in records if r.outcome == "deferred")),
            "errors": {r.repo_id: r.reason for r in records if r.outcome == "error"},
            "prs": {r.repo_id: r.pr_num for r in records if r.outcome == "proposed"},
            "pending": [r.repo_id for r in records if r.outcome == "pending"],
            "new_24h": sum(c.opened_at > now - DAY_S for c in contacts),
            "last_opened_at": None if last is None else datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds"),
            "owners": dict(sorted(owners.items())),
        }


_REPO_COLUMNS = "repo_id, revision, outcome, reason, fields, pr_num, updated_at, requested, priority"
_CONTACT_COLUMNS = "id, owner, repo_id, kind, num, status, opened_at, listed, accepted, answered"


#: Each table's columns in order, as the migrations leave them (checked on open).
_COLUMNS = {
    "repos": ("repo_id", "revision", "outcome", "reason", "fields", "pr_num", "updated_at", "requested", "priority"),
    "contacts": ("id", "owner", "repo_id", "kind", "num", "status", "opened_at", "listed", "accepted", "answered"),
    "owners": ("owner", "refused", "since"),
}


def _typed(row: tuple, table: str, kinds: tuple) -> None:
    """sqlite3.DatabaseError (one line) unless each value of `row` is of its column's kind (SQLite stores any value
    in any column: a hand-edited file may hold text where a number belongs)."""
    for name, value, kind in zip(_COLUMNS[table], row, kinds):
        if not isinstance(value, kind) or isinstance(value, bool):
            raise sqlite3.DatabaseError(f"its table {table} holds {type(value).__name__} {str(value)[:40]!r} in the "
                                        f"column {name}")


def _json_list(text: object, table: str, column: str, item: type | tuple) -> tuple:
    try:
        value = json.loads(text) if isinstance(text, str) and len(text) <= 1_000_000 else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
        raise sqlite3.DatabaseError(f"its table {table} holds {str(text)[:40]!r} in the column {column}, not a JSON list")
    return tuple(value)


def _record(row: tuple) -> RepoRecord:
    _typed(row, "repos", (str, (str, type(None)), str, (str, type(None)), str, (int, type(None)), str, int,
                          (int, float, type(None))))
    repo_id, revision, outcome, reason, fields, pr_num, updated_at, requested, priority = row
    return RepoRecord(repo_id, revision, outcome, reason, _json_list(fields, "repos", "fields", str), pr_num, updated_at,
                      bool(requested), priority)


def _contact(row: tuple) -> Contact:
    _typed(row, "contacts", (int, str, str, str, (int, type(None)), str, (int, float), str, str, str))
    id_, owner, repo_id, kind, num, status, opened_at, listed, accepted, answered = row
    return Contact(id_, owner, repo_id, kind, num, status, opened_at, _json_list(listed, "contacts", "listed", dict),
                   _json_list(accepted, "contacts", "accepted", str), _json_list(answered, "contacts", "answered", str))
