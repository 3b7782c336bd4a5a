"""hf_probex.cards on hostile and malformed cards (issue 13).

A card is read within bounds (an alias bomb or deep YAML is a one-line CardError in milliseconds), our
section is found only where we wrote it, and a proposal is either refused (CardError) or the old card
with lines inserted: no owner line removed or changed, and no owner value changed as huggingface_hub's
own `metadata_load` reads the card. The oracles here read cards independently of hf_probex.cards.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub.repocard import metadata_load
from hypothesis import HealthCheck, event, given, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st
from safetensors.numpy import save_file

from hf_probex import infer_card
from hf_probex.cards import (
    INFERRED_END, INFERRED_START, MARKER_TAG, CardError, apply_suggestions, is_opted_out, metadata_of, missing_fields,
    render_section,
)
from hf_probex.cli import main
from hf_probex.suggestions import FieldSuggestion

FIELDS = [
    FieldSuggestion("base_model", "acme/root", 1.0, "adapter_config.json base_model_name_or_path"),
    FieldSuggestion("library_name", "transformers", 1.0, "config.json architectures"),
    FieldSuggestion("pipeline_tag", "image-classification", 1.0, "config.json architectures"),
    FieldSuggestion("trained_on", ["3", "7"], 0.97, "expert hf-probex/expert-vit (probex)", source="expert"),
]
ADDED_KEYS = {"base_model", "base_model_relation", "library_name", "pipeline_tag", "tags"}
# Examples per property (the counts docs/security.md reports).
HOSTILE_EXAMPLES = 1000
ORDINARY_EXAMPLES = 300
HOSTILE_VALUE_EXAMPLES = 200
YAML_FUZZ_EXAMPLES = 500


# ---- oracles ------------------------------------------------------------------------------------------


def lines_of(text: str) -> list[str]:
    """The card's lines, each with its line break (\\n, \\r\\n or \\r, as Markdown and YAML break lines)."""
    lines = re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)
    assert "".join(lines) == text
    return lines


def kept_in_order(old: list[str], new: list[str]) -> bool:
    """Every line of `old` in `new`, in order and unchanged (a last line without a line break may gain one)."""
    remaining = iter(new)
    for i, line in enumerate(old):
        open_end = i == len(old) - 1 and not line.endswith(("\r", "\n"))
        if not any(got == line or (open_end and got in (line + "\n", line + "\r\n", line + "\r")) for got in remaining):
            return False
    return True


def owner_lines_kept(old: str, new: str) -> bool:
    """`new` is `old` with lines inserted, but for one earlier section of ours (its START line to its END line,
    the marker mentioned nowhere else in the card), which a new proposal may replace. A BOM is no line's:
    it stays first in the file, before a front matter added to a card that had none."""
    old_lines, new_lines = lines_of(old.removeprefix("\ufeff")), lines_of(new.removeprefix("\ufeff"))
    if kept_in_order(old_lines, new_lines):
        return True
    bare = [line.rstrip("\r\n") for line in old_lines]
    if len(re.findall(MARKER_TAG, old, re.IGNORECASE)) != 2 or INFERRED_START not in bare or INFERRED_END not in bare:
        return False
    start, end = bare.index(INFERRED_START), bare.index(INFERRED_END)
    return start < end and kept_in_order(old_lines[:start] + old_lines[end + 1:], new_lines)


def hub_metadata(text: str) -> dict:
    """The card's metadata as huggingface_hub reads it (`metadata_load`: utf-8-sig, the Hub server's regex)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "README.md"
        path.write_bytes(text.encode("utf-8"))
        return metadata_load(path) or {}


def owner_values_kept(old: str, new: str) -> bool:
    """Every key of the old metadata has its exact value (type included) in the new; tags only gain
    `trained-on:` items (an empty `tags:` becomes a list of them); the only new keys are hf_probex's."""
    before, after = hub_metadata(old), hub_metadata(new)
    for key, value in before.items():
        if key not in after:
            return False
        if key == "tags" and isinstance(value, list | None) and isinstance(after[key], list):
            value = value or []
            gained = after[key][len(value):]
            if repr(after[key][:len(value)]) != repr(value) or not all(str(t).startswith("trained-on:") for t in gained):
                return False
        elif repr(after[key]) != repr(value):
            return False
    return set(after) - set(before) <= ADDED_KEYS


