"""Editing model cards: add only what is missing, and leave every byte the owner wrote as it was.

A card (README.md) is YAML front matter between `---` lines, then Markdown. hf_probex proposes two
kinds of additions, and nothing else:

- YAML keys the front matter lacks: `base_model`, `base_model_relation`, `library_name`,
  `pipeline_tag`, and `tags` for what the model was trained on (`trained-on:<class or concept>`);
- a section rendered from MODEL_CARD_TEMPLATE.md (Jinja, as `ModelCard.from_template` does) that says
  where each value comes from, headed "Inferred from weights" only when a value was (else "Read from the
  model's files"), between two HTML comment lines so that a later proposal replaces it instead of
  appending a second one.

Cards are untrusted input, read as huggingface_hub reads them (its `REGEX_YAML_BLOCK`, the Hub server's,
after a UTF-8 BOM), with the YAML parsed under `bounded.load_yaml`'s limits: an alias bomb or deep nesting
is a `CardError`, never minutes of work or a `RecursionError`. Front matter that does not parse as a YAML
mapping is refused with `CardError` too: the Hub refuses such a README at commit, so no valid edit exists.

The owner's YAML is never round-tripped through a YAML dumper (a bot that did so once dropped a card's
malformed `model-index`; huggingface_hub issue 1361): new lines are inserted textually, keys before the
closing `---` (after the opening one when the front matter ends in a block scalar, whose value would
otherwise gain a line break), new tags as lines after the last block-style tag. Our section is found only
as whole marker lines in the body, outside fenced code, exactly one start before exactly one end, and no
other mention of the marker anywhere in the card; a card that mentions it anywhere else gets no proposal
(a new section would be ambiguous). Every proposal is checked before it is returned: the owner's lines
(outside our earlier section) all still there, in order and unchanged, only lines inserted; every owner
key keeps its exact value (tags only gain items); our new section found where we wrote it. Otherwise
`CardError`, and the card gets no proposal.
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
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from .bounded import TooComplexError, load_yaml
from .reading import looks_like_repo_id
from .suggestions import CARD_FIELDS, FieldSuggestion, inferred_from_weights

__all__ = [
    "CardError", "INFERRED_END", "INFERRED_START", "MARKER_TAG", "OPT_OUT_OWNER_TAG", "OPT_OUT_TAG",
    "TRAINED_ON_TAG_PREFIX", "apply_suggestions", "card_diff", "is_opted_out", "metadata_of", "missing_fields",
    "opts_out_owner", "render_section", "section_heading", "template_text", "trained_on_tag", "trained_on_value",
]

OPT_OUT_TAG = "hf-probex-opt-out"
"""A card with this tag (or the metadata `hf_probex: {opt_out: true}`) gets no proposals."""
OPT_OUT_OWNER_TAG = "hf-probex-opt-out-owner"
"""This tag on any one card of a user or organisation (or the metadata `hf_probex: {opt_out: owner}`): no proposals
on any of their repos."""
TRAINED_ON_TAG_PREFIX = "trained-on:"
"""Tags that carry the training classes or the LoRA concept (`trained-on:3`, `trained-on:corgi`)."""
MARKER_TAG = "hf-probex:inferred-from-weights"
"""The tag in our section's marker lines; the card's text must not mention it anywhere else."""
INFERRED_START = f"<!-- {MARKER_TAG}:start -->"
INFERRED_END = f"<!-- {MARKER_TAG}:end -->"

# The fields that become top-level YAML keys of their own; `trained_on` becomes tags, `lineage` lives
# only in the section.
_KEY_FIELDS = ("base_model", "base_model_relation", "library_name", "pipeline_tag")

_BOM = "\ufeff"
# Markdown's line breaks (not str.splitlines', which also breaks at \v, \f, \x85, \u2028...).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# CommonMark fences: up to 3 spaces, then 3+ backticks (no backtick in the info string) or tildes.
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
# The start of a block-sequence item's line, up to the item: indentation, the dash, spaces.
_DASH = re.compile(r"( *)- +")
# Headings that say what the model was trained on, written by people or by the zoo's cards.
_DATA_HEADING = re.compile(r"^#{1,6}\s*(training data|training dataset|dataset)\b", re.IGNORECASE | re.MULTILINE)


class CardError(ValueError):
    """A README that cannot be edited safely: front matter that is not YAML, not a mapping or too complex
    to read, a mention of our section marker, or an edit that would change what the owner wrote."""


# ---- the template -------------------------------------------------------------------------------------


def template_text() -> str:
    """MODEL_CARD_TEMPLATE.md as shipped in the package (a copy of the repo-root file, checked by a test)."""
    return resources.files("hf_probex").joinpath("templates/MODEL_CARD_TEMPLATE.md").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    return env.from_string(template_text())


def _one_line(value: Any) -> str:
    text = ", ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    # Values and evidence come from the model's own files: one line each, so that none can add a line of
    # its own to the card (a heading, a marker line).
    return " ".join(text.split())


def section_heading(fields: Iterable[FieldSuggestion]) -> str:
    """Our section's heading: "Inferred from weights" only when a value was (routing or an expert), else
    "Read from the model's files"."""
    return "Inferred from weights" if inferred_from_weights(fields) else "Read from the model's files"


def render_section(fields: Iterable[FieldSuggestion], newline: str = "\n") -> str:
    """Our section for these fields (`section_heading`; each value with where it comes from, its confidence and
    evidence), between the INFERRED_START/END marker lines."""
    fields = _ordered(fields)
    views = [SimpleNamespace(name=f.name, value=_one_line(f.value), confidence=float(f.confidence),
                             evidence=_one_line(f.evidence), origin=f.origin) for f in fields]
    body = _template().render(fields=views, heading=section_heading(fields),
                              from_weights=inferred_from_weights(fields)).strip("\n")
    text = f"{INFERRED_START}\n{body}\n{INFERRED_END}\n"
    return text.replace("\n", newline)


# ---- reading a card -----------------------------------------------------------------------------------


def _front_matter(text: str) -> re.Match | None:
    """huggingface_hub's match of the front matter (group 2 is the YAML) in `text`, a card without its BOM."""
    return REGEX_YAML_BLOCK.search(text)


