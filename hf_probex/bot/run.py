"""One bot run: find the repos, and for each one decide, then propose at most one pull request.

Per repo, cheapest checks first: the opt-out list (no request at all), main's head revision (a repo
already settled at that revision is not read again), README.md (opt-out tag or key, unparseable
metadata, nothing missing), then the bot's own earlier pull requests on the Hub (the record that
survives a lost state file), then inference, then the choice of fields (`suggestions.pull_request_choice`):
missing from the card, at or above the confidence their source was validated at and the run's own
threshold, never proposed before on this repo (open, merged or closed), and only when one of them is
informative (base_model, trained_on): a PR of fields the Hub derives is noise. An open PR of the bot
blocks any new one. The intent is committed to the state before the PR is opened and the outcome
after; a run that finds an intent reconciles it with the repo's PRs first (see `state`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..cards import CardError, apply_suggestions, card_diff, is_opted_out, missing_fields, section_heading
from ..errors import BadFileError
from ..suggestions import (
    INFORMATIVE_FIELDS, CardSuggestion, FieldSuggestion, inferred_from_weights, origins, pull_request_choice,
)
from .client import BotStopped, HubClient, Proposal, marker
from .state import BotState

__all__ = ["DEFAULT_MIN_CONFIDENCE", "BotConfig", "BotReport", "RepoOutcome", "pr_description", "pr_title",
           "run_bot"]

DEFAULT_MIN_CONFIDENCE = 0.9
"""Precision over recall: a PR nobody asked for must be right."""

Infer = Callable[[str], CardSuggestion]


@dataclass(frozen=True)
class BotConfig:
    """How a run behaves.

    Attributes:
        min_confidence: fields below it are never proposed (on top of each field's own floor, which a
            lower value cannot lower: see `suggestions.pull_request_choice`).
        dry_run: decide and print, write nothing (no PR, no state).
        concurrency: repos processed at once (I/O bound: reading weights and cards over the network).
        opt_out: repo ids never to touch (from `--opt-out-list`).
    """

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    dry_run: bool = False
    concurrency: int = 4
    opt_out: frozenset[str] = frozenset()


@dataclass
class RepoOutcome:
    """What the run did with one repo.

    `outcome` is "proposed", "would-propose" (dry run), "skipped", "unchanged" (settled earlier at this
    revision; nothing was redone) or "error"; `reason` says why for the last three.
    """

    repo_id: str
    outcome: str
    reason: str | None = None
    revision: str | None = None
    fields: list[str] = field(default_factory=list)
    pr_num: int | None = None
    diff: str = ""


@dataclass
class BotReport:
    """The outcomes of one run, in the order repos were given, and how many calls were retried."""

    outcomes: list[RepoOutcome] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0

    def counts(self) -> Counter:
        """Repos by outcome."""
        return Counter(o.outcome for o in self.outcomes)


def pr_title(fields: list[FieldSuggestion]) -> str:
    """The pull request's title: which fields it adds, and where their values come from."""
    return f"hf-probex: add {', '.join(f.name for f in fields)} to the model card, from {origins(fields)}"


def pr_description(fields: list[FieldSuggestion], revision: str | None, diff: str) -> str:
    """The pull request's description: what, from where and what evidence, how sure, how to refuse, the marker."""
    rows = "\n".join(f"| `{f.name}` | {_cell(f.value)} | {f.origin} | {f.confidence:.0%} | {_cell(f.evidence)} |"
                     for f in fields)
    read = ("this model's files and a few of its weights" if inferred_from_weights(fields) else "this model's files")
    return f"""\
hf-probex read {read},
and found card fields that the model card does not state. This pull request proposes them; it changes
README.md only: it adds the missing metadata keys (nothing else in the metadata is touched) and a
section "{section_heading(fields)}" that lists them.

| field | proposed value | from | confidence | evidence |
|---|---|---|---|---|
{rows}

A value is proposed here only at or above the confidence its source was validated at: a value read from
the model's files or its declared lineage is exact; one from weights routing must reach the routing
threshold; an expert's (trained on other models of the same model tree) must reach the threshold at which
it was 95 % precise on models it had not seen.

- **Wrong, or not wanted?** Close this pull request: these fields will not be proposed again here.
- **No more proposals at all?** Add the tag `hf-probex-opt-out` to the card's `tags` (or the metadata
  `hf_probex: {{opt_out: true}}`).

<details><summary>The change to README.md</summary>

```diff
{diff.rstrip()}
```
</details>

{marker([f.name for f in fields], revision)}
"""


def _cell(value: object) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _default_infer(token: str | None) -> Infer:
    """`infer_card` at each expert's calibrated threshold; the bot's own `min_confidence` applies on top."""
    try:
        from ..infer import infer_card  # heavy (torch): only when the bot really infers
    except ImportError as err:
        raise BotStopped(f"hf_probex.infer_card is not available ({err}); pass an inference callable") from None

    return lambda repo_id: infer_card(repo_id, token=token)


