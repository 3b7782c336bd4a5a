"""The card bot: proposes model-card pull requests with the fields hf_probex infers, politely, at scale.

`hf_probex.members` lists a model tree (`walk_tree`, re-exported here: by cards; `tree_members`: by cards
and weights), `run_bot` processes repos (one pull request per repo at most, or one digest per owner;
resumable through `BotState`), `etiquette` holds the manners toward owners (budgets, owner-wide refusals,
priority, reading replies back), `wording` what the bot writes, and `HubClient` the manners toward the Hub
(stop on 401/403, back off on 429/5xx). The command line is `hf-probex bot run` / `hf-probex bot status`;
see docs/bot.md.
"""

from ..members import walk_tree
from .client import BotStopped, HubClient, Proposal
from .etiquette import Budgets, priority
from .run import DEFAULT_MIN_CONFIDENCE, BotConfig, BotReport, DigestView, RepoOutcome, run_bot
from .state import BotState, Contact, RepoRecord, default_state_path
from .wording import digest_description, digest_title, pr_description, pr_title, read_commands

__all__ = [
    "DEFAULT_MIN_CONFIDENCE", "BotConfig", "BotReport", "BotState", "BotStopped", "Budgets", "Contact", "DigestView",
    "HubClient", "Proposal", "RepoOutcome", "RepoRecord", "default_state_path", "digest_description", "digest_title",
    "pr_description", "pr_title", "priority", "read_commands", "run_bot", "walk_tree",
]
