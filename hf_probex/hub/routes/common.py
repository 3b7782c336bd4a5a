"""What every router of the local hub shares: the path convertors of its URLs, the state an app serves
(`HubState`, one `Repos` per repo type), and the first steps of a route: who calls (`caller`), whether
they may see the repo (`target`), a bounded JSON body (`read_json`), one page of a listing (`paged`).

The routers are module-level and shared by every app `create_app` builds (tests build several, each over
its own root), so a route reaches its app's state through the request (`state_of`), never a global.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from ...bounded import TooComplexError, load_json
from ..auth import User, UsersFile
from ..catalog import Catalog
from ..discussions import Discussions
from ..errors import BadRequest, PayloadTooLarge, RepoNotFound
from ..lfs import LfsFiles
from ..storage import REPO_TYPES, RepoMeta, Storage


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


# A route's path is compiled when its decorator runs, so these are registered on import of this module,
# which every router module imports before it declares a route.
register_url_convertor("hubseg", _Segment())
register_url_convertor("hubpath", _Rest())
register_url_convertor("hubtype", _RepoType())


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
        return f"{base_url(request)}/{'' if self.kind == 'model' else self.kind + 's/'}{repo_id}"


@dataclass
class HubState:
    """Everything one app serves: the repos of each type, LFS rules, users, limits."""

    repos: dict[str, Repos]
    lfs: LfsFiles
    users: UsersFile
    max_upload_bytes: int


def state_of(request: Request) -> HubState:
    """The state of the app serving `request` (`create_app` sets `app.state.hub`)."""
    return request.app.state.hub


def caller(request: Request) -> User | None:
    return state_of(request).users.current().identify(request.headers.get("authorization"))


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def visible_repo(repos: Repos, repo_id: str, user: User | None) -> RepoMeta:
    """The repo if the caller may see it; a private repo is RepoNotFound to others, as on the Hub."""
    repo = repos.storage.repo(repo_id)
    namespace = repo_id.split("/")[0]
    if repo.private and (user is None or not user.can_read_private(namespace)):
        raise RepoNotFound(f"Repository {repo_id} not found")
    return repo


def target(kind: str, ns: str, name: str, request: Request) -> tuple[Repos, str, User | None]:
    """(the repos of `kind`, the repo id, the caller) once the caller may see the repo; what every repo route
    checks first."""
    repos, repo_id = state_of(request).repos[kind], f"{ns}/{name}"
    user = caller(request)
    visible_repo(repos, repo_id, user)
    return repos, repo_id, user


def check_declared_length(request: Request) -> None:
    """413 for a declared body over the route's limit, before a byte of it is read."""
    limit, message = request.scope["hub.body_limit"]
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(message)


async def read_json(request: Request) -> dict:
    """The JSON object in the body. Call it only once the caller may do what the route does."""
    check_declared_length(request)
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


def bool_param(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def paged(request: Request, items: list, page_size: int, render: Callable[[object], object] | None = None) -> JSONResponse:
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
