"""Weights reading: the few bytes of a model that hf_probex needs, from a Hub repo, a local folder or one file.

This module owns:

- `open_source`: a `WeightSource` over a Hub repo (id, revision, token), a local folder, or a single
  .safetensors file; it lists the files, reads small JSON/text files (config.json, adapter_config.json,
  model_index.json, README.md) and counts every byte it reads (`bytes_read`) against the size of the
  model (`size`);
- the safetensors format, read through `hf_probex.safetensors_format` (the header parsed and validated by hand);
- `Checkpoint`: the tensors of one .safetensors file, or of the shards an `*.safetensors.index.json`
  names, from which it reads ONE tensor by name into a float32 array (BF16 converted) and nothing else.

Local files are memory-mapped; Hub files are read with HTTP range requests through huggingface_hub's
HTTP session (exactly the bytes asked: the 8-byte length, the header, the tensor). Pickled weights
(.bin, .pt, .pth, .ckpt) are never opened. Names that come from the network (the repo listing, an index's
weight_map) are checked so they never leave the model's folder. Tokens are passed to huggingface_hub and
never logged nor shown.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np

from .bounded import TooComplexError, load_json
from .errors import (
    PICKLE_SUFFIXES,
    BadFileError,
    BadSafetensorsError,
    LayerMismatchError,
    MissingFileError,
    NoSafetensorsError,
    RepoNotFoundError,
    RevisionNotFoundError,
    hub_errors,
)
from .safetensors_format import SafetensorsHeader, TensorInfo, decode_tensor, header_length, parse_safetensors_header

#: Small files are read whole; a "config" larger than this is not one.
MAX_SMALL_FILE_BYTES = 10_000_000
INDEX_SUFFIX = ".safetensors.index.json"
#: Decoded tensors kept for the next ask, over every source together (routing and the expert often read the same
#: layer of a model). One bound for all: a reader of whole models (lineage: hundreds of 91 MB MiniLMs) keeps hundreds
#: of sources alive, and a source and its checkpoints refer to each other, so a dropped one is freed only when Python's
#: cycle collector next runs.
TENSOR_CACHE_BYTES = 256 * 2**20


class _TensorCache:
    """The most recently read tensors, at most `limit` bytes, by (source, tensor); thread-safe (a scan reads
    several models at once)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self._tensors: OrderedDict[tuple[int, TensorInfo], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, TensorInfo]) -> np.ndarray | None:
        with self._lock:
            if key in self._tensors:
                self._tensors.move_to_end(key)
            return self._tensors.get(key)

    def put(self, key: tuple[int, TensorInfo], tensor: np.ndarray) -> None:
        if tensor.nbytes > self.limit:
            return
        with self._lock:
            if key not in self._tensors:
                self._tensors[key] = tensor
                self.size += tensor.nbytes
            while self.size > self.limit:
                self.size -= self._tensors.popitem(last=False)[1].nbytes


_TENSORS = _TensorCache(TENSOR_CACHE_BYTES)
_SOURCE_NUMBERS = itertools.count()  # a cache key per source, never reused (an id() is, once its source is freed)


def safe_relpath(name: str, where: str) -> str:
    """`name` as a normalised relative POSIX path; BadFileError if it is absolute or climbs out with `..`.

    Names come from the network (a repo listing, an index file): one must never reach outside the model.
    """
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise BadFileError(f"{where} names an invalid file path {name!r}: only relative POSIX paths are allowed")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise BadFileError(f"{where} names the file {name!r} outside the model's folder: refusing to read it")
    return str(path)


#: Keys of transformers / diffusers / peft config files that hf_probex reads, and the JSON type each must have.
CONFIG_KEY_TYPES: dict[str, type] = {
    "model_type": str, "_name_or_path": str, "base_model_name_or_path": str, "torch_dtype": str, "dtype": str,
    "architectures": list, "id2label": dict, "label2id": dict, "_class_name": str,
}