def _parse(block: str) -> dict:
    """The front matter's YAML as a mapping ({} when empty), read under `load_yaml`'s bounds."""
    try:
        data = load_yaml(block)
    except TooComplexError as err:
        raise CardError(f"the card's YAML front matter is too complex to read safely ({err}): nothing is "
                        "proposed for it until its owner simplifies it") from None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a date like 2020-13-01, an int of 5,000 digits
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CardError(f"the card's YAML front matter does not parse ({reason}): nothing is proposed for it "
                        "until its owner fixes it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CardError(f"the card's YAML front matter is a {type(data).__name__}, not a mapping: nothing is "
                        "proposed for it until its owner fixes it")
    return data


def _split(text: str) -> tuple[re.Match | None, dict]:
    """The front-matter match (None without one) and its metadata; CardError if it cannot be read."""
    match = _front_matter(text)
    return match, (_parse(match.group(2)) if match else {})


def _tags(metadata: Mapping) -> list[str]:
    tags = metadata.get("tags")
    if isinstance(tags, str):
        return [tags]
    return [str(t) for t in tags] if isinstance(tags, list) else []


def metadata_of(readme_text: str) -> dict:
    """The card's YAML metadata ({} without front matter); CardError when it cannot be read safely."""
    return _split(readme_text.removeprefix(_BOM))[1]


def card_bases(readme: str | None) -> list[str]:
    """The `base_model` ids a card declares (none for no card or unreadable metadata)."""
    if not readme:
        return []
    try:
        value = metadata_of(readme).get("base_model")
    except CardError:
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if looks_like_repo_id(v)]


def _missing(text: str, match: re.Match | None, metadata: dict) -> set[str]:
    missing = {name for name in _KEY_FIELDS if name not in metadata}
    body = text[match.end():] if match else text
    has_data = (any(t.startswith(TRAINED_ON_TAG_PREFIX) for t in _tags(metadata))
                or "datasets" in metadata or "instance_prompt" in metadata or _DATA_HEADING.search(body))
    if not has_data:
        missing.add("trained_on")
    if "base_model" not in metadata:
        missing.add("lineage")
    return missing


def missing_fields(readme_text: str) -> set[str]:
    """The fields of `CARD_FIELDS` this card lacks.

    A YAML key counts as present whenever it is there, even empty (adding a second one would make a
    duplicate key). `trained_on` is present with a `trained-on:` tag, `datasets`, `instance_prompt`, or
    a "Training data" / "Dataset" heading; `lineage` is present with `base_model`.
    Raises CardError when the front matter cannot be read safely.
    """
    text = readme_text.removeprefix(_BOM)
    return _missing(text, *_split(text))


