"""The card bot: proposes model-card pull requests with the fields hf_probex infers, politely, at scale.

`hf_probex.members` lists a model tree (`walk_tree`, re-exported here: by cards; `tree_members`: by cards
and weights), `run_bot` processes repos (one pull request per repo at most, resumable through
`BotState`), `HubClient` carries the manners (stop on 401/403, back off on 429/5xx, PR rate limit).
The command line is `hf-probex bot run` / `hf-probex bot status`; see docs/bot.md.
"""

from ..members import walk_tree
from .client import BotStopped, HubClient, Proposal
from .run import DEFAULT_MIN_CONFIDENCE, BotConfig, BotReport, RepoOutcome, pr_description, pr_title, run_bot
from .state import BotState, RepoRecord, default_state_path

__all__ = [
    "DEFAULT_MIN_CONFIDENCE", "BotConfig", "BotReport", "BotState", "BotStopped", "HubClient", "Proposal",
    "RepoOutcome", "RepoRecord", "default_state_path", "pr_description", "pr_title", "run_bot", "walk_tree",
]
