"""Discussions and pull requests: list, open, read (with a PR's diff and conflicts), comment, close or reopen,
rename, merge."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ..auth import User, require_write, require_write_token
from ..errors import BadRequest, Forbidden
from .common import Repos, bool_param, read_json, target

router = APIRouter(prefix="/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/discussions")


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


def _thread_of(kind: str, ns: str, name: str, num: int, request: Request) -> tuple[Repos, str, User | None, dict]:
    repos, repo_id, user = target(kind, ns, name, request)
    return repos, repo_id, user, repos.discussions.get(repo_id, num)


def _may_moderate(user: User, ns: str, thread: dict) -> None:
    if not (user.can_write(ns) or user.name == thread["author"]):
        raise Forbidden("Only the author or the repo's owners can do this")


@router.get("")
def list_discussions(kind: str, ns: str, name: str, request: Request):
    repos, repo_id, _ = target(kind, ns, name, request)
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


@router.post("")
async def create_discussion(kind: str, ns: str, name: str, request: Request):
    repos, repo_id, user = target(kind, ns, name, request)
    user = require_write_token(user)
    body = await read_json(request)
    thread = await run_in_threadpool(
        lambda: repos.discussions.create(repo_id, title=str(body.get("title") or ""),
                                         description=str(body.get("description") or ""), author=user.name,
                                         pull_request=bool(body.get("pullRequest"))))
    return {"num": thread["num"], "url": f"{repos.url(request, repo_id)}/discussions/{thread['num']}",
            "pullRequest": thread["isPullRequest"]}


@router.get("/{num:int}")
def discussion_details(kind: str, ns: str, name: str, num: int, request: Request):
    repos, repo_id, _, thread = _thread_of(kind, ns, name, num, request)
    diff, conflicts = None, None
    if thread["isPullRequest"] and thread["status"] != "merged":
        diff, conflicts = repos.discussions.diff(repo_id, thread)
        diff = diff if bool_param(request.query_params.get("diff")) else None
    return _thread_json(kind, repo_id, thread, details=True, diff=diff, conflicts=conflicts)


@router.post("/{num:int}/comment")
async def comment(kind: str, ns: str, name: str, num: int, request: Request):
    repos, repo_id, user, _ = _thread_of(kind, ns, name, num, request)
    user = require_write_token(user)
    body = await read_json(request)
    event = await run_in_threadpool(
        lambda: repos.discussions.comment(repo_id, num, author=user.name, text=str(body.get("comment") or "")))
    return {"newMessage": event}


async def _moderated(kind: str, ns: str, name: str, num: int, request: Request) -> tuple[Repos, str, User, dict]:
    """The thread's repo, id, the caller (the thread's author or a repo owner, with a write token) and the body."""
    repos, repo_id, user, thread = _thread_of(kind, ns, name, num, request)
    user = require_write_token(user)
    _may_moderate(user, ns, thread)
    return repos, repo_id, user, await read_json(request)


@router.post("/{num:int}/status")
async def change_status(kind: str, ns: str, name: str, num: int, request: Request):
    repos, repo_id, user, body = await _moderated(kind, ns, name, num, request)
    event = await run_in_threadpool(
        lambda: repos.discussions.change_status(repo_id, num, author=user.name, status=str(body.get("status")),
                                                comment=body.get("comment")))
    return {"newStatus": event}


@router.post("/{num:int}/title")
async def rename(kind: str, ns: str, name: str, num: int, request: Request):
    repos, repo_id, user, body = await _moderated(kind, ns, name, num, request)
    event = await run_in_threadpool(
        lambda: repos.discussions.rename(repo_id, num, author=user.name, title=str(body.get("title") or "")))
    return {"newTitle": event}


@router.post("/{num:int}/merge")
async def merge(kind: str, ns: str, name: str, num: int, request: Request):
    repos, repo_id, user, _ = _thread_of(kind, ns, name, num, request)
    user = require_write(user, ns)
    body = await read_json(request)
    merged = await run_in_threadpool(
        lambda: repos.discussions.merge(repo_id, num, author=user.name, comment=body.get("comment")))
    return {"mergeCommitId": merged.id}