def outcome(what: str) -> None:
    """Count an outcome in a property's statistics (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


def assert_refused_or_only_added(old: str, fields: list[FieldSuggestion]) -> str | None:
    """The proposal for `old`, checked by the oracles; None when it was refused (in one line)."""
    try:
        new = apply_suggestions(old, fields)
    except CardError as err:
        assert "\n" not in str(err) and "\r" not in str(err)
        outcome("refused: " + str(err).split(" (")[0].split(":")[0])
        return None
    outcome("proposed" if new != old else "nothing missing")
    if new == old:  # nothing to add: the owner's card untouched, whether or not huggingface_hub can read it
        return new
    assert owner_lines_kept(old, new), (old, new)
    assert owner_values_kept(old, new), (old, new)
    assert new.startswith("\ufeff") == old.startswith("\ufeff")
    assert len(re.findall(MARKER_TAG, new, re.IGNORECASE)) == 2 and new.count(INFERRED_START) == 1
    # Our own result can be proposed on again: the section is replaced, the rest only gains lines.
    again = apply_suggestions(new, fields)
    assert owner_lines_kept(new, again) and owner_values_kept(new, again) and again.count(INFERRED_START) == 1
    return new


# ---- generated cards ----------------------------------------------------------------------------------

SECTION_LINES = render_section(FIELDS[:2]).rstrip("\n").split("\n")  # an earlier proposal, merged by the owner
QUOTED_MARKERS = [f"`{INFERRED_START}`", INFERRED_START.upper(), "  " + INFERRED_END, f"<!--{MARKER_TAG}:start-->",
                  f"see {INFERRED_END} here", INFERRED_START + " ", MARKER_TAG]
KEYS = ["license", "library_name", "base_model", "pipeline_tag", "datasets", "description", "note", "hf_probex",
        "language", "x-custom"]
safe = st.from_regex(r"[A-Za-z][A-Za-z0-9_./-]{0,10}", fullmatch=True)
anything = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
markers = st.sampled_from([INFERRED_START, INFERRED_END, *QUOTED_MARKERS])


def _single_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def yaml_value(draw, hostile: bool) -> list[str]:
    """A value after `key:`, as the lines it takes (the first one goes on the key's line)."""
    kinds = ["plain", "single", "double", "number", "bool", "null", "empty", "block", "flow", "nested", "anchor"]
    kinds += ["anything", "marker", "date", "nan", "alias"] if hostile else []
    kind = draw(st.sampled_from(kinds))
    word = draw(anything if hostile and draw(st.booleans()) else safe)
    if kind == "plain":
        return [draw(safe)]
    if kind == "single":
        return [_single_quoted(word)]
    if kind == "double":
        return [json.dumps(word)]
    if kind == "number":
        return [str(draw(st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)))]
    if kind == "bool":
        return [draw(st.sampled_from(["true", "false", "yes", "no", "on", "True"]))]
    if kind == "null":
        return [draw(st.sampled_from(["~", "null"]))]
    if kind == "empty":
        return [""]
    if kind == "block":
        indicator = draw(st.sampled_from(["|", ">", "|-", "|+", ">-", ">+", "|2"]))
        body = ["  " + draw(safe) for _ in range(draw(st.integers(0, 3)))]
        return [indicator, *body, *[""] * draw(st.integers(0, 2))]
    if kind == "flow":
        return ["[" + ", ".join(draw(st.lists(safe, max_size=3))) + "]"]
    if kind == "nested":
        return ["", *(f"  {draw(safe)}: {draw(safe)}" for _ in range(draw(st.integers(1, 3))))]
    if kind == "anchor":
        return [f"&a{draw(st.integers(0, 2)) if hostile else draw(st.uuids()).hex} {draw(safe)}"]
    if kind == "alias":
        return [f"*a{draw(st.integers(0, 2))}"]
    if kind == "marker":
        return [json.dumps(draw(markers))]
    if kind == "date":
        return [draw(st.sampled_from(["2024-01-31", "2020-13-01", "2024-02-30 10:00:00"]))]
    if kind == "nan":
        return [".nan"]
    return [word]  # anything: may not be YAML at all