def config_problem(config: dict[str, Any]) -> str:
    """What is wrong with the keys of `config` hf_probex reads ('' when nothing): a wrong JSON type, or an
    id2label that does not map integer class indices to names."""
    for key, kind in CONFIG_KEY_TYPES.items():
        if key in config and config[key] is not None and not isinstance(config[key], kind):
            return f"has {key} as {_JSON_NAMES.get(type(config[key]), 'a number')} where {_JSON_NAMES[kind]} is expected"
    if not all(isinstance(a, str) for a in config.get("architectures") or []):
        return "has architectures that are not all strings"
    for index, label in (config.get("id2label") or {}).items():
        if not (index.isascii() and index.isdigit() and isinstance(label, str | int | float)):
            return f"has id2label {{{index!r}: {label!r}}}: keys must be class indices and values names"
    return ""


_JSON_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "a boolean"}


# ---- where the bytes come from -------------------------------------------------------------------------


class _Storage(Protocol):
    """The files of one model and byte-range reads of them (a local folder or a Hub repo)."""

    description: str

    def sizes(self) -> dict[str, int]: ...

    def read(self, name: str, start: int, length: int) -> np.ndarray: ...


class _LocalStorage:
    """Files under a local folder (or one file), read through memory maps.

    `refused` maps the files that are links leaving the folder (or broken, or looping) to why: they are
    listed, so a message can name them, but never read.
    """

    def __init__(self, root: Path, sizes: dict[str, int], description: str, refused: dict[str, str] | None = None) -> None:
        self.root, self._sizes, self.description = root, sizes, description
        self._refused = refused or {}

    def sizes(self) -> dict[str, int]:
        return self._sizes

    def read(self, name: str, start: int, length: int) -> np.ndarray:
        if name in self._refused:
            raise BadFileError(f"{self.description}: {name} {self._refused[name]}: refusing to read it; copy the file "
                               f"into the model's folder")
        if length == 0:
            return np.zeros(0, dtype=np.uint8)
        # A memory map touches only the pages of the requested range, however large the file.
        return np.asarray(np.memmap(self.root / name, dtype=np.uint8, mode="r", offset=start, shape=(length,)))


#: What a git ref name or commit may be made of, as far as a Hub URL carries it (`git check-ref-format`, loosely).
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@+-]{0,254}")


class _HubStorage:
    """Files of one Hub repo at one commit, read with HTTP range requests through huggingface_hub."""

    def __init__(self, repo_id: str, revision: str | None, token: str | bool | None) -> None:
        from huggingface_hub import HfApi, get_token

        self.repo_id, self._token = repo_id, token
        self._api = HfApi(token=token)
        self.endpoint = self._api.endpoint
        authenticated = bool(token) if token is not None else get_token() is not None
        self._errors = lambda: hub_errors(repo_id, revision, authenticated=authenticated, endpoint=self.endpoint)
        with self._errors():
            info = self._api.model_info(repo_id, revision=revision, files_metadata=True)
        # Pin the commit: every later read sees the same files even if the branch moves meanwhile.
        self.commit = info.sha or revision
        self.description = f"{repo_id}@{revision}" if revision else repo_id
        self._sizes = {safe_relpath(s.rfilename, f"the listing of {repo_id}"): s.size for s in info.siblings or []}

    def sizes(self) -> dict[str, int]:
        from huggingface_hub import get_hf_file_metadata

        for name in [n for n, size in self._sizes.items() if size is None]:  # a server that omits sizes
            with self._errors():
                self._sizes[name] = get_hf_file_metadata(self._url(name), token=self._token).size
        return self._sizes

    def _url(self, name: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo_id, name, revision=self.commit, endpoint=self.endpoint)

    def read(self, name: str, start: int, length: int) -> np.ndarray:
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

        if length == 0:
            return np.zeros(0, dtype=np.uint8)
        headers = {**build_hf_headers(token=self._token), "range": f"bytes={start}-{start + length - 1}"}
        with self._errors():
            response = http_backoff("GET", self._url(name), headers=headers)
            hf_raise_for_status(response)
        body = response.content
        if response.status_code == 200:  # a server that ignores Range sends the whole file
            body = body[start : start + length]
        if len(body) != length:
            raise MissingFileError(
                f"{self.description}: asked {length} bytes of {name} at {start}, got {len(body)}; retry, or pin a commit"
            )
        return np.frombuffer(body, dtype=np.uint8)