class _Worker:
    """Processes one repo at a time (shared by the run's threads; everything here is thread-safe)."""

    def __init__(self, client: HubClient, infer: Infer, state: BotState | None, config: BotConfig,
                 author: str | None) -> None:
        self.client, self.infer, self.state, self.config, self.author = client, infer, state, config, author

    def record(self, outcome: RepoOutcome) -> RepoOutcome:
        if self.state is not None and outcome.outcome in ("proposed", "skipped", "error"):
            self.state.put(outcome.repo_id, revision=outcome.revision, outcome=outcome.outcome,
                           reason=outcome.reason, fields=outcome.fields, pr_num=outcome.pr_num)
        return outcome

    def process(self, repo_id: str) -> RepoOutcome:
        try:
            return self.record(self._process(repo_id))
        except BotStopped:
            raise
        except Exception as err:  # noqa: BLE001 - one repo's failure (gone, 5xx after retries, inference) is not the run's
            message = (getattr(err, "server_message", None) or str(err) or "").splitlines()
            return self.record(RepoOutcome(repo_id, "error", f"{type(err).__name__}: {message[0] if message else ''}"))

    def _process(self, repo_id: str) -> RepoOutcome:
        if repo_id in self.config.opt_out:
            return RepoOutcome(repo_id, "skipped", "opt-out-list")
        revision = self.client.head(repo_id)
        prior = self.state.get(repo_id) if self.state is not None else None
        if prior is not None and prior.revision == revision and prior.outcome in ("proposed", "skipped"):
            return RepoOutcome(repo_id, "unchanged", prior.reason or prior.outcome, revision, list(prior.fields),
                               prior.pr_num)
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
        if prior is not None and prior.outcome == "pending":
            done = [p for p in earlier if p.revision == prior.revision and p.fields == prior.fields]
            if done:  # the PR was opened, then the process died before recording it
                return RepoOutcome(repo_id, "proposed", "reconciled", prior.revision, list(prior.fields), done[0].num)
        if not missing:
            return skip("complete")
        return self._propose(repo_id, revision, readme, missing, earlier)

    def _propose(self, repo_id: str, revision: str, readme: str, missing: set[str],
                 earlier: list[Proposal]) -> RepoOutcome:
        suggestion = self.infer(repo_id)
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
        names = [f.name for f in chosen]
        diff = card_diff(readme, suggested)
        outcome = RepoOutcome(repo_id, "would-propose", None, revision, names, diff=diff)
        if self.config.dry_run:
            return outcome
        self.state.put(repo_id, revision=revision, outcome="pending", fields=names)
        outcome.pr_num = self.client.open_pr(
            repo_id, revision, suggested.encode("utf-8"), title=pr_title(chosen),
            description=pr_description(chosen, revision, diff), author=self.author, fields=names)
        outcome.outcome = "proposed"
        return outcome


def run_bot(repos: Iterable[str], client: HubClient, *, infer: Infer | None = None, state: BotState | None = None,
            config: BotConfig = BotConfig(), progress: bool = False,
            on_outcome: Callable[[RepoOutcome], None] | None = None) -> BotReport:
    """Process `repos` (at most `config.concurrency` at once); the report of what was done.

    Args:
        repos: repo ids, e.g. from `hf_probex.members.tree_members` or a file.
        client: the Hub client; its token is checked first (`whoami`; a dry run may go on without one).
        infer: repo id -> CardSuggestion; by default `hf_probex.infer.infer_card` with the client's token.
        state: where outcomes are remembered; required unless `config.dry_run` (a dry run uses none).
        config: threshold, dry run, concurrency, opt-out list.
        progress: show a tqdm progress bar.
        on_outcome: called with each outcome as it comes (from the calling thread).

    Raises:
        BotStopped: on 401/403, after the repos in flight finish; rerunning resumes.
    """
    from tqdm.auto import tqdm

    if state is None and not config.dry_run:
        raise ValueError("a run that writes needs a state database")
    repos = list(dict.fromkeys(repos))
    try:
        author = client.whoami()
    except BotStopped:
        if not config.dry_run:
            raise
        author = None  # a dry run reads public repos anonymously; earlier PRs are then found by marker only
    worker = _Worker(client, infer or _default_infer(client.api.token),
                     None if config.dry_run else state, config, author)
    report, started, stop = BotReport(), time.monotonic(), threading.Event()

    def guarded(repo_id: str) -> RepoOutcome | None:
        if stop.is_set():
            return None  # stopped: left for the next run
        try:
            return worker.process(repo_id)
        except BotStopped:
            stop.set()  # before this thread takes the next repo
            raise

    bar = tqdm(total=len(repos), unit="repo", disable=not progress, desc="bot")
    with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
        futures = [pool.submit(guarded, repo_id) for repo_id in repos]
        try:
            for future in futures:
                outcome = future.result()
                if outcome is None:
                    continue
                report.outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
                bar.update()
                bar.set_postfix(report.counts(), refresh=False)
        finally:
            stop.set()
            bar.close()
            report.retries, report.seconds = client.retries, time.monotonic() - started
    return report
