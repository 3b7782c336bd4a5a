"""Discussions and pull requests: threads persisted as JSON, PR refs, commits to a revision, merges.

    REPO/discussions/<N>.json   one thread: title, status, author, events, and for a PR its base ref,
                                fork point and merge commit

Discussions and PRs share one numbering per repo, as on the Hub. A PR's files live on `refs/pr/N`
(started from its base branch, or from `parent_commit`), so they are visible there and not on the base
until `merge`. Every method that writes takes the repo lock itself; flock is not re-entrant, so the
private helpers below it never do.
"""

from __future__ import annotations

import difflib
import json
import uuid

from .errors import BadRequest, Conflict, Forbidden, NotFound, RevisionNotFound
from .storage import Commit, Delete, Put, Storage, canonical_json, write_atomic, now_iso

STATUSES = ("open", "closed")


class Discussions:
    """The discussions of every repo in a Storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    # ---- reading -----------------------------------------------------------------------------------

    def _path(self, repo_id: str, num: int):
        return self.storage.repo_dir(repo_id) / "discussions" / f"{num}.json"

    def get(self, repo_id: str, num: int) -> dict:
        """A thread by number; raises NotFound."""
        self.storage.repo(repo_id)
        try:
            return json.loads(self._path(repo_id, num).read_text())
        except FileNotFoundError:
            raise NotFound(f"Discussion #{num} not found in {repo_id}") from None

    def list(self, repo_id: str) -> list[dict]:
        """Every thread of the repo, newest first."""
        self.storage.repo(repo_id)
        folder = self.storage.repo_dir(repo_id) / "discussions"
        threads = [json.loads(p.read_text()) for p in folder.glob("[0-9]*.json")]
        return sorted(threads, key=lambda d: d["num"], reverse=True)

    def _sides(self, repo_id: str, thread: dict) -> tuple[dict, Commit, Commit]:
        """A PR's fork-point tree, its head, and its base branch's head."""
        fork = self.storage.commit(repo_id, thread["forkPoint"]).tree
        return (fork, self.storage.resolve(repo_id, f"refs/pr/{thread['num']}"),
                self.storage.resolve(repo_id, thread["base"]))

    def diff(self, repo_id: str, thread: dict) -> tuple[str, list[str]]:
        """A PR's changes since its fork point as a git-style diff, and the files that conflict with its base."""
        fork, head, base = self._sides(repo_id, thread)
        _, changed, conflicts = three_way_merge(fork, head.tree, base.tree)
        return "".join(self._file_diff(p, fork.get(p), head.tree.get(p)) for p in changed), conflicts

    def _file_diff(self, path: str, before: dict | None, after: dict | None) -> str:
        header = f"diff --git a/{path} b/{path}\n"
        texts = []
        for entry in (before, after):
            if entry is None:
                texts.append([])
                continue
            try:
                texts.append(self.storage.read_blob(entry["sha256"]).decode("utf-8").splitlines(keepends=True))
            except UnicodeDecodeError:
                return header + f"Binary files a/{path} and b/{path} differ\n"
        old = f"a/{path}" if before else "/dev/null"
        new = f"b/{path}" if after else "/dev/null"
        lines = difflib.unified_diff(texts[0], texts[1], old, new)
        # git marks a last line without a line break; difflib leaves it unterminated, glued to the next line
        return header + "".join(line if line.endswith(("\n", "\r")) else line + "\n\\ No newline at end of file\n"
                                for line in lines)

    # ---- writing (each public method holds the repo lock) ---------------------------------------------

    def _save(self, repo_id: str, thread: dict) -> None:
        write_atomic(self._path(repo_id, thread["num"]), canonical_json(thread))

    def _next_num(self, repo_id: str) -> int:
        # Count PR refs too: a crash between moving a new PR ref and saving its thread must not reuse N.
        folder = self.storage.repo_dir(repo_id)
        nums = [int(p.stem) for p in (folder / "discussions").glob("[0-9]*.json")]
        nums += [int(p.name) for p in (folder / "refs" / "pr").glob("[0-9]*")]
        return max(nums, default=0) + 1

    @staticmethod
    def event(kind: str, author: str, data: dict) -> dict:
        return {"id": uuid.uuid4().hex[:24], "type": kind, "createdAt": now_iso(), "author": {"name": author},
                "data": data}

    @classmethod
    def comment_event(cls, author: str, text: str) -> dict:
        return cls.event("comment", author, {"edited": False, "hidden": False, "numEdits": 0,
                                             "latest": {"raw": text, "html": text, "updatedAt": now_iso()}})

    @classmethod
    def commit_event(cls, author: str, commit: Commit) -> dict:
        return cls.event("commit", author, {"subject": commit.summary, "oid": commit.id})

    def _new_thread(self, repo_id: str, num: int, *, title: str, description: str, author: str,
                    base: str | None, fork_point: str | None, status: str) -> dict:
        thread = {"num": num, "title": title, "status": status, "author": author, "createdAt": now_iso(),
                  "isPullRequest": base is not None, "events": []}
        if description:
            thread["events"].append(self.comment_event(author, description))
        if base is not None:
            thread.update(base=base, forkPoint=fork_point, mergeCommitId=None)
        return thread

    def create(self, repo_id: str, *, title: str, description: str, author: str, pull_request: bool) -> dict:
        """Open a discussion, or a draft PR whose `refs/pr/N` starts at main's head."""
        if not title.strip():
            raise BadRequest("A discussion needs a title")
        with self.storage.lock(repo_id):
            num = self._next_num(repo_id)
            fork_point = None
            if pull_request:
                fork_point = self.storage.read_ref(repo_id, "refs/heads/main")
                self.storage.set_ref(repo_id, f"refs/pr/{num}", fork_point)
            thread = self._new_thread(repo_id, num, title=title.strip(), description=description, author=author,
                                      base="refs/heads/main" if pull_request else None, fork_point=fork_point,
                                      status="draft" if pull_request else "open")
            self._save(repo_id, thread)
        return thread

    def commit(self, repo_id: str, revision: str, operations: list[Put | Delete], *, summary: str,
               description: str, author: str, parent_commit: str | None, create_pr: bool,
               may_write_revision: bool) -> tuple[Commit, int | None]:
        """Commit to a branch or `refs/pr/N`, or (`create_pr`) open a PR holding the commit.

        Returns the commit and the PR number when one was opened. `may_write_revision` says whether the
        caller may push to the branch itself; without it only PRs (new ones, or their own) are allowed.
        """
        ref = self.storage.find_ref(repo_id, revision)
        if ref is None or ref.startswith("refs/tags/"):
            what = "a commit id" if ref is None else "a tag"
            raise BadRequest(f"Cannot commit to {what} ({revision}); commit to a branch or refs/pr/N")
        with self.storage.lock(repo_id):
            head = self.storage.read_ref(repo_id, ref)
            if head is None:
                raise RevisionNotFound(f"Invalid rev id: {revision}")
            if create_pr:
                if ref.startswith("refs/pr/"):
                    raise BadRequest("Cannot open a pull request against a pull request ref")
                num = self._next_num(repo_id)
                fork_point = parent_commit or head
                self.storage.commit(repo_id, fork_point)  # an unknown parent_commit is RevisionNotFound
                commit = self.storage.commit_operations(repo_id, f"refs/pr/{num}", operations, summary=summary,
                                                        description=description, author=author,
                                                        start_from=fork_point)
                thread = self._new_thread(repo_id, num, title=summary, description=description, author=author,
                                          base=ref, fork_point=fork_point, status="open")
                thread["events"].append(self.commit_event(author, commit))
                self._save(repo_id, thread)
                return commit, num
            thread = self._pr_thread(repo_id, ref)
            if not may_write_revision and (thread is None or thread["author"] != author):
                raise Forbidden(f"You may not push to {revision}; open a pull request instead (create_pr=True)")
            if thread is not None and thread["status"] not in ("open", "draft"):
                raise BadRequest(f"Pull request #{thread['num']} is {thread['status']}; reopen it to push to it")
            commit = self.storage.commit_operations(repo_id, ref, operations, summary=summary,
                                                    description=description, author=author,
                                                    parent_commit=parent_commit)
            if thread is not None:
                thread["events"].append(self.commit_event(author, commit))
                thread["status"] = "open"  # a draft PR opens with its first commit
                self._save(repo_id, thread)
            return commit, None

    def _pr_thread(self, repo_id: str, ref: str) -> dict | None:
        if not ref.startswith("refs/pr/"):
            return None
        try:
            return json.loads(self._path(repo_id, int(ref.rsplit("/", 1)[1])).read_text())
        except FileNotFoundError:
            return None

    def comment(self, repo_id: str, num: int, *, author: str, text: str) -> dict:
        if not text.strip():
            raise BadRequest("A comment cannot be empty")
        with self.storage.lock(repo_id):
            thread = self.get(repo_id, num)
            event = self.comment_event(author, text)
            thread["events"].append(event)
            self._save(repo_id, thread)
        return event

    def change_status(self, repo_id: str, num: int, *, author: str, status: str, comment: str | None) -> dict:
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self.storage.lock(repo_id):
            thread = self.get(repo_id, num)
            if thread["status"] == "merged":
                raise BadRequest(f"Pull request #{num} is merged; its status cannot change")
            event = self.event("status-change", author, {"status": status})
            thread["events"].append(event)
            if comment and comment.strip():
                thread["events"].append(self.comment_event(author, comment))
            thread["status"] = status
            self._save(repo_id, thread)
        return event

    def rename(self, repo_id: str, num: int, *, author: str, title: str) -> dict:
        if not title.strip():
            raise BadRequest("A discussion needs a title")
        with self.storage.lock(repo_id):
            thread = self.get(repo_id, num)
            event = self.event("title-change", author, {"from": thread["title"], "to": title.strip()})
            thread["events"].append(event)
            thread["title"] = title.strip()
            self._save(repo_id, thread)
        return event

    def merge(self, repo_id: str, num: int, *, author: str, comment: str | None) -> Commit:
        """Merge PR `num` into its base with a merge commit; Conflict if both sides changed a file."""
        with self.storage.lock(repo_id):
            thread = self.get(repo_id, num)
            if not thread["isPullRequest"]:
                raise BadRequest(f"#{num} is a discussion, not a pull request")
            if thread["status"] != "open":
                raise BadRequest(f"Pull request #{num} is {thread['status']}; only open pull requests can be merged")
            fork, head, base = self._sides(repo_id, thread)
            tree, _, conflicts = three_way_merge(fork, head.tree, base.tree)
            if conflicts:
                raise Conflict(f"Pull request #{num} conflicts with {thread['base']} in: {', '.join(sorted(conflicts))}")
            merge = self.storage.write_merge(repo_id, thread["base"], tree, [base.id, head.id],
                                             summary=f"Merge PR #{num}: {thread['title']}", author=author)
            if comment and comment.strip():
                thread["events"].append(self.comment_event(author, comment))
            thread["events"].append(self.event("status-change", author, {"status": "merged"}))
            thread.update(status="merged", mergeCommitId=merge.id)
            self._save(repo_id, thread)
        return merge


def three_way_merge(fork: dict, head: dict, base: dict) -> tuple[dict, list[str], list[str]]:
    """Apply a PR's file changes (fork point -> head) onto its base branch's tree.

    Returns the merged tree, the paths the PR changed, and those the base also changed differently
    since the fork point (conflicts: the merged tree is then meaningless). Whole files, no line merges.
    """
    merged, changed, conflicts = dict(base), [], []
    for path in sorted(set(fork) | set(head)):
        before, after = fork.get(path), head.get(path)
        if before == after:
            continue
        changed.append(path)
        if base.get(path) not in (before, after):
            conflicts.append(path)
        elif after is None:
            merged.pop(path, None)
        else:
            merged[path] = after
    return merged, changed, conflicts
