"""What the hub derives from a commit's files: card data, tags, base models, safetensors summary.

The Hub computes these server-side and its rules are not published; the ones here follow the hub docs
and what the live Hub shows (see ../shared/research/hub-ecosystem.md section 1):
- model tags: the card's `tags`, `library_name`, `pipeline_tag`, `license:<id>`, `dataset:<id>`, languages,
  `safetensors` when a .safetensors file exists, and per base model `base_model:<id>` and
  `base_model:<relation>:<id>`;
- dataset tags: the card's `tags`, and `task_categories:`, `task_ids:`, `language:`, `license:`,
  `size_categories:` prefixed values of those card keys, plus `format:<name>` for the data files'
  formats (parquet, csv, json, arrow); a dataset has no config, base models or safetensors summary;
- relation: `base_model_relation` from the card if valid, else `merge` for several base models,
  `adapter` for adapter weights (adapter_config.json, *lora*.safetensors, adapter_model.*),
  `quantized` for GGUF files or a `quantization_config`, else `finetune`.
Commits are immutable, so everything is computed once per commit id and cached.

Every file here was written by whoever could commit, so each is parsed under `hf_probex.bounded`'s limits
and a file that fails shows as missing (no card, no config, no safetensors entry). A failure nobody
foresaw costs that one commit its derived fields, never the listing of every other repo.
"""

from __future__ import annotations

import base64
import datetime
import functools
import logging
import math
from dataclasses import dataclass

import yaml
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from ..bounded import MAX_YAML_BYTES, TooComplexError, load_json, load_yaml
from ..errors import BadFileError
from ..safetensors_format import SafetensorsHeader, header_length, parse_safetensors_header
from .errors import BadRequest
from .licenses import LICENSES
from .storage import Commit, Storage

RELATIONS = ("adapter", "merge", "quantized", "finetune")
#: Data file formats the Hub names in a dataset's `format:` tags, by file suffix.
_DATA_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}
_DATASET_CARD_TAGS = ("task_categories", "task_ids", "language", "license", "size_categories")
_MAX_CONFIG_BYTES = 5_000_000
logger = logging.getLogger("hf_probex.hub")


def jsonable(value: object) -> object:
    """`value` with only JSON types: YAML dates, binary, sets and NaN would otherwise fail the response."""
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(jsonable(key)): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        return [jsonable(item) for item in sorted(value, key=repr)]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def front_matter(text: str) -> dict:
    """The YAML front matter of a README as parsed ({} without one); BadRequest when it is invalid.

    Found as huggingface_hub finds it (`REGEX_YAML_BLOCK`), so the client loads what the hub accepted.
    """
    match = REGEX_YAML_BLOCK.search(text)
    if match is None:
        return {}
    try:
        data = load_yaml(match.group(2))
    except TooComplexError as err:
        raise BadRequest(f"Invalid metadata in README.md: {err}; simplify the YAML front matter") from None
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1} of the front matter)" if mark is not None else ""
        raise BadRequest(f"Invalid metadata in README.md: {problem}{where}; fix the YAML front matter") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequest("Invalid metadata in README.md: the front matter must be a mapping of key: value lines")
    return data


def card_problems(metadata: dict) -> tuple[list[str], list[str]]:
    """(errors, warnings) of the Hub's metadata rules for a front matter, errors in the Hub's wording."""
    errors, warnings = [], []
    # huggingface_hub passes the metadata as keyword arguments (ModelCard.load, and ModelInfo for every
    # listing with cardData): a key that is not a string, or one of ModelCardData's own parameters, makes
    # it raise. The Hub itself accepts the latter; refused here so no listing of this hub breaks on them.
    errors += [f"key {key!r} must be a string: quote it" for key in metadata if not isinstance(key, str)]
    errors += [f"key {key!r} is reserved by huggingface_hub's ModelCardData: rename it" for key in metadata
               if key in ("self", "ignore_metadata_errors")]
    licenses = metadata.get("license")
    for index, item in enumerate(licenses if isinstance(licenses, list) else [licenses]):
        if item is not None and not (isinstance(item, str) and item in LICENSES):
            where = f'"license[{index}]"' if isinstance(licenses, list) else '"license"'
            errors.append(f"{where} must be one of [{', '.join(LICENSES)}]")
    tags = metadata.get("tags")
    if tags is not None and not isinstance(tags, str | list):
        errors.append('"tags" must be an array')
    elif isinstance(tags, list):
        errors += [f'"tags[{i}]" must be a string' for i, tag in enumerate(tags) if not isinstance(tag, str)]
    if metadata.get("license") == "other" and not metadata.get("license_name"):
        warnings.append("license is 'other': name it in license_name (and link it in license_link or a LICENSE file)")
    return errors, warnings