@st.composite
def tags_entry(draw, hostile: bool) -> list[str]:
    items = draw(st.lists(safe, max_size=4))
    style = draw(st.sampled_from(["block", "indented", "flow", "scalar", "empty", "null", "anchored"]
                                 + (["block-scalar-last", "aliased"] if hostile else [])))
    if style == "block":
        return ["tags:", *(f"- {item}" for item in items)]
    if style == "indented":
        return ["tags:", *(f"  - {_single_quoted(item)}  # {draw(safe)}" for item in items)]
    if style == "flow":
        return ["tags: [" + ", ".join(items) + "]"]
    if style == "scalar":
        return [f"tags: {draw(safe)}"]
    if style == "empty":
        return ["tags:"]
    if style == "null":
        return ["tags: ~"]
    if style == "anchored":
        return ["tags: &t", "- a", *(f"- {item}" for item in items)]
    if style == "aliased":
        return ["tags: &t", "- a", "copy: *t"]
    return ["tags:", "- a", "- |", "  " + draw(safe)]


@st.composite
def front_matter(draw, hostile: bool) -> list[str]:
    """The front matter's lines (none, or between `---` lines), its keys indented alike."""
    if not draw(st.integers(0, 5)):
        return []
    entries: list[list[str]] = []
    keys = draw(st.lists(st.sampled_from(KEYS + (["<<"] if hostile else [])), max_size=5, unique=not hostile))
    for key in keys:
        value = draw(yaml_value(hostile))
        entries.append([f"{key}: {value[0]}".rstrip(" ") if value[0] else f"{key}:", *value[1:]])
    if draw(st.booleans()):
        entries.insert(draw(st.integers(0, len(entries))), draw(tags_entry(hostile)))
    for _ in range(draw(st.integers(0, 2))):
        comment = "# " + (draw(markers) if hostile and draw(st.booleans()) else draw(safe))
        entries.insert(draw(st.integers(0, len(entries))), [comment])
    if not entries and not hostile:  # `---\r\n---` is front matter to huggingface_hub, `---\n---` is not
        entries.append([f"license: {draw(safe)}"])
    indent = draw(st.sampled_from(["", "  "]))
    lines = [indent + line if line else line for entry in entries for line in entry]
    opening = draw(st.sampled_from(["---", "---", "", "---"] if hostile else ["---"]))
    closing = draw(st.sampled_from(["---", "---  ", "..."] if hostile else ["---"]))
    return ([opening] if opening else ["", "---"]) + lines + [closing]


@st.composite
def body(draw, hostile: bool) -> list[str]:
    """Markdown: headings, text, `---` rules, fenced code (closed unless hostile), maybe our earlier section."""
    blocks: list[list[str]] = [["# " + draw(safe)]]
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "blank", "rule", "code", "data", "comment"]
                                    + (["marker", "quote", "anything", "fence"] if hostile else [])))
        if kind == "text":
            blocks.append([draw(safe) + " " + draw(safe)])
        elif kind == "blank":
            blocks.append([""])
        elif kind == "rule":
            blocks.append(["---"])
        elif kind == "code":
            fence = draw(st.sampled_from(["```", "~~~", "````"]))
            inner = [draw(markers)] if hostile and draw(st.booleans()) else [draw(safe)]
            blocks.append([fence + draw(st.sampled_from(["", "python"])), *inner, fence])
        elif kind == "data":
            blocks.append(["## Training data", draw(safe)])
        elif kind == "comment":
            blocks.append(["<!-- " + draw(safe) + " -->"])
        elif kind == "marker":
            blocks.append([draw(st.sampled_from([INFERRED_START, INFERRED_END]))])
        elif kind == "quote":
            blocks.append(["We write " + draw(markers) + " in our docs."])
        elif kind == "anything":
            blocks.append([draw(anything)])
        else:
            blocks.append([draw(st.sampled_from(["```", "~~~", "  ```", "    ```"]))])
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(1, len(blocks))), SECTION_LINES)
    return [line for block in blocks for line in block]


