"""The HTTP face of the local hub: a FastAPI app speaking the subset of the Hub API that
`huggingface_hub` uses (repos, model info and listing, resolve with ranges, tree and paths-info,
preupload and NDJSON commits, pull requests and discussions, likes and download counts, organisation
members, whoami, validate-yaml).

Only model repos exist. Every error carries the Hub's status and `X-Error-Code`, so the client raises
its usual exceptions. Paths are routed on the raw (still percent-encoded) request path: the client
encodes `refs/pr/1` as `refs%2Fpr%2F1`, and a decoded path could not tell it from a folder.

Anyone can send anything: a route identifies the caller and checks the repo and their rights before it
reads a request body, bodies are bounded (commits by the upload limit, JSON bodies by
`MAX_JSON_BODY_BYTES`), JSON is parsed under `hf_probex.bounded`'s limits, and a malformed request is a
4xx in the Hub's error shape, never a 500 or a dropped connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..bounded import TooComplexError, load_json
from .auth import User, UsersFile, require_user, require_write, require_write_token
from .catalog import Catalog, RepoSummary, card_problems, front_matter
from .discussions import Discussions
from .errors import (BadRequest, EntryNotFound, Forbidden, HubError, NotFound, PayloadTooLarge, RangeNotSatisfiable,
                     RepoNotFound)
from .storage import Commit, Delete, Put, RepoMeta, Storage, check_path, check_repo_id

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
#: Every body but a commit's: settings, discussions, preupload lists, a README to validate (the Hub's
#: READMEs are far smaller; huggingface_hub sends preupload lists in chunks of a few hundred files).
MAX_JSON_BODY_BYTES = 10 * 1024**2
_COMMIT_PATH = re.compile(r"^/api/models/[^/]+/[^/]+/commit/[^/]+$")
_CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LIST_FIELDS = ("_id", "id", "modelId", "likes", "downloads", "trendingScore", "private", "tags", "pipeline_tag",
                "library_name", "createdAt")
_FULL_FIELDS = _LIST_FIELDS + ("author", "sha", "lastModified", "gated", "disabled", "siblings")
_SORT_KEYS = {"lastModified", "createdAt", "downloads", "likes", "trendingScore", "id"}
#: What a download of a model is, for a repo without config.json: a GET of one of its weights files.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack")


class _Segment(Convertor):
    """One percent-encoded path segment (may encode '/'), decoded."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return value


class _Rest(_Segment):
    """The rest of the path (a file path), decoded."""

    regex = ".*"


register_url_convertor("hubseg", _Segment())
register_url_convertor("hubpath", _Rest())