def card_data(text: str) -> dict:
    """What a README shows as `cardData`: its front matter, JSON-safe; {} for a card the Hub would refuse.

    Such a card can only come from storage written around the API (an import, an older hub); served, a
    `tags: 3` would make huggingface_hub's ModelInfo raise in every listing that includes it.
    """
    try:
        metadata = front_matter(text)
    except BadRequest:
        return {}
    return {} if card_problems(metadata)[0] else jsonable(metadata)


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


def safetensors_header(storage: Storage, path: str, entry: dict) -> SafetensorsHeader | None:
    """The header of a stored .safetensors blob, validated as hf_probex reads weights (`reading`'s bounds:
    header size, tensor count, nesting, duplicate names); None if it is not one."""
    prefix = storage.read_blob(entry["sha256"], 0, min(8, entry["size"]))
    try:
        length = header_length(prefix, entry["size"], path)
        return parse_safetensors_header(prefix + storage.read_blob(entry["sha256"], 8, length), entry["size"], path)
    except BadFileError:
        return None


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def dataset_tags(card: dict, files: list[str]) -> list[str]:
    """A dataset's tags as the Hub derives them from its card and data files (see the module docstring)."""
    tags = _as_list(card.get("tags"))
    tags += [f"{key}:{value}" for key in _DATASET_CARD_TAGS for value in _as_list(card.get(key))]
    tags += sorted({f"format:{_DATA_FORMATS[suffix]}" for f in files
                    for suffix in _DATA_FORMATS if f.lower().endswith(suffix)})
    return list(dict.fromkeys(tags))


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
    """Per-commit summaries of one repo type's repos (its `Storage`), cached by commit id (commits never change)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.summary = functools.lru_cache(maxsize=4096)(self._isolated_summary)

    def _isolated_summary(self, repo_id: str, commit_id: str) -> RepoSummary:
        """`_summary`, or an empty one (logged) if it fails: one repo must not break every listing."""
        try:
            return self._summary(repo_id, commit_id)
        except Exception as err:  # a file shape the parsers above did not foresee: cached, so logged once
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            logger.warning("listing %s without its card, config and safetensors fields (commit %s): %s",
                           repo_id, commit_id, reason)
            return RepoSummary(card={}, config=None, tags=[], library_name=None, pipeline_tag=None, base_models=[],
                               relation=None, safetensors=None)

    def _json_file(self, commit: Commit, path: str) -> dict | None:
        entry = commit.tree.get(path)
        if entry is None or entry["size"] > _MAX_CONFIG_BYTES:
            return None
        try:
            data = load_json(self.storage.read_blob(entry["sha256"]))
        except ValueError:  # not JSON, not UTF-8, or beyond the bounds
            return None
        return jsonable(data) if isinstance(data, dict) else None

    def _summary(self, repo_id: str, commit_id: str) -> RepoSummary:
        commit = self.storage.commit(repo_id, commit_id)
        files = sorted(commit.tree)
        readme = commit.tree.get("README.md")
        # Only the head can hold a front matter within load_yaml's bound (UTF-8: up to 4 bytes a character).
        head = self.storage.read_blob(readme["sha256"], 0, 4 * MAX_YAML_BYTES + 16) if readme else b""
        card = card_data(head.decode("utf-8", "replace"))
        if self.storage.repo_type == "dataset":
            return RepoSummary(card=card, config=None, tags=dataset_tags(card, files), library_name=None,
                               pipeline_tag=None, base_models=[], relation=None, safetensors=None)
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
            header = safetensors_header(self.storage, path, entry)
            if header is None:
                continue
            found = True
            for tensor in header.tensors.values():
                parameters[tensor.dtype] = parameters.get(tensor.dtype, 0) + math.prod(tensor.shape)
        return {"parameters": parameters, "total": sum(parameters.values())} if found else None
