"""The errors of the local hub, each carrying the HTTP answer the real Hub gives for it.

`huggingface_hub` maps an error response to its exception classes by status code and the
`X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), so every error raised by
the storage or the server names its status and code once, here.
"""

from __future__ import annotations


class HubError(Exception):
    """A request the hub refuses; `status` and `code` are what the client sees."""

    status = 400
    code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if status is not None:  # an error the framework raised (unknown route, wrong method) keeps its status
            self.status = status


class BadRequest(HubError):
    status = 400


class Unauthorized(HubError):
    status = 401


class Forbidden(HubError):
    status = 403


class RepoNotFound(HubError):
    status = 404
    code = "RepoNotFound"


class RevisionNotFound(HubError):
    status = 404
    code = "RevisionNotFound"


class EntryNotFound(HubError):
    status = 404
    code = "EntryNotFound"


class NotFound(HubError):
    """Anything else that does not exist (a discussion number, an unknown route)."""

    status = 404


class Conflict(HubError):
    """The repo already exists, or a pull request cannot be merged cleanly."""

    status = 409


class StaleParent(HubError):
    """`parent_commit` is no longer the head of the branch (the Hub answers 412)."""

    status = 412


class PayloadTooLarge(HubError):
    status = 413


class RangeNotSatisfiable(HubError):
    status = 416
