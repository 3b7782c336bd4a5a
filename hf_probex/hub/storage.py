"""On-disk storage of the local hub: repos, content-addressed blobs and commits, refs, and locking.

    ROOT/objects/blobs/<aa>/<sha256>         file contents, named by their sha256 (shared by all repos)
    ROOT/objects/commits/<aa>/<sha1>.json    immutable commits, named by the sha1 of their canonical JSON
    ROOT/repos/<type>s/<ns>/<name>/repo.json  repo settings (private, creation date)
    ROOT/repos/<type>s/<ns>/<name>/refs/...   refs/heads/<branch>, refs/tags/<tag>, refs/pr/<N>: a commit id each
    ROOT/repos/<type>s/<ns>/<name>/stats.json downloads counted and the users who like the repo
    ROOT/repos/<type>s/<ns>/<name>/.lock      flock()ed while a commit, ref move or discussion edit runs

`<type>` is `model` or `dataset`: a model and a dataset may share an id, as on the Hub, so each type has
its own folder of repos (one `Storage` per type, `Storage.of`); the object store is shared.

A commit writes its blobs and its commit object first and moves the ref last, with one atomic
`os.replace`; a crash at any point leaves the ref on the previous commit (and at worst some unreferenced
objects). Every write to a repo holds the repo's file lock, so commits from threads of one server and
from other processes (`hf-probex hub import` beside a running server) are serialized.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .errors import BadRequest, Conflict, EntryNotFound, Forbidden, RepoNotFound, RevisionNotFound, StaleParent

GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.gguf filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""

#: What the Hub's default `.gitattributes` of a dataset tracks beyond the model patterns: tables and archives.
DATASET_GITATTRIBUTES = GITATTRIBUTES + b"""*.arrow filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
"""
#: The repo types this hub hosts and the `.gitattributes` of a new repo of each.
REPO_TYPES = {"model": GITATTRIBUTES, "dataset": DATASET_GITATTRIBUTES}

# The Hub's repo name rule: letters, digits, '-', '_', '.'; no '--' or '..'; no leading/trailing '-' or '.'.
_NAME = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
# Branch and tag names: one path segment, and never 40 hex digits, which would read as a commit id.
_REF_NAME = re.compile(r"^(?!.*\.\.)(?![0-9a-f]{40}$)[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_PR_REF = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
RESERVED_NAMESPACES = {"api", "datasets", "spaces", "models", "kernels", "buckets", "docs", "settings"}


def now_iso() -> str:
    """The current UTC time as the Hub writes it (ISO 8601, milliseconds, `Z`)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split `namespace/name`, refusing ids the Hub would refuse; raises BadRequest."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts) or parts[1].endswith(".git"):
        raise BadRequest(f"invalid repo id {repo_id!r}: expected namespace/name of letters, digits, '-', '_', '.'")
    if parts[0].lower() in RESERVED_NAMESPACES:
        raise BadRequest(f"invalid repo id {repo_id!r}: {parts[0]!r} is a reserved namespace")
    return parts[0], parts[1]


def check_path(path: str) -> str:
    """A path inside a repo, or BadRequest: no absolute paths, '.'/'..' parts, empty parts, NUL or backslash."""
    if not path or len(path) > 1000:
        raise BadRequest("invalid path: empty or longer than 1000 characters")
    if "\x00" in path or "\\" in path or any(ord(c) < 32 for c in path):
        raise BadRequest(f"invalid path {path!r}: control characters and backslashes are not allowed")
    if path.startswith("/"):
        raise BadRequest(f"invalid path {path!r}: absolute paths are not allowed")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequest(f"invalid path {path!r}: empty, '.' and '..' components are not allowed")
    return path


