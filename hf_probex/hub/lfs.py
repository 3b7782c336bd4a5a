"""Which files of a commit the Hub keeps in Git LFS, and how it names them.

Every upload reaches this hub as a regular file (preupload answers `regular`), but the Hub itself stores
a file in LFS when the repo's `.gitattributes` says `filter=lfs` for its path, when it is larger than
10 MiB, or when it is binary (it refuses such files in plain git). Clients see the difference: an LFS
file's ETag is its sha256 (with `X-Linked-Etag` and `X-Linked-Size`), a regular file's its git blob id,
and tree listings give an LFS file the pointer's blob id plus an `lfs` field. So the same rule is
applied here to each commit's files, from that commit's own `.gitattributes`: commits never change,
so neither does the answer, and everything is cached by content.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .storage import Commit, Storage, git_blob_oid

#: The Hub refuses regular (non-LFS) files larger than this.
LFS_MIN_SIZE = 10 * 1024**2
#: How much of a file the Hub's preupload samples to tell binary from text (a NUL byte means binary).
_SAMPLE_BYTES = 512
_MAX_GITATTRIBUTES_BYTES = 1024**2


def pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that stands for a file in git."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _glob_regex(pattern: str) -> re.Pattern:
    """A gitattributes pattern as a regex over repo paths (git's rules: a pattern without '/' matches the
    file name in any folder; '*' and '?' stay within a folder, '**' crosses folders)."""
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile(("" if anchored else "(?:.*/)?") + "".join(out))


@dataclass(frozen=True)
class LfsRules:
    """The `filter` lines of a `.gitattributes`: (pattern, tracked) in file order; the last match wins."""

    rules: tuple[tuple[re.Pattern, bool], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "LfsRules":
        rules = []
        for line in text.splitlines():
            fields = line.split()
            # Comments, blank lines, quoted patterns and folder patterns (which match no file) say nothing.
            if not fields or fields[0].startswith(("#", '"')) or fields[0].endswith("/"):
                continue
            for attribute in fields[1:]:
                if attribute == "filter=lfs":
                    rules.append((_glob_regex(fields[0]), True))
                elif attribute in ("-filter", "!filter") or attribute.startswith("filter="):
                    rules.append((_glob_regex(fields[0]), False))
        return cls(tuple(rules))

    def tracks(self, path: str) -> bool:
        tracked = False
        for regex, value in self.rules:
            if regex.fullmatch(path):
                tracked = value
        return tracked


class LfsFiles:
    """Answers, for a file of a commit, whether the Hub would keep it in LFS (shared by every repo type)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._rules = functools.lru_cache(maxsize=1024)(self._read_rules)
        self._binary = functools.lru_cache(maxsize=65536)(self._read_binary)

    def _read_rules(self, sha256: str, size: int) -> LfsRules:
        if size > _MAX_GITATTRIBUTES_BYTES:  # git itself ignores attribute files this large
            return LfsRules()
        return LfsRules.parse(self.storage.read_blob(sha256).decode("utf-8", "replace"))

    def _read_binary(self, sha256: str) -> bool:
        return b"\0" in self.storage.read_blob(sha256, 0, _SAMPLE_BYTES)

    def info(self, commit: Commit, path: str) -> dict | None:
        """The tree listing's `lfs` field for a file of `commit` ({"oid": sha256, "size", "pointerSize"}),
        or None for a file the Hub keeps in plain git."""
        entry = commit.tree[path]
        attributes = commit.tree.get(".gitattributes")
        rules = self._rules(attributes["sha256"], attributes["size"]) if attributes else LfsRules()
        if not (entry["size"] > LFS_MIN_SIZE or rules.tracks(path) or self._binary(entry["sha256"])):
            return None
        return {"oid": entry["sha256"], "size": entry["size"],
                "pointerSize": len(pointer(entry["sha256"], entry["size"]))}

    def tree_entry(self, commit: Commit, path: str) -> dict:
        """A file as the tree and paths-info listings show it: an LFS file by its pointer's blob id."""
        entry = commit.tree[path]
        lfs = self.info(commit, path)
        if lfs is None:
            return {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
        return {"type": "file", "oid": git_blob_oid(pointer(lfs["oid"], lfs["size"])), "size": entry["size"],
                "lfs": lfs, "path": path}

    def etag(self, commit: Commit, path: str) -> str:
        """The ETag the Hub's resolve answers for a file: sha256 for LFS, git blob id otherwise."""
        lfs = self.info(commit, path)
        return lfs["oid"] if lfs else commit.tree[path]["oid"]