class _RawPathAndLimit:
    """ASGI middleware: route on the raw path, and stop request bodies at their limit (413) as they stream in.

    A commit carries regular files inline, so it may reach the upload limit; any other body is JSON or
    a form and stops at MAX_JSON_BODY_BYTES. The limit goes in the scope: a route refuses a declared
    Content-Length over it (`_check_declared_length`) once it knows the caller may send a body at all,
    so a stranger learns 401/403/404, not 413. Chunked bodies declare nothing and stop here.
    """

    def __init__(self, app, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        if raw:
            scope = {**scope, "path": raw.decode("utf-8", "replace")}
        if _COMMIT_PATH.match(scope["path"]):
            limit = self.max_upload_bytes
            message = f"Request body larger than this hub's upload limit of {limit} bytes: upload fewer or smaller files"
        else:
            limit = MAX_JSON_BODY_BYTES
            message = f"Request body larger than the {limit} bytes this hub accepts here: send a smaller body"
        scope = {**scope, "hub.body_limit": (limit, message)}
        received = 0

        async def limited_receive():
            nonlocal received
            message_ = await receive()
            received += len(message_.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(message)
            return message_

        return await self.app(scope, limited_receive, send)


def _error_response(err: HubError) -> JSONResponse:
    # Header values must be one printable latin-1 line (a NUL from a `%00` in the path would make the
    # server drop the connection instead of answering); the body keeps the full message.
    header_message = "".join(c if c.isprintable() else "?" for c in " ".join(err.message.split()))
    header_message = header_message.encode("latin-1", "replace").decode("latin-1")
    headers = {"X-Error-Message": header_message, **err.headers}
    if err.code:
        headers["X-Error-Code"] = err.code
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


@dataclass
class HubState:
    """Everything one app serves: storage, discussions, derived metadata, users, limits."""

    storage: Storage
    discussions: Discussions
    catalog: Catalog
    users: UsersFile
    max_upload_bytes: int


def create_app(root: str | Path, *, users_file: str | Path | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The hub app serving the repos under `root` (created if missing), with the users of `users_file`."""
    storage = Storage(root)
    state = HubState(storage=storage, discussions=Discussions(storage), catalog=Catalog(storage),
                     users=UsersFile(users_file), max_upload_bytes=max_upload_bytes)
    app = FastAPI(title="hf_probex local hub", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = state
    app.add_middleware(_RawPathAndLimit, max_upload_bytes=max_upload_bytes)

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, err: HubError) -> JSONResponse:
        return _error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        # Unknown routes, wrong methods, malformed forms: the Hub's error shape, as for every other error.
        return _error_response(HubError(f"{str(err.detail).rstrip('.')}: check the URL, method and body against the Hub API",
                                        headers=dict(err.headers or {}), status=err.status_code))

    _add_repo_routes(app, state)
    _add_file_routes(app, state)
    _add_commit_routes(app, state)
    _add_discussion_routes(app, state)
    _add_community_routes(app, state)
    return app


# ---- shared helpers ----------------------------------------------------------------------------------


def _caller(state: HubState, request: Request) -> User | None:
    return state.users.current().identify(request.headers.get("authorization"))


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _visible_repo(state: HubState, repo_id: str, user: User | None) -> RepoMeta:
    """The repo if the caller may see it; a private repo is RepoNotFound to others, as on the Hub."""
    repo = state.storage.repo(repo_id)
    namespace = repo_id.split("/")[0]
    if repo.private and (user is None or not user.can_read_private(namespace)):
        raise RepoNotFound(f"Repository {repo_id} not found")
    return repo


def _check_declared_length(request: Request) -> None:
    """413 for a declared body over the route's limit, before a byte of it is read."""
    limit, message = request.scope["hub.body_limit"]
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(message)


async def _read_json(request: Request) -> dict:
    """The JSON object in the body. Call it only once the caller may do what the route does."""
    _check_declared_length(request)
    body = await request.body()
    try:
        data = load_json(body or b"{}")
    except TooComplexError as err:
        raise BadRequest(f"JSON body too complex ({err}): send a flatter object") from None
    except ValueError as err:
        raise BadRequest(f"Malformed JSON body ({err}): send a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("Malformed JSON body: expected a JSON object")
    return data


def _bool_param(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _paged(request: Request, items: list, page_size: int) -> JSONResponse:
    """One page of `items` with a GitHub-style `Link: <...>; rel="next"` header, as the client paginates."""
    try:
        start = max(0, int(request.query_params.get("cursor") or 0))
    except ValueError:
        raise BadRequest("cursor must be an integer") from None
    headers = {}
    if start + page_size < len(items):
        headers["Link"] = f'<{request.url.include_query_params(cursor=start + page_size)}>; rel="next"'
    return JSONResponse(items[start:start + page_size], headers=headers)


# ---- repos, model info, listing ----------------------------------------------------------------------


def _children_counts(state: HubState) -> Counter:
    """How many public repos name each repo id as a base model (the Hub's childrenModelCount)."""
    return Counter(base for _, _, summary in _all_models(state, None) for base in set(summary.base_models))


def _model_json(state: HubState, repo: RepoMeta, commit: Commit, *, blobs: bool = False,
                fields: tuple[str, ...] | None = None, children: Counter | None = None) -> dict:
    """A repo as the Hub's model-info JSON; `fields` limits it to those keys (plus `_id` and `id`).

    `children` (from `_children_counts`) saves a listing from recounting for every repo.
    """
    summary: RepoSummary = state.catalog.summary(repo.repo_id, commit.id)
    stats = state.storage.stats(repo.repo_id)
    wanted = set(fields) | {"_id", "id"} if fields is not None else None

    def want(key: str) -> bool:
        return wanted is None or key in wanted

    data: dict = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                  "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.id,
                  "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
                  "gated": False, "disabled": False, "downloads": stats.downloads, "likes": len(stats.likers),
                  "trendingScore": 0,
                  "tags": summary.tags, "library_name": summary.library_name, "pipeline_tag": summary.pipeline_tag,
                  "spaces": [], "usedStorage": sum(e["size"] for e in commit.tree.values())}
    if want("siblings"):
        data["siblings"] = [{"rfilename": path, **({"size": e["size"], "blobId": e["oid"]} if blobs else {})}
                            for path, e in sorted(commit.tree.items())]
    if summary.card:
        data["cardData"] = summary.card
        if "model-index" in summary.card:
            data["model-index"] = summary.card["model-index"]
    if summary.config:
        data["config"] = {k: summary.config[k] for k in ("architectures", "model_type", "quantization_config")
                          if k in summary.config}
    if summary.safetensors:
        data["safetensors"] = summary.safetensors
    if wanted is not None and "baseModels" in wanted and summary.base_models:
        data["baseModels"] = {"relation": summary.relation, "models": [{"id": b} for b in summary.base_models]}
    if wanted is not None and "childrenModelCount" in wanted:
        data["childrenModelCount"] = (children if children is not None else _children_counts(state))[repo.repo_id]
    for key in [k for k in data if data[k] is None]:
        del data[key]
    return data if wanted is None else {k: v for k, v in data.items() if k in wanted}


def _all_models(state: HubState, user: User | None) -> Iterator[tuple[RepoMeta, Commit, RepoSummary]]:
    """Every repo the caller may see, with main's head and its summary."""
    for repo in state.storage.list_repos():
        if repo.private and (user is None or not user.can_read_private(repo.repo_id.split("/")[0])):
            continue
        try:
            commit = state.storage.resolve(repo.repo_id, "main")
        except HubError:
            continue  # deleted while listing
        yield repo, commit, state.catalog.summary(repo.repo_id, commit.id)


def _add_repo_routes(app: FastAPI, state: HubState) -> None:
    storage = state.storage

    @app.get("/api/whoami-v2")
    def whoami(request: Request):
        user = require_user(_caller(state, request))
        return {"type": "user", "id": hashlib.sha1(user.name.encode()).hexdigest()[:24], "name": user.name,
                "fullname": user.fullname, "isPro": False, "canPay": False, "emailVerified": True,
                "orgs": [{"type": "org", "name": org, "fullname": org} for org in user.orgs],
                "auth": {"type": "access_token",
                         "accessToken": {"displayName": user.token_name, "role": user.role}}}

    @app.post("/api/repos/create")
    async def create_repo(request: Request):
        user = require_write_token(_caller(state, request))
        body = await _read_json(request)
        repo_type = body.get("type") or "model"
        if repo_type != "model":
            raise BadRequest(f"This hub hosts model repos only, not {repo_type}s")
        name, organization = body.get("name"), body.get("organization")
        if not isinstance(name, str):
            raise BadRequest("create_repo needs a 'name'")
        namespace = organization or user.name
        repo_id = f"{namespace}/{name}"
        check_repo_id(repo_id)
        require_write(user, namespace)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = f"{_base_url(request)}/{repo_id}"
        try:
            await run_in_threadpool(storage.create_repo, repo_id, private=private, author=user.name)
        except HubError as err:
            if err.status == 409:  # the client reads "url" from the 409 body when exist_ok=True
                return JSONResponse({"error": err.message, "url": url}, status_code=409,
                                    headers={"X-Error-Message": err.message})
            raise
        return {"url": url, "name": repo_id, "id": repo_id}

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request):
        user = require_write_token(_caller(state, request))
        body = await _read_json(request)
        repo_id = f"{body.get('organization') or user.name}/{body.get('name')}"
        _visible_repo(state, repo_id, user)
        require_write(user, repo_id.split("/")[0])
        await run_in_threadpool(storage.delete_repo, repo_id)
        return Response(status_code=200)

    @app.put("/api/models/{ns:hubseg}/{name:hubseg}/settings")
    async def update_settings(ns: str, name: str, request: Request):
        user = _caller(state, request)
        repo_id = f"{ns}/{name}"
        _visible_repo(state, repo_id, user)
        require_write(user, ns)
        body = await _read_json(request)
        if "private" in body or "visibility" in body:
            private = bool(body["private"]) if "private" in body else body["visibility"] == "private"
            await run_in_threadpool(storage.update_repo, repo_id, private=private)
        return {"private": storage.repo(repo_id).private}

    def model_info(ns: str, name: str, revision: str, request: Request):
        repo_id = f"{ns}/{name}"
        repo = _visible_repo(state, repo_id, _caller(state, request))
        commit = storage.resolve(repo_id, revision)
        expand = request.query_params.getlist("expand") or request.query_params.getlist("expand[]")
        return _model_json(state, repo, commit, blobs=_bool_param(request.query_params.get("blobs")),
                           fields=tuple(expand) if expand else None)

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}")
    def model_info_main(ns: str, name: str, request: Request):
        return model_info(ns, name, "main", request)

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/revision/{revision:hubseg}")
    def model_info_revision(ns: str, name: str, revision: str, request: Request):
        return model_info(ns, name, revision, request)

    @app.get("/api/models")
    def list_models(request: Request):
        params = request.query_params
        user = _caller(state, request)
        filters = params.getlist("filter")
        author, search = params.get("author"), (params.get("search") or "").lower()
        pipeline_tag = params.get("pipeline_tag")
        rows = []
        for repo, commit, summary in _all_models(state, user):
            tags = set(summary.tags)
            if any(f not in tags for f in filters) or (author and repo.repo_id.split("/")[0] != author):
                continue
            if (search and search not in repo.repo_id.lower()) or (pipeline_tag and summary.pipeline_tag != pipeline_tag):
                continue
            rows.append((repo, commit))
        sort = params.get("sort")
        if sort is not None and sort not in _SORT_KEYS:
            raise BadRequest(f"sort must be one of {', '.join(sorted(_SORT_KEYS))}")
        key = {"lastModified": lambda r: r[1].date, "createdAt": lambda r: r[0].created_at,
               "downloads": lambda r: storage.stats(r[0].repo_id).downloads,
               "likes": lambda r: len(storage.stats(r[0].repo_id).likers)}.get(sort or "id")
        rows.sort(key=lambda r: r[0].repo_id)  # ties (equal downloads, likes...) stay in id order
        if key is not None:
            rows.sort(key=key, reverse=params.get("direction") != "1")
        expand = params.getlist("expand") or params.getlist("expand[]")
        fields = tuple(expand) if expand else _FULL_FIELDS if _bool_param(params.get("full")) else _LIST_FIELDS
        extra = (("cardData",) if _bool_param(params.get("cardData")) else ()) + \
                (("config",) if _bool_param(params.get("config")) else ())
        children = _children_counts(state) if "childrenModelCount" in fields else None
        items = [_model_json(state, repo, commit, fields=fields + extra, children=children) for repo, commit in rows]
        try:
            limit = int(params["limit"]) if params.get("limit") else 1000
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        return _paged(request, items, max(1, min(limit, 1000)))

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        """The Hub's answer: 400 with `errors` (ModelCard.validate raises the text, upload_folder the messages),
        else 200 with `warnings` (upload_folder turns them into Python warnings)."""
        body = await _read_json(request)
        content = body.get("content", "")
        if not isinstance(content, str):
            raise BadRequest("validate-yaml needs 'content': the README text as a string")
        try:
            errors, warnings = card_problems(front_matter(content))
        except BadRequest as err:
            errors, warnings = [err.message], []
        if errors:
            return JSONResponse({"error": f"Invalid metadata in README.md: {'; '.join(errors)}",
                                 "errors": [{"message": m} for m in errors]}, status_code=400)
        return {"errors": [], "warnings": [{"message": m} for m in warnings]}


# ---- files: resolve, tree, paths-info, refs, commits ---------------------------------------------------


def _add_community_routes(app: FastAPI, state: HubState) -> None:
    """Likes (the Hub's `like` route, `unlike`, `list_repo_likers`) and organisation members."""
    storage = state.storage

    async def like(ns: str, name: str, request: Request, liked: bool):
        repo_id = f"{ns}/{name}"
        user = _caller(state, request)
        _visible_repo(state, repo_id, user)
        user = require_write_token(user)
        await run_in_threadpool(storage.set_like, repo_id, user.name, liked)
        return {}

    @app.post("/api/models/{ns:hubseg}/{name:hubseg}/like")
    async def like_repo(ns: str, name: str, request: Request):
        return await like(ns, name, request, True)

    @app.delete("/api/models/{ns:hubseg}/{name:hubseg}/like")
    async def unlike_repo(ns: str, name: str, request: Request):
        return await like(ns, name, request, False)

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/likers")
    def likers(ns: str, name: str, request: Request):
        repo_id = f"{ns}/{name}"
        _visible_repo(state, repo_id, _caller(state, request))
        return _paged(request, [_user_json(u) for u in storage.stats(repo_id).likers], 1000)

    @app.get("/api/organizations/{org:hubseg}/members")
    def organization_members(org: str, request: Request):
        members = state.users.current().orgs.get(org)
        if members is None:
            raise NotFound(f"Organization {org} not found")
        return _paged(request, [_user_json(m) for m in sorted(members)], 500)


def _user_json(name: str) -> dict:
    return {"user": name, "fullname": name, "avatarUrl": "", "type": "user", "isPro": False}


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


def _tree_entry(path: str, entry: dict) -> dict:
    return {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}


def _folder_entry(path: str, commit: Commit) -> dict:
    prefix = path + "/"
    listing = sorted((p, e["oid"]) for p, e in commit.tree.items() if p.startswith(prefix))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(listing).encode()).hexdigest(), "path": path}


