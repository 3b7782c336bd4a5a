"""What the hub derives from a commit's files: card data, tags, base models, safetensors summary.

The Hub computes these server-side and its rules are not published; the ones here follow the hub docs
and what the live Hub shows (see ../shared/research/hub-ecosystem.md section 1):
- tags: the card's `tags`, `library_name`, `pipeline_tag`, `license:<id>`, `dataset:<id>`, languages,
  `safetensors` when a .safetensors file exists, and per base model `base_model:<id>` and
  `base_model:<relation>:<id>`;
- relation: `base_model_relation` from the card if valid, else `merge` for several base models,
  `adapter` for adapter weights (adapter_config.json, *lora*.safetensors, adapter_model.*),
  `quantized` for GGUF files or a `quantization_config`, else `finetune`.
Commits are immutable, so everything is computed once per commit id and cached.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass

import yaml
from huggingface_hub import ModelCard

from .errors import BadRequest
from .storage import Commit, Storage

RELATIONS = ("adapter", "merge", "quantized", "finetune")
_SAFETENSORS_MAX_HEADER = 25_000_000


def parse_card(text: str) -> dict:
    """The YAML front matter of a README as a dict ({} without one); BadRequest when it is invalid."""
    try:
        return ModelCard(text, ignore_metadata_errors=True).data.to_dict()
    except (yaml.YAMLError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BadRequest(f"Invalid metadata in README.md: {first}") from None


def relation_of(card: dict, files: list[str], config: dict | None) -> str:
    """How a repo relates to its base model(s) (see the module docstring)."""
    explicit = card.get("base_model_relation")
    if explicit in RELATIONS:
        return explicit
    base = card.get("base_model")
    if isinstance(base, list) and len(base) > 1:
        return "merge"
    names = [f.rsplit("/", 1)[-1] for f in files]
    if any(n == "adapter_config.json" or n.startswith("adapter_model.") or
           (n.endswith(".safetensors") and "lora" in n.lower()) for n in names):
        return "adapter"
    if any(n.endswith(".gguf") for n in names) or (config or {}).get("quantization_config"):
        return "quantized"
    return "finetune"


def base_model_ids(card: dict) -> list[str]:
    base = card.get("base_model")
    if isinstance(base, str):
        return [base]
    if isinstance(base, list):
        return [b for b in base if isinstance(b, str)]
    return []


def safetensors_header(storage: Storage, entry: dict) -> dict | None:
    """The JSON header of a stored .safetensors blob, or None if it is not one."""
    if entry["size"] < 8:
        return None
    (length,) = struct.unpack("<Q", storage.read_blob(entry["sha256"], 0, 8))
    if length > min(_SAFETENSORS_MAX_HEADER, entry["size"] - 8):
        return None
    try:
        return json.loads(storage.read_blob(entry["sha256"], 8, length))
    except ValueError:
        return None


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class RepoSummary:
    """What the hub reports about one commit of a repo."""

    card: dict
    config: dict | None
    tags: list[str]
    library_name: str | None
    pipeline_tag: str | None
    base_models: list[str]
    relation: str | None
    safetensors: dict | None


class Catalog:
    """Per-commit summaries, cached by commit id (commits never change)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.summary = functools.lru_cache(maxsize=4096)(self._summary)

    def _json_file(self, commit: Commit, path: str) -> dict | None:
        entry = commit.tree.get(path)
        if entry is None or entry["size"] > 5_000_000:
            return None
        try:
            data = json.loads(self.storage.read_blob(entry["sha256"]))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _summary(self, repo_id: str, commit_id: str) -> RepoSummary:
        commit = self.storage.commit(repo_id, commit_id)
        files = sorted(commit.tree)
        readme = commit.tree.get("README.md")
        try:
            card = parse_card(self.storage.read_blob(readme["sha256"]).decode("utf-8", "replace")) if readme else {}
        except BadRequest:
            card = {}  # an invalid card committed before validation existed shows as no card
        config = self._json_file(commit, "config.json")
        library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
        pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
        bases = base_model_ids(card)
        relation = relation_of(card, files, config) if bases else None
        tags = _as_list(card.get("tags"))
        tags += [t for t in (library, pipeline) if t]
        if any(f.endswith(".safetensors") for f in files):
            tags.append("safetensors")
        if config and isinstance(config.get("model_type"), str):
            tags.append(config["model_type"])
        tags += [f"license:{lic}" for lic in _as_list(card.get("license"))]
        tags += [f"dataset:{d}" for d in _as_list(card.get("datasets"))]
        tags += _as_list(card.get("language"))
        for base in bases:
            tags += [f"base_model:{base}", f"base_model:{relation}:{base}"]
        return RepoSummary(card=card, config=config, tags=list(dict.fromkeys(tags)), library_name=library,
                           pipeline_tag=pipeline, base_models=bases, relation=relation,
                           safetensors=self._safetensors(commit))

    def _safetensors(self, commit: Commit) -> dict | None:
        """{"parameters": {dtype: count}, "total": count} over every .safetensors file, as the Hub reports."""
        parameters: dict[str, int] = {}
        found = False
        for path, entry in commit.tree.items():
            if not path.endswith(".safetensors"):
                continue
            header = safetensors_header(self.storage, entry)
            if header is None:
                continue
            found = True
            for name, tensor in header.items():
                if name == "__metadata__" or not isinstance(tensor, dict):
                    continue
                count = 1
                for dim in tensor.get("shape", []):
                    count *= int(dim)
                dtype = str(tensor.get("dtype"))
                parameters[dtype] = parameters.get(dtype, 0) + count
        return {"parameters": parameters, "total": sum(parameters.values())} if found else None
