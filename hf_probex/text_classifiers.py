"""Text classifiers opened to run: a model's head evaluated on texts, within bounds, never from a pickle.

`head_naming` names a classifier's classes by running it on candidate texts; this module owns getting such a model
into memory from a local folder or a Hub repo, in the formats its users save:

- a transformers sequence classifier (config.json with a `*ForSequenceClassification` architecture, safetensors
  weights, one file or shards, and the tokenizer's files);
- a SetFit model: a sentence-transformers body (modules.json, its pooling module's config) and a head stored as
  model_head.safetensors (`weight` [classes, width], `bias`), logits = head(pooled embedding), the embedding
  normalised when the body has a Normalize module or config_setfit.json asks it (SetFit's own pickled head,
  model_head.pkl, is refused as every pickle is);
- a peft adapter of a sequence classifier (adapter_config.json and adapter_model.safetensors; the classification
  head saved with it as `modules_to_save`): its base is opened the same way, by the id adapter_config.json names
  (`base_model_name_or_path`, or where `bases` maps that id), and the adapter applied with peft and merged.

Every weights file is read as safetensors (`use_safetensors=True`, headers validated by `reading` first), no
repo's code runs (`trust_remote_code=False`), and a model whose files exceed `max_bytes` is refused before anything
is downloaded or loaded. On the Hub only the files the model needs are fetched (`snapshot_download` with
`allow_patterns`), and their bytes are counted. Paths from the network (a listing, modules.json) never leave the
model's folder, and an adapter from the Hub may name only a Hub base, never a local path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import (
    BadFileError,
    NoSafetensorsError,
    NotAClassifierError,
    ProbexError,
    TooLargeError,
    UnknownArchitectureError,
    hub_errors,
)
from .reading import INDEX_SUFFIX, WeightSource, looks_like_repo_id, open_source, safe_relpath
from .text import quiet_transformers

#: Files of a model above this many bytes in all (weights, tokenizer, configs; an adapter's base included) are not
#: opened: all-MiniLM-L6-v2 is 91 MB in fp32, BERT-base 440 MB.
MAX_BYTES = 500_000_000
#: Tokens a text is cut to: candidate names and example sentences are short (a fortune is at most 400 characters,
#: mostly under 64 tokens), and a forward pass costs in proportion.
MAX_TOKENS = 64
#: An adapter's base may itself be an adapter (a second-generation LoRA); deeper chains are refused.
MAX_ADAPTER_DEPTH = 3
#: The tokenizer files transformers reads (none of them a pickle); those a model has are fetched.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "added_tokens.json", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model")
SETFIT_HEAD = "model_head.safetensors"
SETFIT_CONFIG = "config_setfit.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: The formats this module opens, as a refusal names them.
KINDS = ("sequence-classification", "setfit", "peft-adapter")
#: sentence-transformers pooling modes this module reproduces (1_Pooling/config.json's `pooling_mode_*` keys).
POOLINGS = ("mean", "cls", "max")


@dataclass
class TextClassifier:
    """A text classifier in memory, ready to run: `logits(texts)` gives one score per head row.

    Open one with `open_text_classifier`.
    """

    source: str  #: what was opened (a folder, or repo id with its revision)
    kind: str  #: one of KINDS
    declared_labels: list[str] | None  #: class names in head-row order as the files declare them (LABEL_i kept); None: none declared
    model_bytes: int  #: bytes of the files it was built from (an adapter's base included)
    bytes_fetched: int  #: bytes downloaded from the Hub for it (0 for local folders)
    load_seconds: float  #: time to open it (download, when there is one, included)
    max_tokens: int = MAX_TOKENS
    _tokenizer: Any = field(default=None, repr=False)
    _forward: Callable[[dict], Any] | None = field(default=None, repr=False)
    _rows: int = 0

    @property
    def rows(self) -> int:
        """How many classes (head rows) the classifier has."""
        return self._rows

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The head's outputs [len(texts), rows] (float64) for `texts`, each cut to `max_tokens` tokens."""
        import torch

        texts = [str(t) for t in texts]
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                tokens = self._tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                                         max_length=self.max_tokens, return_tensors="pt")
                out.append(self._forward(dict(tokens)).float())
        if not out:
            return np.zeros((0, self.rows))
        return torch.cat(out).numpy().astype(np.float64)