def _last_commit(state: HubState, repo_id: str, head: Commit, path: str) -> dict:
    """The newest commit that changed `path` (a file or a folder), as tree listings report it."""
    def touched(commit: Commit) -> object:
        return commit.tree.get(path) or sorted((p, e["oid"]) for p, e in commit.tree.items() if p.startswith(path + "/"))

    history = state.storage.history(repo_id, head)
    found = history[0]
    for older in history[1:]:
        if touched(older) != touched(found):
            break
        found = older
    return {"id": found.id, "title": found.summary, "date": found.date}


def _counts_as_download(path: str, commit: Commit) -> bool:
    """Whether a whole-file GET of `path` counts as a download of the model, as the Hub counts them: config.json,
    or a weights file in a repo without one. A HEAD or a range read (a header, a few layers) is not a download."""
    if "config.json" in commit.tree:
        return path == "config.json"
    return path.endswith(_WEIGHT_SUFFIXES)


def _add_file_routes(app: FastAPI, state: HubState) -> None:
    storage = state.storage

    def locate(ns: str, name: str, revision: str, request: Request) -> tuple[str, Commit]:
        repo_id = f"{ns}/{name}"
        _visible_repo(state, repo_id, _caller(state, request))
        return repo_id, storage.resolve(repo_id, revision)

    @app.api_route("/{ns:hubseg}/{name:hubseg}/resolve/{revision:hubseg}/{path:hubpath}", methods=["GET", "HEAD"])
    def resolve(ns: str, name: str, revision: str, path: str, request: Request):
        repo_id, commit = locate(ns, name, revision, request)
        entry = commit.tree.get(path)
        if entry is None:
            raise EntryNotFound(f"{path} does not exist on {revision}", headers={"X-Repo-Commit": commit.id})
        size = entry["size"]
        headers = {"X-Repo-Commit": commit.id, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        span = _parse_range(request.headers.get("range"), size)
        start, end = span if span else (0, size)
        headers["Content-Length"] = str(end - start)
        status = 200
        if span:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        if span is None and _counts_as_download(path, commit):
            storage.count_download(repo_id)
        return StreamingResponse(_stream(storage.blob_path(entry["sha256"]), start, end), status_code=status,
                                 headers=headers)

    def tree(ns: str, name: str, revision: str, path: str, request: Request):
        repo_id, commit = locate(ns, name, revision, request)
        path = path.strip("/")
        if path:
            check_path(path)
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.tree):
            raise EntryNotFound(f"{path} is not a folder on {revision}")
        recursive = _bool_param(request.query_params.get("recursive"))
        entries: dict[str, dict] = {}
        for file_path, entry in sorted(commit.tree.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):
                folder = prefix + "/".join(parts[:i])
                entries.setdefault(folder, _folder_entry(folder, commit))
            if recursive or len(parts) == 1:
                entries[file_path] = _tree_entry(file_path, entry)
        items = sorted(entries.values(), key=lambda e: (e["type"] != "directory", e["path"]))
        if _bool_param(request.query_params.get("expand")):
            for item in items:
                item["lastCommit"] = _last_commit(state, repo_id, commit, item["path"])
        return _paged(request, items, 1000)

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}")
    def tree_root(ns: str, name: str, revision: str, request: Request):
        return tree(ns, name, revision, "", request)

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}/{path:hubpath}")
    def tree_path(ns: str, name: str, revision: str, path: str, request: Request):
        return tree(ns, name, revision, path, request)

    @app.post("/api/models/{ns:hubseg}/{name:hubseg}/paths-info/{revision:hubseg}")
    async def paths_info(ns: str, name: str, revision: str, request: Request):
        repo_id, commit = locate(ns, name, revision, request)
        _check_declared_length(request)
        form = await request.form()
        paths = [str(p) for p in form.getlist("paths")]
        expand = _bool_param(str(form.get("expand") or ""))
        found = []
        for path in paths:
            path = path.strip("/")
            if path in commit.tree:
                found.append(_tree_entry(path, commit.tree[path]))
            elif path and any(p.startswith(path + "/") for p in commit.tree):
                found.append(_folder_entry(path, commit))
            else:
                continue
            if expand:
                found[-1]["lastCommit"] = _last_commit(state, repo_id, commit, path)
        return found

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/refs")
    def refs(ns: str, name: str, request: Request):
        repo_id = f"{ns}/{name}"
        _visible_repo(state, repo_id, _caller(state, request))
        branches, prs = [], []
        for ref, commit_id in storage.refs(repo_id).items():
            if ref.startswith("refs/heads/"):
                branches.append({"name": ref[len("refs/heads/"):], "ref": ref, "targetCommit": commit_id})
            elif ref.startswith("refs/pr/"):
                prs.append({"name": ref, "ref": ref, "targetCommit": commit_id})
        prs.sort(key=lambda r: int(r["ref"].rsplit("/", 1)[1]))
        data = {"branches": branches, "tags": [], "converts": []}
        if _bool_param(request.query_params.get("include_prs")):
            data["pullRequests"] = prs
        return data

    @app.get("/api/models/{ns:hubseg}/{name:hubseg}/commits/{revision:hubseg}")
    def commits(ns: str, name: str, revision: str, request: Request):
        repo_id, head = locate(ns, name, revision, request)
        items = [{"id": c.id, "title": c.summary, "message": c.description, "date": c.date,
                  "authors": [{"user": c.author}]} for c in storage.history(repo_id, head)]
        return _paged(request, items, 50)


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


