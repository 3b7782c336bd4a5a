"""The HTTP face of the local hub: a FastAPI app speaking the subset of the Hub API that
`huggingface_hub` uses (repos, model and dataset info and listing, resolve with ranges and ETags,
tree and paths-info, branches and tags, preupload and NDJSON commits, pull requests and discussions,
likes and download counts, organisation members, whoami, validate-yaml).

Model and dataset repos are served by the same routes: `/api/{models|datasets}/...` carries the type
(the `hubtype` convertor), and files resolve at `/{repo}/resolve/...` for models and
`/datasets/{repo}/resolve/...` for datasets, as on the Hub. Every error carries the Hub's status and
`X-Error-Code`, so the client raises its usual exceptions. Paths are routed on the raw (still
percent-encoded) request path: the client encodes `refs/pr/1` as `refs%2Fpr%2F1`, and a decoded path
could not tell it from a folder.

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
from collections.abc import Callable, Iterator
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
from .lfs import LfsFiles
from .storage import REPO_TYPES, Blob, Commit, Delete, Put, RepoMeta, Storage, check_path, check_ref_name, check_repo_id

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
#: Every body but a commit's: settings, discussions, preupload lists, a README to validate (the Hub's
#: READMEs are far smaller; huggingface_hub sends preupload lists in chunks of a few hundred files).
MAX_JSON_BODY_BYTES = 10 * 1024**2
_COMMIT_PATH = re.compile(r"^/api/(?:models|datasets)/[^/]+/[^/]+/commit/[^/]+$")
_CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: What a listing shows of each repo by default, and with `full=True`, per repo type (as the Hub lists them).
_LIST_FIELDS = {"model": ("_id", "id", "modelId", "likes", "downloads", "trendingScore", "private", "tags",
                          "pipeline_tag", "library_name", "createdAt"),
                "dataset": ("_id", "id", "author", "sha", "lastModified", "private", "gated", "disabled", "likes",
                            "downloads", "trendingScore", "tags", "createdAt")}
_FULL_FIELDS = {"model": _LIST_FIELDS["model"] + ("author", "sha", "lastModified", "gated", "disabled", "siblings"),
                "dataset": _LIST_FIELDS["dataset"] + ("siblings", "cardData")}
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


class _RepoType(Convertor):
    """The plural of a repo type in `/api/` URLs (`models`, `datasets`), as the singular type."""

    regex = "|".join(f"{kind}s" for kind in REPO_TYPES)

    def convert(self, value: str) -> str:
        return value[:-1]

    def to_string(self, value: str) -> str:
        return value + "s"


register_url_convertor("hubseg", _Segment())
register_url_convertor("hubpath", _Rest())
register_url_convertor("hubtype", _RepoType())


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
class Repos:
    """The repos of one type: their storage, discussions and derived metadata."""

    kind: str  # "model" | "dataset"
    storage: Storage
    discussions: Discussions
    catalog: Catalog

    @classmethod
    def open(cls, storage: Storage) -> "Repos":
        return cls(kind=storage.repo_type, storage=storage, discussions=Discussions(storage), catalog=Catalog(storage))

    def url(self, request: Request, repo_id: str) -> str:
        """The repo's web URL, from which the client tells its type (`/datasets/...` for a dataset)."""
        return f"{_base_url(request)}/{'' if self.kind == 'model' else self.kind + 's/'}{repo_id}"


@dataclass
class HubState:
    """Everything one app serves: the repos of each type, LFS rules, users, limits."""

    repos: dict[str, Repos]
    lfs: LfsFiles
    users: UsersFile
    max_upload_bytes: int


