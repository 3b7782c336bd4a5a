"""Writes of files: preupload (every file is a regular upload here) and NDJSON commits, to a branch or as a
pull request."""

from __future__ import annotations

import base64
import binascii
import re

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from ...bounded import load_json
from ..auth import User, require_write, require_write_token
from ..catalog import card_problems, front_matter
from ..errors import BadRequest, HubError, PayloadTooLarge
from ..storage import Blob, Commit, Delete, Put, check_path
from .common import Repos, bool_param, check_declared_length, read_json, state_of, target

router = APIRouter()


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


def _writer(kind: str, ns: str, name: str, revision: str, request: Request) -> tuple[Repos, str, User, bool]:
    """(repos, repo id, committer, create_pr) after the checks every write shares.

    Anyone with a write token who can see a repo may open a PR on it (that is how card fixes are
    proposed on the Hub); pushing to a branch needs write access to the namespace; pushing to
    `refs/pr/N` is checked against the PR's author when the commit runs.
    """
    create_pr = bool_param(request.query_params.get("create_pr"))
    repos, repo_id, user = target(kind, ns, name, request)
    user = require_write_token(user)
    ref = repos.storage.ref_name(revision)
    if not create_pr and ref is not None and not ref.startswith("refs/pr/"):
        require_write(user, ns)
    return repos, repo_id, user, create_pr


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/preupload/{revision:hubseg}")
async def preupload(kind: str, ns: str, name: str, revision: str, request: Request):
    repos, repo_id, _, _ = _writer(kind, ns, name, revision, request)
    body = await read_json(request)
    files = body.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise BadRequest("preupload needs 'files': a list of {path, size, sample}")
    try:
        tree = repos.storage.resolve(repo_id, revision).tree
    except HubError:
        tree = {}
    limit = state_of(request).max_upload_bytes
    answer = []
    for item in files:
        path = check_path(str(item.get("path", "")))
        size = item.get("size")
        # A regular upload travels base64-encoded in the commit body: 4 bytes for every 3.
        if isinstance(size, int) and -(-size // 3) * 4 > limit:
            raise PayloadTooLarge(f"{path} is {size} bytes, too large for this hub's upload limit of "
                                  f"{limit} bytes (base64-encoded in the commit body)")
        answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False,
                       "oid": tree.get(path, {}).get("oid")})
    return {"files": answer}


@router.post("/api/{kind:hubtype}/{ns:hubseg}/{name:hubseg}/commit/{revision:hubseg}")
async def commit(kind: str, ns: str, name: str, revision: str, request: Request):
    repos, repo_id, user, create_pr = _writer(kind, ns, name, revision, request)
    check_declared_length(request)
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

