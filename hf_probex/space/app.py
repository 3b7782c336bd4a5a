"""The Gradio Space's page: `create_app` builds it, and `SpaceBlocks.launch` serves it with its theme.

`spaces/app.py` (the Hub Space) and `hf-probex space` (local) serve the same app from here. Every
handler is a thin wrapper over `hf_probex.space`: it passes the inputs on, shows `SpaceInputError` as
a `gr.Error` and each warning as a `gr.Warning`, and reports progress through `gr.Progress`. A request
that fails clears what the previous one showed, so no old result stands under an error.

The page shows without waiting on the Hub: the default experts start as the local registry file, and
the Hub's (and the example repos) are listed in the background with a short timeout.

API endpoints (for `gradio_client`): `/infer` (input "Hub repo id" or "Upload"; a minimum confidence of 0
means each expert's calibrated threshold; candidate concepts for a LoRA, blank for the expert's own),
`/open_pull_request`, `/browse_tree`, `/search_loras`, `/list_experts`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import gradio as gr
import pandas as pd

from .. import __version__
from ..experts.registry import ExpertRegistry
from ..suggestions import CardSuggestion
from .browse_tab import BROWSE_COLUMNS, browse_tree
from .common import DEFAULT_MAX_TREE_MODELS, DEFAULT_MAX_UPLOAD_BYTES, SpaceInputError
from .experts_tab import experts_table, hub_experts, resolve_registry, tree_examples
from .infer_tab import FIELD_COLUMNS, diff_lines, infer
from .pull_requests import open_pull_request
from .search_tab import search_loras, zero_shot_roots

__all__ = ["SpaceBlocks", "create_app"]

# System fonts only: the default theme fonts come from Google Fonts, which a Space behind a firewall
# (or this project's offline machines) cannot reach.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                       font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
                       font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])
CSS = """
.gradio-container { max-width: 1180px !important; margin: auto; }
#probex-header h1 { margin-bottom: 0.1em; }
#probex-header p { color: var(--body-text-color-subdued); margin-top: 0; }
#probex-summary {
  padding: 0.4em 0.9em; border-left: 4px solid var(--color-accent);
  background: var(--background-fill-secondary); border-radius: 6px;
}
#probex-summary:not(:has(p, li, h1, h2, h3)) { padding: 0; border: 0; }
#probex-card { max-height: 520px; overflow-y: auto; }
#probex-diff { font-family: var(--font-mono); font-size: 0.85em; }
.probex-chart { padding: 0.6em 0.9em; border: 1px solid var(--border-color-primary); border-radius: 8px; }
.probex-title { font-weight: 600; margin-bottom: 0.5em; }
.probex-row { display: flex; align-items: center; gap: 0.6em; margin: 0.2em 0; font-size: 0.9em; }
.probex-label { flex: 0 0 15em; text-align: right; overflow-wrap: anywhere; }
.probex-track { position: relative; flex: 1; height: 1.1em; background: var(--background-fill-secondary); border-radius: 3px; }
.probex-fill { position: absolute; left: 0; top: 0; bottom: 0; background: var(--neutral-400); border-radius: 3px; }
.probex-fill.strong { background: var(--color-accent); }
.probex-mark { position: absolute; top: -0.25em; bottom: -0.25em; border-left: 2px solid #c2410c; }
.probex-mark.asked { border-left: 2px dashed var(--body-text-color-subdued); }
.probex-value { flex: 0 0 4.5em; font-variant-numeric: tabular-nums; }
.probex-legend { margin-top: 0.5em; font-size: 0.85em; color: var(--body-text-color-subdued); }
.probex-key { display: inline-block; width: 0; height: 0.9em; margin: 0 0.35em -0.1em 0.2em; }
.probex-key.calibrated { border-left: 2px solid #c2410c; }
.probex-key.asked { border-left: 2px dashed var(--body-text-color-subdued); }
"""
HEADER = """\
# hf-probex &nbsp;<small>model cards from model weights</small>

Most models on the Hub sit in a few **model trees**. Inside a tree, one layer of a model's weights tells
what it was trained on, and a small **expert** per tree reads it off ([ProbeX, CVPR 2025](https://arxiv.org/abs/2410.19696)).
Give a repo id (or upload a LoRA) to get the card fields it lacks, each with its confidence and evidence.
"""
PR_HINT = "Paste a token with write access above, then open a pull request with the validated fields."
#: The same on a Space, where visitors sign in with the Hub.
PR_HINT_ON_A_SPACE = ("Sign in with the Hub (or paste a token with write access) above, then open a pull request with "
                      "the validated fields.")
#: Closes the toasts still showing, run as each action starts: an error of the last run must not linger beside the
#: next result, nor follow the visitor to another tab.
CLOSE_TOASTS = "() => document.querySelectorAll('[data-testid=\"toast-close\"]').forEach(button => button.click())"
TREE_WALK = "tree-walk"  # browse and search share one slot: each walks a whole tree
REPO, UPLOAD = "Hub repo id", "Upload a .safetensors file"


class SpaceBlocks(gr.Blocks):
    """A `gr.Blocks` whose `launch` applies the Space's theme, CSS and upload limit unless told otherwise."""

    def __init__(self, *, max_upload_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_upload_bytes = max_upload_bytes

    def launch(self, *args: Any, **kwargs: Any):  # noqa: D102 - gr.Blocks.launch, with defaults
        kwargs.setdefault("theme", THEME)
        kwargs.setdefault("css", CSS)
        kwargs.setdefault("max_file_size", self.max_upload_bytes)
        return super().launch(*args, **kwargs)


@contextlib.contextmanager
def _shown_to_user() -> Iterator[None]:
    """A bad input becomes a Gradio error popup with its one-line message (no traceback in the log)."""
    try:
        yield
    except SpaceInputError as err:
        raise gr.Error(str(err), print_exception=False) from None


def _warn(warnings: Iterable[str]) -> None:
    for warning in warnings:
        gr.Warning(warning)


class _Experts:
    """The registry the app uses, shared by every session, and the example repos of its trees.

    Experts given to `create_app` are used as they are. The default ones start as the local registry file;
    the Hub's are listed in the background (`hub_experts`: a short timeout, nothing when offline), so the page
    never waits on the Hub; `ready` joins that listing, `reload` starts another.
    """

    def __init__(self, experts: ExpertRegistry | Iterable[str | os.PathLike] | None) -> None:
        self.source = experts
        self.registry = resolve_registry(experts) if experts is not None else ExpertRegistry.from_file()
        self.note = ""
        self.examples: list[list[str]] | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probex-hub-experts")
        self._pending: Future | None = self._pool.submit(hub_experts) if experts is None else None

    def ready(self) -> ExpertRegistry:
        """The registry, with the Hub's experts once listed (waits for the background listing, a few seconds at most)."""
        with self._lock:
            if self._pending is not None:
                hub, self.note = self._pending.result()
                self.registry, self._pending = ExpertRegistry.from_file() + hub, None
            if self.examples is None:
                self.examples = tree_examples(self.registry)
            return self.registry

    def reload(self) -> ExpertRegistry:
        with self._lock:
            if self.source is None:  # the default registry can change (new experts on the Hub); a given one cannot
                self._pending = self._pool.submit(hub_experts)
            self.examples = None
        return self.ready()


def _authors_box(elem_id: str) -> gr.Textbox:
    """Where members without a card are looked for: the Hub lists a tree only from cards that name its root."""
    return gr.Textbox(label="Also route the models of (users or organisations, comma-separated)", max_lines=1,
                      placeholder="e.g. probex-zoo-sd", elem_id=elem_id,
                      info="models whose card names no base_model are found by their weights (optional)")


def _root_choices(roots: list[str]) -> dict:
    return gr.update(choices=roots, value=roots[0] if roots else None)


def on_a_space() -> bool:
    """Whether the page is served by a Hugging Face Space (where the Hub's sign-in, OAuth, is available)."""
    from gradio.utils import get_space

    return get_space() is not None


def visitor_token(typed: str | None, signed_in: gr.OAuthToken | None) -> str | None:
    """The visitor's token for one request: the one typed in the token box, else the one of their sign-in with the
    Hub (on a Space); None sends no token (`hf_probex.space` never falls back to the server's own)."""
    if typed and typed.strip():
        return typed.strip()
    return signed_in.token if signed_in is not None else None


def create_app(experts: ExpertRegistry | Iterable[str | os.PathLike] | None = None, *,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_tree_models: int = DEFAULT_MAX_TREE_MODELS,
               concurrency: int = 2, max_queue: int = 64) -> SpaceBlocks:
    """The Space: tabs Infer, Browse a tree, Search by text, Experts.

    Args:
        experts: an `ExpertRegistry`, expert folders / repo ids, or None for the default registry (the
            local registry file now, plus the Hub's experts listed in the background), listed again on "Refresh".
        max_upload_bytes: the largest .safetensors upload accepted.
        max_tree_models: the most models one tree walk reads (browse, search).
        concurrency: requests worked on at once per event (tree walks: one at a time); others queue.
        max_queue: requests waiting at most; more are turned away with a "queue full" message.
    """
    from huggingface_hub import constants

    experts_ = _Experts(experts)

    def run_infer(kind: str, repo_id: str, upload: str | None, min_confidence: float, token: str, candidates: str = "",
                  oauth_token: gr.OAuthToken | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
        from_upload = kind == UPLOAD  # only the chosen input is read: an upload never wins over a typed id
        with _shown_to_user():
            view = infer(None if from_upload else repo_id, upload if from_upload else None,
                         token=visitor_token(token, oauth_token),
                         registry=experts_.ready(), min_confidence=min_confidence or None, candidates=candidates,
                         max_upload_bytes=max_upload_bytes, progress=progress)
        _warn(view.warnings)
        can_propose = bool(view.suggestion.pull_request_fields) and not from_upload
        return (view.summary, view.chart, view.fields, view.card, diff_lines(view.diff or "(nothing qualifies for a pull request)"),
                view.suggestion, gr.update(interactive=can_propose),
                (PR_HINT_ON_A_SPACE if on_a_space() else PR_HINT) if can_propose else "")

    def cleared_infer() -> tuple:
        return ("", "", pd.DataFrame(columns=FIELD_COLUMNS), "", None, None, gr.update(interactive=False), "")

    def pick(kind: str) -> tuple:
        return gr.update(visible=kind == REPO), gr.update(visible=kind == UPLOAD)

    def run_pull_request(suggestion: CardSuggestion | None, token: str, oauth_token: gr.OAuthToken | None = None) -> str:
        with _shown_to_user():
            result = open_pull_request(suggestion, visitor_token(token, oauth_token))
        link = f" [{result.url}]({result.url})" if result.url else ""
        return f"{'✅' if result.opened else 'ℹ️'} {result.message}{link}"

    def run_browse(root: str, authors: str, token: str, from_weights: bool = False,
                   oauth_token: gr.OAuthToken | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
        with _shown_to_user():
            view = browse_tree(root, token=visitor_token(token, oauth_token), limit=max_tree_models, authors=(authors or "").split(","),
                               registry=experts_.ready(), parents_from_weights=bool(from_weights), progress=progress)
        _warn(view.warnings)
        return view.summary, view.coverage, view.models, view.drawing

    def run_search(root: str, query: str, top_k: float, authors: str, token: str,
                   oauth_token: gr.OAuthToken | None = None, progress: gr.Progress = gr.Progress()) -> tuple:
        with _shown_to_user():
            view = search_loras(root, query, registry=experts_.ready(), token=visitor_token(token, oauth_token),
                                top_k=int(top_k),
                                limit=max_tree_models, authors=(authors or "").split(","), progress=progress)
        _warn(view.warnings)
        return view.summary, view.ranking, view.ranking

    def list_experts() -> tuple:
        registry = experts_.ready()
        trees = sorted({e.tree for e in registry.entries})
        summary = (f"**{len(registry)}** experts for **{len(trees)}** trees ({', '.join(trees)})" if trees else
                   "No experts found: this Space infers library, pipeline and declared base models, but no trained_on. "
                   "Experts are the Hub's models tagged `probex-expert` from trusted authors.")
        summary += f"\n\n> {experts_.note}" if experts_.note else ""
        return (summary, experts_table(registry), _root_choices(registry.roots), _root_choices(zero_shot_roots(registry)),
                gr.update(samples=experts_.examples, visible=bool(experts_.examples)))

    def refresh_experts() -> tuple:
        experts_.reload()
        return list_experts()

    registry = experts_.registry
    with SpaceBlocks(title="hf-probex: model cards from weights", analytics_enabled=False,
                     max_upload_bytes=max_upload_bytes) as demo:
        with gr.Row(elem_id="probex-header"):
            gr.Markdown(HEADER + f"\nHub: `{constants.ENDPOINT}` · hf_probex {__version__}")
        with gr.Row(equal_height=True):
            if on_a_space():  # the Hub's sign-in where Spaces have it; a pasted token stays the fallback
                gr.LoginButton(scale=1)
            token = gr.Textbox(label="Hub token (optional)", type="password", max_lines=1, scale=4,
                               placeholder="hf_... for private repos and to open pull requests; never stored"
                               + ("; or sign in with the Hub" if on_a_space() else ""))
        with gr.Tabs():
            with gr.Tab("Infer a card", id="infer") as infer_tab:
                with gr.Row(equal_height=True):
                    with gr.Column(scale=4):
                        kind = gr.Radio([REPO, UPLOAD], value=REPO, label="Infer from", elem_id="probex-kind")
                        repo_id = gr.Textbox(label="Hub repo id", placeholder="namespace/name, e.g. google/vit-base-patch16-224",
                                             max_lines=1, elem_id="probex-repo")
                        upload = gr.File(label=f"A .safetensors file (≤ {max_upload_bytes / 2**20:.3g} MiB), e.g. a LoRA",
                                         file_types=[".safetensors"], type="filepath", height=120, visible=False,
                                         elem_id="probex-upload")
                    with gr.Column(scale=1, min_width=220):
                        min_confidence = gr.Slider(0, 1, value=0, step=0.05, label="Minimum confidence",
                                                   info="explores: 0 is each expert's calibrated threshold; a pull "
                                                        "request only ever carries values at or above it",
                                                   elem_id="probex-min-confidence")
                        infer_button = gr.Button("Infer the card", variant="primary", elem_id="probex-infer")
                with gr.Accordion("Candidates: a LoRA's concept, or a text classifier's classes (optional)", open=False):
                    candidates = gr.Textbox("", label="Candidates, one per line or comma-separated; a text class's "
                                                      "example texts after | on its line", lines=3,
                                            placeholder="e.g. a corgi, a watercolour city, a thick eight (a LoRA; blank: "
                                                        "the expert's own vocabulary)\nlaw | The court finds for the "
                                                        "plaintiff. | A contract binds both parties. (a text classifier "
                                                        "whose config.json says LABEL_0, LABEL_1...: it is run on them)",
                                            elem_id="probex-candidates")
                examples = gr.Dataset(components=[gr.Textbox(visible=False), gr.Textbox(visible=False)],
                                      headers=["repo id", "tree"], samples=[], label="Examples from the trees with an expert",
                                      visible=False, elem_id="probex-examples")
                summary = gr.Markdown(elem_id="probex-summary")
                chart = gr.HTML(elem_id="probex-chart")
                fields = gr.Dataframe(pd.DataFrame(columns=FIELD_COLUMNS), label="Fields and evidence", wrap=True,
                                      interactive=False, elem_id="probex-fields",
                                      column_widths=["13%", "15%", "11%", "19%", "9%", "33%"])
                with gr.Tabs():
                    with gr.Tab("Suggested card"):
                        card = gr.Markdown(elem_id="probex-card", sanitize_html=True)
                    with gr.Tab("Diff of README.md"):
                        diff = gr.HighlightedText(label="README.md: current → the pull request's", elem_id="probex-diff",
                                                  color_map={"added": "green", "removed": "red"},
                                                  show_inline_category=False)
                with gr.Row(equal_height=True):
                    pr_button = gr.Button("Open a pull request", interactive=False, scale=1, elem_id="probex-pr")
                    pr_result = gr.Markdown(elem_id="probex-pr-result", container=True)
                suggestion = gr.State()
                infer_inputs = [kind, repo_id, upload, min_confidence, token, candidates]
                infer_outputs = [summary, chart, fields, card, diff, suggestion, pr_button, pr_result]
                kind.change(pick, kind, [repo_id, upload], api_visibility="private")
                for event, api in ((infer_button.click, {"api_name": "infer"}), (repo_id.submit, {"api_visibility": "private"})):
                    event(run_infer, infer_inputs, infer_outputs, **api).failure(
                        cleared_infer, None, infer_outputs, api_visibility="private")
                examples.click(lambda sample: (REPO, sample[0]), examples, [kind, repo_id], api_visibility="private").then(
                    run_infer, infer_inputs, infer_outputs, api_visibility="private").failure(
                    cleared_infer, None, infer_outputs, api_visibility="private")
                pr_button.click(run_pull_request, [suggestion, token], pr_result, api_name="open_pull_request")

            with gr.Tab("Browse a tree", id="browse") as browse_tab:
                with gr.Row(equal_height=True):
                    browse_root = gr.Dropdown(registry.roots, value=registry.roots[0] if registry.roots else None,
                                              label="Tree root (repo id)", allow_custom_value=True, scale=4, elem_id="probex-browse-root",
                                              info="every model naming it as base_model, children of children too")
                    browse_button = gr.Button("Browse the tree", variant="primary", scale=1)
                browse_authors = _authors_box("probex-browse-authors")
                from_weights = gr.Checkbox(False, label="Name parents from the weights too", elem_id="probex-from-weights",
                                           info="for models whose card names none: reads every model's weights (slow)")
                browse_summary = gr.Markdown(elem_id="probex-tree-summary")
                coverage = gr.BarPlot(x="field", y="documented", y_lim=[0, 1], label="Share of the tree's cards that state each field",
                                      y_title="documented", elem_id="probex-coverage")
                no_models = pd.DataFrame(columns=list(BROWSE_COLUMNS.values()))
                models = gr.Dataframe(no_models,
                                      label="Models and what their cards lack", wrap=True, interactive=False,
                                      elem_id="probex-models")
                with gr.Accordion("The tree, drawn", open=False):
                    drawing = gr.Markdown(elem_id="probex-tree-drawing")
                browse_outputs = [browse_summary, coverage, models, drawing]
                browse_button.click(run_browse, [browse_root, browse_authors, token, from_weights], browse_outputs,
                                    api_name="browse_tree", concurrency_id=TREE_WALK, concurrency_limit=1).failure(
                    lambda: ("", None, no_models, ""), None, browse_outputs, api_visibility="private")

            with gr.Tab("Search LoRAs by text", id="search") as search_tab:
                search_roots = zero_shot_roots(registry)
                with gr.Row(equal_height=True):
                    search_root = gr.Dropdown(search_roots, value=search_roots[0] if search_roots else None,
                                              label="LoRA tree root", allow_custom_value=True, scale=2)
                    query = gr.Textbox(label="What should the LoRA draw?", placeholder="e.g. a dog, a thick eight",
                                       max_lines=1, scale=3, elem_id="probex-query")
                    top_k = gr.Slider(1, 100, value=20, step=1, label="Show the top", scale=1)
                    search_button = gr.Button("Search", variant="primary", scale=1)
                search_authors = _authors_box("probex-search-authors")
                gr.Markdown("Zero-shot: the tree's expert embeds your text with its text encoder and compares it with "
                            "each LoRA's weights, so concepts no expert was trained on can be found too.")
                search_summary = gr.Markdown(elem_id="probex-search-summary")
                ranking_plot = gr.BarPlot(x="repo", y="score", sort="-y", label="Cosine similarity", x_label_angle=-30,
                                          elem_id="probex-ranking-plot")
                no_ranking = pd.DataFrame(columns=["rank", "repo", "score", "card says"])
                ranking = gr.Dataframe(no_ranking, label="Ranking",
                                       interactive=False, elem_id="probex-ranking")
                search_inputs = [search_root, query, top_k, search_authors, token]
                search_outputs = [search_summary, ranking_plot, ranking]
                for event, api in ((search_button.click, {"api_name": "search_loras"}), (query.submit, {"api_visibility": "private"})):
                    event(run_search, search_inputs, search_outputs, concurrency_id=TREE_WALK, concurrency_limit=1,
                          **api).failure(lambda: ("", None, no_ranking), None, search_outputs, api_visibility="private")

            with gr.Tab("Experts", id="experts") as experts_tab:
                experts_summary = gr.Markdown()
                experts = gr.Dataframe(experts_table(ExpertRegistry()),
                                       label="Experts by tree (metrics: cross-validated on the tree's models)",
                                       wrap=True, interactive=False, elem_id="probex-experts",
                                       column_widths=["6%", "9%", "7%", "30%", "12%", "18%", "10%", "8%"])
                refresh = gr.Button("Refresh the list", size="sm")
                experts_outputs = [experts_summary, experts, browse_root, search_root, examples]
                demo.load(list_experts, None, experts_outputs, api_name="list_experts")
                refresh.click(refresh_experts, None, experts_outputs, api_visibility="private")
        for starts in (infer_button.click, repo_id.submit, examples.click, pr_button.click, browse_button.click,
                       search_button.click, query.submit, refresh.click,
                       *(tab.select for tab in (infer_tab, browse_tab, search_tab, experts_tab))):
            starts(None, js=CLOSE_TOASTS, queue=False)
    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    return demo
