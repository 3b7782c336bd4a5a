"""The safetensors format, parsed and validated by hand: what `hf_probex.reading` trusts of a file before reading a
tensor from it.

`parse_safetensors_header` checks the 8-byte little-endian header length, the JSON header (bounded: size, tensors,
depth), known dtypes, and data offsets inside the file, after the header and not overlapping; `decode_tensor` turns
a tensor's bytes into a float32 array (BF16 widened exactly; quantized types refused). Nothing here opens a file or
the network: `reading` hands in the bytes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .bounded import TooComplexError, load_json
from .errors import BadSafetensorsError, LayerMismatchError

#: Header size limit (bytes). safetensors allows 100 MB, but parsing that many entries costs a minute and
#: gigabytes; real headers are far smaller (a whole SDXL checkpoint in one file: ~0.3 MB).
MAX_HEADER_BYTES = 16_000_000
#: Tensors in one safetensors file: a checkpoint with more is a crafted one (large models shard far below).
MAX_HEADER_TENSORS = 100_000
#: safetensors dtype -> (bytes per element, little-endian numpy dtype or None when numpy has no such type).
DTYPES: dict[str, tuple[int, str | None]] = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, None),
    "I64": (8, "<i8"), "I32": (4, "<i4"), "I16": (2, "<i2"), "I8": (1, "i1"),
    "U64": (8, "<u8"), "U32": (4, "<u4"), "U16": (2, "<u2"), "U8": (1, "u1"), "BOOL": (1, "?"),
    "F8_E4M3": (1, None), "F8_E5M2": (1, None),
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lies: its file, dtype, shape and absolute byte range [start, end) in that file."""

    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    """A parsed, validated safetensors header: tensors by name, the string metadata, its own size in bytes."""

    file: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    nbytes: int  # 8 + the JSON length: the bytes before the first tensor


def header_length(prefix: bytes, file_size: int, file: str) -> int:
    """The JSON header's length from a file's first 8 bytes, checked against the file size."""
    if file_size < 8 or len(prefix) < 8:
        raise BadSafetensorsError(
            f"{file} is truncated: {file_size} bytes, less than the 8-byte header length; re-download or re-export it"
        )
    length = int.from_bytes(prefix[:8], "little")
    if length > MAX_HEADER_BYTES and length <= file_size - 8:
        raise BadSafetensorsError(
            f"{file} declares a header of {length} bytes, more than the {MAX_HEADER_BYTES} hf_probex reads: refusing "
            f"it; re-export the checkpoint in shards"
        )
    if length == 0 or length > file_size - 8:
        # The declared length is not echoed: from a file that is not safetensors it would leak its first bytes.
        raise BadSafetensorsError(
            f"{file}: its first 8 bytes do not give a header length within the file ({file_size} bytes): it is "
            f"truncated or not safetensors; re-download or re-export it"
        )
    return length


def parse_safetensors_header(data: bytes, file_size: int, file: str, where: str | None = None) -> SafetensorsHeader:
    """Parse and validate the first 8 + n bytes of a safetensors file of `file_size` bytes.

    Checks the declared length against the file, the JSON, each tensor's dtype, shape and data_offsets
    (inside the data area that follows the header, matching shape x dtype, not overlapping another tensor).

    `file` is the file's name in its model (kept in each `TensorInfo`); `where` names it in messages
    (default: `file`).

    Raises:
        BadSafetensorsError: naming the file, what is wrong, and what to try.
    """
    label = where or file
    length = header_length(data, file_size, label)
    if len(data) < 8 + length:
        raise BadSafetensorsError(f"{label}: header cut short ({len(data) - 8} of {length} bytes); re-download it")
    bad = f"{label} is not valid safetensors"
    try:
        raw = load_json(bytes(data[8 : 8 + length]).decode("utf-8"), unique_keys=True)
    except TooComplexError as err:  # duplicate names too: the safetensors library refuses them, "last wins" misleads
        raise BadSafetensorsError(f"{bad}: its header is {err}; re-export it") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise BadSafetensorsError(f"{bad}: its header is not valid JSON ({err}); re-download or re-export it") from None
    if not isinstance(raw, dict):
        raise BadSafetensorsError(f"{bad}: its header is not a JSON object; re-download or re-export it")
    if len(raw) > MAX_HEADER_TENSORS + 1:
        raise BadSafetensorsError(f"{bad}: its header lists {len(raw)} tensors, more than the {MAX_HEADER_TENSORS} "
                                  f"hf_probex reads; re-export the checkpoint in shards")
    metadata = raw.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise BadSafetensorsError(f"{bad}: __metadata__ must map strings to strings; re-export it")
    data_size = file_size - 8 - length
    tensors: dict[str, TensorInfo] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise BadSafetensorsError(f"{bad}: the entry of tensor {name!r} is not an object; re-export it")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise BadSafetensorsError(
                f"{label}: tensor {name!r} has unknown dtype {dtype!r:.40} (known: {', '.join(DTYPES)}); re-export it "
                f"with a standard dtype"
            )
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise BadSafetensorsError(f"{bad}: tensor {name!r} has shape {shape!r:.60}; re-export it")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise BadSafetensorsError(f"{bad}: tensor {name!r} has data_offsets {offsets!r:.60}; re-export it")
        begin, end = offsets
        if begin < 0 or end < begin or end > data_size:
            raise BadSafetensorsError(
                f"{label}: tensor {name!r} has data_offsets [{begin}, {end}) out of range (the data after the header "
                f"holds {data_size} bytes; offsets must not reach into the header or past the end): the file is "
                f"truncated or corrupt; re-download or re-export it"
            )
        if end - begin != math.prod(shape) * DTYPES[dtype][0]:
            raise BadSafetensorsError(
                f"{label}: tensor {name!r} spans {end - begin} bytes but {dtype} x {shape} needs "
                f"{math.prod(shape) * DTYPES[dtype][0]}; re-export it"
            )
        tensors[name] = TensorInfo(name, file, dtype, tuple(shape), 8 + length + begin, 8 + length + end)
    spans = sorted((t.start, t.end, t.name) for t in tensors.values() if t.nbytes)
    for (_, prev_end, prev), (start, _, name) in itertools.pairwise(spans):
        if start < prev_end:
            raise BadSafetensorsError(f"{label}: tensors {prev!r} and {name!r} overlap; re-export it")
    return SafetensorsHeader(file, tensors, {str(k): v for k, v in metadata.items()}, 8 + length)


def decode_tensor(raw: np.ndarray, info: TensorInfo) -> np.ndarray:
    """A tensor's raw little-endian bytes (uint8) -> a float32 array of its shape (BF16 widened exactly)."""
    if info.dtype == "BF16":
        # bfloat16 is the top half of a float32: shift the 16 bits into place.
        values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif DTYPES[info.dtype][1] is None:
        raise LayerMismatchError(
            f"tensor {info.name!r} of {info.file} is stored as {info.dtype} (quantized), which hf_probex does not "
            f"read: use the unquantized model"
        )
    else:
        values = raw.view(DTYPES[info.dtype][1]).astype(np.float32)
    return values.reshape(info.shape)