def open_text_classifier(source: str | os.PathLike[str], *, revision: str | None = None, token: str | bool | None = None,
                         bases: Mapping[str, str | os.PathLike[str]] | None = None, max_bytes: int = MAX_BYTES,
                         max_tokens: int = MAX_TOKENS) -> TextClassifier:
    """Open a text classifier to run it: a local folder or a Hub repo id holding a transformers sequence
    classifier, a SetFit model or a peft adapter of a sequence classifier (see the module docstring).

    Args:
        source: a local model folder, or a Hub repo id (`namespace/name`).
        revision, token: for Hub repos (default: the main branch, the saved token; token=False sends none).
        bases: where to find an adapter's base instead of the Hub: repo id (as adapter_config.json names it) ->
            local folder or other repo id. A zoo or a test maps its own repo ids to folders this way.
        max_bytes: refuse a model whose files (weights, tokenizer and configs, an adapter's base included) exceed this.
        max_tokens: texts are cut to this many tokens when the classifier runs.

    Raises:
        TooLargeError: the model's files exceed `max_bytes`.
        NoSafetensorsError: its weights (or a SetFit head) are pickled only.
        UnknownArchitectureError: no classification head to run (a plain encoder, a sentence-transformers model),
            or a model transformers cannot build without the repo's own code.
        BadFileError: a malformed config, header or adapter; a link or path out of the model's folder.
        RepoNotFoundError, AccessDeniedError, RevisionNotFoundError, HubConnectionError: the Hub refused, is
            unreachable, or HF_HUB_OFFLINE is set while the model is not local.
    """
    started = time.perf_counter()
    opened = _Opener(bases or {}, max_bytes, token).open(source, revision, depth=0, budget=max_bytes)
    return TextClassifier(source=opened.source.description, kind=opened.kind, declared_labels=opened.labels,
                          model_bytes=opened.model_bytes, bytes_fetched=opened.bytes_fetched,
                          load_seconds=time.perf_counter() - started, max_tokens=max_tokens,
                          _tokenizer=opened.tokenizer, _forward=opened.forward, _rows=opened.rows)


@dataclass
class _Opened:
    source: WeightSource
    kind: str
    folder: Path
    labels: list[str] | None
    model_bytes: int
    bytes_fetched: int
    tokenizer: Any
    forward: Callable[[dict], Any]
    rows: int
    module: Any  # the torch module (a sequence classifier) an adapter on top of this model is applied to


def _kind(source: WeightSource) -> str:
    files = set(source.files)
    if ADAPTER_CONFIG in files:
        return "peft-adapter"
    if SETFIT_CONFIG in files or SETFIT_HEAD in files or "model_head.pkl" in files:
        return "setfit"
    architectures = (source.read_json("config.json") or {}).get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "sequence-classification"
    seen = f"architectures {', '.join(map(str, architectures))}" if architectures else "no config.json architectures"
    raise NotAClassifierError(source.description, seen)


def _declared_labels(config: dict | None) -> list[str] | None:
    id2label = (config or {}).get("id2label") or {}
    return [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))] if id2label else None


