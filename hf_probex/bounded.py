"""Bounded parsers: JSON and YAML from untrusted repos, cards and requests, within fixed size and depth.

This module owns the limits every untrusted document is parsed under, so one crafted file costs
milliseconds, never minutes or gigabytes:

- `load_json`: `json.loads` with a size and nesting-depth limit (deep nesting raises `TooComplexError`,
  never `RecursionError`), and optionally duplicate object keys refused (the `safetensors` library refuses
  them too; "the last wins" lets two readers of one file see two different models).
- `load_yaml`: `yaml.safe_load` (no tags, no code) after a streaming pass over the parser's events that
  bounds the size, the nesting depth and the size of the document *with its aliases expanded*, so an
  alias bomb ("billion laughs": anchors nested a few levels deep) is refused before anything expands it.

Both raise `TooComplexError` (a `ValueError`) with a one-line reason; callers turn it into their own
error (a bad file, a 400, an abstention).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

#: Deeper nesting than this is refused: model configs, safetensors headers and cards nest < 10 levels.
MAX_DEPTH = 64
#: YAML nodes after expanding aliases: a long model-index stays far below; an alias bomb goes far above.
MAX_YAML_NODES = 200_000
#: Characters of a YAML document (a card's front matter): real ones are a few KB; PyYAML is pure Python, so a
#: valid 1 MB one still costs seconds (a minute with CRLF) to parse and check.
MAX_YAML_BYTES = 256_000


class TooComplexError(ValueError):
    """A document beyond the bounds (size, depth, expanded size) or with duplicate keys."""


def _check_depth(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise TooComplexError(f"nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise TooComplexError(f"the key {duplicate!r} appears twice")
    return result


def load_json(data: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH,
              unique_keys: bool = False) -> Any:
    """Parse JSON under bounds.

    Args:
        data: the document (bytes are decoded as UTF-8).
        max_bytes: refuse a longer document (None: no size limit beyond the caller's).
        max_depth: refuse objects and arrays nested deeper than this.
        unique_keys: refuse an object that repeats a key.

    Raises:
        TooComplexError: beyond a bound, or a repeated key.
        ValueError: not JSON (`json.JSONDecodeError`, `UnicodeDecodeError`).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise TooComplexError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    try:
        value = json.loads(data, object_pairs_hook=_unique_pairs if unique_keys else None)
    except RecursionError:
        raise TooComplexError(f"nested deeper than {max_depth} levels") from None
    _check_depth(value, max_depth)
    return value


def _check_yaml_events(text: str, max_depth: int, max_nodes: int) -> None:
    """Walk the parser's events (no composition, no expansion) and bound depth and expanded size.

    Each collection's expanded size is counted as its events end; an anchor remembers the expanded size
    and height of its node, and an alias adds them where it stands, so nesting anchors multiplies the
    count exactly as expansion would, without expanding anything.
    """
    # Each open collection: [expanded nodes so far, height below it, anchor name or None]
    stack: list[list[Any]] = [[0, 0, None]]
    anchors: dict[str, tuple[int, int]] = {}

    def add(nodes: int, height: int) -> None:
        top = stack[-1]
        top[0] += nodes
        top[1] = max(top[1], height)
        if top[0] > max_nodes:
            raise TooComplexError(f"more than {max_nodes} YAML nodes once its aliases are expanded")
        if len(stack) - 1 + height > max_depth:
            raise TooComplexError(f"nested deeper than {max_depth} levels")

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([1, 1, event.anchor])
            if len(stack) - 1 > max_depth:
                raise TooComplexError(f"nested deeper than {max_depth} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            nodes, height, anchor = stack.pop()
            if anchor is not None:
                anchors[anchor] = (nodes, height)
            add(nodes, height)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                anchors[event.anchor] = (1, 1)
            add(1, 1)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:  # undefined, or an alias inside its own anchor (a cycle)
                raise TooComplexError(f"the alias *{event.anchor} refers to no complete anchor")
            add(*anchors[event.anchor])


def load_yaml(text: str, *, max_bytes: int = MAX_YAML_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_YAML_NODES) -> Any:
    """`yaml.safe_load` under bounds on size, nesting depth and alias-expanded size.

    Raises:
        TooComplexError: beyond a bound, or an alias to no complete anchor (recursive aliases included).
        yaml.YAMLError: not YAML.
    """
    if len(text) > max_bytes:
        raise TooComplexError(f"{len(text)} characters, more than the {max_bytes} allowed")
    _check_yaml_events(text, max_depth, max_nodes)
    return yaml.safe_load(text)
