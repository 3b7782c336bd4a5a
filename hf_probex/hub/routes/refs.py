"""Branches and tags: list_repo_refs, create_branch / delete_branch, create_tag / delete_tag. Moving refs needs
write access to the repo's namespace; a name already taken by a branch or a tag is 409, as the client expects."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..auth import require_write
from ..errors import BadRequest
from ..storage import check_ref_name
from .common import Repos, bool_param, read_json, target

router = APIRouter()


def _ref_json(ref: str, commit_id: str) -> dict:
    """A ref as list_repo_refs reads it: branches and tags by their short name, pull requests by their ref."""
    short = ref.split("/", 2)[2] if ref.startswith(("refs/heads/", "refs/tags/")) else ref
    return {"name": short, "ref": ref, "targetCommit": commit_id}


def _ref_writer(kind: str, ns: str, name: str, request: Request) -> tuple[Repos, str]:
    repos, repo_id, user = target(kind, ns, name, request)
    require_write(user, ns)
    return repos, repo_id


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/refs")
def refs(kind: str, ns: str, name: str, request: Request):
    repos, repo_id, _ = target(kind, ns, name, request)
    found: dict[str, list[dict]] = {"heads": [], "tags": [], "pr": []}
    for ref, commit_id in repos.storage.refs(repo_id).items():
        found.setdefault(ref.split("/")[1], []).append(_ref_json(ref, commit_id))
    found["pr"].sort(key=lambda r: int(r["ref"].rsplit("/", 1)[1]))
    data = {"branches": found["heads"], "tags": found["tags"], "converts": []}
    if bool_param(request.query_params.get("include_prs")):
        data["pullRequests"] = found["pr"]
    return data


async def _create_ref(repos: Repos, repo_id: str, ref: str, revision: str) -> dict:
    commit = repos.storage.resolve(repo_id, revision)
    await run_in_threadpool(repos.storage.create_ref, repo_id, ref, commit.id)
    return _ref_json(ref, commit.id)


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/branch/{branch:hubseg}")
async def create_branch(kind: str, ns: str, name: str, branch: str, request: Request):
    repos, repo_id = _ref_writer(kind, ns, name, request)
    check_ref_name(branch, "branch")
    starting_point = (await read_json(request)).get("startingPoint") or "main"
    if not isinstance(starting_point, str):
        raise BadRequest("startingPoint must be a revision: a branch, a tag or a commit id")
    return await _create_ref(repos, repo_id, f"refs/heads/{branch}", starting_point)


@router.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/branch/{branch:hubseg}")
async def delete_branch(kind: str, ns: str, name: str, branch: str, request: Request):
    repos, repo_id = _ref_writer(kind, ns, name, request)
    await run_in_threadpool(repos.storage.delete_ref, repo_id, f"refs/heads/{check_ref_name(branch, 'branch')}")
    return {}


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tag/{revision:hubseg}")
async def create_tag(kind: str, ns: str, name: str, revision: str, request: Request):
    repos, repo_id = _ref_writer(kind, ns, name, request)
    tag = (await read_json(request)).get("tag")
    if not isinstance(tag, str):
        raise BadRequest("create_tag needs 'tag': the tag's name")
    check_ref_name(tag, "tag")
    # A tag's message is accepted and not kept: git keeps it in a tag object, and no client call reads it.
    return await _create_ref(repos, repo_id, f"refs/tags/{tag}", revision)


@router.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/tag/{tag:hubseg}")
async def delete_tag(kind: str, ns: str, name: str, tag: str, request: Request):
    repos, repo_id = _ref_writer(kind, ns, name, request)
    await run_in_threadpool(repos.storage.delete_ref, repo_id, f"refs/tags/{check_ref_name(tag, 'tag')}")
    return {}