class _Opener:
    """Opens one model and, for an adapter, its bases, within one byte budget."""

    def __init__(self, bases: Mapping[str, str | os.PathLike[str]], max_bytes: int, token: str | bool | None) -> None:
        self.bases, self.max_bytes, self.token = bases, max_bytes, token

    def open(self, where: str | os.PathLike[str], revision: str | None, *, depth: int, budget: int,
             num_labels: int | None = None, local: bool = True) -> _Opened:
        source = open_source(where, revision=revision, token=self.token, local=local)
        if source.revision is None and Path(where).is_file():
            raise BadFileError(f"{where} is one file; pass the model's folder (config.json, weights and tokenizer)")
        kind = _kind(source) if num_labels is None else (
            "peft-adapter" if ADAPTER_CONFIG in source.files else "encoder")  # an adapter's base may have no head
        needed = self._needed(source, kind)
        size = sum(source.file_size(f) for f in needed)
        if size > budget:
            total = f" with its base ({self.max_bytes - budget + size:,} bytes in all)" if depth else ""
            raise TooLargeError(f"{source.description} has {size:,} bytes of model files{total}, above the limit of "
                                f"{self.max_bytes:,}: pass a larger max_bytes if you mean to run it")
        for name in needed:  # every header validated by hand before a library reads the file
            if name.endswith(".safetensors"):
                source.header(name)
        folder, fetched = self._materialise(source, where, needed)
        if kind == "peft-adapter":
            return self._adapter(source, folder, needed, size, fetched, depth, budget - size, num_labels)
        tokenizer = _tokenizer(folder, source)
        if kind == "setfit":
            return self._setfit(source, folder, tokenizer, size, fetched)
        return self._sequence_classifier(source, folder, tokenizer, size, fetched, num_labels)

    def _needed(self, source: WeightSource, kind: str) -> list[str]:
        """The files the model needs, all of them safetensors or JSON / text the libraries parse without pickles."""
        files = set(source.files)
        needed = [f for f in TOKENIZER_FILES if f in files]
        if kind == "peft-adapter":
            if ADAPTER_WEIGHTS not in files:
                raise NoSafetensorsError(source.description, [f for f in source.pickled_files if f.startswith("adapter_model")])
            return [ADAPTER_CONFIG, ADAPTER_WEIGHTS, *needed]
        if "config.json" not in files:
            raise BadFileError(f"{source.description} has no config.json; pass a transformers model's folder")
        checkpoint = source.checkpoint(("model.safetensors", "model" + INDEX_SUFFIX))
        needed += ["config.json", checkpoint.name, *(s for s in checkpoint.shards if s != checkpoint.name)]
        if kind == "setfit":
            if SETFIT_HEAD not in files:
                raise NoSafetensorsError(source.description, [f for f in files if f.startswith("model_head.")])
            needed += [SETFIT_HEAD, *(f for f in (SETFIT_CONFIG, "modules.json", "sentence_bert_config.json") if f in files)]
            pooling = _pooling_folder(source)
            if pooling:
                needed.append(pooling + "/config.json")
        return list(dict.fromkeys(needed))

    def _materialise(self, source: WeightSource, where: str | os.PathLike[str], needed: list[str]) -> tuple[Path, int]:
        """A local folder holding `needed`: the model's own folder, or a Hub snapshot of those files only."""
        if source.revision is None:
            folder = Path(where).resolve()
            # a huggingface_hub cache snapshot links each file to the repo's blobs: those links stay inside the repo
            allowed = (folder, folder.parent.parent / "blobs") if folder.parent.name == "snapshots" else (folder,)
            for name in needed:  # the libraries follow links: none may lead out of the model's folder
                if not any((folder / name).resolve().is_relative_to(inside) for inside in allowed):
                    raise BadFileError(f"{source.description}: {name} is a link out of the model's folder; refusing to "
                                       f"read it (copy the file into the folder)")
            return folder, 0
        from huggingface_hub import get_token, snapshot_download

        repo_id = str(where)
        authenticated = bool(self.token) if self.token is not None else get_token() is not None
        with hub_errors(repo_id, source.revision, authenticated=authenticated, endpoint=_endpoint()):
            folder = snapshot_download(repo_id, revision=source.revision, allow_patterns=needed, token=self.token)
        return Path(folder), sum(source.file_size(f) for f in needed)

    def _sequence_classifier(self, source: WeightSource, folder: Path, tokenizer: Any, size: int, fetched: int,
                             num_labels: int | None) -> _Opened:
        import torch
        from transformers import AutoModelForSequenceClassification

        options = {} if num_labels is None else {"num_labels": num_labels, "ignore_mismatched_sizes": True}
        model = _load(source, lambda: AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False, dtype=torch.float32, **options))
        model.eval()
        labels = _declared_labels(source.read_json("config.json")) if num_labels is None else None
        return _Opened(source, "sequence-classification", folder, labels, size, fetched, tokenizer,
                       lambda tokens: model(**tokens).logits, model.config.num_labels, model)

    def _setfit(self, source: WeightSource, folder: Path, tokenizer: Any, size: int, fetched: int) -> _Opened:
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel

        body = _load(source, lambda: AutoModel.from_pretrained(folder, use_safetensors=True, trust_remote_code=False,
                                                              dtype=torch.float32))
        body.eval()
        head = load_file(str(folder / SETFIT_HEAD))
        weight, bias = head.get("weight"), head.get("bias")
        width = body.config.hidden_size
        if weight is None or weight.ndim != 2 or weight.shape[1] != width or (bias is not None and bias.shape != weight.shape[:1]):
            raise BadFileError(f"{source.description}: {SETFIT_HEAD} must hold `weight` [classes, {width}] and `bias` "
                               f"[classes]; re-export the head")
        weight = weight.float()
        bias = torch.zeros(weight.shape[0]) if bias is None else bias.float()
        config = source.read_json(SETFIT_CONFIG) or {}
        mode = _pooling_mode(source)
        normalise = bool(config.get("normalize_embeddings")) or _has_normalize(source)

        def forward(tokens: dict) -> torch.Tensor:
            states = body(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            if mode == "cls":
                pooled = states[:, 0]
            elif mode == "max":
                pooled = states.masked_fill(mask == 0, -1e9).max(1).values
            else:
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalise:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            return pooled @ weight.T + bias

        labels = config.get("labels")
        labels = [str(x) for x in labels] if isinstance(labels, list) and len(labels) == weight.shape[0] else None
        return _Opened(source, "setfit", folder, labels, size, fetched, tokenizer, forward, weight.shape[0], None)

    def _adapter(self, source: WeightSource, folder: Path, needed: list[str], size: int, fetched: int, depth: int,
                 budget: int, num_labels: int | None) -> _Opened:
        from peft import PeftModel

        if depth >= MAX_ADAPTER_DEPTH:
            raise BadFileError(f"{source.description} is an adapter of an adapter {depth} levels deep; refusing deeper")
        config = source.read_json(ADAPTER_CONFIG) or {}
        base_id = config.get("base_model_name_or_path")
        if not isinstance(base_id, str) or not base_id:
            raise BadFileError(f"{source.description}: {ADAPTER_CONFIG} names no base_model_name_or_path; pass "
                               f"bases={{...}} or fix the adapter's config")
        head_rows = _adapter_head_rows(source)
        if head_rows is None and num_labels is None:
            raise NotAClassifierError(source.description, "a peft adapter without a classifier in modules_to_save")
        base = self._open_base(source, base_id, depth, budget, head_rows or num_labels)
        # peft reads adapter_model.safetensors when it is there (checked above), never the pickled .bin
        model = _load(source, lambda: PeftModel.from_pretrained(base.module, folder, is_trainable=False).merge_and_unload())
        model.eval()
        tokenizer = _tokenizer(folder, source) if any(f in TOKENIZER_FILES for f in needed) else base.tokenizer
        return _Opened(source, "peft-adapter", folder, None, size + base.model_bytes, fetched + base.bytes_fetched,
                       tokenizer, lambda tokens: model(**tokens).logits, model.config.num_labels, model)

    def _open_base(self, source: WeightSource, base_id: str, depth: int, budget: int, rows: int) -> _Opened:
        """The adapter's base as a sequence classifier of `rows` classes (its own head kept only if it has as many)."""
        where: str | os.PathLike[str] = self.bases.get(base_id, base_id)
        if base_id not in self.bases:
            local = source.revision is None and not looks_like_repo_id(base_id) and Path(base_id).is_dir()
            if not (local or looks_like_repo_id(base_id, namespaced=False)):
                raise BadFileError(f"{source.description}: {ADAPTER_CONFIG} names the base {base_id!r}, neither a Hub "
                                   f"repo id nor (for a local adapter) a local folder; pass bases={{{base_id!r}: FOLDER}}")
        hub = base_id not in self.bases and looks_like_repo_id(base_id, namespaced=False)  # never a folder of its name
        return self.open(where, None, depth=depth + 1, budget=budget, num_labels=rows, local=not hub)


def _load(source: WeightSource, build: Callable[[], Any]) -> Any:
    """Run a library's loader, its failures (an unknown model type, code it would need to run) as one-line errors,
    without transformers' progress bars and load reports (a base loaded for its adapter lacks the head the adapter
    brings: a report of "missing" keys would only alarm)."""
    try:
        with quiet_transformers():
            return build()
    except ProbexError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise BadFileError(f"{source.description} could not be loaded as a text classifier ({type(err).__name__}: "
                           f"{reason}); check it loads with transformers without trust_remote_code") from None


def _tokenizer(folder: Path, source: WeightSource) -> Any:
    from transformers import AutoTokenizer

    if not any(f in source.files for f in TOKENIZER_FILES):
        raise BadFileError(f"{source.description} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}...); pass a "
                           f"folder that holds its tokenizer")
    return _load(source, lambda: AutoTokenizer.from_pretrained(folder, trust_remote_code=False))


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _pooling_folder(source: WeightSource) -> str | None:
    """The folder of the body's Pooling module, as modules.json names it (kept inside the model's folder)."""
    modules = _modules(source)
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            path = str(module.get("path") or "")
            return str(PurePosixPath(safe_relpath(path, f"modules.json of {source.description}"))) if path else None
    return None


def _modules(source: WeightSource) -> list[dict]:
    from .bounded import load_json

    text = source.read_text("modules.json")
    if text is None:
        return []
    try:
        modules = load_json(text)
    except ValueError as err:
        raise BadFileError(f"{source.description}: modules.json is not valid JSON ({err}); fix or re-export it") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise BadFileError(f"{source.description}: modules.json is not a list of modules; fix or re-export it")
    return modules


def _has_normalize(source: WeightSource) -> bool:
    return any(str(m.get("type", "")).endswith("Normalize") for m in _modules(source))


def _pooling_mode(source: WeightSource) -> str:
    folder = _pooling_folder(source)
    config = (source.read_json(folder + "/config.json") if folder else None) or {"pooling_mode": "mean"}
    mode = config.get("pooling_mode")
    if mode is None:  # older sentence-transformers: one boolean per mode
        modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                 if config.get(f"pooling_mode_{m}")]
        mode = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(modes[0] if len(modes) == 1 else "", modes)
    if mode not in POOLINGS:
        raise UnknownArchitectureError(source.description, KINDS, f"SetFit body pooling {mode!r}; known: "
                                       f"{', '.join(POOLINGS)}")
    return str(mode)


#: The last layer of a sequence classifier's head, by the names transformers gives it (BERT, RoBERTa, decoders).
HEAD_WEIGHTS = ("classifier.weight", "classifier.out_proj.weight", "score.weight")


def _adapter_head_rows(source: WeightSource) -> int | None:
    """How many classes the head an adapter saves (peft's `modules_to_save` classifier) has; None: it saves none."""
    for name, info in source.header(ADAPTER_WEIGHTS).tensors.items():
        if name.endswith(HEAD_WEIGHTS) and len(info.shape) == 2:
            return int(info.shape[0])
    return None
