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

This module builds the app (`create_app`): the raw-path and body-limit middleware, the error handlers,
and the routers of `routes/`, one per resource, included in the order their routes are matched.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import UsersFile
from .errors import HubError, PayloadTooLarge
from .lfs import LfsFiles
from .routes import commits, community, discussions, files, refs, repos
from .routes.common import HubState, Repos
from .storage import REPO_TYPES, Storage

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3
#: Every body but a commit's: settings, discussions, preupload lists, a README to validate (the Hub's
#: READMEs are far smaller; huggingface_hub sends preupload lists in chunks of a few hundred files).
MAX_JSON_BODY_BYTES = 10 * 1024**2
_COMMIT_PATH = re.compile(r"^/api/(?:models|datasets)/[^/]+/[^/]+/commit/[^/]+$")


class _RawPathAndLimit:
    """ASGI middleware: route on the raw path, and stop request bodies at their limit (413) as they stream in.

    A commit carries regular files inline, so it may reach the upload limit; any other body is JSON or
    a form and stops at MAX_JSON_BODY_BYTES. The limit goes in the scope: a route refuses a declared
    Content-Length over it (`routes.common.check_declared_length`) once it knows the caller may send a body at all,
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

    # Starlette tries routes in the order they were added: the first full match serves, else the first
    # match on the path alone answers 405 with its methods. Keep this order (and each router's own).
    for resource in (repos, files, refs, commits, discussions, community):
        app.include_router(resource.router)
    return app
