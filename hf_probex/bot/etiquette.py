"""The bot's manners toward owners: budgets, owner-wide refusals, priority, and reading their answers back.

- `Budgets`: how much the bot may ask of one owner and of the Hub: open contacts (pull requests or digests
  waiting for an answer) per owner, new ones per owner per day, new ones per day in all, and minutes between
  two. `Gate` applies them from the state's ledger, so a restart keeps them; a proposal over budget waits for
  a later run (outcome "deferred").
- `Owners`: whether an owner refused the bot for all their repos (the operator's list, a tag or key on any one
  of their cards, or a refusal the state remembers), decided before any request to that owner's repos, and
  how popular each of their models is (the Hub's listing: downloads and likes).
- `priority`: which proposals go first when the budget is short.
- `sync`: at the start of a run, the bot's open contacts are read back from the Hub: statuses, replies to
  digests (accept, refuse), and closed pull requests that amount to a refusal.

docs/bot.md ("Etiquette") gives the defaults and why.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from huggingface_hub.errors import HfHubHTTPError

from ..suggestions import FieldSuggestion
from .client import BotStopped, HubClient
from .state import DAY_S, BotState, Contact, owner_of
from .wording import read_commands

__all__ = ["DEFAULT_REFUSE_AFTER_CLOSED", "FIELD_GAIN", "LIKE_WEIGHT", "Budgets", "Gate", "OwnerView", "Owners",
           "opted_out_by_list", "priority", "sync"]

logger = logging.getLogger("hf_probex.bot")

DEFAULT_REFUSE_AFTER_CLOSED = 2
"""Closing this many of the bot's pull requests, and merging none, refuses the bot for all the owner's repos:
one closed PR may be about one wrong value; two with no merge are a pattern."""
#: What a field is worth to a reader of the card: base_model places the model in its tree (the Hub's model
#: tree, lineage, search by base); trained_on says what it does. The derivable fields are worth nothing alone.
FIELD_GAIN = {"base_model": 2.0, "trained_on": 1.0}
#: One like weighs as much as this many downloads: a like is a person's deliberate act, a download may be a script.
LIKE_WEIGHT = 10.0


@dataclass(frozen=True)
class Budgets:
    """How much the bot may ask, counted over the state's ledger of contacts (pull requests and digests).

    Attributes:
        max_open_per_owner: contacts of one owner waiting for an answer (open PRs, unanswered digests).
        max_new_per_owner_per_day: contacts opened for one owner in the last 24 hours.
        max_new_per_day: contacts opened in the last 24 hours, all owners together (pull requests an owner
            asked for in a digest count here too).
        minutes_between: the least time between two contacts, across runs.
    """

    max_open_per_owner: int = 1
    max_new_per_owner_per_day: int = 3
    max_new_per_day: int = 50
    minutes_between: float = 3.0

    @classmethod
    def unlimited(cls) -> Budgets:
        """No budget at all: for a private local hub, a benchmark or a test; never for the public Hub."""
        return cls(max_open_per_owner=10**9, max_new_per_owner_per_day=10**9, max_new_per_day=10**9, minutes_between=0.0)


def priority(fields: Iterable[FieldSuggestion], downloads: int = 0, likes: int = 0) -> float:
    """How much a proposal is worth: the gain of its informative fields (`FIELD_GAIN`), times the confidence of
    the least sure of them, times the reach of the repo (1 + log10(1 + downloads + LIKE_WEIGHT x likes))."""
    informative = [f for f in fields if f.name in FIELD_GAIN]
    if not informative:
        return 0.0
    gain = sum(FIELD_GAIN[f.name] for f in informative)
    reach = 1.0 + math.log10(1.0 + max(0, downloads) + LIKE_WEIGHT * max(0, likes))
    return gain * min(f.confidence for f in informative) * reach


class Gate:
    """Says whether the budgets allow a contact now (`held`), and waits out the spacing between two (`wait`).

    Args:
        ledger: the state whose contacts are counted (a dry run passes a scratch one).
        budgets: the limits.
        sleep: how to wait for the spacing (None: do not wait, as a dry run).
    """

    def __init__(self, ledger: BotState, budgets: Budgets, sleep: Callable[[float], None] | None) -> None:
        self.ledger, self.budgets, self.sleep = ledger, budgets, sleep

    def held(self, owner: str, *, requested: bool = False) -> str | None:
        """The budget that holds back a contact with `owner` now ("daily-budget", "owner-open-budget",
        "owner-daily-budget"), or None. A contact the owner `requested` (accepted in a digest) is held back by
        the daily budget only."""
        now, budgets = self.ledger.clock(), self.budgets
        if self.ledger.new_since(now - DAY_S) >= budgets.max_new_per_day:
            return "daily-budget"
        if not requested:
            if self.ledger.open_count(owner) >= budgets.max_open_per_owner:
                return "owner-open-budget"
            if self.ledger.new_since(now - DAY_S, owner) >= budgets.max_new_per_owner_per_day:
                return "owner-daily-budget"
        return None

    def wait(self) -> None:
        """Wait until `minutes_between` have passed since the latest contact, whichever run opened it."""
        last, spacing = self.ledger.last_opened_at(), self.budgets.minutes_between * 60.0
        # At most one spacing: a contact dated ahead of this clock (another machine's, the Hub's) must not stall the run.
        wait = 0.0 if last is None else min(spacing, last + spacing - self.ledger.clock())
        if wait > 0 and self.sleep is not None:
            self.sleep(wait)


def opted_out_by_list(repo_id: str, opt_out: frozenset[str]) -> bool:
    """Whether the operator's list names the repo, or its owner (`owner/*`)."""
    return repo_id in opt_out or f"{owner_of(repo_id)}/*" in opt_out


