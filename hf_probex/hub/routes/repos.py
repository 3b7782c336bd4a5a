"""Repos as a whole: whoami, create, delete and settings, model and dataset info (by revision too), the
listings (`list_models`, `list_datasets`, with their filters, sorts and expands), and validate-yaml."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..auth import User, require_user, require_write, require_write_token
from ..catalog import RepoSummary, card_problems, front_matter
from ..errors import BadRequest, HubError, RepoNotFound
from ..storage import REPO_TYPES, Commit, RepoMeta, check_repo_id
from .common import HubState, Repos, bool_param, caller, paged, read_json, state_of, target, visible_repo

router = APIRouter()

#: What a listing shows of each repo by default, and with `full=True`, per repo type (as the Hub lists them).
_LIST_FIELDS = {"model": ("_id", "id", "modelId", "likes", "downloads", "trendingScore", "private", "tags",
                          "pipeline_tag", "library_name", "createdAt"),
                "dataset": ("_id", "id", "author", "sha", "lastModified", "private", "gated", "disabled", "likes",
                            "downloads", "trendingScore", "tags", "createdAt")}
_FULL_FIELDS = {"model": _LIST_FIELDS["model"] + ("author", "sha", "lastModified", "gated", "disabled", "siblings"),
                "dataset": _LIST_FIELDS["dataset"] + ("siblings", "cardData")}
_SORT_KEYS = {"lastModified", "createdAt", "downloads", "likes", "trendingScore", "id"}


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


@router.get("/api/whoami-v2")
def whoami(request: Request):
    user = require_user(caller(request))
    return {"type": "user", "id": hashlib.sha1(user.name.encode()).hexdigest()[:24], "name": user.name,
            "fullname": user.fullname, "avatarUrl": f"/avatars/{user.name}.svg", "isPro": False, "canPay": False,
            "emailVerified": True,
            "orgs": [{"type": "org", "name": org, "fullname": org} for org in user.orgs],
            "auth": {"type": "access_token",
                     "accessToken": {"displayName": user.token_name, "role": user.role}}}


def _repos_of(request: Request, body: dict) -> Repos:
    kind = body.get("type") or "model"
    repos = state_of(request).repos
    if kind not in repos:
        raise BadRequest(f"This hub hosts {' and '.join(k + ' repos' for k in REPO_TYPES)}, not {kind!r} repos")
    return repos[kind]


@router.post("/api/repos/create")
async def create_repo(request: Request):
    user = require_write_token(caller(request))
    body = await read_json(request)
    repos = _repos_of(request, body)
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


@router.delete("/api/repos/delete")
async def delete_repo(request: Request):
    user = require_write_token(caller(request))
    body = await read_json(request)
    repos = _repos_of(request, body)
    repo_id = f"{body.get('organization') or user.name}/{body.get('name')}"
    visible_repo(repos, repo_id, user)
    require_write(user, repo_id.split("/")[0])
    await run_in_threadpool(repos.storage.delete_repo, repo_id)
    return Response(status_code=200)


@router.put("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/settings")
async def update_settings(kind: str, ns: str, name: str, request: Request):
    repos, repo_id, user = target(kind, ns, name, request)
    require_write(user, ns)
    body = await read_json(request)
    if "private" in body or "visibility" in body:
        private = bool(body["private"]) if "private" in body else body["visibility"] == "private"
        await run_in_threadpool(repos.storage.update_repo, repo_id, private=private)
    return {"private": repos.storage.repo(repo_id).private}


def _repo_info(kind: str, ns: str, name: str, revision: str, request: Request):
    state = state_of(request)
    repos, repo_id = state.repos[kind], f"{ns}/{name}"
    repo = visible_repo(repos, repo_id, caller(request))
    commit = repos.storage.resolve(repo_id, revision)
    expand = request.query_params.getlist("expand") or request.query_params.getlist("expand[]")
    return _repo_json(state, repos, repo, commit, blobs=bool_param(request.query_params.get("blobs")),
                      fields=tuple(expand) if expand else None)


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}")
def repo_info_main(kind: str, ns: str, name: str, request: Request):
    return _repo_info(kind, ns, name, "main", request)


@router.get("/api/{kind:hubtype}/{name:hubseg}")
@router.get("/api/{kind:hubtype}/{name:hubseg}/revision/{revision:hubseg}")
def repo_info_without_namespace(kind: str, name: str):
    """The Hub's legacy ids without a namespace (`gpt2`): none exists here, so the Hub's own not-found answer."""
    raise RepoNotFound(f"Repository Not Found for url: /api/{kind}/{name}. Please make sure you specified the "
                       "correct `repo_id` and `repo_type`.")


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/revision/{revision:hubseg}")
def repo_info_revision(kind: str, ns: str, name: str, revision: str, request: Request):
    return _repo_info(kind, ns, name, revision, request)


@router.get("/api/{kind:hubtype}")
def list_repos(kind: str, request: Request):
    state, params = state_of(request), request.query_params
    repos = state.repos[kind]
    rows = _listed(repos, request, caller(request))
    expand = params.getlist("expand") or params.getlist("expand[]")
    fields = tuple(expand) if expand else (_FULL_FIELDS if bool_param(params.get("full")) else _LIST_FIELDS)[kind]
    extra = (("cardData",) if bool_param(params.get("cardData")) else ()) + \
            (("config",) if bool_param(params.get("config")) else ())
    children = _children_counts(repos) if kind == "model" and "childrenModelCount" in fields else None
    items = [_repo_json(state, repos, repo, commit, fields=fields + extra, children=children) for repo, commit in rows]
    try:
        limit = int(params["limit"]) if params.get("limit") else 1000
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    return paged(request, items, max(1, min(limit, 1000)))


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request):
    """The Hub's answer: 400 with `errors` (ModelCard.validate raises the text, upload_folder the messages),
    else 200 with `warnings` (upload_folder turns them into Python warnings)."""
    body = await read_json(request)
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
