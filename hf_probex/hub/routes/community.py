"""Likes (the Hub's `like` route, `unlike`, `list_repo_likers`) and organisation members."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..auth import require_write_token
from ..errors import NotFound
from .common import paged, state_of, target

router = APIRouter()


async def _like(kind: str, ns: str, name: str, request: Request, liked: bool):
    repos, repo_id, user = target(kind, ns, name, request)
    user = require_write_token(user)
    await run_in_threadpool(repos.storage.set_like, repo_id, user.name, liked)
    return {}


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/like")
async def like_repo(kind: str, ns: str, name: str, request: Request):
    return await _like(kind, ns, name, request, True)


@router.delete("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/like")
async def unlike_repo(kind: str, ns: str, name: str, request: Request):
    return await _like(kind, ns, name, request, False)


@router.get("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/likers")
def likers(kind: str, ns: str, name: str, request: Request):
    repos, repo_id, _ = target(kind, ns, name, request)
    return paged(request, [_user_json(u) for u in repos.storage.stats(repo_id).likers], 1000)


@router.get("/api/organizations/{org:hubseg}/members")
def organization_members(org: str, request: Request):
    members = state_of(request).users.current().orgs.get(org)
    if members is None:
        raise NotFound(f"Organization {org} not found")
    return paged(request, [_user_json(m) for m in sorted(members)], 500)


def _user_json(name: str) -> dict:
    return {"user": name, "fullname": name, "avatarUrl": "", "type": "user", "isPro": False}
