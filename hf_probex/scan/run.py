"""`scan_tree`: one pass over a model tree's members into a table, incremental, resumable, published on the Hub.

The flow (docs/scan.md):

1. **List** the tree: the members the Hub lists from cards (`members.card_members`, the `base_model:` tag
   walk) and the candidates (`members.candidate_repos`: an author's or organisation's repos, a Hub search,
   repo ids), each with the commit its listing showed. Listings only: no repo is opened.
2. **Plan**: a repo whose commit equals the one its row was read at (in the working folder, or in the
   published table when the folder is empty) keeps its row; new and changed repos, and rows whose error
   may pass (`RETRIED_ERRORS`), are read; rows of repos the tree no longer lists are dropped.
3. **Read** them with an engine (`engines`: threads, or Ray tasks), one `member.read_member` per repo,
   flushing rows to the working folder in parts as they complete (`folder.ScanFolder`).
4. **Consolidate** the rows into the table (`table/data/*.parquet` and its dataset card) and **publish** it
   to a Hub dataset repo (`publish`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..errors import RepoNotFoundError
from ..infer import Experts, expert_registry
from ..members import candidate_repos, card_members, check_root
from ..reading import looks_like_repo_id
from .embedding import DEFAULT_SKETCH_DIM, DEFAULT_SKETCH_SEED, EMBEDDING_FORMAT
from .engines import make_engine
from .folder import DEFAULT_FLUSH_EVERY, ScanFolder, default_scan_folder
from .member import MemberJob, ScanSettings
from .publish import dataset_card, publish_table, published_rows
from .table import TABLE_FORMAT, ScanRow

__all__ = ["RETRIED_ERRORS", "ScanResult", "default_scan_folder", "scan_tree"]

#: Error kinds a rerun reads again at the same commit: the Hub or the network may answer next time, a bug may be fixed.
RETRIED_ERRORS = frozenset({"HubConnectionError", "unexpected"})


@dataclass
class ScanResult:
    """What a scan did.

    Attributes:
        root: the tree's root.
        folder: the working folder; `table_files` the table's shards in it (the dataset card beside them).
        rows: members in the table; `by_card` and `by_weights` how they were found; `errors` rows with an error.
        read: the repos read by this run (members and candidates), in the order they completed.
        reused: rows kept from an earlier run (same commit).
        removed: repos whose rows were dropped (the tree no longer lists them).
        bytes_read: bytes this run read from repos (small files, headers, layers).
        seconds: wall time of the run.
        repo_id, commit: where the table was published (None: not published).
        unchanged: nothing in the table changed since its last publication to `repo_id`: no new commit was made.
        restarted: rows read with other settings (experts, sketch, hf_probex version) were discarded.
    """

    root: str
    folder: Path
    table_files: list[Path]
    rows: int
    by_card: int
    by_weights: int
    errors: int
    read: list[str] = field(default_factory=list)
    reused: int = 0
    removed: list[str] = field(default_factory=list)
    bytes_read: int = 0
    seconds: float = 0.0
    repo_id: str | None = None
    commit: str | None = None
    unchanged: bool = False
    restarted: bool = False

    def table(self):
        """The table as a `pyarrow.Table` (read from `table_files`)."""
        import pyarrow.parquet as pq

        return pq.ParquetDataset([str(p) for p in self.table_files]).read()

    def summary(self) -> str:
        """One line for people."""
        where = ""
        if self.repo_id and self.commit:
            where = (f"; {self.repo_id}@{self.commit[:8]} is current (nothing changed, no new commit)" if self.unchanged
                     else f"; published to {self.repo_id}@{self.commit[:8]}")
        return (f"tree {self.root}: {self.rows} members ({self.by_card} by cards, {self.by_weights} by weights, "
                f"{self.errors} unreadable); read {len(self.read)} repos ({self.bytes_read:,} bytes), kept "
                f"{self.reused}, dropped {len(self.removed)} in {self.seconds:.1f}s{where}")


def _settings_key(settings: ScanSettings) -> str:
    """A digest of what the rows depend on besides the repo: hf_probex's version, the columns, how embeddings are
    made, the experts, the sketch."""
    described = {"version": __version__, "table": TABLE_FORMAT, "embedding": EMBEDDING_FORMAT,
                 "sketch": [settings.sketch_dim, settings.sketch_seed],
                 "experts": sorted([e.location, e.task, e.root or "", json.dumps(e.inputs)]
                                   for e in settings.registry.entries)}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _published_head(client, repo_id: str) -> str | None:
    """The dataset repo's current commit, or None when it is gone."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return client.call(lambda: client.api.repo_info(repo_id, repo_type="dataset").sha)
    except RepositoryNotFoundError:
        return None


