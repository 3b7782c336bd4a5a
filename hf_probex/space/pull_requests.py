"""Opening a pull request from the Space: the bot's own path (`hf_probex.bot.run_bot`) for one repo, with only the
fields validated at their calibrated threshold, so a PR from the page gets the bot's checks (opt-out, duplicates,
open PRs) and never a value the slider only explored."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..suggestions import CardSuggestion
from .common import PublicNames, SpaceInputError, _as_token, _hub_api
from .infer_tab import _why_no_pull_request

if TYPE_CHECKING:
    from ..bot import HubClient


@dataclass
class PullRequestView:
    """What happened to a pull request request: `opened`, the PR's `url` (or an earlier one's), a `message`."""

    opened: bool
    url: str | None
    message: str


def _earlier_pull_request(client: HubClient, repo_id: str, num: int) -> str:
    """Why fields proposed before are not proposed again, by what became of that pull request."""
    try:
        status = client.call(lambda: client.api.get_discussion_details(repo_id, num)).status
    except Exception:  # noqa: BLE001 - the reason stands without the status; the link lets the visitor look
        return f"these fields were proposed on this repo before, in pull request #{num}"
    if status in ("open", "draft"):
        return f"hf-probex's pull request #{num} proposing these fields is still open"
    return f"these fields were proposed in pull request #{num}, which was {status}: they are not proposed again"


PULL_REQUEST_REASONS = {
    "already-proposed": "these fields were proposed on this repo before",
    "open-pr": "hf-probex already has an open pull request on this repo",
    "complete": "the card has every field now",
    "opt-out-card": "the card opts out of hf-probex proposals",
    "opt-out-owner": "the repo's owner opted out of hf-probex proposals on all their repos",
    "invalid-card": "the card's metadata does not parse (or is too complex to read safely), so no safe edit exists",
    "unsafe-edit": "adding to this card would change what its owner wrote (or it quotes hf-probex's section marker)",
    "below-threshold": "no field reaches its calibrated threshold",
    "nothing-inferred": "nothing the card lacks was inferred",
}


def open_pull_request(suggestion: CardSuggestion | None, token: str | None) -> PullRequestView:
    """Open a pull request with `suggestion`'s validated fields (`pull_request_fields`), through the bot (one
    PR per repo, never a duplicate, never on an opted-out card; fields proposed there before are not proposed
    again). Opens nothing, and says why, when no field qualifies.

    Raises:
        SpaceInputError: nothing inferred yet, an uploaded file (no repo), no token, a token the Hub refuses,
            or an error on the Hub.
    """
    from ..bot import BotConfig, BotState, BotStopped, HubClient, run_bot
    from ..reading import looks_like_repo_id

    if suggestion is None:
        raise SpaceInputError("infer a card first, then open the pull request")
    if not looks_like_repo_id(suggestion.source):
        raise SpaceInputError("pull requests go to Hub repos: this card was inferred from an uploaded file")
    fields = suggestion.pull_request_fields
    if not fields:
        return PullRequestView(False, None, f"No pull request opened: nothing qualifies: {_why_no_pull_request(suggestion)}.")
    if not _as_token(token):
        raise SpaceInputError("paste a Hub token with write access to open a pull request")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    try:
        client.whoami()
    except BotStopped:
        raise SpaceInputError("the Hub does not accept this token: paste a valid one (hf_...) with write access") from None
    # Only the validated fields reach the bot, so its threshold has nothing left to filter: each passed its own floor.
    validated = CardSuggestion(suggestion.source, suggestion.revision, suggestion.family, suggestion.tree, dict(fields))
    config = BotConfig(min_confidence=0.0, concurrency=1)
    with tempfile.TemporaryDirectory() as folder:
        state = BotState(Path(folder) / "state.sqlite")  # the Hub's PR markers, not this file, prevent duplicates
        try:
            report = run_bot([suggestion.source], client, infer=lambda _repo: validated, state=state, config=config)
        except BotStopped:
            raise SpaceInputError(f"this token may not open pull requests on {suggestion.source}: paste one with "
                                  "write access") from None
        finally:
            state.close()
    outcome = report.outcomes[0]
    url = f"{client.api.endpoint}/{outcome.repo_id}/discussions/{outcome.pr_num}" if outcome.pr_num else None
    if outcome.outcome == "proposed":
        return PullRequestView(True, url, f"Opened pull request #{outcome.pr_num} adding {', '.join(outcome.fields)}.")
    if outcome.outcome == "error":
        raise SpaceInputError(f"the Hub did not take the pull request ({PublicNames()(outcome.reason or '')}): "
                              "try again in a moment")
    reason = _earlier_pull_request(client, outcome.repo_id, outcome.pr_num) \
        if outcome.reason == "already-proposed" and outcome.pr_num else PULL_REQUEST_REASONS.get(outcome.reason, outcome.reason)
    return PullRequestView(False, url, f"No pull request opened: {reason}.")