# ---- preupload and commit ----------------------------------------------------------------------------


def _parse_commit_payload(body: bytes) -> tuple[dict, list[tuple[str, str, bytes | None]]]:
    """The NDJSON commit body as (header value, [(kind, path, content)]); BadRequest on anything malformed."""
    header, operations = None, []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = load_json(line)
        except ValueError as err:
            raise BadRequest(f"Malformed NDJSON commit payload, line {number}: {err}; send one JSON object a line") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise BadRequest(f"Malformed NDJSON commit payload, line {number}: "
                             "expected {\"key\": ..., \"value\": {...}}")
        key, value = item.get("key"), item["value"]
        if key == "header":
            if header is not None or not isinstance(value.get("summary"), str):
                raise BadRequest(f"Commit payload line {number}: one header with a string summary is required")
            header = value
            continue
        if header is None:
            raise BadRequest("Commit payload must start with a header line")
        path = value.get("path")
        if not isinstance(path, str):
            raise BadRequest(f"Commit payload line {number}: 'path' must be a string")
        if key == "file":
            if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                raise BadRequest(f"Commit payload line {number}: file content must be a base64 string")
            try:
                content = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"Commit payload line {number}: invalid base64 content for {path}") from None
            operations.append(("file", check_path(path), content))
        elif key in ("deletedFile", "deletedFolder"):
            operations.append((key, check_path(path.rstrip("/") if key == "deletedFolder" else path), None))
        elif key == "lfsFile":
            raise BadRequest("LFS uploads are not supported by this hub; preupload answers 'regular' for every file")
        else:
            raise BadRequest(f"Commit payload line {number}: unknown key {key!r}")
    if header is None:
        raise BadRequest("Commit payload is empty: a header line is required")
    if not header["summary"].strip():
        raise BadRequest("A commit needs a non-empty summary")
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or not re.fullmatch(r"[0-9a-f]{40}", parent)):
        raise BadRequest("parentCommit must be a 40-character commit id")
    return header, operations


