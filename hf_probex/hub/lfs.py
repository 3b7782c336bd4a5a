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

import fnmatch
import functools
from dataclasses import dataclass

from .storage import Commit, Storage, git_blob_oid

#: The Hub refuses regular (non-LFS) files larger than this.
LFS_MIN_SIZE = 10 * 1024**2
#: How much of a file the Hub's preupload samples to tell binary from text (a NUL byte means binary).
_SAMPLE_BYTES = 512
_MAX_GITATTRIBUTES_BYTES = 64 * 1024
_MAX_ATTRIBUTES = 64  # per line, and per macro
# What of a .gitattributes counts (anyone may commit one, and each file listed is matched against its rules):
# the Hub's default has about 40 rules and 600 characters of patterns, so these bounds leave ten times that
# while keeping a file's classification under about 10 ms (fnmatch is linear in pattern and name).
_MAX_RULES = 256
_MAX_PATTERN_CHARS = 256
_MAX_PATTERNS_CHARS = 8192
_MAX_PATTERN_SEGMENTS = 16


def pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that stands for a file in git."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class _Pattern:
    """A gitattributes pattern, as git reads it: without '/', it matches a file's name in any folder; with
    one, the path from the repo root, segment by segment, where a `**` segment stands for any number of
    folders. Segments match with `fnmatch` ('*' and '?' never cross '/').

    Matching costs at most one `fnmatch` per pattern segment: at most one `**` segment is kept per
    pattern (`_Pattern.parse` drops others), so it splits the pattern into a head and a tail to compare
    with the path's first and last segments, and no search over positions is needed.
    """

    head: tuple[str, ...]
    tail: tuple[str, ...] | None  # None: no `**`, the path has exactly the head's segments

    @classmethod
    def parse(cls, text: str) -> "_Pattern | None":
        """The pattern, or None for one this hub does not evaluate (see `LfsRules`)."""
        if "/" not in text:
            return cls(head=(), tail=(text,))  # the name, in any folder: `**/name`
        segments = text.strip("/").split("/")
        if len(segments) > _MAX_PATTERN_SEGMENTS or segments.count("**") > 1:
            return None
        if "**" not in segments:
            return cls(head=tuple(segments), tail=None)
        split = segments.index("**")
        return cls(head=tuple(segments[:split]), tail=tuple(segments[split + 1:]))

    def matches(self, parts: list[str]) -> bool:
        if self.tail is None:
            return len(parts) == len(self.head) and all(map(fnmatch.fnmatchcase, parts, self.head))
        # A trailing `**` stands for what is inside the folder, so at least one more segment.
        if len(parts) < len(self.head) + max(len(self.tail), 1):
            return False
        tail_parts = parts[len(parts) - len(self.tail):]
        return all(map(fnmatch.fnmatchcase, parts, self.head)) and all(map(fnmatch.fnmatchcase, tail_parts, self.tail))


@dataclass(frozen=True)
class LfsRules:
    """The `filter` lines of a `.gitattributes`: (pattern, tracked) in file order; the last match wins.

    Bounded, since anyone may commit one: its first `_MAX_RULES` filter lines count, up to
    `_MAX_PATTERNS_CHARS` characters of patterns in all; patterns over `_MAX_PATTERN_CHARS` characters or
    `_MAX_PATTERN_SEGMENTS` segments, or with two `**` segments, are ignored (no Hub default and no
    `git lfs track` line comes near).
    """

    rules: tuple[tuple[_Pattern, bool], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "LfsRules":
        rules, macros, budget = [], {}, _MAX_PATTERNS_CHARS
        for line in text.splitlines():
            fields = line.split()
            # Comments, blank lines, quoted patterns and folder patterns (which match no file) say nothing.
            if not fields or fields[0].startswith(("#", '"')) or fields[0].endswith("/"):
                continue
            if fields[0].startswith("[attr]"):  # a macro, e.g. `[attr]lfs filter=lfs diff=lfs merge=lfs -text`
                macros[fields[0][len("[attr]"):]] = fields[1:1 + _MAX_ATTRIBUTES]
                continue
            pattern = _Pattern.parse(fields[0]) if len(fields[0]) <= _MAX_PATTERN_CHARS else None
            values = [a == "filter=lfs" for field in fields[1:1 + _MAX_ATTRIBUTES] for a in macros.get(field, [field])
                      if a in ("-filter", "!filter") or a.startswith("filter=")]
            if pattern is None or not values:
                continue
            budget -= len(fields[0])
            if budget < 0 or len(rules) == _MAX_RULES:
                break
            rules.append((pattern, values[-1]))  # the line's last filter attribute is the one that holds
        return cls(tuple(rules))

    def tracks(self, path: str) -> bool:
        parts = path.split("/")
        return next((value for pattern, value in reversed(self.rules) if pattern.matches(parts)), False)


class LfsFiles:
    """Answers, for a file of a commit, whether the Hub would keep it in LFS (shared by every repo type)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._rules = functools.lru_cache(maxsize=1024)(self._read_rules)
        self._tracked = functools.lru_cache(maxsize=65536)(self._match)
        self._binary = functools.lru_cache(maxsize=65536)(self._read_binary)

    def _read_rules(self, sha256: str, size: int) -> LfsRules:
        if size > _MAX_GITATTRIBUTES_BYTES:  # 30 times the Hub's default: read as no rules, size and content decide
            return LfsRules()
        return LfsRules.parse(self.storage.read_blob(sha256).decode("utf-8", "replace"))

    def _match(self, attributes_sha256: str, attributes_size: int, path: str) -> bool:
        return self._rules(attributes_sha256, attributes_size).tracks(path)

    def _read_binary(self, sha256: str) -> bool:
        return b"\0" in self.storage.read_blob(sha256, 0, _SAMPLE_BYTES)

    def info(self, commit: Commit, path: str) -> dict | None:
        """The tree listing's `lfs` field for a file of `commit` ({"oid": sha256, "size", "pointerSize"}),
        or None for a file the Hub keeps in plain git."""
        entry = commit.tree[path]
        attributes = commit.tree.get(".gitattributes")
        tracked = attributes is not None and self._tracked(attributes["sha256"], attributes["size"], path)
        if not (entry["size"] > LFS_MIN_SIZE or tracked or self._binary(entry["sha256"])):
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