@st.composite
def cards(draw, hostile: bool) -> str:
    """A whole README: front matter and body, one line break (or, hostile, a mix), BOM or not, last line
    break or not."""
    lines = draw(front_matter(hostile)) + draw(body(hostile))
    # A lone \r cannot close front matter for huggingface_hub's regex: only hostile cards use it.
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"] if hostile else ["\n", "\r\n"]))
    if hostile and draw(st.booleans()):
        breaks = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines)))
    else:
        breaks = [newline] * len(lines)
    text = "".join(line + brk for line, brk in zip(lines, breaks, strict=True))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return ("\ufeff" if draw(st.booleans()) else "") + text


field_sets = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique_by=lambda f: f.name)
hostile_fields = st.lists(st.one_of(
    st.builds(FieldSuggestion, st.just("base_model"), anything | markers, st.just(1.0), anything),
    st.builds(FieldSuggestion, st.just("library_name"), anything, st.just(1.0), markers),
    st.builds(FieldSuggestion, st.just("trained_on"), st.lists(anything | markers, min_size=1, max_size=3),
              st.just(0.9), anything, st.just("expert")),
), min_size=1, max_size=3, unique_by=lambda f: f.name)

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=HOSTILE_EXAMPLES, **SETTINGS)
@given(cards(hostile=True), field_sets)
def test_any_card_is_refused_or_only_gains_lines(readme, fields):
    assert_refused_or_only_added(readme, fields)


@settings(max_examples=ORDINARY_EXAMPLES, **SETTINGS)
@given(cards(hostile=False))
def test_ordinary_cards_get_their_proposal(readme):
    # Cards without marker quotes, aliased tags or broken YAML are never refused.
    before = metadata_of(readme)
    new = assert_refused_or_only_added(readme, FIELDS)
    assert new is not None
    after = metadata_of(new)
    assert all(after[f.name] == f.value for f in FIELDS if f.name in ("base_model", "library_name", "pipeline_tag")
               and f.name not in before)


@settings(max_examples=HOSTILE_VALUE_EXAMPLES, **SETTINGS)
@given(cards(hostile=False), hostile_fields)
def test_hostile_values_from_a_models_files_add_lines_only(readme, fields):
    # Values come from the model's own config files: newlines, markers, YAML syntax in them change nothing else.
    new = assert_refused_or_only_added(readme, fields)
    if new is not None and new != readme:
        section = new[new.index(INFERRED_START):]
        assert section.count("\n- **") == len([f for f in fields if f.name in missing_fields(readme)])


# Text made mostly of YAML's syntax (so that much of it parses), or of any characters at all.
yamlish = (st.lists(st.sampled_from([*"ab: :- -[]{}&*!|>'\"#,?\n\n  \t~.%@`\r\ufeff", "tags", "<<", "---"]), max_size=60)
           .map("".join) | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200))


@settings(max_examples=YAML_FUZZ_EXAMPLES, **SETTINGS)
@given(yamlish, st.sampled_from(["\n", "\r\n"]))
def test_any_front_matter_is_read_or_refused_in_one_line(yaml_text, newline):
    readme = f"---{newline}{yaml_text}{newline}---{newline}# Card{newline}"
    for read in (metadata_of, missing_fields):
        try:
            read(readme)
        except CardError as err:
            assert "\n" not in str(err)
    assert isinstance(is_opted_out(readme), bool)
    assert_refused_or_only_added(readme, FIELDS)


# ---- the reviewer's cases -----------------------------------------------------------------------------