# ---- the public objects --------------------------------------------------------------------------------


class WeightSource:
    """One model's files (a Hub repo at one commit, a local folder, or one .safetensors file).

    Reads only what it is asked (small files whole, safetensors headers, single tensors) and counts the
    bytes in `bytes_read`. Open one with `open_source`.
    """

    def __init__(self, storage: _Storage, *, revision: str | None = None) -> None:
        self._storage = storage
        self.description: str = storage.description
        #: The commit read on the Hub (None for local files).
        self.revision = revision
        #: Bytes read so far: small files, safetensors headers and tensors.
        self.bytes_read = 0
        self._texts: dict[str, str | None] = {}
        self._headers: dict[str, SafetensorsHeader] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._number = next(_SOURCE_NUMBERS)

    def __repr__(self) -> str:
        return f"WeightSource({self.description!r})"

    @property
    def local_folder(self) -> Path | None:
        """The folder of a local model (a single file's folder), None for a Hub repo."""
        return self._storage.root if isinstance(self._storage, _LocalStorage) else None

    @property
    def files(self) -> list[str]:
        """Every file of the model, as relative POSIX paths, sorted."""
        return sorted(self._storage.sizes())

    @property
    def size(self) -> int:
        """The total size of the model's files in bytes (the baseline for `bytes_read`)."""
        return sum(self._storage.sizes().values())

    def file_size(self, name: str) -> int:
        """The size of one file in bytes; MissingFileError if the model has no such file."""
        sizes = self._storage.sizes()
        if name not in sizes:
            raise MissingFileError(f"{self.description} has no file {name!r}")
        return sizes[name]

    @property
    def safetensors_files(self) -> list[str]:
        """The .safetensors files and safetensors index files of the model."""
        return [f for f in self.files if f.endswith((".safetensors", INDEX_SUFFIX))]

    @property
    def pickled_files(self) -> list[str]:
        """The pickled weight files (.bin, .pt, .pth, .ckpt...), listed only: never opened."""
        return [f for f in self.files if f.endswith(PICKLE_SUFFIXES)]

    def _read(self, name: str, start: int, length: int) -> np.ndarray:
        data = self._storage.read(name, start, length)
        self.bytes_read += len(data)
        return data

    def read_text(self, name: str) -> str | None:
        """A small text file (README.md...) decoded as UTF-8, or None if the model has no such file (read once)."""
        name = safe_relpath(name, "read_text")
        if name not in self._texts:
            self._texts[name] = self._read_small(name) if name in self._storage.sizes() else None
        return self._texts[name]

    def _read_small(self, name: str) -> str:
        size = self.file_size(name)
        if size > MAX_SMALL_FILE_BYTES:
            raise BadFileError(f"{self.description}: {name} has {size} bytes, too large for a small text file")
        return bytes(self._read(name, 0, size)).decode("utf-8", errors="replace")

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A small JSON object file (config.json, adapter_config.json, model_index.json...), or None if absent."""
        text = self.read_text(name)
        if text is None:
            return None
        try:
            value = load_json(text)
        except TooComplexError as err:
            raise BadFileError(f"{self.description}: {name} is {err}; fix or re-export it") from None
        except ValueError as err:
            raise BadFileError(f"{self.description}: {name} is not valid JSON ({err}); fix or re-export it") from None
        if not isinstance(value, dict):
            raise BadFileError(f"{self.description}: {name} is not a JSON object; fix or re-export it")
        problem = config_problem(value)
        if problem:
            raise BadFileError(f"{self.description}: {name} {problem}; fix it (transformers would not load it either)")
        return value

    def header(self, name: str) -> SafetensorsHeader:
        """The parsed header of one .safetensors file (read once: 8 bytes, then exactly the header)."""
        if name not in self._headers:
            size = self.file_size(name)
            where = f"{name} of {self.description}"
            prefix = bytes(self._read(name, 0, min(8, size)))
            length = header_length(prefix, size, where)
            data = prefix + bytes(self._read(name, 8, length))
            self._headers[name] = parse_safetensors_header(data, size, name, where)
        return self._headers[name]

    def read_tensor(self, info: TensorInfo) -> np.ndarray:
        """One tensor's bytes, and nothing else, as float32 of its stored shape, read-only: kept a while and shared
        (`TENSOR_CACHE_BYTES` of the tensors last read, over every source: routing and the expert often ask for the
        same layer)."""
        tensor = _TENSORS.get((self._number, info))
        if tensor is None:
            tensor = decode_tensor(self._read(info.file, info.start, info.nbytes), info)
            tensor.flags.writeable = False
            _TENSORS.put((self._number, info), tensor)
        return tensor

    def require_safetensors(self) -> None:
        """NoSafetensorsError unless the model has safetensors weights (naming its pickled files if any)."""
        if not self.safetensors_files:
            raise NoSafetensorsError(self.description, self.pickled_files)

    def checkpoint(self, preferred: tuple[str, ...] = ()) -> Checkpoint:
        """The model's weights as one `Checkpoint`.

        The first of `preferred` (file or index names) that exists; else, among the top-level files (or
        all files when none is top-level), an index, else the first .safetensors file by name.
        NoSafetensorsError when there is none.
        """
        self.require_safetensors()
        files = self.safetensors_files
        candidates = [f for f in files if "/" not in f] or files
        chosen = next(
            (f for f in preferred if f in files),
            next((f for f in candidates if f.endswith(INDEX_SUFFIX)), candidates[0]),
        )
        return self.open_checkpoint(chosen)

    def open_checkpoint(self, name: str) -> Checkpoint:
        """The checkpoint of one .safetensors file or `*.safetensors.index.json` (cached)."""
        if name not in self._checkpoints:
            self._checkpoints[name] = Checkpoint(self, name)
        return self._checkpoints[name]


class Checkpoint:
    """The tensors of one checkpoint: one .safetensors file, or the shards named by an index's weight_map.

    Names come from the index (no shard is read) or the file's header; a shard's header is read only when
    one of its tensors is asked for.
    """

    def __init__(self, source: WeightSource, name: str) -> None:
        self.source, self.name = source, name
        if name.endswith(INDEX_SUFFIX):
            index = source.read_json(name) or {}
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise BadFileError(f"{source.description}: {name} has no weight_map; re-export the checkpoint")
            folder = PurePosixPath(name).parent
            where = f"{name} of {source.description}"
            self._files = {t: safe_relpath(str(folder / safe_relpath(f, where)), where) for t, f in weight_map.items()}
            meta = index.get("metadata")
            self.metadata: dict[str, str] = {k: str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        else:
            header = source.header(name)
            self._files = {t: name for t in header.tensors}
            self.metadata = header.metadata

    def __repr__(self) -> str:
        return f"Checkpoint({self.source.description!r}, {self.name!r}, {len(self._files)} tensors)"

    @property
    def names(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self._files)

    @property
    def shards(self) -> list[str]:
        """The .safetensors files holding the tensors."""
        return sorted(set(self._files.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def info(self, name: str) -> TensorInfo:
        """Dtype, shape and byte range of one tensor (reads its shard's header if not read yet)."""
        file = self._files.get(name)
        if file is None:
            raise LayerMismatchError(f"{self.source.description} has no tensor {name!r} in {self.name}")
        try:
            return self.source.header(file).tensors[name]
        except KeyError:
            raise BadSafetensorsError(
                f"{self.name} of {self.source.description} puts {name!r} in {file}, which lacks it; re-export the "
                f"checkpoint"
            ) from None

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of one tensor."""
        return self.info(name).shape

    def read(self, name: str) -> np.ndarray:
        """One tensor as float32 of its stored shape, read-only: its header (if not read yet) and its bytes, nothing
        else (`WeightSource.read_tensor`: kept a while for the next ask)."""
        return self.source.read_tensor(self.info(name))


def looks_like_repo_id(value: object, *, namespaced: bool = True) -> bool:
    """True for strings that are valid Hub repo ids: `namespace/name` (or a legacy bare `name` when
    `namespaced` is False), and not a local-looking path such as ./out, /data/x or ~/m."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str) or value.startswith((".", "/", "~")):
        return False
    if namespaced and value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def _link_problem(file: Path, allowed: tuple[Path, ...]) -> str:
    """Why the link `file` may not be read ('' when it may): broken, looping, or leading outside `allowed`."""
    try:
        target = file.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a loop, on Pythons before 3.13
        return "is a broken or looping link"
    if not any(target.is_relative_to(folder) for folder in allowed):
        return "is a link to a file outside the model's folder"
    return ""


def _local_source(path: Path) -> WeightSource:
    if path.is_file():  # one file the user named: theirs to point anywhere
        if not path.name.endswith(".safetensors"):
            raise NoSafetensorsError(str(path), [path.name] if path.name.endswith(PICKLE_SUFFIXES) else [])
        return WeightSource(_LocalStorage(path.parent, {path.name: path.stat().st_size}, str(path)))
    root = path.resolve()
    # A huggingface_hub cache snapshot links each file to the repo's blobs: those links stay inside the repo.
    allowed = (root, root.parent.parent / "blobs") if root.parent.name == "snapshots" else (root,)
    sizes: dict[str, int] = {}
    refused: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, .cache/huggingface: not the model
        for name in names:
            file = Path(folder) / name
            relative = file.relative_to(root).as_posix()
            problem = _link_problem(file, allowed) if file.is_symlink() else ""
            if problem:
                refused[relative], sizes[relative] = problem, 0
            else:
                sizes[relative] = file.stat().st_size
    return WeightSource(_LocalStorage(root, sizes, str(path), refused))


def open_source(source: str | os.PathLike[str], *, revision: str | None = None,
                token: str | bool | None = None, local: bool = True) -> WeightSource:
    """Open a model: an existing local folder or .safetensors file, else a Hub repo id.

    Args:
        source: a local path, or a Hub repo id (`namespace/name`).
        revision: for Hub repos, a branch, tag or commit (default: the main branch); ignored locally.
        token: for Hub repos, a token (default: the saved one / HF_TOKEN; False sends none).
        local: False reads `source` as a Hub repo id even where a local path of that name exists (a repo id that a
            file declares must not reach into the working directory).

    Raises:
        RepoNotFoundError, AccessDeniedError, RevisionNotFoundError, HubConnectionError: the Hub refused.
        NoSafetensorsError: a single local file that is not .safetensors.
    """
    path = Path(source)
    if local and path.exists():
        return _local_source(path)
    text = os.fspath(source)
    if not looks_like_repo_id(text, namespaced=False):
        raise RepoNotFoundError(f"{text!r} is neither an existing local path nor a Hub repo id (namespace/name)")
    if revision is not None and (not _REVISION.fullmatch(revision) or ".." in revision):
        raise RevisionNotFoundError(f"{revision!r:.80} is not a branch, tag or commit name (git refuses '..', spaces and "
                                    f"control characters in ref names): give one of {text}'s")
    storage = _HubStorage(text, revision, token)
    return WeightSource(storage, revision=storage.commit)
