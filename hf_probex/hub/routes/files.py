"""Files: resolve (ranges, ETags, `If-None-Match`, download counts), tree listings, paths-info, and the
commit history of a revision (`list_repo_commits`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..errors import EntryNotFound, RangeNotSatisfiable
from ..storage import Commit, check_path
from .common import HubState, Repos, bool_param, check_declared_length, paged, state_of, target

router = APIRouter()

_CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: What a download of a model is, for a repo without config.json: a GET of one of its weights files.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for a single `bytes=` range, None to serve the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: RFC 9110 lets a server ignore the header
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(f"Range {header} not satisfiable for a file of {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _folder_entry(path: str, commit: Commit) -> dict:
    prefix = path + "/"
    listing = sorted((p, e["oid"]) for p, e in commit.tree.items() if p.startswith(prefix))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(listing).encode()).hexdigest(), "path": path}


def _last_commit(repos: Repos, repo_id: str, head: Commit, path: str) -> dict:
    """The newest commit that changed `path` (a file or a folder), as tree listings report it."""
    def touched(commit: Commit) -> object:
        return commit.tree.get(path) or sorted((p, e["oid"]) for p, e in commit.tree.items() if p.startswith(path + "/"))

    history = repos.storage.history(repo_id, head)
    found = history[0]
    for older in history[1:]:
        if touched(older) != touched(found):
            break
        found = older
    return {"id": found.id, "title": found.summary, "date": found.date}


def _counts_as_download(kind: str, path: str, commit: Commit) -> bool:
    """Whether a whole-file GET of `path` counts as a download of the repo. Of a model, as the Hub counts them:
    config.json, or a weights file in a repo without one. Of a dataset: any file but the card and dot files
    (each data file a load reads). A HEAD or a range read (a header, a few layers) is not a download."""
    if kind == "dataset":
        return path != "README.md" and not path.rsplit("/", 1)[-1].startswith(".")
    if "config.json" in commit.tree:
        return path == "config.json"
    return path.endswith(_WEIGHT_SUFFIXES)


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (or is `*`); the weak comparison RFC 9110 prescribes."""
    if not if_none_match:
        return False
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/").strip('"') == etag for tag in if_none_match.split(","))


def _file_headers(state: HubState, commit: Commit, path: str) -> dict[str, str]:
    """What a resolve answers about a file whatever is asked: its commit and ETag (an LFS file's sha256,
    with X-Linked-Etag and X-Linked-Size as the Hub sends them; a regular file's git blob id)."""
    lfs = state.lfs.info(commit, path)
    etag = lfs["oid"] if lfs else commit.tree[path]["oid"]
    headers = {"X-Repo-Commit": commit.id, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
    if lfs:
        headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(lfs["size"])})
    return headers


