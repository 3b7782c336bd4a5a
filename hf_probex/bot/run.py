"""One bot run: read the owners' answers, decide for every repo, then propose the best within the budgets.

1. `etiquette.sync`: the bot's open pull requests and digests are read back from the Hub (statuses, replies
   to digests, refusals). Repos an owner accepted in a digest join the run, as requested.
2. Decide, per repo (`concurrency` at once), cheapest checks first: the operator's opt-out list (no request
   at all), the owner (a refusal the state remembers, else one listing of the owner's models: an owner-wide
   opt-out on any of their cards, and the downloads and likes), main's head revision (a repo settled at that
   revision is not read again), README.md (opt-out tag or key, unparseable metadata, nothing missing), the
   bot's own earlier threads on the Hub (the record that survives a lost state file), then inference, then
   the choice of fields (`suggestions.pull_request_choice`): missing from the card, at or above the confidence
   their source was validated at and the run's own threshold, never proposed before on this repo (open,
   merged or closed), and only when one of them is informative (base_model, trained_on). An open PR of the
   bot blocks any new one.
3. Propose, one at a time, requested repos first and then by `etiquette.priority`: each pull request (or,
   with `digest`, each owner's digest) passes the budgets (`etiquette.Gate`) or waits for a later run
   ("deferred"). The intent is committed to the state before a pull request or digest is opened and the
   outcome after; the next run reconciles an intent with the Hub first (see `state`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..cards import CardError, apply_suggestions, card_diff, is_opted_out, missing_fields
from ..errors import BadFileError
from ..suggestions import INFORMATIVE_FIELDS, CardSuggestion, FieldSuggestion, pull_request_choice
from .client import BotStopped, HubClient, Proposal
from .etiquette import DEFAULT_REFUSE_AFTER_CLOSED, Budgets, Gate, Owners, opted_out_by_list, priority, sync
from .state import BotState, owner_of
from .wording import DigestEntry, digest_answer, digest_description, digest_title, pr_description, pr_title

__all__ = ["DEFAULT_MIN_CONFIDENCE", "MAX_DIGEST_CHARS", "MAX_DIGEST_REPOS", "BotConfig", "BotReport", "DigestView",
           "RepoOutcome", "run_bot"]

DEFAULT_MIN_CONFIDENCE = 0.9
"""Precision over recall: a PR nobody asked for must be right."""
MAX_DIGEST_REPOS = 50
"""A digest lists at most this many repos, the most useful first (one page to read); the rest wait for the next."""
MAX_DIGEST_CHARS = 60_000
"""...and stays under this many characters, whatever the evidence strings weigh."""

Infer = Callable[[str], CardSuggestion]


@dataclass(frozen=True)
class BotConfig:
    """How a run behaves.

    Attributes:
        min_confidence: fields below it are never proposed (on top of each field's own floor, which a
            lower value cannot lower: see `suggestions.pull_request_choice`).
        dry_run: decide and print, write nothing (no PR, no digest, no state); the budgets are applied as
            a first run would apply them, without waiting.
        concurrency: repos read and inferred at once (I/O bound); proposals are opened one at a time.
        opt_out: repo ids never to touch, and owners (`owner/*`) none of whose repos to touch (`--opt-out-list`).
        budgets: how much the bot may ask of each owner and of the Hub (`etiquette.Budgets`).
        digest: one discussion per owner listing every proposal, instead of one pull request per repo.
        refuse_after_closed: this many closed pull requests of the bot, none merged, refuse it for all the
            owner's repos.
        tree: the root of the tree the run works on (`--tree`): a listed repo that is not routed into this
            tree (another tree, or none) is skipped as "not-in-tree", whoever listed it (a tree table is
            anyone's writing).
    """

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    dry_run: bool = False
    concurrency: int = 4
    opt_out: frozenset[str] = frozenset()
    budgets: Budgets = Budgets()
    digest: bool = False
    refuse_after_closed: int = DEFAULT_REFUSE_AFTER_CLOSED
    tree: str | None = None


@dataclass
class RepoOutcome:
    """What the run did with one repo.

    `outcome` is "proposed", "would-propose" (dry run), "digested" (listed in a digest; `pr_num` is the
    digest's number), "would-digest" (dry run), "deferred" (waits for budget), "skipped", "unchanged" (settled
    earlier at this revision; nothing was redone) or "error"; `reason` says why for the last four.
    `priority` is the proposal's `etiquette.priority`, for those that reached the proposing step.
    """

    repo_id: str
    outcome: str
    reason: str | None = None
    revision: str | None = None
    fields: list[str] = field(default_factory=list)
    pr_num: int | None = None
    diff: str = ""
    priority: float | None = None


@dataclass(frozen=True)
class DigestView:
    """A digest opened (or, in a dry run, that would be): its owner, the repo it is on, its number, the repos it
    lists, its title and its description as the Hub shows them."""

    owner: str
    repo_id: str
    num: int | None
    listed: tuple[str, ...]
    title: str
    description: str


@dataclass
class BotReport:
    """The outcomes of one run, in the order repos were given (requested repos after them), the digests, and how
    many calls were retried."""

    outcomes: list[RepoOutcome] = field(default_factory=list)
    digests: list[DigestView] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0

    def counts(self) -> Counter:
        """Repos by outcome."""
        return Counter(o.outcome for o in self.outcomes)


@dataclass
class _Candidate:
    """A repo with a proposal, waiting for its turn within the budgets.

    `read` is False for a repo that waited for budget at this same revision before: it is not read again (card,
    threads, inference) unless its turn comes, so a long queue costs one request per repo and run; `fields` and
    `suggested` are then empty and `outcome` holds what the state remembers.
    """

    outcome: RepoOutcome
    fields: list[FieldSuggestion]
    suggested: str
    requested: bool
    read: bool = True


def _default_infer(token: str | None) -> Infer:
    """`infer_card` at each expert's calibrated threshold; the bot's own `min_confidence` applies on top."""
    try:
        from ..infer import infer_card  # heavy (torch): only when the bot really infers
    except ImportError as err:
        raise BotStopped(f"hf_probex.infer_card is not available ({err}); pass an inference callable") from None

    return lambda repo_id: infer_card(repo_id, token=token, hub_only=True)  # a listed id, never a folder here


class _Worker:
    """Decides for one repo at a time (shared by the run's threads; everything here is thread-safe)."""

    def __init__(self, client: HubClient, infer: Infer, state: BotState | None, config: BotConfig,
                 author: str | None, owners: Owners) -> None:
        self.client, self.infer, self.state, self.config, self.author = client, infer, state, config, author
        self.owners = owners

    def record(self, outcome: RepoOutcome) -> RepoOutcome:
        """Write a settled outcome to the state (nothing in a dry run)."""
        if self.state is not None and outcome.outcome in ("proposed", "skipped", "deferred", "error"):
            self.state.put(outcome.repo_id, revision=outcome.revision, outcome=outcome.outcome,
                           reason=outcome.reason, fields=outcome.fields, pr_num=outcome.pr_num, priority=outcome.priority)
        return outcome

    def decide(self, repo_id: str, requested: bool, *, reread: bool = False) -> RepoOutcome | _Candidate:
        """The repo's outcome, or its proposal for the budgets (`reread`: read it even if it waited at this revision)."""
        try:
            decided = self._decide(repo_id, requested, reread)
        except BotStopped:
            raise
        except Exception as err:  # noqa: BLE001 - one repo's failure (gone, 5xx after retries, inference) is not the run's
            decided = self.error(repo_id, err)
        return decided if isinstance(decided, _Candidate) else self.record(decided)

    def error(self, repo_id: str, err: Exception, revision: str | None = None) -> RepoOutcome:
        message = (getattr(err, "server_message", None) or str(err) or "").splitlines()
        return RepoOutcome(repo_id, "error", f"{type(err).__name__}: {message[0] if message else ''}", revision)

    def _decide(self, repo_id: str, requested: bool, reread: bool) -> RepoOutcome | _Candidate:
        if opted_out_by_list(repo_id, self.config.opt_out):
            return RepoOutcome(repo_id, "skipped", "opt-out-list")
        owner = self.owners.view(owner_of(repo_id))
        if owner.refused:
            return RepoOutcome(repo_id, "skipped", owner.refused)
        if owner.error:
            return RepoOutcome(repo_id, "error", owner.error)
        revision = self.client.head(repo_id)
        prior = self.state.get(repo_id) if self.state is not None else None
        if (prior is not None and prior.revision == revision and not requested
                and prior.outcome in ("proposed", "skipped", "digested")):
            return RepoOutcome(repo_id, "unchanged", prior.reason or prior.outcome, revision, list(prior.fields),
                               prior.pr_num)
        if prior is not None and prior.revision == revision and prior.outcome == "deferred" and not (requested or reread):
            return _Candidate(RepoOutcome(repo_id, "would-propose", None, revision, list(prior.fields),
                                          priority=prior.priority), [], "", requested, read=False)
        skip = functools.partial(RepoOutcome, repo_id, "skipped", revision=revision)
        try:
            raw = self.client.readme(repo_id, revision)
            readme = raw.decode("utf-8") if raw is not None else ""
            if is_opted_out(readme):
                return skip("opt-out-card")
            missing = missing_fields(readme)
        except (UnicodeDecodeError, CardError, BadFileError):
            return skip("invalid-card")
        earlier = self.client.proposals(repo_id, self.author)
        self._adopt(repo_id, earlier)
        prs = [p for p in earlier if p.kind == "pr"]
        if prior is not None and prior.outcome == "pending":
            done = [p for p in prs if p.revision == prior.revision and p.fields == prior.fields]
            if done:  # the PR was opened, then the process died before recording it
                return RepoOutcome(repo_id, "proposed", "reconciled", prior.revision, list(prior.fields), done[0].num)
        if not missing:
            return skip("complete")
        return self._choose(repo_id, revision, readme, missing, prs, requested, owner.popularity.get(repo_id, (0, 0)))

    def _adopt(self, repo_id: str, earlier: list[Proposal]) -> None:
        """Threads of the bot that the ledger lacks (a lost or older state file) join it: they count for the budgets."""
        if self.state is None:
            return
        for p in earlier:
            listed = [{"repo_id": r, "revision": None, "fields": []} for r in p.listed]
            self.state.adopt(owner_of(repo_id), repo_id, p.kind, p.num, p.status, listed, opened_at=p.created_at)

    def _choose(self, repo_id: str, revision: str, readme: str, missing: set[str], earlier: list[Proposal],
                requested: bool, popularity: tuple[int, int]) -> RepoOutcome | _Candidate:
        suggestion = self.infer(repo_id)
        if self.config.tree is not None and suggestion.tree != self.config.tree:
            return RepoOutcome(repo_id, "skipped", "not-in-tree", revision)
        candidates = [f for f in suggestion.fields.values() if f.missing and f.name in missing]
        before = {name for p in earlier for name in p.fields}
        chosen = pull_request_choice([f for f in candidates if f.name not in before], self.config.min_confidence)
        if not chosen:
            confident = pull_request_choice(candidates, self.config.min_confidence)
            reason = ("already-proposed" if confident else
                      "below-threshold" if any(f.name in INFORMATIVE_FIELDS for f in candidates) else
                      "derivable-only" if candidates else "nothing-inferred")
            pr_num = max((p.num for p in earlier), default=None) if confident else None
            return RepoOutcome(repo_id, "skipped", reason, revision, [f.name for f in confident], pr_num)
        if any(p.status in ("open", "draft") for p in earlier):
            return RepoOutcome(repo_id, "skipped", "open-pr", revision, [f.name for f in chosen],
                               max(p.num for p in earlier if p.status in ("open", "draft")))
        try:
            suggested = apply_suggestions(readme, chosen, title=repo_id.split("/")[-1])
        except CardError:  # it quotes our section marker, or an addition would change what the owner wrote
            return RepoOutcome(repo_id, "skipped", "unsafe-edit", revision)
        outcome = RepoOutcome(repo_id, "would-propose", None, revision, [f.name for f in chosen],
                              diff=card_diff(readme, suggested), priority=priority(chosen, *popularity))
        return _Candidate(outcome, chosen, suggested, requested)


class _Proposer:
    """Opens pull requests and digests one at a time, best first, within the budgets."""

    def __init__(self, worker: _Worker, ledger: BotState, on_wait: Callable[[float], None] | None = None) -> None:
        self.worker, self.ledger = worker, ledger
        config = worker.config

        def sleep(seconds: float) -> None:
            if on_wait is not None:
                on_wait(seconds)
            worker.client.sleep(seconds)

        self.gate = Gate(ledger, config.budgets, None if config.dry_run else sleep)

    def _read(self, candidate: _Candidate) -> RepoOutcome | _Candidate:
        """The candidate read afresh if it was not read this run (its turn came): a proposal, or what became of it."""
        if candidate.read:
            return candidate
        return self.worker.decide(candidate.outcome.repo_id, candidate.requested, reread=True)

    def _defer(self, candidate: _Candidate, reason: str) -> RepoOutcome:
        candidate.outcome.outcome, candidate.outcome.reason = "deferred", reason
        return self.worker.record(candidate.outcome)

    def pull_request(self, candidate: _Candidate) -> RepoOutcome:
        worker = self.worker
        held = self.gate.held(owner_of(candidate.outcome.repo_id), requested=candidate.requested)
        if held:
            return self._defer(candidate, held)
        candidate = self._read(candidate)
        if not isinstance(candidate, _Candidate):
            return candidate
        outcome = candidate.outcome
        self.gate.wait()
        self.ledger.reserve_pr(outcome.repo_id, revision=outcome.revision, fields=outcome.fields)
        if worker.config.dry_run:
            return outcome
        try:
            outcome.pr_num = worker.client.open_pr(
                outcome.repo_id, outcome.revision, candidate.suggested.encode("utf-8"), title=pr_title(candidate.fields),
                description=pr_description(candidate.fields, outcome.revision, outcome.diff), author=worker.author,
                fields=outcome.fields)
        except BotStopped:
            raise
        except Exception as err:  # noqa: BLE001 - as in decide: this repo's failure, not the run's
            return worker.record(worker.error(outcome.repo_id, err, outcome.revision))
        outcome.outcome = "proposed"
        return worker.record(outcome)

    def digest(self, owner: str, candidates: list[_Candidate]) -> tuple[DigestView | None, list[RepoOutcome]]:
        """One digest for `owner` listing the best of `candidates` (best first), if the budgets allow it now."""
        held = self.gate.held(owner)
        if held:
            return None, [self._defer(c, held) for c in candidates]
        fresh = [self._read(c) for c in candidates]
        ready = [c for c in fresh if isinstance(c, _Candidate)]
        listed: list[_Candidate] = []
        entries: list[DigestEntry] = []
        for candidate in ready:
            trial = [*entries, DigestEntry(candidate.outcome.repo_id, candidate.fields)]
            if len(trial) > MAX_DIGEST_REPOS or (entries and len(digest_description(owner, trial)) > MAX_DIGEST_CHARS):
                break
            listed.append(candidate)
            entries = trial
        waiting = [c for c in fresh if not isinstance(c, _Candidate)] + \
            [self._defer(c, "digest-full") for c in ready[len(listed):]]
        if not listed:
            return None, waiting
        self.gate.wait()
        ids = [c.outcome.repo_id for c in listed]
        view = DigestView(owner, ids[0], None, tuple(ids), digest_title(owner, len(ids)), digest_description(owner, entries))
        contact = self.ledger.reserve_digest(owner, view.repo_id, [
            {"repo_id": c.outcome.repo_id, "revision": c.outcome.revision, "fields": c.outcome.fields} for c in listed])
        if self.worker.config.dry_run:
            for candidate in listed:
                candidate.outcome.outcome = "would-digest"
            return view, [c.outcome for c in listed] + waiting
        try:
            num = self.worker.client.open_digest(view.repo_id, title=view.title, description=view.description,
                                                 author=self.worker.author, listed=ids)
        except BotStopped:
            raise
        except Exception as err:  # noqa: BLE001 - this owner's digest failed; the next run reconciles its intent
            return None, [self.worker.record(self.worker.error(c.outcome.repo_id, err, c.outcome.revision))
                          for c in listed] + waiting
        self.ledger.digest_opened(contact, num)
        for candidate in listed:
            candidate.outcome.outcome, candidate.outcome.pr_num = "digested", num
        return DigestView(owner, view.repo_id, num, view.listed, view.title, view.description), \
            [c.outcome for c in listed] + waiting


def run_bot(repos: Iterable[str], client: HubClient, *, infer: Infer | None = None, state: BotState | None = None,
            config: BotConfig = BotConfig(), progress: bool = False,
            on_outcome: Callable[[RepoOutcome], None] | None = None,
            on_wait: Callable[[float], None] | None = None) -> BotReport:
    """Process `repos` and the repos owners asked for in digests; the report of what was done.

    Args:
        repos: repo ids, e.g. from `hf_probex.members.tree_members` or a file.
        client: the Hub client; its token is checked first (`whoami`; a dry run may go on without one). Its
            `sleep` waits out the spacing between proposals.
        infer: repo id -> CardSuggestion; by default `hf_probex.infer.infer_card` with the client's token.
        state: where outcomes and the ledger of contacts are kept (its clock counts the budgets); required
            unless `config.dry_run` (a dry run uses none: it counts the budgets on a scratch ledger).
        config: threshold, dry run, concurrency, opt-out list, budgets, digest mode.
        progress: show a tqdm progress bar.
        on_outcome: called with each outcome as it comes (from the calling thread).
        on_wait: called with the seconds the run is about to wait for the spacing between two contacts
            (`Budgets.minutes_between`), before it waits: a run may otherwise sit silent for minutes.

    Raises:
        BotStopped: on 401/403, after the repos in flight finish; rerunning resumes.
    """
    from tqdm.auto import tqdm

    if state is None and not config.dry_run:
        raise ValueError("a run that writes needs a state database")
    try:
        author = client.whoami()
    except BotStopped:
        if not config.dry_run:
            raise
        author = None  # a dry run reads public repos anonymously; earlier PRs are then found by marker only
    state = None if config.dry_run else state
    if state is not None:
        sync(client, state, author, config.refuse_after_closed)
    requested = set(state.requested()) if state is not None else set()
    order = list(dict.fromkeys([*repos, *sorted(requested)]))
    worker = _Worker(client, infer or _default_infer(client.api.token), state, config, author, Owners(client, state))
    report, started, stop = BotReport(), time.monotonic(), threading.Event()
    decided: dict[str, RepoOutcome] = {}

    def emit(outcome: RepoOutcome) -> None:
        decided[outcome.repo_id] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
        bar.update()
        bar.set_postfix(Counter(o.outcome for o in decided.values()), refresh=False)

    def guarded(repo_id: str) -> RepoOutcome | _Candidate | None:
        if stop.is_set():
            return None  # stopped: left for the next run
        try:
            return worker.decide(repo_id, repo_id in requested)
        except BotStopped:
            stop.set()  # before this thread takes the next repo
            raise

    bar = tqdm(total=len(order), unit="repo", disable=not progress, desc="bot")
    candidates: list[_Candidate] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
            futures = [pool.submit(guarded, repo_id) for repo_id in order]
            try:
                for future in futures:
                    result = future.result()
                    if isinstance(result, _Candidate):
                        candidates.append(result)
                    elif result is not None:
                        emit(result)
            finally:
                stop.set()
        ledger = state if state is not None else BotState(":memory:")
        try:
            _propose(_Proposer(worker, ledger, on_wait), candidates, config.digest, emit, report)
        finally:
            if ledger is not state:
                ledger.close()
        if state is not None:
            _answer_digests(client, state, author)
    finally:
        bar.close()
        position = {repo_id: i for i, repo_id in enumerate(order)}
        report.outcomes = sorted(decided.values(), key=lambda o: position[o.repo_id])
        report.retries, report.seconds = client.retries, time.monotonic() - started
    return report


def _answer_digests(client: HubClient, state: BotState, author: str | None) -> None:
    """In each digest whose owner accepted repos, tell the owner once what became of them: links to the pull requests
    opened, or why none was (a repo still waiting for budget is told of when its turn has come)."""
    for contact in state.contacts(statuses=("accepted",)):
        if contact.kind != "digest" or contact.num is None:
            continue
        done = []
        for repo_id in contact.accepted:
            record = state.get(repo_id)
            if repo_id not in contact.answered and record is not None and not record.requested:
                done.append((repo_id, record.pr_num if record.outcome == "proposed" else None, record.reason))
        if done:
            client.comment(contact.repo_id, contact.num, digest_answer(done, client.api.endpoint), author=author)
            state.answer(contact.id, [repo_id for repo_id, _, _ in done])


def _propose(proposer: _Proposer, candidates: list[_Candidate], digest: bool,
             emit: Callable[[RepoOutcome], None], report: BotReport) -> None:
    """Requested repos first, then the rest by priority (ties in the order given): one pull request each, or
    with `digest` one digest per owner, the owner with the best proposal first."""
    ranked = sorted(candidates, key=lambda c: (not c.requested, -(c.outcome.priority or 0.0)))
    for candidate in ranked:
        if candidate.requested or not digest:
            emit(proposer.pull_request(candidate))
    by_owner: dict[str, list[_Candidate]] = {}
    for candidate in ranked:
        if digest and not candidate.requested:
            by_owner.setdefault(owner_of(candidate.outcome.repo_id), []).append(candidate)
    for owner, mine in by_owner.items():
        view, outcomes = proposer.digest(owner, mine)
        if view is not None:
            report.digests.append(view)
        for outcome in outcomes:
            emit(outcome)
