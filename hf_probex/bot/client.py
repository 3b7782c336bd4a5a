"""The bot's calls to the Hub, through `huggingface_hub.HfApi`, with its manners built in.

- 401 / 403 stop the whole run (`BotStopped`): a bad token or a refused permission is not going to get
  better by trying the next thousand repos.
- 429 and 5xx are retried a bounded number of times, waiting what `Retry-After` says (capped), else an
  exponential backoff. Opening a pull request or a digest after a 5xx is retried only once the repo's
  threads show it was not opened (the server may have done the work before failing).
- The bot's threads carry an invisible marker (`MARKER` for a pull request, `DIGEST_MARKER` for a digest),
  so the Hub's own record tells what the bot proposed there, whatever its state file says.

How often the bot may open anything is not decided here but by the budgets (`etiquette`).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, DiscussionWithDetails, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError

from ..cards import opts_out_owner
from ..errors import BadFileError, BotStopped
from ..reading import MAX_SMALL_FILE_BYTES

__all__ = ["BotStopped", "HubClient", "Listed", "ListedModel", "Proposal", "digest_marker", "marker", "parse_retry_after"]

T = TypeVar("T")

# The marker that makes the bot's pull requests recognisable in the repo's own history (state can be
# lost; the Hub's record cannot): an HTML comment in the PR description, invisible when rendered.
MARKER = re.compile(r"<!-- hf-probex-bot fields=(?P<fields>[\w,]*) revision=(?P<revision>\S*) -->")
DIGEST_MARKER = re.compile(r"<!-- hf-probex-digest repos=(?P<repos>[\w./,-]*) -->")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or an HTTP date), None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def marker(fields: list[str], revision: str | None) -> str:
    """The marker line for a PR that proposes `fields` for `revision`."""
    return f"<!-- hf-probex-bot fields={','.join(fields)} revision={revision or ''} -->"


def digest_marker(repos: list[str]) -> str:
    """The marker line for a digest that lists `repos`."""
    return f"<!-- hf-probex-digest repos={','.join(repos)} -->"


@dataclass(frozen=True)
class Proposal:
    """A pull request or digest the bot opened earlier on a repo, as the Hub remembers it.

    Attributes:
        num: its number on the repo.
        status: the Hub's status ("open", "draft", "merged", "closed").
        fields: a pull request's fields.
        revision: the revision a pull request was made for.
        kind: "pr" or "digest".
        listed: the repos a digest lists.
        created_at: when it was opened (seconds since the epoch).
    """

    num: int
    status: str
    fields: tuple[str, ...]
    revision: str
    kind: str = "pr"
    listed: tuple[str, ...] = ()
    created_at: float | None = None


@dataclass(frozen=True)
class Listed:
    """A repo as a Hub listing shows it: its id, the commit of its main branch then (None when the Hub left it
    out), and how many repos name it as their base (None unless asked, or unknown)."""

    repo_id: str
    sha: str | None = None
    children: int | None = None


@dataclass(frozen=True)
class ListedModel:
    """A model as the Hub lists its owner's models: downloads, likes, and whether its card opts the owner out
    (`cards.opts_out_owner`)."""

    repo_id: str
    downloads: int
    likes: int
    opts_out_owner: bool


class HubClient:
    """The Hub calls the bot makes, with retries and the stop rule.

    Args:
        api: the client (its endpoint and token are used).
        max_retries: retries of one call after 429 / 5xx.
        max_wait_s: the longest single wait, whatever `Retry-After` asks.
        sleep: how to wait, here and for the budgets' spacing (tests pass a fake clock's).
    """

    def __init__(self, api: HfApi, *, max_retries: int = 5, max_wait_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self.retries = 0  # how many times a call was retried (reported by the run)

    # ---- the retry rule -------------------------------------------------------------------------------

    def call(self, func: Callable[[], T], *, recover: Callable[[int], T | None] | None = None) -> T:
        """`func()`, stopping on 401/403 and retrying 429/5xx.

        `recover(status)`, when given, runs before each retry and may return the result instead (the
        work turned out to be done).
        """
        for attempt in range(self.max_retries + 1):
            try:
                return func()
            except RepositoryNotFoundError:
                raise  # the Hub answers 401 for repos it hides; that is about the repo, not the token
            except HfHubHTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status in (401, 403):
                    raise BotStopped(f"the Hub answered {status} ({'unauthorized' if status == 401 else 'forbidden'})"
                                     f" to {err.response.request.method} {err.response.request.url.path}: "
                                     f"{err.server_message or 'the token cannot do this'}; the run stopped: use a "
                                     "token with the rights it needs (--token or HF_TOKEN), then rerun the same "
                                     "command to resume") from None
                if status is None or not (status == 429 or status >= 500) or attempt == self.max_retries:
                    raise
                found = recover(status) if recover is not None else None
                if found is not None:
                    return found
                wait = parse_retry_after(err.response.headers.get("Retry-After"))
                self.retries += 1
                self.sleep(min(self.max_wait_s, wait if wait is not None else 2.0 ** attempt))
        raise AssertionError("unreachable")

    # ---- reading --------------------------------------------------------------------------------------

    def whoami(self) -> str:
        """The token's user name (checks the token before any work); `BotStopped` when there is none."""
        try:
            return self.call(lambda: self.api.whoami())["name"]
        except LocalTokenNotFoundError:
            raise BotStopped("no Hub token: pass --token, set HF_TOKEN, or log in with `hf auth login`") from None

    def head(self, repo_id: str) -> str:
        """The commit id of the repo's main branch now."""
        return self.call(lambda: self.api.model_info(repo_id, expand=["sha"])).sha

    def readme(self, repo_id: str, revision: str) -> bytes | None:
        """README.md at `revision`, byte for byte (None when the repo has none).

        Raises:
            BadFileError: the README is larger than any card (`MAX_SMALL_FILE_BYTES`): it is not downloaded.
        """
        def read() -> bytes | None:
            found = self.api.get_paths_info(repo_id, ["README.md"], revision=revision)
            if not found:
                return None
            if (found[0].size or 0) > MAX_SMALL_FILE_BYTES:
                raise BadFileError(f"{repo_id}: README.md has {found[0].size} bytes, more than a card's "
                                   f"{MAX_SMALL_FILE_BYTES}: not read")
            try:
                path = self.api.hf_hub_download(repo_id, "README.md", revision=revision)
            except EntryNotFoundError:
                return None
            with open(path, "rb") as handle:
                return handle.read(MAX_SMALL_FILE_BYTES + 1)
        return self.call(read)

    def children(self, repo_id: str) -> list[Listed]:
        """The repos naming `repo_id` as a base model, each with its commit and how many children it has."""
        models = self.call(lambda: list(self.api.list_models(filter=f"base_model:{repo_id}",
                                                             expand=["childrenModelCount", "sha"])))
        return [Listed(m.id, m.sha, m.children_model_count) for m in models]

    def listing(self, *, author: str | None = None, search: str | None = None) -> list[Listed]:
        """The models of `author` (a user or organisation) and / or whose name contains `search`, each with its
        commit (one listing: no request to the repos themselves)."""
        return self.call(lambda: [Listed(m.id, m.sha) for m in self.api.list_models(author=author, search=search,
                                                                                    expand=["sha"])])

    def list_repos(self, *, author: str | None = None, search: str | None = None) -> list[str]:
        """The ids of the models of `author` (a user or organisation) and / or whose name contains `search`."""
        return [listed.repo_id for listed in self.listing(author=author, search=search)]

    def owner_models(self, owner: str) -> list[ListedModel]:
        """Every model of a user or organisation, with its downloads, likes and owner-wide opt-out (one listing
        with card data: no request to the repos themselves)."""
        models = self.call(lambda: list(self.api.list_models(author=owner, cardData=True)))
        return [ListedModel(m.id, m.downloads or 0, m.likes or 0,
                            opts_out_owner(m.card_data.to_dict() if m.card_data else {}, m.tags or ()))
                for m in models]

    def org_members(self, owner: str) -> frozenset[str] | None:
        """The members of organisation `owner` the Hub shows the bot, or None when `owner` is a user (404)."""
        try:
            return frozenset(u.username for u in self.call(lambda: list(self.api.list_organization_members(owner))))
        except BotStopped:  # the token was checked at the start: a refusal here is about the members list only
            return frozenset()
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code == 404:
                return None
            raise

    def thread(self, repo_id: str, num: int) -> DiscussionWithDetails:
        """A pull request or discussion with its events (comments, status changes)."""
        return self.call(lambda: self.api.get_discussion_details(repo_id, num))

    def proposals(self, repo_id: str, author: str | None) -> list[Proposal]:
        """The pull requests and digests the bot (`author`; any author when None) opened on the repo, any status."""
        found = []
        threads = self.call(lambda: list(self.api.get_repo_discussions(
            repo_id, author=author, discussion_type="all", discussion_status="all")))
        for thread in threads:
            details = self.thread(repo_id, thread.num)
            first = next((e for e in details.events if e.type == "comment"), None)
            text = getattr(first, "content", "") or ""
            opened = thread.created_at.timestamp() if thread.created_at else None
            if thread.is_pull_request and (match := MARKER.search(text)):
                fields = tuple(f for f in match["fields"].split(",") if f)
                found.append(Proposal(thread.num, thread.status, fields, match["revision"], created_at=opened))
            elif not thread.is_pull_request and (match := DIGEST_MARKER.search(text)):
                listed = tuple(r for r in match["repos"].split(",") if r)
                found.append(Proposal(thread.num, thread.status, (), "", "digest", listed, opened))
        return found

    # ---- writing --------------------------------------------------------------------------------------

    def open_pr(self, repo_id: str, revision: str, readme: bytes, *, title: str, description: str,
                author: str | None, fields: list[str]) -> int:
        """Open one pull request changing only README.md, forked from `revision`; its number.

        A 5xx may hide a PR that was opened anyway, so before each retry the repo's PRs are checked for this
        one's marker.
        """
        def create() -> int:
            return int(self.api.create_commit(repo_id, [CommitOperationAdd("README.md", readme)],
                                              commit_message=title, commit_description=description,
                                              create_pr=True, parent_commit=revision).pr_num)

        def already_opened(status: int) -> int | None:
            if status < 500:
                return None  # 429: refused, not done
            done = [p for p in self.proposals(repo_id, author)
                    if p.kind == "pr" and p.revision == revision and list(p.fields) == fields]
            return done[0].num if done else None

        return self.call(create, recover=already_opened)

    def comment(self, repo_id: str, num: int, text: str, *, author: str | None) -> None:
        """Comment on a discussion or pull request. A 5xx is retried only once the thread shows no comment of
        `author` with this text (the Hub may have posted it before failing)."""
        def posted(status: int) -> bool | None:
            if status < 500:
                return None
            events = self.thread(repo_id, num).events
            return True if any(e.type == "comment" and e.author == author and e.content == text for e in events) else None

        self.call(lambda: self.api.comment_discussion(repo_id, num, text), recover=posted)

    def open_digest(self, repo_id: str, *, title: str, description: str, author: str | None, listed: list[str]) -> int:
        """Open a digest: a discussion (not a pull request) on `repo_id`; its number. A 5xx is retried only once
        the repo's threads show no digest listing the same repos."""
        def create() -> int:
            return self.api.create_discussion(repo_id, title=title, description=description).num

        def already_opened(status: int) -> int | None:
            if status < 500:
                return None
            done = [p for p in self.proposals(repo_id, author) if p.kind == "digest" and list(p.listed) == listed]
            return done[0].num if done else None

        return self.call(create, recover=already_opened)