def is_opted_out(readme_text: str) -> bool:
    """Whether the owner asked for no proposals on this repo: the tag `hf-probex-opt-out` or `hf_probex: {opt_out:
    true}`, or the owner-wide ones (`opts_out_owner`).

    A card whose front matter cannot be read counts as opted out when the tag appears in it at all:
    when in doubt, stay away.
    """
    try:
        metadata = metadata_of(readme_text)
    except CardError:
        match = _front_matter(readme_text.removeprefix(_BOM))
        return match is not None and OPT_OUT_TAG in match.group(2)  # the owner-wide tag starts with it too
    setting = metadata.get("hf_probex")
    return (OPT_OUT_TAG in _tags(metadata) or (isinstance(setting, dict) and setting.get("opt_out") is True)
            or opts_out_owner(metadata))


def opts_out_owner(metadata: Mapping, tags: Iterable[str] = ()) -> bool:
    """Whether a card asks for no proposals on any repo of its owner: the tag `hf-probex-opt-out-owner` in its
    metadata or in `tags` (the Hub's listing of the repo), or `hf_probex: {opt_out: owner}`."""
    setting = metadata.get("hf_probex")
    return (OPT_OUT_OWNER_TAG in (*_tags(metadata), *tags)
            or (isinstance(setting, dict) and setting.get("opt_out") == "owner"))


def _our_section(text: str, body: int) -> tuple[int, int] | None:
    """The span of our section in `text` (a card without its BOM, whose body starts at `body`), or None.

    Ours is one INFERRED_START line and, after it, one INFERRED_END line: whole lines of the body, outside
    fenced code, with the marker tag nowhere else in the card. Raises CardError when the tag is anywhere
    else (quoted, in code, in the front matter, a marker alone or twice): replacing or adding a section
    there could touch text that is the owner's, or leave two sections that look like ours.
    """
    mentions = len(re.findall(re.escape(MARKER_TAG), text, re.IGNORECASE))
    if mentions == 0:
        return None
    starts, ends, fence = [], [], None
    for line in _LINE.finditer(text, body):
        content = line.group().rstrip("\r\n")
        if fence is not None:
            closing = _FENCE_CLOSE.fullmatch(content)
            if closing and closing[1][0] == fence[0] and len(closing[1]) >= len(fence):
                fence = None
        elif opening := _FENCE_OPEN.match(content):
            fence = opening[1]
        elif content == INFERRED_START:
            starts.append(line.start())
        elif content == INFERRED_END:
            ends.append(line.end())
    if mentions == 2 and len(starts) == len(ends) == 1 and starts[0] < ends[0]:
        return starts[0], ends[0]
    raise CardError(f"the card mentions hf-probex's section marker ({MARKER_TAG}) outside one section of its "
                    "own: nothing is proposed, a new section would be ambiguous (remove the mention to get proposals)")


# ---- editing a card -----------------------------------------------------------------------------------


def _ordered(fields: Iterable[FieldSuggestion]) -> list[FieldSuggestion]:
    order = {name: i for i, name in enumerate(CARD_FIELDS)}
    return sorted(fields, key=lambda f: order.get(f.name, len(order)))


def _as_list(fields: Mapping[str, FieldSuggestion] | Iterable[FieldSuggestion]) -> list[FieldSuggestion]:
    return list(fields.values()) if isinstance(fields, Mapping) else list(fields)


def trained_on_tag(value: str) -> str:
    """The tag saying a model was trained on `value`, as the Hub writes tags: lower case, words joined by hyphens
    (`rotated zero` -> `trained-on:rotated-zero`)."""
    return TRAINED_ON_TAG_PREFIX + "-".join(re.sub(r"[^\w.+-]+", " ", str(value).lower()).split())


def trained_on_value(tag: str) -> str | None:
    """What a `trained-on:` tag says the model was trained on (hyphens read as spaces: a tag cannot hold one), or
    None for another tag."""
    if not tag.startswith(TRAINED_ON_TAG_PREFIX):
        return None
    return " ".join(tag[len(TRAINED_ON_TAG_PREFIX):].replace("-", " ").split()) or None


def _trained_on_tags(field: FieldSuggestion) -> list[str]:
    values = field.value if isinstance(field.value, (list, tuple)) else [field.value]
    return [trained_on_tag(v) for v in values]