def _needs_reading(job: MemberJob, previous: ScanRow | None) -> bool:
    return (previous is None or job.sha is None or previous.sha != job.sha or previous.found_by != job.found_by
            or previous.error_kind in RETRIED_ERRORS)


def _kept(job: MemberJob, previous: ScanRow) -> ScanRow:
    """An earlier row for a repo at the same commit; a card member's evidence as the listing says it now."""
    if job.found_by == "card":
        previous.member_evidence = job.evidence
    return previous


def scan_tree(root_id: str, *, to: str | None = None, out: str | os.PathLike[str] | None = None,
              engine: str = "local", workers: int = 2, ray_address: str | None = None, experts: Experts = None,
              token: str | bool | None = None, authors: Iterable[str] = (), search: str | None = None,
              candidates: Iterable[str] = (), private: bool = False, flush_every: int = DEFAULT_FLUSH_EVERY,
              sketch_dim: int = DEFAULT_SKETCH_DIM, sketch_seed: int = DEFAULT_SKETCH_SEED, progress: bool = False,
              on_part: Callable[[int], None] | None = None) -> ScanResult:
    """Scan the model tree of `root_id` into a table (one row per member) and publish it as a Hub dataset.

    Args:
        root_id: the tree's root repo.
        to: the dataset repo to publish the table to (created if needed); None: keep it in the working folder.
        out: the working folder (default `default_scan_folder(root_id)`); a rerun with the same folder reads only
            repos whose commit changed, and a killed scan resumes from it.
        engine: "local" (threads) or "ray" (Ray tasks; `pip install "hf_probex[ray]"`).
        workers: reads at once (threads, or the CPUs of a local Ray cluster).
        ray_address: the Ray cluster to use (default: a local one, or the Ray this process already runs).
        experts: an `ExpertRegistry`, expert folders or Hub repo ids; None: the local registry and the Hub's.
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none). Never logged.
        authors, search, candidates: where to look for members without a card naming their base (as the bot
            does): the repos of these users or organisations, a Hub search, repo ids; routed by their weights.
        private: create the dataset repo private.
        flush_every: rows per part written to the working folder.
        sketch_dim, sketch_seed: the count sketch of non-LoRA members' layers (`embedding`).
        progress: show a progress bar.
        on_part: called with the number of parts this run has written, after each one is on disk.

    Returns:
        A `ScanResult`; the table itself is `result.table()`.

    Raises:
        RepoNotFoundError: the root does not exist (or the token cannot see it).
        ScanEngineError: an unknown engine, Ray missing or unreachable.
        ScanFolderError: the working folder holds another tree's scan, or another scan is using it.
        ProbexError: the Hub refused a listing or the publication.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import RepositoryNotFoundError
    from tqdm.auto import tqdm

    from ..bot.client import HubClient

    started = time.monotonic()
    if not looks_like_repo_id(root_id) or (to is not None and not looks_like_repo_id(to)):
        raise RepoNotFoundError(f"{root_id if not looks_like_repo_id(root_id) else to!r} is not a Hub repo id "
                                f"(namespace/name)")
    runner = make_engine(engine, workers=workers, address=ray_address)  # a missing Ray says so before any listing
    token = token if token is not None else (get_token() or False)  # resolved once: workers never look for one
    client = HubClient(HfApi(token=token or None))
    root_sha = check_root(client, root_id)
    settings = ScanSettings(root_id, expert_registry(experts, token), token, sketch_dim, sketch_seed)
    key = _settings_key(settings)
    folder_path = Path(out) if out is not None else default_scan_folder(root_id)

    members = card_members(client, root_id)
    listed = candidate_repos(client, authors=authors, search=search, candidates=candidates,
                             known=[root_id, *(m.repo_id for m in members)])
    jobs = [MemberJob(m.repo_id, m.sha, "card", m.evidence) for m in members]
    for repo_id, sha in listed.items():
        if sha is None:  # given by id: its commit, to compare with the row's
            try:
                sha = client.head(repo_id)
            except RepositoryNotFoundError:
                continue
        jobs.append(MemberJob(repo_id, sha, "weights"))

    with ScanFolder(folder_path, root_id, key) as folder:
        done = folder.done()
        if not done and to:  # a fresh folder: start from the published table, if it is this tree's
            seeded = published_rows(client, to, root=root_id, settings=key) or []
            if seeded:
                folder.flush(seeded)
                done = {row.repo_id: row for row in seeded}
        todo = [job for job in jobs if _needs_reading(job, done.get(job.repo_id))]
        reading = {job.repo_id for job in todo}
        kept = {job.repo_id: _kept(job, done[job.repo_id]) for job in jobs if job.repo_id not in reading}
        listed_ids = {job.repo_id for job in jobs}
        removed = sorted(repo_id for repo_id, row in done.items() if repo_id not in listed_ids and row.in_tree)

        read: list[ScanRow] = []
        buffer: list[ScanRow] = []
        parts = 0

        def flush() -> None:
            nonlocal parts, buffer
            if buffer:
                folder.flush(buffer)
                buffer, parts = [], parts + 1
                if on_part is not None:
                    on_part(parts)

        if todo:  # nothing changed: no engine to start (a Ray cluster takes seconds)
            with runner, tqdm(total=len(todo), desc=f"scan {root_id}", unit="repo", disable=not progress) as bar:
                try:
                    for row in runner.map(todo, settings):
                        read.append(row)
                        buffer.append(row)
                        bar.update(1)
                        if len(buffer) >= flush_every:
                            flush()
                finally:  # an interrupted scan keeps every row it finished
                    flush()

        fresh = {row.repo_id: row for row in read}
        rows = sorted([fresh.get(job.repo_id) or kept[job.repo_id] for job in jobs], key=lambda r: r.repo_id)
        folder.compact(rows)
        in_tree = [row for row in rows if row.in_tree]
        scanned_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        card = dataset_card(root_id, root_sha, in_tree, settings=key, scanned_at=scanned_at)
        folder.stage_table(in_tree, card.replace("REPO_ID", to or "OWNER/NAME"))
        last = folder.published
        unchanged = bool(to and last.get("repo_id") == to and last.get("commit") and folder.staged_rows_unchanged()
                         and _published_head(client, to) == last["commit"])  # nobody moved or deleted it since
        commit = last["commit"] if unchanged else None
        if unchanged:
            folder.discard_staged()
        else:
            try:
                if to:
                    commit = publish_table(client, folder.staged_dir, to, root=root_id, private=private)
            except BaseException:  # refused or interrupted: the table stays the one last published
                folder.discard_staged()
                raise
            folder.install_table()
            if to:
                folder.set_published(to, commit, scanned_at)
        files = folder.table_shards()
        restarted = folder.restarted

    return ScanResult(
        root=root_id, folder=folder_path, table_files=files, rows=len(in_tree),
        by_card=sum(r.found_by == "card" for r in in_tree), by_weights=sum(r.found_by == "weights" for r in in_tree),
        errors=sum(r.error is not None for r in in_tree), read=[r.repo_id for r in read], reused=len(kept),
        removed=removed, bytes_read=sum(r.bytes_read for r in read), seconds=time.monotonic() - started,
        repo_id=to if commit else None, commit=commit, unchanged=unchanged, restarted=restarted)
