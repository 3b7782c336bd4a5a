"""Editing model cards: add only what is missing, and leave every byte the owner wrote as it was.

A card (README.md) is YAML front matter between `---` lines, then Markdown. hf_probex proposes two
kinds of additions, and nothing else:

- YAML keys the front matter lacks: `base_model`, `base_model_relation`, `library_name`,
  `pipeline_tag`, and `tags` for what the model was trained on (`trained-on:<class or concept>`);
- an "Inferred from weights" section rendered from MODEL_CARD_TEMPLATE.md (Jinja, as
  `ModelCard.from_template` does), between two HTML comments so that a later proposal replaces it
  instead of appending a second one.

The owner's YAML is never round-tripped through a YAML dumper (a bot that did so once dropped a card's
malformed `model-index`; huggingface_hub issue 1361): new lines are inserted textually before the
closing `---`, new tags after the last existing tag. The result is parsed again and must equal the old
metadata plus the additions, else `CardError`. Front matter that does not parse as a YAML mapping is
refused with `CardError`: the Hub refuses such a README at commit, so no valid edit of it exists.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace
from typing import Any

import jinja2
import yaml

from .suggestions import CARD_FIELDS, FieldSuggestion

__all__ = [
    "CardError", "INFERRED_END", "INFERRED_START", "OPT_OUT_TAG", "TRAINED_ON_TAG_PREFIX", "apply_suggestions",
    "card_diff", "is_opted_out", "missing_fields", "render_section", "template_text",
]

OPT_OUT_TAG = "hf-probex-opt-out"
"""A card with this tag (or the metadata `hf_probex: {opt_out: true}`) gets no proposals."""
TRAINED_ON_TAG_PREFIX = "trained-on:"
"""Tags that carry the training classes or the LoRA concept (`trained-on:3`, `trained-on:corgi`)."""
INFERRED_START = "<!-- hf-probex:inferred-from-weights:start -->"
INFERRED_END = "<!-- hf-probex:inferred-from-weights:end -->"

# The fields that become top-level YAML keys of their own; `trained_on` becomes tags, `lineage` lives
# only in the section.
_KEY_FIELDS = ("base_model", "base_model_relation", "library_name", "pipeline_tag")

# huggingface_hub's REGEX_YAML_BLOCK (repocard.py), with the block's last newline inside group 3 so that
# an empty block (`---\n---`) is front matter too. Anchored by `_front_matter`, after a UTF-8 BOM if any.
_FRONT_MATTER = re.compile(r"(\s*---(\r\n|\r|\n))((?:[\S\s]*?(?:\r\n|\r|\n))??)(---[ \t]*(?:\r\n|\n|$))")
# Headings that say what the model was trained on, written by people or by the zoo's cards.
_DATA_HEADING = re.compile(r"^#{1,6}\s*(training data|training dataset|dataset)\b", re.IGNORECASE | re.MULTILINE)


class CardError(ValueError):
    """A README whose front matter cannot be edited safely (not YAML, not a mapping, or a check failed)."""


# ---- the template -------------------------------------------------------------------------------------


def template_text() -> str:
    """MODEL_CARD_TEMPLATE.md as shipped in the package (a copy of the repo-root file, checked by a test)."""
    return resources.files("hf_probex").joinpath("templates/MODEL_CARD_TEMPLATE.md").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template_text())


def _display(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_section(fields: Iterable[FieldSuggestion], newline: str = "\n") -> str:
    """The "Inferred from weights" section for these fields, between the INFERRED_START/END markers."""
    views = [SimpleNamespace(name=f.name, value=_display(f.value), confidence=float(f.confidence),
                             evidence=f.evidence) for f in _ordered(fields)]
    body = _template().render(fields=views).strip("\n")
    text = f"{INFERRED_START}\n{body}\n{INFERRED_END}\n"
    return text.replace("\n", newline)


# ---- reading a card -----------------------------------------------------------------------------------


def _front_matter(readme_text: str) -> re.Match | None:
    # A BOM stays where it is: the owner's bytes are kept, and the Hub reads cards as utf-8-sig.
    return _FRONT_MATTER.match(readme_text, 1 if readme_text.startswith("\ufeff") else 0)


def _split(readme_text: str) -> tuple[re.Match | None, dict]:
    """The front-matter match (None without one) and its metadata; CardError if it is not a YAML mapping."""
    match = _front_matter(readme_text)
    if match is None:
        return None, {}
    try:
        data = yaml.safe_load(match.group(3))
    except yaml.YAMLError as err:
        raise CardError(f"the card's YAML front matter does not parse: {str(err).splitlines()[0]}") from None
    if data is None:
        return match, {}
    if not isinstance(data, dict):
        raise CardError(f"the card's YAML front matter is a {type(data).__name__}, not a mapping")
    return match, data


def _tags(metadata: Mapping) -> list[str]:
    tags = metadata.get("tags")
    if isinstance(tags, str):
        return [tags]
    return [str(t) for t in tags] if isinstance(tags, list) else []


def metadata_of(readme_text: str) -> dict:
    """The card's YAML metadata ({} without front matter); CardError when it cannot be parsed."""
    return _split(readme_text)[1]