def _yaml_lines(mapping: dict, indent: str) -> list[str]:
    dumped = yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10**9)
    return [indent + line for line in dumped.splitlines()]


def _flow_item(value: str) -> str:
    """One scalar as a YAML sequence item: plain where it reads back as itself (`trained-on:3`, as the Hub writes
    tags), else quoted."""
    if re.fullmatch(r"[\w][\w.+:-]*", value) and yaml.safe_load(f"[{value}]") == [value]:
        return value
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**9).strip()[1:-1]


def _newline(text: str) -> str:
    """The card's first line break ("\n" without one): added lines use the owner's line endings."""
    found = re.search(r"\r\n|\r|\n", text)
    return found.group() if found else "\n"


def _line_end(text: str, index: int) -> int:
    """The index of the line break ending the line that contains `index` (len(text) if none)."""
    ends = [i for i in (text.find("\r", index), text.find("\n", index)) if i != -1]
    return min(ends, default=len(text))


def _ends_in_block_scalar(node: yaml.Node | None) -> bool:
    """Whether the YAML's last scalar is a `|` or `>` block: a line after it would change its value under
    huggingface_hub's parser, which leaves the front matter's last line break out of the YAML."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.value:
        node = node.value[-1][1] if isinstance(node, yaml.MappingNode) else node.value[-1]
    return isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")


def _tag_insertion(root: yaml.MappingNode, block: str, new_tags: list[str], newline: str) -> tuple[int, str] | None:
    """Where and what to insert into the YAML `block` to append `new_tags` to its `tags`, as new lines.

    None unless `tags` is a block sequence or has no value at all: a single string or a flow sequence
    (`[a, b]`) would have to be rewritten on the owner's line (the section still carries the information).
    """
    key, node = next(((k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "tags"),
                     (None, None))  # none when `tags` comes from a merge key (`<<`)
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        # New items line up with the dash of the last one, on its own line (`  - x`; not `tags: &t - x`).
        last = node.value[-1].start_mark
        dash = _DASH.fullmatch(block, last.index - last.column, last.index)
        if dash is None:
            return None
        column, at = len(dash[1]), _line_end(block, node.value[-1].end_mark.index - 1)
    elif isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value == "":
        column, at = key.start_mark.column, _line_end(block, key.start_mark.index)
    else:
        return None
    return at, "".join(f"{newline}{' ' * column}- {_flow_item(t)}" for t in new_tags)


def _with_front_matter(text: str, metadata: dict, keys: dict, new_tags: list[str],
                       newline: str) -> tuple[str, dict]:
    """`text` with `keys` and `new_tags` added to its front matter (created when there is none), and the
    metadata it must now parse to. `metadata` is what the front matter of `text` parsed to."""
    match = _front_matter(text)
    if match is None:
        added = {**keys, **({"tags": new_tags} if new_tags else {})}
        return (newline.join(["---", *_yaml_lines(added, ""), "---", ""]) + text if added else text), added
    block, expected = match.group(2), dict(metadata)
    root = yaml.compose(block)  # within bounds: `_parse` read this block first
    if not isinstance(root, yaml.MappingNode):  # empty, or a null (`~`): keys after it fail the check
        root = None
    edits: list[tuple[int, str]] = []  # (index in block, text to insert); on a tie the later one comes first
    if new_tags and "tags" not in metadata:
        keys = {**keys, "tags": new_tags}
    if keys:
        # New keys line up with the owner's top-level keys.
        indent = " " * (root.value[0][0].start_mark.column if root is not None and root.value else 0)
        lines = _yaml_lines(keys, indent)
        if _ends_in_block_scalar(root):
            edits.append((0, "".join(line + newline for line in lines)))
        else:
            edits.append((len(block), "".join(newline + line for line in lines)))
        expected.update(keys)
    if new_tags and "tags" in metadata:
        tag_edit = _tag_insertion(root, block, new_tags, newline)
        if tag_edit is not None:
            edits.append(tag_edit)
            expected["tags"] = [*(metadata["tags"] or []), *new_tags]
    for index, added in sorted(edits, key=lambda edit: edit[0], reverse=True):
        block = block[:index] + added + block[index:]
    return text[:match.start(2)] + block + text[match.end(2):], expected


def _with_section(text: str, section: str, newline: str, span: tuple[int, int] | None) -> str:
    """`text` with our section at `span` replaced (when there is one) or appended after a blank line."""
    if span is not None:
        return text[:span[0]] + section + text[span[1]:]
    if not text:
        return section
    if not text.endswith(("\n", "\r")):
        text += newline
    return text + newline + section


def _keeps_lines(old: str, new: str) -> bool:
    """Whether `new` is `old` with whole lines inserted: every line of `old` there, in order and unchanged
    (but for the line break a last line without one gains)."""
    remaining = (line.group() for line in _LINE.finditer(new))
    for line in _LINE.finditer(old):
        kept = line.group()
        unterminated = line.end() == len(old) and not kept.endswith(("\r", "\n"))
        if not any(got == kept or (unterminated and got.rstrip("\r\n") == kept) for got in remaining):
            return False
    return True


def _reads_alike(text: str, metadata: dict) -> bool:
    """Whether `metadata`, the card's as the Hub server and `ModelCard.load` read it (line breaks as they
    are), is also what `metadata_load` reads (a text file: every line break becomes \n). They differ on a
    lone \r (`---\r` closes no front matter) and on `---\r\n---` (empty front matter as it is, not as \n)."""
    return "\r" not in text or repr(metadata) == repr(_split(re.sub(r"\r\n?", "\n", text))[1])


def _check(old: str, old_metadata: dict, owner: str, new: str, expected: dict, section: str) -> None:
    """CardError unless `new` is `owner` (`old` without our earlier section) with lines inserted, its
    metadata is exactly `expected` however huggingface_hub reads it, and `section` is its one section of ours."""
    match, metadata = _split(new)
    span = _our_section(new, match.end() if match else 0)
    if not (_keeps_lines(owner, new) and span is not None and new[span[0]:span[1]] == section
            and metadata.keys() == expected.keys()
            and all(repr(metadata[key]) == repr(value) for key, value in expected.items())  # repr: 1 != 1.0 != True
            and _reads_alike(old, old_metadata) and _reads_alike(new, metadata)):
        raise CardError("adding to this card would change what its owner wrote (a line, or a value as "
                        "huggingface_hub reads it): nothing is proposed for it; add the fields by hand")


def apply_suggestions(readme_text: str, fields: Mapping[str, FieldSuggestion] | Iterable[FieldSuggestion],
                      *, title: str | None = None) -> str:
    """README.md with the missing fields among `fields` added; every other byte left as it was.

    Only fields the card lacks (see `missing_fields`) are written, whatever their `missing` flag says;
    choosing by confidence is the caller's job. Keys go into the front matter (a new front matter block
    is prepended when there is none), `trained_on` values are appended to a block-style `tags`, and our
    section (`render_section`) lists the added fields (replacing our earlier one, so applying twice
    changes nothing more). An empty `readme_text` is a repo without a card: the new card gets the
    front matter, a `# title` heading when `title` is given, and the section. Returns `readme_text`
    itself when nothing is missing.

    Raises:
        CardError: the front matter cannot be read safely, the card mentions our section marker anywhere
            but in one section of ours, or the result fails the check (an owner line or value changed):
            propose nothing for this card.
    """
    text = readme_text.removeprefix(_BOM)  # a BOM stays where it is: the Hub reads cards as utf-8-sig
    match, metadata = _split(text)
    missing = _missing(text, match, metadata)
    chosen = [f for f in _ordered(_as_list(fields)) if f.name in missing]
    if not chosen:
        return readme_text
    span = _our_section(text, match.end() if match else 0)
    keys = {f.name: f.value for f in chosen if f.name in _KEY_FIELDS}
    tags = list(dict.fromkeys(t for f in chosen if f.name == "trained_on" for t in _trained_on_tags(f)))
    newline = _newline(text)
    section = render_section(chosen, newline)
    new = _with_section(text if text or title is None else f"# {title}{newline}", section, newline, span)
    new, expected = _with_front_matter(new, metadata, keys, tags, newline)
    _check(text, metadata, text[:span[0]] + text[span[1]:] if span else text, new, expected, section)
    return readme_text[:len(readme_text) - len(text)] + new


def card_diff(old: str, new: str, path: str = "README.md") -> str:
    """A unified diff of a card (`/dev/null` as the old side when there was none), as git writes it."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 "/dev/null" if not old else f"a/{path}", f"b/{path}")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