@dataclass(frozen=True)
class OwnerView:
    """What the bot knows of an owner before touching their repos.

    Attributes:
        refused: why no proposal may reach them ("opt-out-owner": a card of theirs says so; "owner-refused":
            the state remembers a refusal), else None.
        popularity: (downloads, likes) of each of their models, as the Hub lists them.
        error: the listing failed: the owner-wide opt-out could not be checked, so nothing is proposed.
    """

    refused: str | None = None
    popularity: dict[str, tuple[int, int]] = field(default_factory=dict)
    error: str | None = None


class Owners:
    """`OwnerView`s for one run, each built once (one listing of the owner's models), thread-safe."""

    def __init__(self, client: HubClient, state: BotState | None) -> None:
        self.client, self.state = client, state
        self._views: dict[str, OwnerView] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def view(self, owner: str) -> OwnerView:
        """The owner's view; the first call for an owner lists their models (`HubClient.owner_models`)."""
        with self._lock:
            lock = self._locks.setdefault(owner, threading.Lock())
        with lock:
            if owner not in self._views:
                self._views[owner] = self._build(owner)
            return self._views[owner]

    def _build(self, owner: str) -> OwnerView:
        if self.state is not None and self.state.refusal(owner):
            return OwnerView(refused="owner-refused")
        try:
            models = self.client.owner_models(owner)
        except BotStopped:
            raise
        except Exception as err:  # noqa: BLE001 - a failed listing stops this owner's proposals, not the run
            return OwnerView(error=f"cannot list {owner}'s models to check an owner-wide opt-out ({type(err).__name__}: "
                                   f"{getattr(err, 'server_message', None) or err})")
        popularity = {m.repo_id: (m.downloads, m.likes) for m in models}
        if any(m.opts_out_owner for m in models):
            return OwnerView(refused="opt-out-owner", popularity=popularity)
        return OwnerView(popularity=popularity)


def sync(client: HubClient, state: BotState, author: str | None, refuse_after_closed: int) -> None:
    """Read the bot's open contacts back from the Hub before a run.

    Pending digests are reconciled (found on the Hub by their marker, else dropped); open pull requests get
    their status; open digests their replies: `accept` requests pull requests for the repos named, `refuse`
    (or closing the digest without accepting) refuses the owner. An owner with `refuse_after_closed` closed
    pull requests of the bot and none merged is refused. A thread that cannot be read now is read next run.
    """
    members: dict[str, frozenset[str] | None] = {}

    def speaks_for(owner: str, user: str) -> bool:
        if user == owner:
            return True
        if owner not in members:
            members[owner] = client.org_members(owner)
        return user in (members[owner] or ())

    for contact in state.contacts(statuses=("pending", "open", "draft", "accepted")):
        if state.refusal(contact.owner) or (contact.kind == "pr" and contact.status == "pending"):
            continue  # a pending pull request is reconciled when its repo is processed
        try:
            if contact.kind == "digest" and contact.status == "pending":
                _reconcile_digest(client, state, contact, author)
            elif contact.kind == "digest":
                _read_digest(client, state, contact, author, speaks_for)
            else:
                status = client.thread(contact.repo_id, contact.num).status
                if status != contact.status:
                    state.set_status(contact.id, status)
        except BotStopped:
            raise
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code == 404:  # the repo or the thread is gone
                state.set_status(contact.id, "gone")
            else:
                logger.warning("could not read %s #%s (%s); it is read again next run", contact.repo_id, contact.num, err)
    for owner in {c.owner for c in state.contacts(statuses=("closed",)) if c.kind == "pr"}:
        prs = [c for c in state.contacts(owner=owner) if c.kind == "pr"]
        closed = sum(c.status == "closed" for c in prs)
        if closed >= refuse_after_closed and not any(c.status == "merged" for c in prs):
            state.refuse(owner, f"closed {closed} of hf-probex's pull requests and merged none")


def _reconcile_digest(client: HubClient, state: BotState, contact: Contact, author: str | None) -> None:
    listed = [entry["repo_id"] for entry in contact.listed]
    found = [p for p in client.proposals(contact.repo_id, author) if p.kind == "digest" and list(p.listed) == listed]
    if found:  # opened, then the process died before recording it
        state.digest_opened(contact.id, found[0].num)
    else:
        state.drop(contact.id)


def _read_digest(client: HubClient, state: BotState, contact: Contact, author: str | None,
                 speaks_for: Callable[[str, str], bool]) -> None:
    thread = client.thread(contact.repo_id, contact.num)
    replies = [e.content for e in thread.events[1:]  # the first comment is the digest itself
               if e.type == "comment" and e.author != author and speaks_for(contact.owner, e.author)]
    reply = read_commands(replies, [entry["repo_id"] for entry in contact.listed])
    where = f"digest #{contact.num} on {contact.repo_id}"
    if reply.accepted:
        state.accept(contact.id, sorted(reply.accepted))
    if reply.refused or (thread.status == "closed" and not reply.accepted and contact.status == "open"):
        state.refuse(contact.owner, f"refused in {where}" if reply.refused else f"closed {where} without accepting")
        state.set_status(contact.id, "refused")
    elif thread.status == "closed":
        state.set_status(contact.id, "closed")