def alias_bomb(levels: int, key: str = "tags") -> str:
    """A card of a few hundred bytes whose YAML aliases expand to 9**levels scalars under `key`."""
    names = "abcdefghijk"[:levels]
    lines = ["a: &a [l,l,l,l,l,l,l,l,l]"] + [f"{name}: &{name} [{','.join(['*' + prev] * 9)}]"
                                          for prev, name in zip(names, names[1:])]
    return "---\n" + "\n".join(lines) + f"\n{key}: *{names[-1]}\n---\n# m\n"


TOO_COMPLEX = {
    "alias bomb in tags (8 levels)": alias_bomb(8),
    "alias bomb in base_model (8 levels)": alias_bomb(8, "base_model"),
    "alias bomb in model-index (9 levels)": alias_bomb(9, "model-index"),
    "alias bomb, CRLF and BOM": "\ufeff" + alias_bomb(8).replace("\n", "\r\n"),
    "deep flow nesting": "---\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n",
    "deep flow mappings": "---\nx: " + "{a: " * 200 + "1" + "}" * 200 + "\n---\n",
    "deep block nesting": "---\n" + "".join(" " * i + "a:\n" for i in range(1000)) + "---\n",
    "recursive alias": "---\na: &a [*a]\n---\n",
    "undefined alias": "---\ntags: *nothing\n---\n",
    "front matter over 1 MB": "---\n" + "k: v\n" * 250_000 + "---\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("readme", list(TOO_COMPLEX.values()), ids=list(TOO_COMPLEX))
def test_too_complex_front_matter_is_one_card_error_in_milliseconds(readme):
    assert len(alias_bomb(8)) < 400  # the reviewer's card was 366 bytes
    started = time.perf_counter()
    for call in (metadata_of, missing_fields, lambda text: apply_suggestions(text, FIELDS)):
        with pytest.raises(CardError, match="too complex to read safely|refers to no complete anchor") as err:
            call(readme)
        assert "\n" not in str(err.value)
    assert is_opted_out(readme) is False
    assert time.perf_counter() - started < 5  # the unbounded reading took minutes and gigabytes


MARKER_CASES = {
    "markers quoted inline": f"---\nlicense: mit\n---\n# M\n\nWe keep `{INFERRED_START}` and `{INFERRED_END}` out.\n",
    "marker pair in a code fence": f"---\nlicense: mit\n---\n# M\n\n```md\n{INFERRED_START}\nmine\n{INFERRED_END}\n```\n",
    "marker pair in a tilde fence": f"# M\n~~~~\n{INFERRED_START}\nmine\n{INFERRED_END}\n~~~~\n",
    "marker pair in an unclosed fence": f"# M\n```\n{INFERRED_START}\nmine\n{INFERRED_END}\n",
    "start in the front matter, end in the body": (f"---\nlicense: apache-2.0\n# {INFERRED_START}\n---\n# M\n\n"
                                                    f"Text.\n{INFERRED_END}\nMore text.\n"),
    "start in a front-matter value, end in the body": (f"---\nlicense: apache-2.0\nnote: \"{INFERRED_START}\"\n---\n"
                                                        f"# M\n{INFERRED_END}\n"),
    "only the start marker": f"---\nlicense: mit\n---\n# M\n{INFERRED_START}\nThe owner's text.\n",
    "only the end marker": f"# M\nThe owner's text.\n{INFERRED_END}\nMore.\n",
    "end before start": f"# M\n{INFERRED_END}\nThe owner's text.\n{INFERRED_START}\n",
    "two sections": f"# M\n{INFERRED_START}\na\n{INFERRED_END}\nowner\n{INFERRED_START}\nb\n{INFERRED_END}\n",
    "a section plus a quote": f"# M\nSee `{INFERRED_START}`.\n{INFERRED_START}\na\n{INFERRED_END}\n",
    "indented markers": f"# M\n  {INFERRED_START}\nowner\n  {INFERRED_END}\n",
    "markers in other case": f"# M\n{INFERRED_START.upper()}\nowner\n{INFERRED_END.upper()}\n",
    "the tag alone in a comment": f"# M\n<!-- {MARKER_TAG} -->\n",
}


@pytest.mark.parametrize("readme", list(MARKER_CASES.values()), ids=list(MARKER_CASES))
def test_a_card_that_mentions_our_marker_elsewhere_gets_no_proposal(readme):
    with pytest.raises(CardError, match="section marker") as err:
        apply_suggestions(readme, FIELDS)
    assert "\n" not in str(err.value)
    assert missing_fields(readme)  # reading it is fine: only editing it would be ambiguous


def test_the_front_matter_survives_a_marker_in_it():
    # The reviewer's card: the old merge took the start marker in the front matter for ours, replaced from
    # there to the end marker in the body, and the license was gone.
    readme = MARKER_CASES["start in the front matter, end in the body"]
    with pytest.raises(CardError):
        apply_suggestions(readme, FIELDS)
    assert metadata_of(readme) == {"license": "apache-2.0"}


BLOCK_SCALAR_ENDINGS = ["|", ">", "|+", ">+", "|-", ">-", "|2"]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("indicator", BLOCK_SCALAR_ENDINGS)
def test_front_matter_ending_in_a_block_scalar_keeps_its_value(indicator, newline):
    # huggingface_hub leaves the front matter's last line break out of the YAML: a key added after the
    # block scalar would give it one more line break (the reviewer's case changed `description`).
    readme = f"---\nlicense: mit\ndescription: {indicator}\n  First line.\n  Second line.\n\n---\n# M\n"
    readme = readme.replace("\n", newline)
    new = apply_suggestions(readme, FIELDS)
    assert owner_lines_kept(readme, new) and owner_values_kept(readme, new)
    assert hub_metadata(new)["description"] == hub_metadata(readme)["description"]
    assert hub_metadata(new)["base_model"] == "acme/root"


def test_our_earlier_section_is_replaced_and_nothing_else():
    earlier = render_section(FIELDS[:1])
    readme = f"---\nlicense: mit\nbase_model: acme/root\n---\n# M\n\nOwner text.\n\n{earlier}\nOwner footer.\n"
    new = apply_suggestions(readme, FIELDS)
    assert new.count(INFERRED_START) == 1 and "- **pipeline_tag**" in new and "- **base_model**" not in new
    assert new.endswith("Owner footer.\n") and "Owner text.\n\n" + INFERRED_START in new
    assert owner_lines_kept(readme, new) and owner_values_kept(readme, new)


@pytest.mark.parametrize("value", [f"x\n{INFERRED_END}\n# Owned", "a\n---\nlicense: gpl", f"{INFERRED_START}", "'\"\n"])
def test_a_value_cannot_forge_lines(value):
    readme = "---\nlicense: mit\n---\n# M\n"
    fields = [FieldSuggestion("library_name", value, 1.0, value),
              FieldSuggestion("trained_on", [value], 0.9, "e", source="expert")]
    new = assert_refused_or_only_added(readme, fields)
    if new is not None:
        assert "\n# Owned" not in new and hub_metadata(new)["license"] == "mit"


# ---- the callers abstain ------------------------------------------------------------------------------


@pytest.fixture
def vit_folder(tmp_path):
    """A model folder infer_card recognises (a ViT's config and one layer), without experts."""
    weights = {"vit.encoder.layer.0.attention.attention.value.weight": np.zeros((4, 4), np.float32)}
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"], "model_type": "vit"}))
    return tmp_path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("readme", [alias_bomb(8), MARKER_CASES["start in the front matter, end in the body"]],
                         ids=["alias bomb", "marker in front matter"])
def test_infer_abstains_on_the_card_and_proposes_no_diff(vit_folder, readme, capsys):
    (vit_folder / "README.md").write_text(readme)
    result = infer_card(vit_folder, experts=[])
    assert result.suggested_card == "" and result.diff == ""
    assert "\n" not in result.abstained["card"]
    assert main(["infer", str(vit_folder)]) == 0
    out = capsys.readouterr().out
    assert "card                 abstained: " in out and "nothing to propose: see why the card abstained" in out
    assert "-license" not in out