def missing_fields(readme_text: str) -> set[str]:
    """The fields of `CARD_FIELDS` this card lacks.

    A YAML key counts as present whenever it is there, even empty (adding a second one would make a
    duplicate key). `trained_on` is present with a `trained-on:` tag, `datasets`, `instance_prompt`, or
    a "Training data" / "Dataset" heading; `lineage` is present with `base_model`.
    Raises CardError when the front matter cannot be parsed.
    """
    match, metadata = _split(readme_text)
    missing = {name for name in _KEY_FIELDS if name not in metadata}
    body = readme_text[match.end():] if match else readme_text
    has_data = (any(t.startswith(TRAINED_ON_TAG_PREFIX) for t in _tags(metadata))
                or "datasets" in metadata or "instance_prompt" in metadata or _DATA_HEADING.search(body))
    if not has_data:
        missing.add("trained_on")
    if "base_model" not in metadata:
        missing.add("lineage")
    return missing


def is_opted_out(readme_text: str) -> bool:
    """Whether the owner asked for no proposals: the tag `hf-probex-opt-out` or `hf_probex: {opt_out: true}`.

    A card whose front matter does not parse counts as opted out when the tag appears in it at all:
    when in doubt, stay away.
    """
    try:
        metadata = metadata_of(readme_text)
    except CardError:
        match = _front_matter(readme_text)
        return match is not None and OPT_OUT_TAG in match.group(3)
    setting = metadata.get("hf_probex")
    return OPT_OUT_TAG in _tags(metadata) or (isinstance(setting, dict) and setting.get("opt_out") is True)


# ---- editing a card -----------------------------------------------------------------------------------


def _ordered(fields: Iterable[FieldSuggestion]) -> list[FieldSuggestion]:
    order = {name: i for i, name in enumerate(CARD_FIELDS)}
    return sorted(fields, key=lambda f: order.get(f.name, len(order)))


def _as_list(fields: Mapping[str, FieldSuggestion] | Iterable[FieldSuggestion]) -> list[FieldSuggestion]:
    return list(fields.values()) if isinstance(fields, Mapping) else list(fields)


def _trained_on_tags(field: FieldSuggestion) -> list[str]:
    values = field.value if isinstance(field.value, (list, tuple)) else [field.value]
    return [f"{TRAINED_ON_TAG_PREFIX}{v}" for v in values]


def _yaml_lines(mapping: dict, indent: str) -> list[str]:
    dumped = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10**9)
    return [indent + line for line in dumped.splitlines()]


def _flow_item(value: str) -> str:
    """One scalar as a YAML flow-sequence item, quoted where YAML needs it."""
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**9).strip()[1:-1]


def _line_end(text: str, index: int) -> int:
    """The index of the line break ending the line that contains `index` (len(text) if none)."""
    ends = [i for i in (text.find("\r", index), text.find("\n", index)) if i != -1]
    return min(ends, default=len(text))


def _tag_insertion(block: str, new_tags: list[str], newline: str) -> tuple[int, str] | None:
    """Where and what to insert into the YAML `block` to append `new_tags` to an existing `tags` key.

    None when the key holds a single string (making it a list would rewrite the owner's line: the
    section still carries the information).
    """
    root = yaml.compose(block)
    node = next(v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "tags")
    if isinstance(node, yaml.SequenceNode) and node.flow_style:
        close = node.end_mark.index - 1  # the `]`
        items = ", ".join(_flow_item(t) for t in new_tags)
        return close, (", " + items if node.value else items)
    if isinstance(node, yaml.SequenceNode) and node.value:
        dash = " " * node.start_mark.column
        at = _line_end(block, node.value[-1].end_mark.index)
        return at, "".join(f"{newline}{dash}- {_flow_item(t)}" for t in new_tags)
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        key = next(k for k, v in root.value if v is node)
        dash = " " * key.start_mark.column
        at = _line_end(block, key.start_mark.index)
        return at, "".join(f"{newline}{dash}- {_flow_item(t)}" for t in new_tags)
    return None