def create_app(root: str | Path, *, users_file: str | Path | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The hub app serving the repos under `root` (created if missing), with the users of `users_file`."""
    storage = Storage(root)
    state = HubState(repos={kind: Repos.open(storage.of(kind)) for kind in REPO_TYPES}, lfs=LfsFiles(storage),
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
    _add_ref_routes(app, state)
    _add_commit_routes(app, state)
    _add_discussion_routes(app, state)
    _add_community_routes(app, state)
    return app


# ---- shared helpers ----------------------------------------------------------------------------------


def _caller(state: HubState, request: Request) -> User | None:
    return state.users.current().identify(request.headers.get("authorization"))


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _visible_repo(repos: Repos, repo_id: str, user: User | None) -> RepoMeta:
    """The repo if the caller may see it; a private repo is RepoNotFound to others, as on the Hub."""
    repo = repos.storage.repo(repo_id)
    namespace = repo_id.split("/")[0]
    if repo.private and (user is None or not user.can_read_private(namespace)):
        raise RepoNotFound(f"Repository {repo_id} not found")
    return repo


def _target(state: HubState, kind: str, ns: str, name: str, request: Request) -> tuple[Repos, str, User | None]:
    """(the repos of `kind`, the repo id, the caller) once the caller may see the repo; what every repo route
    checks first."""
    repos, repo_id = state.repos[kind], f"{ns}/{name}"
    user = _caller(state, request)
    _visible_repo(repos, repo_id, user)
    return repos, repo_id, user


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


def _paged(request: Request, items: list, page_size: int, render: Callable[[object], object] | None = None) -> JSONResponse:
    """One page of `items` with a GitHub-style `Link: <...>; rel="next"` header, as the client paginates;
    `render` turns each item of the page (only) into what is sent."""
    try:
        start = max(0, int(request.query_params.get("cursor") or 0))
    except ValueError:
        raise BadRequest("cursor must be an integer") from None
    headers = {}
    if start + page_size < len(items):
        headers["Link"] = f'<{request.url.include_query_params(cursor=start + page_size)}>; rel="next"'
    page = items[start:start + page_size]
    return JSONResponse(page if render is None else [render(item) for item in page], headers=headers)


# ---- repos, repo info, listing -----------------------------------------------------------------------


def _children_counts(repos: Repos) -> Counter:
    """How many public repos name each repo id as a base model (the Hub's childrenModelCount)."""
    return Counter(base for _, _, summary in _all_repos(repos, None) for base in set(summary.base_models))


def _siblings(state: HubState, commit: Commit, blobs: bool) -> list[dict]:
    """The files of a commit as repo info lists them; with `blobs`, their sizes, blob ids and LFS info."""
    siblings = []
    for path, entry in sorted(commit.tree.items()):
        sibling = {"rfilename": path}
        if blobs:
            listed = state.lfs.tree_entry(commit, path)
            sibling.update(size=entry["size"], blobId=listed["oid"])
            if "lfs" in listed:
                lfs = listed["lfs"]
                sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        siblings.append(sibling)
    return siblings


def _model_fields(repos: Repos, repo_id: str, summary: RepoSummary, wanted: set[str] | None,
                  children: Counter | None) -> dict:
    """What a model's info has beyond any repo's: its library, task, config, weights and base models."""
    data: dict = {"modelId": repo_id, "library_name": summary.library_name, "pipeline_tag": summary.pipeline_tag,
                  "spaces": []}
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
        data["childrenModelCount"] = (children if children is not None else _children_counts(repos))[repo_id]
    return data


def _repo_json(state: HubState, repos: Repos, repo: RepoMeta, commit: Commit, *, blobs: bool = False,
               fields: tuple[str, ...] | None = None, children: Counter | None = None) -> dict:
    """A repo as the Hub's model-info or dataset-info JSON; `fields` limits it to those keys (plus `_id` and `id`).

    `children` (from `_children_counts`) saves a model listing from recounting for every repo.
    """
    summary: RepoSummary = repos.catalog.summary(repo.repo_id, commit.id)
    stats = repos.storage.stats(repo.repo_id)
    wanted = set(fields) | {"_id", "id"} if fields is not None else None
    key = repo.repo_id if repos.kind == "model" else f"{repos.kind}/{repo.repo_id}"  # a model and a dataset may share an id
    data: dict = {"_id": hashlib.sha1(key.encode()).hexdigest()[:24], "id": repo.repo_id,
                  "author": repo.repo_id.split("/")[0], "sha": commit.id, "lastModified": commit.date,
                  "createdAt": repo.created_at, "private": repo.private, "gated": False, "disabled": False,
                  "downloads": stats.downloads, "likes": len(stats.likers), "trendingScore": 0, "tags": summary.tags,
                  "usedStorage": sum(e["size"] for e in commit.tree.values())}
    if wanted is None or "siblings" in wanted:
        data["siblings"] = _siblings(state, commit, blobs)
    if summary.card:
        data["cardData"] = summary.card
    if repos.kind == "model":
        data.update(_model_fields(repos, repo.repo_id, summary, wanted, children))
    for key in [k for k in data if data[k] is None]:
        del data[key]
    return data if wanted is None else {k: v for k, v in data.items() if k in wanted}


def _all_repos(repos: Repos, user: User | None) -> Iterator[tuple[RepoMeta, Commit, RepoSummary]]:
    """Every repo of one type the caller may see, with main's head and its summary."""
    for repo in repos.storage.list_repos():
        if repo.private and (user is None or not user.can_read_private(repo.repo_id.split("/")[0])):
            continue
        try:
            commit = repos.storage.resolve(repo.repo_id, "main")
        except HubError:
            continue  # deleted while listing
        yield repo, commit, repos.catalog.summary(repo.repo_id, commit.id)


def _listed(repos: Repos, request: Request, user: User | None) -> list[tuple[RepoMeta, Commit]]:
    """The repos a listing's filters keep (`filter` tags, `author`, `search`, `pipeline_tag`), sorted as asked."""
    params = request.query_params
    filters, author = params.getlist("filter"), params.get("author")
    searches = [s.lower() for s in params.getlist("search") if s]  # list_datasets may send two: all must match
    pipeline_tag = params.get("pipeline_tag")
    rows = []
    for repo, commit, summary in _all_repos(repos, user):
        tags = set(summary.tags)
        if any(f not in tags for f in filters) or (author and repo.repo_id.split("/")[0] != author):
            continue
        if any(s not in repo.repo_id.lower() for s in searches) or (pipeline_tag and summary.pipeline_tag != pipeline_tag):
            continue
        rows.append((repo, commit))
    sort = params.get("sort")
    if sort is not None and sort not in _SORT_KEYS:
        raise BadRequest(f"sort must be one of {', '.join(sorted(_SORT_KEYS))}")
    storage = repos.storage
    key = {"lastModified": lambda r: r[1].date, "createdAt": lambda r: r[0].created_at,
           "downloads": lambda r: storage.stats(r[0].repo_id).downloads,
           "likes": lambda r: len(storage.stats(r[0].repo_id).likers)}.get(sort or "id")
    rows.sort(key=lambda r: r[0].repo_id)  # ties (equal downloads, likes...) stay in id order
    if key is not None:
        rows.sort(key=key, reverse=params.get("direction") != "1")
    return rows


def _add_repo_routes(app: FastAPI, state: HubState) -> None:

    @app.get("/api/whoami-v2")
    def whoami(request: Request):
        user = require_user(_caller(state, request))
        return {"type": "user", "id": hashlib.sha1(user.name.encode()).hexdigest()[:24], "name": user.name,
                "fullname": user.fullname, "avatarUrl": f"/avatars/{user.name}.svg", "isPro": False, "canPay": False,
                "emailVerified": True,
                "orgs": [{"type": "org", "name": org, "fullname": org} for org in user.orgs],
                "auth": {"type": "access_token",
                         "accessToken": {"displayName": user.token_name, "role": user.role}}}

    def repos_of(body: dict) -> Repos:
        kind = body.get("type") or "model"
        if kind not in state.repos:
            raise BadRequest(f"This hub hosts {' and '.join(k + ' repos' for k in REPO_TYPES)}, not {kind!r} repos")
        return state.repos[kind]

    @app.post("/api/repos/create")
    async def create_repo(request: Request):
        user = require_write_token(_caller(state, request))
        body = await _read_json(request)
        repos = repos_of(body)
        name, organization = body.get("name"), body.get("organization")
        if not isinstance(name, str):
            raise BadRequest("create_repo needs a 'name'")
        namespace = organization or user.name
        repo_id = f"{namespace}/{name}"
        check_repo_id(repo_id)
        require_write(user, namespace)
        private = bool(body.get("private")) or body.get("visibility") == "private"
        url = repos.url(request, repo_id)
        try:
            await run_in_threadpool(repos.storage.create_repo, repo_id, private=private, author=user.name)
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
        repos = repos_of(body)
        repo_id = f"{body.get('organization') or user.name}/{body.get('name')}"
        _visible_repo(repos, repo_id, user)
        require_write(user, repo_id.split("/")[0])
        await run_in_threadpool(repos.storage.delete_repo, repo_id)
        return Response(status_code=200)

    @app.put("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/settings")
    async def update_settings(kind: str, ns: str, name: str, request: Request):
        repos, repo_id, user = _target(state, kind, ns, name, request)
        require_write(user, ns)
        body = await _read_json(request)
        if "private" in body or "visibility" in body:
            private = bool(body["private"]) if "private" in body else body["visibility"] == "private"
            await run_in_threadpool(repos.storage.update_repo, repo_id, private=private)
        return {"private": repos.storage.repo(repo_id).private}

    def repo_info(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id = state.repos[kind], f"{ns}/{name}"
        repo = _visible_repo(repos, repo_id, _caller(state, request))
        commit = repos.storage.resolve(repo_id, revision)
        expand = request.query_params.getlist("expand") or request.query_params.getlist("expand[]")
        return _repo_json(state, repos, repo, commit, blobs=_bool_param(request.query_params.get("blobs")),
                          fields=tuple(expand) if expand else None)

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}")
    def repo_info_main(kind: str, ns: str, name: str, request: Request):
        return repo_info(kind, ns, name, "main", request)

    @app.get("/api/{kind:hubtype}/{name:hubseg}")
    @app.get("/api/{kind:hubtype}/{name:hubseg}/revision/{revision:hubseg}")
    def repo_info_without_namespace(kind: str, name: str):
        """The Hub's legacy ids without a namespace (`gpt2`): none exists here, so the Hub's own not-found answer."""
        raise RepoNotFound(f"Repository Not Found for url: /api/{kind}/{name}. Please make sure you specified the "
                           "correct `repo_id` and `repo_type`.")

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/revision/{revision:hubseg}")
    def repo_info_revision(kind: str, ns: str, name: str, revision: str, request: Request):
        return repo_info(kind, ns, name, revision, request)

    @app.get("/api/{kind:hubtype}")
    def list_repos(kind: str, request: Request):
        repos, params = state.repos[kind], request.query_params
        rows = _listed(repos, request, _caller(state, request))
        expand = params.getlist("expand") or params.getlist("expand[]")
        fields = tuple(expand) if expand else (_FULL_FIELDS if _bool_param(params.get("full")) else _LIST_FIELDS)[kind]
        extra = (("cardData",) if _bool_param(params.get("cardData")) else ()) + \
                (("config",) if _bool_param(params.get("config")) else ())
        children = _children_counts(repos) if kind == "model" and "childrenModelCount" in fields else None
        items = [_repo_json(state, repos, repo, commit, fields=fields + extra, children=children) for repo, commit in rows]
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


# ---- likes and organisations --------------------------------------------------------------------------


def _add_community_routes(app: FastAPI, state: HubState) -> None:
    """Likes (the Hub's `like` route, `unlike`, `list_repo_likers`) and organisation members."""

    async def like(kind: str, ns: str, name: str, request: Request, liked: bool):
        repos, repo_id, user = _target(state, kind, ns, name, request)
        user = require_write_token(user)
        await run_in_threadpool(repos.storage.set_like, repo_id, user.name, liked)
        return {}

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/like")
    async def like_repo(kind: str, ns: str, name: str, request: Request):
        return await like(kind, ns, name, request, True)

    @app.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/like")
    async def unlike_repo(kind: str, ns: str, name: str, request: Request):
        return await like(kind, ns, name, request, False)

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/likers")
    def likers(kind: str, ns: str, name: str, request: Request):
        repos, repo_id, _ = _target(state, kind, ns, name, request)
        return _paged(request, [_user_json(u) for u in repos.storage.stats(repo_id).likers], 1000)

    @app.get("/api/organizations/{org:hubseg}/members")
    def organization_members(org: str, request: Request):
        members = state.users.current().orgs.get(org)
        if members is None:
            raise NotFound(f"Organization {org} not found")
        return _paged(request, [_user_json(m) for m in sorted(members)], 500)


def _user_json(name: str) -> dict:
    return {"user": name, "fullname": name, "avatarUrl": "", "type": "user", "isPro": False}


# ---- files: resolve, tree, paths-info, commits -----------------------------------------------------------


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


def _resolve_file(state: HubState, kind: str, ns: str, name: str, revision: str, path: str, request: Request):
    """A file of a repo: 304 for an `If-None-Match` naming its ETag, else the whole file or one range."""
    repos, repo_id, _ = _target(state, kind, ns, name, request)
    commit = repos.storage.resolve(repo_id, revision)
    entry = commit.tree.get(path)
    if entry is None:
        raise EntryNotFound(f"{path} does not exist on {revision}", headers={"X-Repo-Commit": commit.id})
    headers = _file_headers(state, commit, path)
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


def _add_file_routes(app: FastAPI, state: HubState) -> None:

    def locate(kind: str, ns: str, name: str, revision: str, request: Request) -> tuple[Repos, str, Commit]:
        repos, repo_id, _ = _target(state, kind, ns, name, request)
        return repos, repo_id, repos.storage.resolve(repo_id, revision)

    # The dataset route first: `/datasets/...` must not be read as a model in the reserved namespace "datasets".
    @app.api_route("/datasets/{ns:hubseg}/{name:hubseg}/resolve/{revision:hubseg}/{path:hubpath}", methods=["GET", "HEAD"])
    def resolve_dataset_file(ns: str, name: str, revision: str, path: str, request: Request):
        return _resolve_file(state, "dataset", ns, name, revision, path, request)

    @app.api_route("/{ns:hubseg}/{name:hubseg}/resolve/{revision:hubseg}/{path:hubpath}", methods=["GET", "HEAD"])
    def resolve_model_file(ns: str, name: str, revision: str, path: str, request: Request):
        return _resolve_file(state, "model", ns, name, revision, path, request)

    def tree(kind: str, ns: str, name: str, revision: str, path: str, request: Request):
        repos, repo_id, commit = locate(kind, ns, name, revision, request)
        path = path.strip("/")
        if path:
            check_path(path)
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.tree):
            raise EntryNotFound(f"{path} is not a folder on {revision}")
        recursive = _bool_param(request.query_params.get("recursive"))
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
        expand = _bool_param(request.query_params.get("expand"))

        def render(item: dict) -> dict:
            # Only the page sent gets its entries' ids, LFS rules and last commits: a tree may list 10^5 files.
            if item["type"] == "file":
                item = state.lfs.tree_entry(commit, item["path"])
            else:
                item = _folder_entry(item["path"], commit)
            if expand:
                item["lastCommit"] = _last_commit(repos, repo_id, commit, item["path"])
            return item

        return _paged(request, items, 1000, render)

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}")
    def tree_root(kind: str, ns: str, name: str, revision: str, request: Request):
        return tree(kind, ns, name, revision, "", request)

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tree/{revision:hubseg}/{path:hubpath}")
    def tree_path(kind: str, ns: str, name: str, revision: str, path: str, request: Request):
        return tree(kind, ns, name, revision, path, request)

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/paths-info/{revision:hubseg}")
    async def paths_info(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id, commit = locate(kind, ns, name, revision, request)
        _check_declared_length(request)
        form = await request.form()
        paths = [str(p) for p in form.getlist("paths")]
        expand = _bool_param(str(form.get("expand") or ""))
        found = []
        for path in paths:
            path = path.strip("/")
            if path in commit.tree:
                found.append(state.lfs.tree_entry(commit, path))
            elif path and any(p.startswith(path + "/") for p in commit.tree):
                found.append(_folder_entry(path, commit))
            else:
                continue
            if expand:
                found[-1]["lastCommit"] = _last_commit(repos, repo_id, commit, path)
        return found

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/commits/{revision:hubseg}")
    def commits(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id, head = locate(kind, ns, name, revision, request)
        items = [{"id": c.id, "title": c.summary, "message": c.description, "date": c.date,
                  "authors": [{"user": c.author}]} for c in repos.storage.history(repo_id, head)]
        return _paged(request, items, 50)


# ---- branches and tags ---------------------------------------------------------------------------------


def _ref_json(ref: str, commit_id: str) -> dict:
    """A ref as list_repo_refs reads it: branches and tags by their short name, pull requests by their ref."""
    short = ref.split("/", 2)[2] if ref.startswith(("refs/heads/", "refs/tags/")) else ref
    return {"name": short, "ref": ref, "targetCommit": commit_id}


def _add_ref_routes(app: FastAPI, state: HubState) -> None:
    """list_repo_refs, create_branch / delete_branch, create_tag / delete_tag. Moving refs needs write access
    to the repo's namespace; a name already taken by a branch or a tag is 409, as the client expects."""

    def ref_writer(kind: str, ns: str, name: str, request: Request) -> tuple[Repos, str]:
        repos, repo_id, user = _target(state, kind, ns, name, request)
        require_write(user, ns)
        return repos, repo_id

    @app.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/refs")
    def refs(kind: str, ns: str, name: str, request: Request):
        repos, repo_id, _ = _target(state, kind, ns, name, request)
        found: dict[str, list[dict]] = {"heads": [], "tags": [], "pr": []}
        for ref, commit_id in repos.storage.refs(repo_id).items():
            found.setdefault(ref.split("/")[1], []).append(_ref_json(ref, commit_id))
        found["pr"].sort(key=lambda r: int(r["ref"].rsplit("/", 1)[1]))
        data = {"branches": found["heads"], "tags": found["tags"], "converts": []}
        if _bool_param(request.query_params.get("include_prs")):
            data["pullRequests"] = found["pr"]
        return data

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/branch/{branch:hubseg}")
    async def create_branch(kind: str, ns: str, name: str, branch: str, request: Request):
        repos, repo_id = ref_writer(kind, ns, name, request)
        check_ref_name(branch, "branch")
        starting_point = (await _read_json(request)).get("startingPoint") or "main"
        if not isinstance(starting_point, str):
            raise BadRequest("startingPoint must be a revision: a branch, a tag or a commit id")
        commit = repos.storage.resolve(repo_id, starting_point)
        await run_in_threadpool(repos.storage.create_ref, repo_id, f"refs/heads/{branch}", commit.id)
        return _ref_json(f"refs/heads/{branch}", commit.id)

    @app.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/branch/{branch:hubseg}")
    async def delete_branch(kind: str, ns: str, name: str, branch: str, request: Request):
        repos, repo_id = ref_writer(kind, ns, name, request)
        await run_in_threadpool(repos.storage.delete_ref, repo_id, f"refs/heads/{check_ref_name(branch, 'branch')}")
        return {}

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tag/{revision:hubseg}")
    async def create_tag(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id = ref_writer(kind, ns, name, request)
        tag = (await _read_json(request)).get("tag")
        if not isinstance(tag, str):
            raise BadRequest("create_tag needs 'tag': the tag's name")
        check_ref_name(tag, "tag")
        commit = repos.storage.resolve(repo_id, revision)
        # A tag's message is accepted and not kept: git keeps it in a tag object, and no client call reads it.
        await run_in_threadpool(repos.storage.create_ref, repo_id, f"refs/tags/{tag}", commit.id)
        return _ref_json(f"refs/tags/{tag}", commit.id)

    @app.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tag/{tag:hubseg}")
    async def delete_tag(kind: str, ns: str, name: str, tag: str, request: Request):
        repos, repo_id = ref_writer(kind, ns, name, request)
        await run_in_threadpool(repos.storage.delete_ref, repo_id, f"refs/tags/{check_ref_name(tag, 'tag')}")
        return {}


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

    def writer(kind: str, ns: str, name: str, revision: str, request: Request) -> tuple[Repos, str, User, bool]:
        """(repos, repo id, committer, create_pr) after the checks every write shares.

        Anyone with a write token who can see a repo may open a PR on it (that is how card fixes are
        proposed on the Hub); pushing to a branch needs write access to the namespace; pushing to
        `refs/pr/N` is checked against the PR's author when the commit runs.
        """
        create_pr = _bool_param(request.query_params.get("create_pr"))
        repos, repo_id, user = _target(state, kind, ns, name, request)
        user = require_write_token(user)
        ref = repos.storage.ref_name(revision)
        if not create_pr and ref is not None and not ref.startswith("refs/pr/"):
            require_write(user, ns)
        return repos, repo_id, user, create_pr

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/preupload/{revision:hubseg}")
    async def preupload(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id, _, _ = writer(kind, ns, name, revision, request)
        body = await _read_json(request)
        files = body.get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise BadRequest("preupload needs 'files': a list of {path, size, sample}")
        try:
            tree = repos.storage.resolve(repo_id, revision).tree
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

    @app.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/commit/{revision:hubseg}")
    async def commit(kind: str, ns: str, name: str, revision: str, request: Request):
        repos, repo_id, user, create_pr = writer(kind, ns, name, revision, request)
        _check_declared_length(request)
        header, parsed = _parse_commit_payload(await request.body())

        def run() -> tuple[Commit, int | None]:
            operations: list[Put | Delete] = []
            for operation, path, content in parsed:
                if operation == "file":
                    if path == "README.md":  # the Hub refuses invalid card metadata
                        errors, _ = card_problems(front_matter(content.decode("utf-8", "replace")))
                        if errors:
                            raise BadRequest(f"Invalid metadata in README.md: {'; '.join(errors)}")
                    operations.append(Put(path, Blob.of(content), content))
                else:
                    operations.append(Delete(path, folder=operation == "deletedFolder"))
            return repos.discussions.commit(
                repo_id, revision, operations, summary=header["summary"].strip(),
                description=str(header.get("description") or ""), author=user.name,
                parent_commit=header.get("parentCommit"), create_pr=create_pr, may_write_revision=user.can_write(ns))

        new_commit, pr_num = await run_in_threadpool(run)
        url = repos.url(request, repo_id)
        return {"success": True, "commitOid": new_commit.id, "commitUrl": f"{url}/commit/{new_commit.id}",
                "commitMessage": new_commit.summary,
                "pullRequestUrl": f"{url}/discussions/{pr_num}" if pr_num else None}


# ---- discussions and pull requests -------------------------------------------------------------------


def _thread_json(kind: str, repo_id: str, thread: dict, *, details: bool = False, diff: str | None = None,
                 conflicts: list[str] | None = None) -> dict:
    data = {"num": thread["num"], "title": thread["title"], "status": thread["status"],
            "author": {"name": thread["author"], "type": "user"}, "createdAt": thread["createdAt"],
            "repo": {"name": repo_id, "type": kind}, "isPullRequest": thread["isPullRequest"],
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
    prefix = "/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/discussions"

    def thread_of(kind: str, ns: str, name: str, num: int, request: Request) -> tuple[Repos, str, User | None, dict]:
        repos, repo_id, user = _target(state, kind, ns, name, request)
        return repos, repo_id, user, repos.discussions.get(repo_id, num)

    def may_moderate(user: User, ns: str, thread: dict) -> None:
        if not (user.can_write(ns) or user.name == thread["author"]):
            raise Forbidden("Only the author or the repo's owners can do this")

    @app.get(prefix)
    def list_discussions(kind: str, ns: str, name: str, request: Request):
        repos, repo_id, _ = _target(state, kind, ns, name, request)
        params = request.query_params
        wanted_type, status, author = params.get("type"), params.get("status"), params.get("author")
        threads = [t for t in repos.discussions.list(repo_id)
                   if (wanted_type in (None, "all") or t["isPullRequest"] == (wanted_type == "pull_request"))
                   and (status in (None, "all") or t["status"] == status)
                   and (author is None or t["author"] == author)]
        try:
            page = max(0, int(params.get("p") or 0))
        except ValueError:
            raise BadRequest("p must be an integer") from None
        start = page * 50
        return {"discussions": [_thread_json(kind, repo_id, t) for t in threads[start:start + 50]],
                "count": len(threads), "start": start,
                "numClosedDiscussions": sum(t["status"] == "closed" for t in threads)}

    @app.post(prefix)
    async def create_discussion(kind: str, ns: str, name: str, request: Request):
        repos, repo_id, user = _target(state, kind, ns, name, request)
        user = require_write_token(user)
        body = await _read_json(request)
        thread = await run_in_threadpool(
            lambda: repos.discussions.create(repo_id, title=str(body.get("title") or ""),
                                             description=str(body.get("description") or ""), author=user.name,
                                             pull_request=bool(body.get("pullRequest"))))
        return {"num": thread["num"], "url": f"{repos.url(request, repo_id)}/discussions/{thread['num']}",
                "pullRequest": thread["isPullRequest"]}

    @app.get(prefix + "/{num:int}")
    def discussion_details(kind: str, ns: str, name: str, num: int, request: Request):
        repos, repo_id, _, thread = thread_of(kind, ns, name, num, request)
        diff, conflicts = None, None
        if thread["isPullRequest"] and thread["status"] != "merged":
            diff, conflicts = repos.discussions.diff(repo_id, thread)
            diff = diff if _bool_param(request.query_params.get("diff")) else None
        return _thread_json(kind, repo_id, thread, details=True, diff=diff, conflicts=conflicts)

    @app.post(prefix + "/{num:int}/comment")
    async def comment(kind: str, ns: str, name: str, num: int, request: Request):
        repos, repo_id, user, _ = thread_of(kind, ns, name, num, request)
        user = require_write_token(user)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: repos.discussions.comment(repo_id, num, author=user.name, text=str(body.get("comment") or "")))
        return {"newMessage": event}

    @app.post(prefix + "/{num:int}/status")
    async def change_status(kind: str, ns: str, name: str, num: int, request: Request):
        repos, repo_id, user, thread = thread_of(kind, ns, name, num, request)
        user = require_write_token(user)
        may_moderate(user, ns, thread)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: repos.discussions.change_status(repo_id, num, author=user.name, status=str(body.get("status")),
                                                    comment=body.get("comment")))
        return {"newStatus": event}

    @app.post(prefix + "/{num:int}/title")
    async def rename(kind: str, ns: str, name: str, num: int, request: Request):
        repos, repo_id, user, thread = thread_of(kind, ns, name, num, request)
        user = require_write_token(user)
        may_moderate(user, ns, thread)
        body = await _read_json(request)
        event = await run_in_threadpool(
            lambda: repos.discussions.rename(repo_id, num, author=user.name, title=str(body.get("title") or "")))
        return {"newTitle": event}

    @app.post(prefix + "/{num:int}/merge")
    async def merge(kind: str, ns: str, name: str, num: int, request: Request):
        repos, repo_id, user, _ = thread_of(kind, ns, name, num, request)
        user = require_write(user, ns)
        body = await _read_json(request)
        merged = await run_in_threadpool(
            lambda: repos.discussions.merge(repo_id, num, author=user.name, comment=body.get("comment")))
        return {"mergeCommitId": merged.id}
