"""The Gradio Space's page: `create_app` builds it, and `SpaceBlocks.launch` serves it with its theme.

`spaces/app.py` (the Hub Space) and `hf-probex space` (local) serve the same app from here. Every
handler is a thin wrapper over `hf_probex.space`: it passes the inputs on, shows `SpaceInputError` as
a `gr.Error` and each warning as a `gr.Warning`, and reports progress through `gr.Progress`.

API endpoints (for `gradio_client`): `/infer` (a minimum confidence of 0 means each expert's calibrated
threshold), `/open_pull_request`, `/browse_tree`, `/search_loras`, `/list_experts`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import gradio as gr

from . import __version__
from .experts.registry import ExpertRegistry
from .space import (
    DEFAULT_MAX_TREE_MODELS, DEFAULT_MAX_UPLOAD_BYTES, SpaceInputError, browse_tree, experts_table, infer,
    open_pull_request, resolve_registry, search_loras, zero_shot_roots,
)
from .suggestions import CardSuggestion

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
#probex-card { max-height: 520px; overflow-y: auto; }
"""
HEADER = """\
# hf-probex &nbsp;<small>model cards from model weights</small>

Most models on the Hub sit in a few **model trees**. Inside a tree, one layer of a model's weights tells
what it was trained on, and a small **expert** per tree reads it off ([ProbeX, CVPR 2025](https://arxiv.org/abs/2410.19696)).
Paste a repo id to get the card fields it lacks, each with its confidence and evidence.
"""
PR_HINT = "Paste a token with write access above, then open a pull request with the proposed fields."
TREE_WALK = "tree-walk"  # browse and search share one slot: each walks a whole tree


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
    """The registry the app uses, shared by every session; `reload` finds experts published since."""

    def __init__(self, experts: ExpertRegistry | Iterable[str | os.PathLike] | None) -> None:
        self.source = experts
        self.registry = resolve_registry(experts)

    def reload(self) -> ExpertRegistry:
        if self.source is None:  # the default registry can change (new experts on the Hub); a given one cannot
            self.registry = resolve_registry(None)
        return self.registry


def _root_choices(roots: list[str]) -> dict:
    return gr.update(choices=roots, value=roots[0] if roots else None)


