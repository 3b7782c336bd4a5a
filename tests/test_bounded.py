"""The bounded JSON and YAML parsers every untrusted document goes through."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from hf_probex.bounded import MAX_DEPTH, TooComplexError, load_json, load_yaml


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A few hundred bytes whose expansion holds width**levels scalars (the "billion laughs")."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_expansion():
    bomb = alias_bomb()
    assert len(bomb) < 600
    with pytest.raises(TooComplexError, match="aliases are expanded"):
        load_yaml(bomb)


@pytest.mark.parametrize("document", ["a: &a [*a]", "a: *undefined", "x: " + "[" * 5000 + "]" * 5000,
                                      "x: " + "{a: " * 100 + "1" + "}" * 100])
def test_cycles_undefined_aliases_and_deep_nesting_are_refused(document):
    with pytest.raises(TooComplexError):
        load_yaml(document)


def test_ordinary_cards_with_small_aliases_load_as_safe_load_does():
    text = "license: mit\ntags: [a, b]\nbase: &b {name: root}\nother: *b\nmodel-index:\n" + \
        "".join(f"  - name: m{i}\n    results: [{{task: x, value: {i}}}]\n" for i in range(500))
    assert load_yaml(text) == yaml.safe_load(text)


def test_yaml_size_limit():
    with pytest.raises(TooComplexError, match="characters"):
        load_yaml("a: b\n" * 10, max_bytes=20)


@pytest.mark.parametrize("document", ["[" * 100_000 + "]" * 100_000, "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
                                      '{"a": ' * 70 + "1" + "}" * 70])
def test_deep_json_is_refused_without_recursion_error(document):
    with pytest.raises(TooComplexError, match="nested deeper"):
        load_json(document)


def test_duplicate_keys_are_refused_only_when_asked():
    assert load_json('{"a": 1, "a": 2}') == {"a": 2}
    with pytest.raises(TooComplexError, match="'a' appears twice"):
        load_json('{"b": {"a": 1, "a": 2}}', unique_keys=True)


# Printable text: YAML refuses control characters that JSON escapes.
words = st.text(st.characters(categories=("L", "N", "P", "Zs")), max_size=5)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | words,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words, inner,
                                                                                       max_size=4),
                           max_leaves=30)


@given(json_values)
def test_any_shallow_json_round_trips(value):
    assert load_json(json.dumps(value), unique_keys=True) == value
    assert load_yaml(json.dumps(value, ensure_ascii=False)) == value  # PyYAML does not join escaped surrogates
