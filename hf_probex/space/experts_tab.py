"""The "Experts" tab and the experts every tab uses: found on the Hub (trusted authors) without waiting long on an
unreachable one, listed by tree with their cross-validated metrics, and example repos per tree."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from ..experts.registry import ExpertRegistry, load_expert
from .common import PublicNames, _one_line, _threshold_text

HUB_TIMEOUT_S = 3.0
"""How long the Space waits for the Hub before listing its experts or examples: a Space without network
must show its page, not retry for 40 s."""


def hub_experts(*, timeout_s: float = HUB_TIMEOUT_S) -> tuple[ExpertRegistry, str]:
    """The Hub's experts (trusted authors, tag `probex-expert`; anonymous), and "" or why none were listed:
    HF_HUB_OFFLINE is set, or the Hub did not answer within `timeout_s` (one try: huggingface_hub's own
    retries take about 40 s on a machine without network)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return ExpertRegistry(), "HF_HUB_OFFLINE is set: only this Space's local experts are used"
    try:
        get_session().get(f"{constants.ENDPOINT}/api/models", params={"limit": 1}, timeout=timeout_s).raise_for_status()
        return ExpertRegistry.from_hub(token=False), ""
    except Exception:  # noqa: BLE001 - no network, a slow or failing Hub: the local experts still work
        return ExpertRegistry(), (f"the Hub ({constants.ENDPOINT}) did not answer within {timeout_s:g} s: only this "
                                  "Space's local experts are used; refresh the list to try again")


def resolve_registry(experts: ExpertRegistry | Iterable[str | os.PathLike] | None) -> ExpertRegistry:
    """The experts the Space uses: a registry as given, expert folders / repo ids, or (None) the local registry
    file plus the Hub's experts when it answers quickly (`hub_experts`)."""
    if experts is None:
        return ExpertRegistry.from_file() + hub_experts()[0]
    if isinstance(experts, ExpertRegistry):
        return experts
    return ExpertRegistry.from_locations(str(e) for e in experts)


def tree_examples(registry: ExpertRegistry, *, per_tree: int = 2, timeout_s: float = HUB_TIMEOUT_S) -> list[list[str]]:
    """Example repo ids for the Infer tab, `[repo id, tree]`: a few models whose card names each expert's root as
    base_model, listed on the Hub (a tree the Hub does not answer for within `timeout_s` gets none)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    examples: list[list[str]] = []
    if constants.HF_HUB_OFFLINE:
        return examples
    for root in registry.roots:
        tree = next(e.tree for e in registry.entries if e.root == root)
        try:
            response = get_session().get(f"{constants.ENDPOINT}/api/models", timeout=timeout_s,
                                         params={"filter": f"base_model:{root}", "limit": per_tree})
            response.raise_for_status()
            examples += [[model["id"], tree] for model in response.json()[:per_tree]]
        except Exception:  # noqa: BLE001 - no examples for this tree is better than no page
            continue
    return examples


def _metric_text(metrics: dict) -> str:
    """The cross-validated metrics as `name mean ± se` (the counts and timings left out)."""
    shown = [f"{name} {value['mean']:.1f} ± {value['se']:.1f}" for name, value in metrics.items()
             if isinstance(value, dict) and "mean" in value and "seconds" not in name]
    return ", ".join(shown) or "not evaluated"


def experts_table(registry: ExpertRegistry) -> pd.DataFrame:
    """One row per expert, by tree: root, task, method, layer, CV metrics, proposal threshold, where it comes from
    (its Hub repo id, or "local")."""
    rows = []
    for entry in sorted(registry.entries, key=lambda e: (e.tree, e.task, e.location)):
        try:
            expert = load_expert(entry.location)
            metrics, calibration = _metric_text(expert.metrics), expert.calibration or {}
            folds = expert.metrics.get("cv_folds")
        except Exception as err:  # noqa: BLE001 - a broken expert is listed with why, not hiding the others
            metrics, calibration, folds = f"(cannot load: {PublicNames(registry)(_one_line(err))})", {}, None
        threshold = calibration.get("threshold")
        public = entry.public_name
        rows.append({"tree": entry.tree, "task": entry.task, "method": entry.method,
                     "metrics (CV %)": metrics + (f" ({folds}-fold)" if folds else ""),
                     "proposes at": _threshold_text(threshold).removeprefix("proposes at ") if threshold is not None
                     else "uncalibrated",
                     "layer": " + ".join(name for name, _ in entry.inputs), "root": entry.root or "",
                     "location": public if public == entry.location else "local"})
    return pd.DataFrame(rows, columns=["tree", "task", "method", "metrics (CV %)", "proposes at", "layer", "root",
                                       "location"])