def git_blob_oid(data: bytes) -> str:
    """The git blob id of `data`: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` so that readers see either the old or the new content, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Blob:
    """A stored file content: sha256 (its name in the store), size and git blob id."""

    sha256: str
    size: int
    oid: str

    @classmethod
    def of(cls, data: bytes) -> Blob:
        """`data` described as it will be stored."""
        return cls(sha256=hashlib.sha256(data).hexdigest(), size=len(data), oid=git_blob_oid(data))

    def entry(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "oid": self.oid}


@dataclass(frozen=True)
class Commit:
    """An immutable commit: the full tree (path -> blob entry), parents, message, author and date.

    `repo_uid` ties it to one incarnation of a repo: a repo deleted and created again under the same
    name does not serve the old one's commits.
    """

    id: str
    repo_uid: str
    tree: dict[str, dict]
    parents: list[str]
    summary: str
    description: str
    author: str
    date: str


@dataclass(frozen=True)
class RepoMeta:
    """A repo's settings."""

    repo_id: str
    uid: str
    private: bool
    created_at: str


@dataclass(frozen=True)
class RepoStats:
    """What the Hub counts about a repo: `downloads` (every one since the repo was created; the Hub shows the
    last 30 days) and `likers` (user names, sorted)."""

    downloads: int = 0
    likers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Put:
    """Commit operation: set `path` to a blob, stored already or (`content`) once the commit is known to apply,
    so a refused commit leaves nothing in the object store."""

    path: str
    blob: Blob
    content: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Delete:
    """Commit operation: remove a file, or everything under a folder."""

    path: str
    folder: bool = False


def check_ref_name(name: str, kind: str = "branch") -> str:
    """A branch or tag name the Hub accepts (one segment of letters, digits, '.', '-', '_'), or BadRequest."""
    if not _REF_NAME.match(name):
        raise BadRequest(f"invalid {kind} name {name!r}: use letters, digits, '.', '-' and '_' (no '/', no '..', "
                         "not a 40-character commit id)")
    return name