def _with_front_matter(readme_text: str, keys: dict, new_tags: list[str]) -> str:
    """`readme_text` with `keys` and `new_tags` added to its front matter (created when there is none)."""
    match, metadata = _split(readme_text)
    if not keys and not new_tags:
        return readme_text
    if match is None:
        newline = "\r\n" if "\r\n" in readme_text else "\n"
        added = {**keys, **({"tags": new_tags} if new_tags else {})}
        lines = _yaml_lines(added, "")
        return newline.join(["---", *lines, "---", ""]) + readme_text
    newline, block = match.group(2), match.group(3)
    edits: list[tuple[int, str]] = []  # (index in block, text to insert)
    if new_tags and "tags" in metadata:
        tag_edit = _tag_insertion(block, new_tags, newline)
        if tag_edit is None:
            new_tags = []
        else:
            edits.append(tag_edit)
    elif new_tags:
        keys = {**keys, "tags": new_tags}
    if keys:
        # New keys line up with the owner's top-level keys; the block is empty or ends with a line break.
        root = yaml.compose(block)
        indent = " " * (root.value[0][0].start_mark.column if root is not None and root.value else 0)
        edits.append((len(block), newline.join(_yaml_lines(keys, indent)) + newline))
    for index, text in sorted(edits, reverse=True):
        block = block[:index] + text + block[index:]
    result = readme_text[:match.start(3)] + block + readme_text[match.end(3):]
    expected = {**metadata, **keys}
    if new_tags and "tags" in metadata:
        expected["tags"] = [*_tags(metadata), *new_tags]
    if metadata_of(result) != expected:
        raise CardError("adding keys to this card's front matter would change what it already says")
    return result


def _with_section(text: str, section: str, newline: str) -> str:
    """`text` with the inferred section replaced (when there is one) or appended after a blank line."""
    start, end = text.find(INFERRED_START), text.find(INFERRED_END)
    if start != -1 and end > start:
        stop = end + len(INFERRED_END)
        stop += len(newline) if text.startswith(newline, stop) else 0
        return text[:start] + section + text[stop:]
    if not text:
        return section
    if not text.endswith(("\n", "\r")):
        text += newline
    return text + newline + section


def apply_suggestions(readme_text: str, fields: Mapping[str, FieldSuggestion] | Iterable[FieldSuggestion],
                      *, title: str | None = None) -> str:
    """README.md with the missing fields among `fields` added; every other byte left as it was.

    Only fields the card lacks (see `missing_fields`) are written, whatever their `missing` flag says;
    choosing by confidence is the caller's job. Keys go before the closing `---` (a new front matter
    block is prepended when there is none), `trained_on` values are appended to `tags`, and the
    "Inferred from weights" section lists the added fields (replacing an earlier one, so applying twice
    changes nothing more). An empty `readme_text` is a repo without a card: the new card gets the
    front matter, a `# title` heading when `title` is given, and the section. Returns `readme_text`
    itself when nothing is missing. Raises CardError when the front matter cannot be parsed or edited.
    """
    missing = missing_fields(readme_text)
    chosen = [f for f in _ordered(_as_list(fields)) if f.name in missing]
    if not chosen:
        return readme_text
    keys = {f.name: f.value for f in chosen if f.name in _KEY_FIELDS}
    tags = [t for f in chosen if f.name == "trained_on" for t in _trained_on_tags(f)]
    newline = "\r\n" if "\r\n" in readme_text else "\n"
    text = readme_text if readme_text or title is None else f"# {title}\n"
    text = _with_front_matter(text, keys, list(dict.fromkeys(tags)))
    return _with_section(text, render_section(chosen, newline), newline)


def card_diff(old: str, new: str, path: str = "README.md") -> str:
    """A unified diff of a card (`/dev/null` as the old side when there was none), as git writes it."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 "/dev/null" if not old else f"a/{path}", f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