def _add_commit_routes(app: FastAPI, state: HubState) -> None:
    storage = state.storage

    def writer(ns: str, name: str, revision: str, request: Request) -> tuple[str, User, bool]:
        """(repo id, committer, create_pr) after the checks every write shares.

        Anyone with a write token who can see a repo may open a PR on it (that is how card fixes are
        proposed on the Hub); pushing to a branch needs write access to the namespace; pushing to
        `refs/pr/N` is checked against the PR's author when the commit runs.
        """
        repo_id = f"{ns}/{name}"
        create_pr = _bool_param(request.query_params.get("create_pr"))
        user = _caller(state, request)
        _visible_repo(state, repo_id, user)
        user = require_write_token(user)
        ref = storage.ref_name(revision)
        if not create_pr and ref is not None and not ref.startswith("refs/pr/"):
            require_write(user, ns)
        return repo_id, user, create_pr

    @app.post("/api/models/{ns:hubseg}/{name:hubseg}/preupload/{revision:hubseg}")
    async def preupload(ns: str, name: str, revision: str, request: Request):
        repo_id, _, _ = writer(ns, name, revision, request)
        body = await _read_json(request)
        files = body.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise BadRequest("preupload needs 'files': a list of {path, size, sample}")
        try:
            tree = storage.resolve(repo_id, revision).tree
        except HubError:
            tree = {}
        answer = []
        for item in files:
            path = check_path(str(item.get("path", "")))
            size = item.get("size")
            # A regular upload travels base64-encoded in the commit body: 4 bytes for every 3.
            if isinstance(size, int) and -(-size // 3) * 4 > state.max_upload_bytes:
                raise PayloadTooLarge(f"{path} is {size} bytes, too large for this hub's upload limit of "
                                      f"{state.max_upload_bytes} bytes (base64-encoded in the commit body)")
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False,
                           "oid": tree.get(path, {}).get("oid")})
        return {"files": answer}

    @app.post("/api/models/{ns:hubseg}/{name:hubseg}/commit/{revision:hubseg}")
    async def commit(ns: str, name: str, revision: str, request: Request):
        repo_id, user, create_pr = writer(ns, name, revision, request)
        _check_declared_length(request)
        header, parsed = _parse_commit_payload(await request.body())

        def run() -> tuple[Commit, int | None]:
            operations: list[Put | Delete] = []
            for kind, path, content in parsed:
                if kind == "file":
                    if path == "README.md":  # the Hub refuses invalid card metadata
                        errors, _ = card_problems(front_matter(content.decode("utf-8", "replace")))
                        if errors:
                            raise BadRequest(f"Invalid metadata in README.md: {'; '.join(errors)}")
                    operations.append(Put(path, storage.put_blob(content)))
                else:
                    operations.append(Delete(path, folder=kind == "deletedFolder"))
            return state.discussions.commit(
                repo_id, revision, operations, summary=header["summary"].strip(),
                description=str(header.get("description") or ""), author=user.name,
                parent_commit=header.get("parentCommit"), create_pr=create_pr, may_write_revision=user.can_write(ns))

        new_commit, pr_num = await run_in_threadpool(run)
        base = _base_url(request)
        return {"success": True, "commitOid": new_commit.id, "commitUrl": f"{base}/{repo_id}/commit/{new_commit.id}",
                "commitMessage": new_commit.summary,
                "pullRequestUrl": f"{base}/{repo_id}/discussions/{pr_num}" if pr_num else None}