class Storage:
    """The repos of one type (`model` or `dataset`) and the shared objects under one root folder."""

    def __init__(self, root: str | os.PathLike, repo_type: str = "model") -> None:
        if repo_type not in REPO_TYPES:
            raise ValueError(f"unknown repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        self.root = Path(root)
        self.repo_type = repo_type
        self.repos_root = self.root / "repos" / f"{repo_type}s"
        (self.root / "objects" / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "objects" / "commits").mkdir(parents=True, exist_ok=True)
        self.repos_root.mkdir(parents=True, exist_ok=True)

    def of(self, repo_type: str) -> "Storage":
        """The storage of another repo type under the same root (the same objects, other repos)."""
        return self if repo_type == self.repo_type else Storage(self.root, repo_type)

    # ---- repos -------------------------------------------------------------------------------------

    def repo_dir(self, repo_id: str) -> Path:
        namespace, name = check_repo_id(repo_id)
        return self.repos_root / namespace / name

    def repo(self, repo_id: str) -> RepoMeta:
        """The repo's settings; raises RepoNotFound."""
        path = self.repo_dir(repo_id) / "repo.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RepoNotFound(f"Repository {repo_id} not found") from None
        return RepoMeta(repo_id=data["id"], uid=data["uid"], private=data["private"], created_at=data["createdAt"])

    def list_repos(self) -> list[RepoMeta]:
        """Every repo, sorted by id."""
        found = []
        for meta in sorted(self.repos_root.glob("*/*/repo.json")):
            with contextlib.suppress(RepoNotFound, BadRequest):
                found.append(self.repo(f"{meta.parent.parent.name}/{meta.parent.name}"))
        return found

    def create_repo(self, repo_id: str, *, private: bool, author: str) -> RepoMeta:
        """Create a repo with the Hub's initial commit (a `.gitattributes`); raises Conflict if it exists."""
        folder = self.repo_dir(repo_id)
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Build in a sibling folder and rename it in: a repo either exists completely or not at all.
        staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.new"
        staging.mkdir()
        try:
            uid, created = uuid.uuid4().hex, now_iso()
            blob = self.put_blob(REPO_TYPES[self.repo_type])
            commit = self._write_commit(uid, {".gitattributes": blob.entry()}, [], "initial commit", "", author)
            write_atomic(staging / "refs" / "heads" / "main", commit.id.encode())
            write_atomic(staging / "repo.json", canonical_json({"id": repo_id, "uid": uid, "private": private,
                                                                "createdAt": created}))
            try:
                os.rename(staging, folder)
            except OSError:
                if folder.exists():
                    raise Conflict(f"You already created this {self.repo_type} repo: {repo_id}") from None
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.repo(repo_id)

    def update_repo(self, repo_id: str, **settings: object) -> RepoMeta:
        """Change repo settings (`private`)."""
        with self.lock(repo_id):
            folder = self.repo_dir(repo_id)
            data = json.loads((folder / "repo.json").read_text())
            data.update(settings)
            write_atomic(folder / "repo.json", canonical_json(data))
        return self.repo(repo_id)

    def delete_repo(self, repo_id: str) -> None:
        """Remove a repo (its objects stay in the shared store); raises RepoNotFound."""
        self.repo(repo_id)
        folder = self.repo_dir(repo_id)
        trash = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.deleted"
        with self.lock(repo_id):
            os.rename(folder, trash)  # atomic: readers see the repo or nothing
        shutil.rmtree(trash, ignore_errors=True)

    def stats(self, repo_id: str) -> RepoStats:
        """The repo's downloads and likers (zero and none for a repo nobody downloaded or liked)."""
        try:
            data = json.loads((self.repo_dir(repo_id) / "stats.json").read_text())
        except FileNotFoundError:
            return RepoStats()
        return RepoStats(downloads=int(data["downloads"]), likers=tuple(data["likers"]))

    def count_download(self, repo_id: str) -> None:
        """Add one download to the repo's count."""
        self._update_stats(repo_id, lambda stats: RepoStats(stats.downloads + 1, stats.likers))

    def set_like(self, repo_id: str, user: str, liked: bool) -> None:
        """Record that `user` likes the repo (or no longer does); liking twice counts once, as on the Hub."""
        self._update_stats(repo_id, lambda stats: RepoStats(
            stats.downloads, tuple(sorted(set(stats.likers) | {user} if liked else set(stats.likers) - {user}))))

    def _update_stats(self, repo_id: str, change: Callable[[RepoStats], RepoStats]) -> None:
        with self.lock(repo_id):  # read-modify-write: two downloads at once must both count
            stats = change(self.stats(repo_id))
            write_atomic(self.repo_dir(repo_id) / "stats.json",
                         canonical_json({"downloads": stats.downloads, "likers": list(stats.likers)}))

    @contextlib.contextmanager
    def lock(self, repo_id: str) -> Iterator[None]:
        """Hold the repo's exclusive lock (threads and processes alike: each call opens its own descriptor)."""
        folder = self.repo_dir(repo_id)
        if not folder.is_dir():
            raise RepoNotFound(f"Repository {repo_id} not found")
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                if not (folder / "repo.json").is_file():  # deleted while we waited for the lock
                    raise RepoNotFound(f"Repository {repo_id} not found")
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ---- objects -----------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.root / "objects" / "blobs" / sha256[:2] / sha256

    def put_blob(self, data: bytes) -> Blob:
        """Store `data` (idempotent) and describe it."""
        blob = Blob.of(data)
        path = self.blob_path(blob.sha256)
        if not path.is_file():
            write_atomic(path, data)
        return blob

    def read_blob(self, sha256: str, start: int = 0, length: int | None = None) -> bytes:
        with open(self.blob_path(sha256), "rb") as handle:
            handle.seek(start)
            return handle.read() if length is None else handle.read(length)

    def _commit_path(self, commit_id: str) -> Path:
        return self.root / "objects" / "commits" / commit_id[:2] / f"{commit_id}.json"

    def _write_commit(self, repo_uid: str, tree: dict[str, dict], parents: list[str], summary: str,
                      description: str, author: str) -> Commit:
        body = {"repo_uid": repo_uid, "tree": tree, "parents": parents, "summary": summary,
                "description": description, "author": author, "date": now_iso()}
        data = canonical_json(body)
        commit_id = hashlib.sha1(data).hexdigest()
        write_atomic(self._commit_path(commit_id), data)
        return Commit(id=commit_id, **body)

    def commit(self, repo_id: str, commit_id: str) -> Commit:
        """A commit of `repo_id`; raises RevisionNotFound for an unknown id or another repo's commit."""
        try:
            body = json.loads(self._commit_path(commit_id).read_bytes())
        except (FileNotFoundError, ValueError):
            raise RevisionNotFound(f"Invalid rev id: {commit_id}") from None
        if body["repo_uid"] != self.repo(repo_id).uid:
            raise RevisionNotFound(f"Invalid rev id: {commit_id}")
        return Commit(id=commit_id, **body)

    # ---- refs and revisions ------------------------------------------------------------------------

    def _ref_path(self, repo_id: str, ref: str) -> Path:
        kind, _, name = ref.removeprefix("refs/").partition("/")
        if not (kind in ("heads", "tags") and _REF_NAME.match(name)) and not _PR_REF.match(ref):
            raise RevisionNotFound(f"Invalid rev id: {ref}")
        return self.repo_dir(repo_id) / ref

    def ref_name(self, revision: str) -> str | None:
        """The ref a revision names by its form (`main` -> refs/heads/main; refs/pr/3, refs/tags/v1 as they
        are), or None for a commit id. `find_ref` also knows which names are tags."""
        if _PR_REF.match(revision) or revision.startswith(("refs/heads/", "refs/tags/")):
            return revision
        if _COMMIT_ID.match(revision):
            return None
        return f"refs/heads/{revision}"

    def find_ref(self, repo_id: str, revision: str) -> str | None:
        """The ref a revision names in this repo: a short name is its branch, else its tag (a name is never
        both: `create_ref` refuses that), else the branch it would be; None for a commit id."""
        ref = self.ref_name(revision)
        if ref is not None and ref.startswith("refs/heads/") and self.read_ref(repo_id, ref) is None:
            tag = "refs/tags/" + ref.removeprefix("refs/heads/")
            if self.read_ref(repo_id, tag) is not None:
                return tag
        return ref

    def read_ref(self, repo_id: str, ref: str) -> str | None:
        try:
            return self._ref_path(repo_id, ref).read_text().strip()
        except FileNotFoundError:
            return None

    def refs(self, repo_id: str) -> dict[str, str]:
        """Every ref of the repo: {"refs/heads/main": commit id, "refs/tags/v1": ..., "refs/pr/1": ..., ...}."""
        self.repo(repo_id)
        folder = self.repo_dir(repo_id)
        found = {}
        for path in sorted((folder / "refs").glob("*/*")):
            if not path.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):  # a branch or tag deleted while listing
                    found[str(path.relative_to(folder))] = path.read_text().strip()
        return found

    def set_ref(self, repo_id: str, ref: str, commit_id: str) -> None:
        """Point `ref` at `commit_id` atomically; the caller holds the repo lock."""
        write_atomic(self._ref_path(repo_id, ref), commit_id.encode())

    def create_ref(self, repo_id: str, ref: str, commit_id: str) -> None:
        """Create a branch (`refs/heads/X`) or tag (`refs/tags/X`) at a commit of this repo.

        Conflict if a branch or a tag already has that name: a short revision must name one ref only.
        """
        kind, _, name = ref.removeprefix("refs/").partition("/")
        if kind not in ("heads", "tags"):
            raise ValueError(f"create_ref makes branches and tags, not {ref}")
        check_ref_name(name, "tag" if kind == "tags" else "branch")
        with self.lock(repo_id):
            self.commit(repo_id, commit_id)
            for existing in (f"refs/heads/{name}", f"refs/tags/{name}"):
                if self.read_ref(repo_id, existing) is not None:
                    raise Conflict(f"Reference already exists: {existing} in {repo_id}")
            self.set_ref(repo_id, ref, commit_id)

    def delete_ref(self, repo_id: str, ref: str) -> None:
        """Delete a branch or tag; RevisionNotFound if it does not exist. `main` stays: every repo has it."""
        if ref == "refs/heads/main":
            raise Forbidden("main is the default branch and cannot be deleted")
        with self.lock(repo_id):
            try:
                self._ref_path(repo_id, ref).unlink()
            except FileNotFoundError:
                raise RevisionNotFound(f"Invalid rev id: {ref.split('/', 2)[-1]}") from None

    def resolve(self, repo_id: str, revision: str) -> Commit:
        """The commit a branch, tag, `refs/pr/N` or commit id names; raises RepoNotFound / RevisionNotFound."""
        self.repo(repo_id)
        ref = self.find_ref(repo_id, revision)
        commit_id = revision if ref is None else self.read_ref(repo_id, ref)
        if commit_id is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        return self.commit(repo_id, commit_id)

    def history(self, repo_id: str, head: Commit, limit: int = 10_000) -> list[Commit]:
        """`head` and its ancestors, newest first."""
        seen, queue, found = {head.id}, [head], []
        while queue and len(found) < limit:
            commit = queue.pop(0)
            found.append(commit)
            for parent in commit.parents:
                if parent not in seen:
                    seen.add(parent)
                    queue.append(self.commit(repo_id, parent))
        return sorted(found, key=lambda c: c.date, reverse=True)

    # ---- writing -----------------------------------------------------------------------------------

    def commit_operations(self, repo_id: str, ref: str, operations: list[Put | Delete], *, summary: str,
                          description: str, author: str, parent_commit: str | None = None,
                          start_from: str | None = None) -> Commit:
        """Apply `operations` on top of `ref` as one new commit and move `ref` to it.

        The caller holds the repo lock. `parent_commit` (if given) must be the current head of `ref`,
        else StaleParent (the Hub's 412). `start_from` is the commit a new ref (a fresh PR) starts from.
        Blobs are stored already (`put_blob`) or carried by their `Put`: those are stored once the operations apply.
        """
        head_id = self.read_ref(repo_id, ref)
        if head_id is None and start_from is None:
            raise RevisionNotFound(f"Invalid rev id: {ref.removeprefix('refs/heads/')}")
        if parent_commit is not None and head_id is not None and parent_commit != head_id:
            raise StaleParent(f"A commit has happened since {parent_commit}. Please refresh and try again.")
        base = self.commit(repo_id, head_id or start_from)
        tree = apply_operations(base.tree, operations)
        for op in operations:
            if isinstance(op, Put) and op.content is not None:
                self.put_blob(op.content)
        commit = self._write_commit(base.repo_uid, tree, [base.id], summary, description, author)
        self.set_ref(repo_id, ref, commit.id)
        return commit

    def write_merge(self, repo_id: str, ref: str, tree: dict[str, dict], parents: list[str], *, summary: str,
                    author: str) -> Commit:
        """Write a merge commit with the given tree and move `ref` to it; the caller holds the lock."""
        commit = self._write_commit(self.repo(repo_id).uid, tree, parents, summary, "", author)
        self.set_ref(repo_id, ref, commit.id)
        return commit


def apply_operations(tree: dict[str, dict], operations: list[Put | Delete]) -> dict[str, dict]:
    """A new tree: `tree` with the operations applied in order; deleting what is absent is EntryNotFound."""
    result = dict(tree)
    for op in operations:
        if isinstance(op, Put):
            parents = ["/".join(op.path.split("/")[:i]) for i in range(1, op.path.count("/") + 1)]
            if any(p.startswith(op.path + "/") for p in result) or any(p in result for p in parents):
                raise BadRequest(f"cannot add file {op.path!r}: a file and a folder would share a name")
            result[op.path] = op.blob.entry()
        elif op.folder:
            prefix = op.path.rstrip("/") + "/"
            doomed = [p for p in result if p.startswith(prefix)]
            if not doomed:
                raise EntryNotFound(f"Folder {op.path} does not exist")
            for path in doomed:
                del result[path]
        else:
            if op.path not in result:
                raise EntryNotFound(f"File {op.path} does not exist")
            del result[op.path]
    return result

