"""What the Gradio Space does, one module per tab, as plain functions: testable without a browser or a Gradio server.

The page (`hf_probex.space.app`, served by `spaces/app.py` and `hf-probex space`) is a thin layer over these. Each
function takes the user's inputs and returns tables (pandas DataFrames, which Gradio's tables and plots take as they
are) and Markdown; a bad input raises `SpaceInputError` with a one-line message in the Space's own words (what to do
in the page, never CLI advice), and results carry `warnings` for things worth saying that are not errors. No server
path is ever shown: an upload is named by its file name, a local expert by its tree (`PublicNames`).

- `infer_tab`: `infer`, a card inferred for a Hub repo id or an upload, laid out for display.
- `pull_requests`: `open_pull_request`, the bot's own path for one repo, with only validated fields.
- `browse_tab`: `browse_tree`, a tree's members, what each card lacks, and the tree drawn.
- `search_tab`: `search_loras`, zero-shot search of a LoRA tree by text.
- `experts_tab`: `experts_table`, `resolve_registry`, `hub_experts`, `tree_examples`: the experts, by tree.
- `common`: what the tabs share (limits, `SpaceInputError`, `PublicNames`); `tree_walk`: walking a tree's members.

Importing this package does not import Gradio; `hf_probex.space.app` does.
"""

from .browse_tab import TreeView, browse_tree, tree_drawing
from .common import DEFAULT_MAX_TREE_MODELS, DEFAULT_MAX_UPLOAD_BYTES, PublicNames, SpaceInputError
from .experts_tab import HUB_TIMEOUT_S, experts_table, hub_experts, resolve_registry, tree_examples
from .infer_tab import FIELD_COLUMNS, InferView, card_markdown, diff_lines, infer, scores_chart
from .pull_requests import PullRequestView, open_pull_request
from .search_tab import SearchView, search_loras, zero_shot_roots

__all__ = [
    "DEFAULT_MAX_TREE_MODELS", "DEFAULT_MAX_UPLOAD_BYTES", "FIELD_COLUMNS", "HUB_TIMEOUT_S", "InferView", "PublicNames",
    "PullRequestView", "SearchView", "SpaceInputError", "TreeView", "browse_tree", "card_markdown", "diff_lines",
    "experts_table", "hub_experts", "infer", "open_pull_request", "resolve_registry", "scores_chart", "search_loras",
    "tree_drawing", "tree_examples", "zero_shot_roots",
]
