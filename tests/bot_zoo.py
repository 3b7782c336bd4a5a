"""Small real repos for the bot tests, and an oracle that infers their cards from the ground truth.

Each repo holds a tiny real safetensors file whose metadata carries the ground truth (Model-J's
`dataset_chosen_targets`, the parent in `base_model`, and `oracle_confidence`, the confidence to report
for the training classes), a config.json and a README variant. `ground_truth_infer` reads those files
back from the Hub through the real client and answers what a perfect `infer_card` would: it stands in
for `hf_probex.infer.infer_card` (same signature as the bot's `infer`) until that lands, and the bot
tests can then pass the real one. The subprocess tests load it with `--infer bot_zoo:ground_truth_infer`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, NotASafetensorsRepoError
from safetensors.numpy import save

from hf_probex.cards import CardError, missing_fields
from hf_probex.suggestions import CARD_FIELDS, CardSuggestion, FieldSuggestion

CONFIG = {"architectures": ["ViTForImageClassification"], "model_type": "vit"}


def make_repo(api: HfApi, repo_id: str, *, readme: str | bytes | None, base_model: str | None = None,
              classes: tuple[str, ...] = ("3", "7"), confidence: float = 1.0) -> str:
    """Create a public repo with weights, config and (unless None) README.md; its head commit id."""
    metadata = {"format": "pt", "dataset_chosen_targets": repr(list(classes)), "base_model": base_model or "",
                "oracle_confidence": str(confidence)}
    weights = save({"vit.encoder.layer.0.attention.attention.value.weight": np.arange(16, dtype=np.float32).reshape(4, 4)},
                   metadata=metadata)
    operations = [CommitOperationAdd("model.safetensors", weights),
                  CommitOperationAdd("config.json", json.dumps(CONFIG).encode())]
    if readme is not None:
        operations.append(CommitOperationAdd("README.md", readme.encode() if isinstance(readme, str) else readme))
    api.create_repo(repo_id)
    return api.create_commit(repo_id, operations, commit_message="model").oid


def child_card(base_model: str | None, *, extra: str = "", body: str = "# A fine-tune\n") -> str:
    """A typical partial card: license and library, maybe base_model, no pipeline_tag or training data."""
    base = f"base_model: {base_model}\n" if base_model else ""
    return f"---\nlicense: apache-2.0\n{base}{extra}---\n{body}"


def ground_truth_infer(repo_id: str) -> CardSuggestion:
    """What a perfect inference says about a `make_repo` repo (read through the Hub client)."""
    api = HfApi()
    sha = api.model_info(repo_id).sha
    meta = api.get_safetensors_metadata(repo_id, revision=sha).files_metadata["model.safetensors"].metadata
    config = json.loads(Path(api.hf_hub_download(repo_id, "config.json", revision=sha)).read_text())
    try:
        readme = Path(api.hf_hub_download(repo_id, "README.md", revision=sha)).read_text(encoding="utf-8")
    except EntryNotFoundError:
        readme = ""
    try:
        missing = missing_fields(readme)
    except CardError:
        missing = set(CARD_FIELDS)
    arch = config["architectures"][0]
    fields = [
        FieldSuggestion("library_name", "transformers", 1.0, f"config.json architectures {arch}"),
        FieldSuggestion("pipeline_tag", "image-classification", 1.0, f"config.json architectures {arch}"),
        FieldSuggestion("trained_on", ast.literal_eval(meta["dataset_chosen_targets"]),
                        float(meta["oracle_confidence"]), "ground truth in the safetensors metadata", source="expert",
                        floor=0.9),  # as an expert's calibrated threshold
    ]
    if meta["base_model"]:
        fields.insert(0, FieldSuggestion("base_model", meta["base_model"], 1.0, "safetensors metadata base_model"))
    for f in fields:
        f.missing = f.name in missing
    return CardSuggestion(source=repo_id, revision=sha, family="vit", tree=_root_of(api, repo_id, meta),
                          fields={f.name: f for f in fields}, current_card=readme)


def _root_of(api: HfApi, repo_id: str, meta: dict) -> str:
    """The tree a `make_repo` repo belongs to: its base models' chain followed to the one without a base (or to a base
    that is not on the Hub)."""
    while meta["base_model"]:
        repo_id = meta["base_model"]
        try:
            meta = api.get_safetensors_metadata(repo_id).files_metadata["model.safetensors"].metadata
        except (HfHubHTTPError, NotASafetensorsRepoError):  # not on the Hub, or no weights: the chain ends there
            break
    return repo_id