# ---- discussions and pull requests -------------------------------------------------------------------


def _thread_json(repo_id: str, thread: dict, *, details: bool = False, diff: str | None = None,
                 conflicts: list[str] | None = None) -> dict:
    data = {"num": thread["num"], "title": thread["title"], "status": thread["status"],
            "author": {"name": thread["author"], "type": "user"}, "createdAt": thread["createdAt"],
            "repo": {"name": repo_id, "type": "model"}, "isPullRequest": thread["isPullRequest"],
            "numComments": sum(1 for e in thread["events"] if e["type"] == "comment"), "pinned": False}
    if details:
        data["events"] = thread["events"]
        if thread["isPullRequest"]:
            data["changes"] = {"base": thread["base"], "mergeCommitId": thread.get("mergeCommitId")}
            data["filesWithConflicts"] = conflicts or []
        if diff is not None:
            data["diff"] = diff
    return data


def _add_discussion_routes(app: FastAPI, state: HubState) -> None:
    discussions = state.discussions
    prefix = "/api/models/{ns:hubseg}/{name:hubseg}/discussions"

    def thread_of(ns: str, name: str, num: int, request: Request) -> tuple[str, User | None, dict]:
        repo_id = f"{ns}/{name}"
        user = _caller(state, request)
        _visible_repo(state, repo_id, user)
        return repo_id, user, discussions.get(repo_id, num)

    def may_moderate(user: User, ns: str, thread: dict) -> None:
        if not (user.can_write(ns) or user.name == thread["author"]):
            raise Forbidden("Only the author or the repo's owners can do this")

    @app.get(prefix)
    def list_discussions(ns: str, name: str, request: Request):
        repo_id = f"{ns}/{name}"
        _visible_repo(state, repo_id, _caller(state, request))
        params = request.query_params
        wanted_type, status, author = params.get("type"), params.get("status"), params.get("author")
        threads = [t for t in discussions.list(repo_id)
                   if (wanted_type in (None, "all") or t["isPullRequest"] == (wanted_type == "pull_request"))
                   and (status in (None, "all") or t["status"] == status)
                   and (author is None or t["author"] == author)]
        try:
            page = max(0, int(params.get("p") or 0))
        except ValueError:
            raise BadRequest("p must be an integer") from None
        start = page * 50
        return {"discussions": [_thread_json(repo_id, t) for t in threads[start:start + 50]], "count": len(threads),
                "start": start, "numClosedDiscussions": sum(t["status"] == "closed" for t in threads)}

    @app.post(prefix)
    async def create_discussion(ns: str, name: str, request: Request):
        repo_id = f"{ns}/{name}"
        user = _caller(state, request)
        _visible_repo(state, repo_id, user)
        user = require_write_token(user)
        body = await _read_json(request)
        thread = await run_in_threadpool(
            lambda: discussions.create(repo_id, title=str(body.get("title") or ""),
                                       description=str(body.get("description") or ""), author=user.name,
                                       pull_request=bool(body.get("pullRequest"))))
        return {"num": thread["num"], "url": f"{_base_url(request)}/{repo_id}/discussions/{thread['num']}",
                "pullRequest": thread["isPullRequest"]}

    @app.get(prefix + "/{num:int}")
    def discussion_details(ns: str, name: str, num: int, request: Request):
        repo_id, _, thread = thread_of(ns, name, num, request)
        diff, conflicts = None, None
        if thread["isPullRequest"] and thread["status"] != "merged":
            diff, conflicts = discussions.diff(repo_id, thread)
            diff = diff if _bool_param(request.query_params.get("diff")) else None
        return _thread_json(repo_id, thread, details=True, diff=diff, conflicts=conflicts)

    @app.post(prefix + "/{num:int}/comment")
    async def comment(ns: str, name: str, num: int, request: Request):
        repo_id, user, _ = thread_of(ns, name, num, request)
        user = require_write_token(user)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: discussions.comment(repo_id, num, author=user.name, text=str(body.get("comment") or "")))
        return {"newMessage": event}

    @app.post(prefix + "/{num:int}/status")
    async def change_status(ns: str, name: str, num: int, request: Request):
        repo_id, user, thread = thread_of(ns, name, num, request)
        user = require_write_token(user)
        may_moderate(user, ns, thread)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: discussions.change_status(repo_id, num, author=user.name, status=str(body.get("status")),
                                              comment=body.get("comment")))
        return {"newStatus": event}

    @app.post(prefix + "/{num:int}/title")
    async def rename(ns: str, name: str, num: int, request: Request):
        repo_id, user, thread = thread_of(ns, name, num, request)
        user = require_write_token(user)
        may_moderate(user, ns, thread)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: discussions.rename(repo_id, num, author=user.name, title=str(body.get("title") or "")))
        return {"newTitle": event}

    @app.post(prefix + "/{num:int}/merge")
    async def merge(ns: str, name: str, num: int, request: Request):
        repo_id, user, _ = thread_of(ns, name, num, request)
        user = require_write(user, ns)
        body = await _read_json(request)
        merged = await run_in_threadpool(
            lambda: discussions.merge(repo_id, num, author=user.name, comment=body.get("comment")))
        return {"mergeCommitId": merged.id}