def create_app(experts: ExpertRegistry | Iterable[str | os.PathLike] | None = None, *,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, max_tree_models: int = DEFAULT_MAX_TREE_MODELS,
               concurrency: int = 2, max_queue: int = 64) -> SpaceBlocks:
    """The Space: tabs Infer, Browse a tree, Search by text, Experts.

    Args:
        experts: an `ExpertRegistry`, expert folders / repo ids, or None for the default registry (the
            local registry file plus the Hub's experts when online), resolved now and on "Refresh".
        max_upload_bytes: the largest .safetensors upload accepted.
        max_tree_models: the most models one tree walk reads (browse, search).
        concurrency: requests worked on at once per event (tree walks: one at a time); others queue.
        max_queue: requests waiting at most; more are turned away with a "queue full" message.
    """
    from huggingface_hub import constants

    experts_ = _Experts(experts)

    def run_infer(repo_id: str, upload: str | None, min_confidence: float, token: str,
                  progress: gr.Progress = gr.Progress()) -> tuple:
        with _shown_to_user():
            view = infer(repo_id, upload, token=token, registry=experts_.registry, min_confidence=min_confidence or None,
                         max_upload_bytes=max_upload_bytes, progress=progress)
        _warn(view.warnings)
        can_propose = bool(view.suggestion.proposed) and not upload
        return (view.summary, view.chart, gr.update(value=view.scores, visible=not view.scores.empty), view.fields,
                view.card, view.diff or "(no change proposed)", view.suggestion, gr.update(interactive=can_propose),
                PR_HINT if can_propose else "")

    def run_pull_request(suggestion: CardSuggestion | None, token: str) -> str:
        with _shown_to_user():
            result = open_pull_request(suggestion, token)
        link = f" [{result.url}]({result.url})" if result.url else ""
        return f"{'✅' if result.opened else 'ℹ️'} {result.message}{link}"

    def run_browse(root: str, token: str, progress: gr.Progress = gr.Progress()) -> tuple:
        with _shown_to_user():
            view = browse_tree(root, token=token, limit=max_tree_models, progress=progress)
        _warn(view.warnings)
        return view.summary, view.coverage, view.models

    def run_search(root: str, query: str, top_k: float, token: str, progress: gr.Progress = gr.Progress()) -> tuple:
        with _shown_to_user():
            view = search_loras(root, query, registry=experts_.registry, token=token, top_k=int(top_k),
                                limit=max_tree_models, progress=progress)
        _warn(view.warnings)
        return view.summary, view.ranking, view.ranking

    def list_experts() -> tuple:
        registry = experts_.registry
        trees = sorted({e.tree for e in registry.entries})
        summary = (f"**{len(registry)}** experts for **{len(trees)}** trees ({', '.join(trees)})" if trees else
                   "No experts found. Train one with `hf-probex train --zoo ZOO --tree TREE --out DIR --register`, "
                   "or push one to the Hub (`--push-to-hub`): experts carry the tag `probex-expert`.")
        return (summary, experts_table(registry), _root_choices(registry.roots),
                _root_choices(zero_shot_roots(registry)))

    def refresh_experts() -> tuple:
        experts_.reload()
        return list_experts()

    registry = experts_.registry
    with SpaceBlocks(title="hf-probex: model cards from weights", analytics_enabled=False,
                     max_upload_bytes=max_upload_bytes) as demo:
        with gr.Row(elem_id="probex-header"):
            gr.Markdown(HEADER + f"\nHub: `{constants.ENDPOINT}` · hf_probex {__version__}")
        token = gr.Textbox(label="Hub token (optional)", type="password", max_lines=1,
                           placeholder="hf_... for private repos and to open pull requests; never stored")
        with gr.Tabs():
            with gr.Tab("Infer a card", id="infer"):
                with gr.Row(equal_height=True):
                    repo_id = gr.Textbox(label="Hub repo id", placeholder="namespace/name, e.g. google/vit-base-patch16-224",
                                         max_lines=1, scale=3, elem_id="probex-repo")
                    upload = gr.File(label=f"…or upload a .safetensors file (≤ {max_upload_bytes / 2**20:.3g} MiB)",
                                     file_types=[".safetensors"], type="filepath", scale=2, height=120)
                    with gr.Column(scale=1, min_width=200):
                        min_confidence = gr.Slider(0, 1, value=0, step=0.05, label="Minimum confidence",
                                                   info="0: each expert's calibrated threshold",
                                                   elem_id="probex-min-confidence")
                        infer_button = gr.Button("Infer the card", variant="primary", elem_id="probex-infer")
                summary = gr.Markdown(elem_id="probex-summary")
                with gr.Row():
                    chart = gr.BarPlot(x="field", y="confidence", y_lim=[0, 1], label="Confidence per field",
                                       x_title=" ", x_label_angle=-20, height=300)
                    scores = gr.BarPlot(x="label", y="score", sort="-y", label="Expert scores behind trained_on",
                                        x_title=" ", x_label_angle=-20, height=300, visible=False)
                fields = gr.Dataframe(label="Fields and evidence", wrap=True, interactive=False, elem_id="probex-fields",
                                      column_widths=["15%", "10%", "10%", "30%", "10%", "25%"])
                with gr.Tabs():
                    with gr.Tab("Suggested card"):
                        card = gr.Markdown(elem_id="probex-card", sanitize_html=True)
                    with gr.Tab("Diff of README.md"):
                        diff = gr.Code(language=None, label="README.md: current → suggested", elem_id="probex-diff")
                with gr.Row(equal_height=True):
                    pr_button = gr.Button("Open a pull request", interactive=False, scale=1, elem_id="probex-pr")
                    pr_result = gr.Markdown(elem_id="probex-pr-result", container=True)
                suggestion = gr.State()
                infer_inputs = [repo_id, upload, min_confidence, token]
                infer_outputs = [summary, chart, scores, fields, card, diff, suggestion, pr_button, pr_result]
                infer_button.click(run_infer, infer_inputs, infer_outputs, api_name="infer")
                repo_id.submit(run_infer, infer_inputs, infer_outputs, api_visibility="private")
                pr_button.click(run_pull_request, [suggestion, token], pr_result, api_name="open_pull_request")

            with gr.Tab("Browse a tree", id="browse"):
                with gr.Row(equal_height=True):
                    browse_root = gr.Dropdown(registry.roots, value=registry.roots[0] if registry.roots else None,
                                              label="Tree root (repo id)", allow_custom_value=True, scale=4, elem_id="probex-browse-root",
                                              info="every model naming it as base_model, children of children too")
                    browse_button = gr.Button("Browse the tree", variant="primary", scale=1)
                browse_summary = gr.Markdown(elem_id="probex-tree-summary")
                coverage = gr.BarPlot(x="field", y="documented", y_lim=[0, 1], label="Share of the tree's cards that state each field",
                                      y_title="documented", height=260)
                models = gr.Dataframe(label="Models and what their cards lack", wrap=True, interactive=False,
                                      elem_id="probex-models")
                browse_button.click(run_browse, [browse_root, token], [browse_summary, coverage, models],
                                    api_name="browse_tree", concurrency_id=TREE_WALK, concurrency_limit=1)

            with gr.Tab("Search LoRAs by text", id="search"):
                search_roots = zero_shot_roots(registry)
                with gr.Row(equal_height=True):
                    search_root = gr.Dropdown(search_roots, value=search_roots[0] if search_roots else None,
                                              label="LoRA tree root", allow_custom_value=True, scale=2)
                    query = gr.Textbox(label="What should the LoRA draw?", placeholder="e.g. a dog, a thick eight",
                                       max_lines=1, scale=3, elem_id="probex-query")
                    top_k = gr.Slider(1, 100, value=20, step=1, label="Show the top", scale=1)
                    search_button = gr.Button("Search", variant="primary", scale=1)
                gr.Markdown("Zero-shot: the tree's expert embeds your text with its text encoder and compares it with "
                            "each LoRA's weights, so concepts no expert was trained on can be found too.")
                search_summary = gr.Markdown(elem_id="probex-search-summary")
                ranking_plot = gr.BarPlot(x="repo", y="score", sort="-y", label="Cosine similarity", height=260,
                                          x_label_angle=-30)
                ranking = gr.Dataframe(label="Ranking", interactive=False, elem_id="probex-ranking")
                search_inputs = [search_root, query, top_k, token]
                search_button.click(run_search, search_inputs, [search_summary, ranking_plot, ranking],
                                    api_name="search_loras", concurrency_id=TREE_WALK, concurrency_limit=1)
                query.submit(run_search, search_inputs, [search_summary, ranking_plot, ranking],
                             api_visibility="private", concurrency_id=TREE_WALK, concurrency_limit=1)

            with gr.Tab("Experts", id="experts"):
                experts_summary = gr.Markdown()
                experts = gr.Dataframe(label="Experts by tree (metrics: cross-validated on the tree's models)",
                                       wrap=True, interactive=False, elem_id="probex-experts",
                                       column_widths=["6%", "9%", "7%", "30%", "10%", "18%", "10%", "10%"])
                refresh = gr.Button("Refresh the list", size="sm")
                experts_outputs = [experts_summary, experts, browse_root, search_root]
                demo.load(list_experts, None, experts_outputs, api_name="list_experts")
                refresh.click(refresh_experts, None, experts_outputs, api_visibility="private")
    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    return demo