def _resolve_file(kind: str, ns: str, name: str, revision: str, path: str, request: Request):
    """A file of a repo: 304 for an `If-None-Match` naming its ETag, else the whole file or one range."""
    repos, repo_id, _ = target(kind, ns, name, request)
    commit = repos.storage.resolve(repo_id, revision)
    entry = commit.tree.get(path)
    if entry is None:
        raise EntryNotFound(f"{path} does not exist on {revision}", headers={"X-Repo-Commit": commit.id})
    headers = _file_headers(state_of(request), commit, path)
    if _etag_matches(request.headers.get("if-none-match"), headers["ETag"].strip('"')):
        return Response(status_code=304, headers=headers)  # before Range, as RFC 9110 orders them
    size = entry["size"]
    headers["Content-Type"] = "application/octet-stream"
    span = _parse_range(request.headers.get("range"), size)
    start, end = span if span else (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if span:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    if span is None and _counts_as_download(kind, path, commit):
        repos.storage.count_download(repo_id)
    return StreamingResponse(_stream(repos.storage.blob_path(entry["sha256"]), start, end), status_code=status,
                             headers=headers)


def _stream(path: Path, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _locate(kind: str, ns: str, name: str, revision: str, request: Request) -> tuple[Repos, str, Commit]:
    repos, repo_id, _ = target(kind, ns, name, request)
    return repos, repo_id, repos.storage.resolve(repo_id, revision)


# The dataset route first: `/datasets/...` must not be read as a model in the reserved namespace "datasets".
@router.api_route("/datasets/{ns:hubseg}/{name:hubseg}/resolve/{revision:hubseg}/{path:hubpath}", methods=["GET", "HEAD"])
def resolve_dataset_file(ns: str, name: str, revision: str, path: str, request: Request):
    return _resolve_file("dataset", ns, name, revision, path, request)


@router.api_route("/{ns:hubseg}/{name:hubseg}/resolve/{revision:hubseg}/{path:hubpath}", methods=["GET", "HEAD"])
def resolve_model_file(ns: str, name: str, revision: str, path: str, request: Request):
    return _resolve_file("model", ns, name, revision, path, request)


def _tree(kind: str, ns: str, name: str, revision: str, path: str, request: Request):
    repos, repo_id, commit = _locate(kind, ns, name, revision, request)
    path = path.strip("/")
    if path:
        check_path(path)
    prefix = f"{path}/" if path else ""
    if path and not any(p.startswith(prefix) for p in commit.tree):
        raise EntryNotFound(f"{path} is not a folder on {revision}")
    recursive = bool_param(request.query_params.get("recursive"))
    entries: dict[str, dict] = {}
    for file_path in sorted(commit.tree):
        if not file_path.startswith(prefix):
            continue
        parts = file_path[len(prefix):].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            folder = prefix + "/".join(parts[:i])
            entries.setdefault(folder, {"type": "directory", "path": folder})
        if recursive or len(parts) == 1:
            entries[file_path] = {"type": "file", "path": file_path}
    items = sorted(entries.values(), key=lambda e: (e["type"] != "directory", e["path"]))
    expand = bool_param(request.query_params.get("expand"))
    lfs = state_of(request).lfs

    def render(item: dict) -> dict:
        # Only the page sent gets its entries' ids, LFS rules and last commits: a tree may list 10^5 files.
        if item["type"] == "file":
            item = lfs.tree_entry(commit, item["path"])
        else:
            item = _folder_entry(item["path"], commit)
        if expand:
            item["lastCommit"] = _last_commit(repos, repo_id, commit, item["path"])
        return item

    return paged(request, items, 1000, render)


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}")
def tree_root(kind: str, ns: str, name: str, revision: str, request: Request):
    return _tree(kind, ns, name, revision, "", request)


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}/{path:hubpath}")
def tree_path(kind: str, ns: str, name: str, revision: str, path: str, request: Request):
    return _tree(kind, ns, name, revision, path, request)


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/paths-info/{revision:hubseg}")
async def paths_info(kind: str, ns: str, name: str, revision: str, request: Request):
    repos, repo_id, commit = _locate(kind, ns, name, revision, request)
    check_declared_length(request)
    form = await request.form()
    paths = [str(p) for p in form.getlist("paths")]
    expand = bool_param(str(form.get("expand") or ""))
    lfs = state_of(request).lfs
    found = []
    for path in paths:
        path = path.strip("/")
        if path in commit.tree:
            found.append(lfs.tree_entry(commit, path))
        elif path and any(p.startswith(path + "/") for p in commit.tree):
            found.append(_folder_entry(path, commit))
        else:
            continue
        if expand:
            found[-1]["lastCommit"] = _last_commit(repos, repo_id, commit, path)
    return found


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/commits/{revision:hubseg}")
def commits(kind: str, ns: str, name: str, revision: str, request: Request):
    repos, repo_id, head = _locate(kind, ns, name, revision, request)
    items = [{"id": c.id, "title": c.summary, "message": c.description, "date": c.date,
              "authors": [{"user": c.author}]} for c in repos.storage.history(repo_id, head)]
    return paged(request, items, 50)

