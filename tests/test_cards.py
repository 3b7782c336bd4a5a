"""hf_probex.cards: only missing fields are added, every other byte stays, the section is replaced not duplicated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hf_probex.cards import (
    INFERRED_END, INFERRED_START, CardError, apply_suggestions, card_diff, is_opted_out, metadata_of, missing_fields, opts_out_owner,
    render_section, section_heading, template_text, trained_on_tag, trained_on_value,
)
from hf_probex.suggestions import FieldSuggestion

FIELDS = [
    FieldSuggestion("base_model", "acme/root", 1.0, "adapter_config.json base_model_name_or_path"),
    FieldSuggestion("library_name", "transformers", 1.0, "config.json architectures"),
    FieldSuggestion("pipeline_tag", "image-classification", 1.0, "config.json architectures"),
    FieldSuggestion("trained_on", ["3", "7"], 0.97, "expert hf-probex/expert-vit (probex)", source="expert"),
]


def only_additions(old: str, new: str) -> list[str]:
    """The added lines of the diff; fails if any line of `old` was removed or changed."""
    diff = card_diff(old, new).splitlines()
    assert [line for line in diff if line.startswith("-") and not line.startswith("---")] == []
    return [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]


def test_packaged_template_is_the_repo_root_file():
    root = Path(__file__).resolve().parents[1] / "MODEL_CARD_TEMPLATE.md"
    assert template_text() == root.read_text(encoding="utf-8")


def test_section_renders_the_template():
    section = render_section(FIELDS)
    assert section.startswith(INFERRED_START + "\n## Inferred from weights\n")
    assert section.endswith(INFERRED_END + "\n")
    assert ("- **trained_on**: 3, 7 (from an expert; confidence 97%; evidence: expert hf-probex/expert-vit (probex))"
            in section)
    assert "- **base_model**: acme/root (from the model's files; confidence 100%;" in section
    assert "hf-probex-opt-out" in section


def test_section_says_inferred_from_weights_only_when_a_value_was():
    """Values read from config.json or adapter_config.json are not inferred: the heading says where they come from."""
    from_files = render_section(FIELDS[:3])
    assert section_heading(FIELDS[:3]) == "Read from the model's files" and "## Read from the model's files\n" in from_files
    assert "weights" not in from_files.split(INFERRED_START)[1].split("- **")[0]  # the heading and the intro
    routed = FieldSuggestion("base_model", "acme/root", 0.95, "weights: cosine distance 0.01", source="weights")
    assert section_heading([routed, *FIELDS[1:3]]) == "Inferred from weights"


def test_adds_only_missing_keys_and_keeps_every_other_byte():
    old = ("---\n# owner's comment\nlicense:   apache-2.0   # odd spacing\nlibrary_name: timm\n"
           "tags:\n    - digits\n    - 'quoted'   # comment\nmodel-index:\n- name: m\n  results:\n  - {task: 1}\n"
           "---\n\n# My model\n\nText with --- dashes.\n")
    new = apply_suggestions(old, FIELDS)
    added = only_additions(old, new)
    assert "library_name: transformers" not in added  # the owner's library_name stays, even if we disagree
    meta = metadata_of(new)
    assert meta["base_model"] == "acme/root" and meta["pipeline_tag"] == "image-classification"
    assert meta["tags"] == ["digits", "quoted", "trained-on:3", "trained-on:7"]
    assert meta["model-index"] == [{"name": "m", "results": [{"task": 1}]}]  # malformed but kept
    assert "    - trained-on:3" in added  # tags line up with the owner's, unquoted as the Hub writes them
    assert new.startswith(old.split("model-index")[0])


def test_trained_on_tags_are_written_as_the_hub_writes_tags_and_read_back():
    """A class or concept of several words, upper case or punctuation becomes one Hub-style tag (no space, no quotes);
    reading it back gives the words."""
    field = FieldSuggestion("trained_on", ["rotated zero", "Golden Retriever", "a corgi, in snow"], 0.97, "expert",
                            source="expert", floor=0.9)
    new = apply_suggestions("---\nlicense: mit\n---\n# A model\n", [field])
    tags = metadata_of(new)["tags"]
    assert tags == ["trained-on:rotated-zero", "trained-on:golden-retriever", "trained-on:a-corgi-in-snow"]
    assert "\n- trained-on:rotated-zero\n" in new and "'" not in new.split("---")[1]
    assert [trained_on_value(t) for t in tags] == ["rotated zero", "golden retriever", "a corgi in snow"]
    assert trained_on_tag("3") == "trained-on:3" and trained_on_value("digits") is None
    assert metadata_of(apply_suggestions("# x\n", [FieldSuggestion("trained_on", ["true"], 0.97, "e", source="expert",
                                                                    floor=0.9)]))["tags"] == ["trained-on:true"]


def test_flow_tags_crlf_and_bom_are_kept():
    # Flow-style tags are the owner's line: adding to them would rewrite it, so the section says it alone.
    old = "\ufeff---\r\nlicense: mit\r\ntags: [a, b]\r\n---\r\nBody\r\n"
    new = apply_suggestions(old, FIELDS)
    assert new.startswith("\ufeff---\r\nlicense: mit\r\ntags: [a, b]\r\nbase_model: acme/root\r\n")
    assert "\n" not in new.replace("\r\n", "")  # every added line break is CRLF too
    assert metadata_of(new)["tags"] == ["a", "b"] and "- **trained_on**: 3, 7" in new
    only_additions(old, new)


def test_indented_mapping_and_empty_tags():
    old = "---\n  license: mit\n  tags:\n---\nx\n"
    new = apply_suggestions(old, FIELDS)
    assert metadata_of(new) == {"license": "mit", "tags": ["trained-on:3", "trained-on:7"], "base_model": "acme/root",
                                "library_name": "transformers", "pipeline_tag": "image-classification"}
    only_additions(old, new)


def test_scalar_tags_are_left_alone_and_the_section_still_says_it():
    old = "---\ntags: digits\n---\n"
    new = apply_suggestions(old, FIELDS)
    assert metadata_of(new)["tags"] == "digits"
    assert "- **trained_on**: 3, 7" in new


def test_no_front_matter_and_no_card():
    old = "# Model\n\nNo metadata here"
    new = apply_suggestions(old, FIELDS)
    assert new.startswith("---\nbase_model: acme/root\n") and old + "\n\n" + INFERRED_START in new
    assert "\\ No newline at end of file" in card_diff(old, new)
    only_additions(old + "\n", apply_suggestions(old + "\n", FIELDS))
    card = apply_suggestions("", FIELDS, title="vit-ft-1")
    assert metadata_of(card)["tags"] == ["trained-on:3", "trained-on:7"]
    assert "\n# vit-ft-1\n" in card and card.count(INFERRED_START) == 1
    assert card_diff("", card).startswith("--- /dev/null\n+++ b/README.md\n")


def test_idempotent_and_section_replaced_not_duplicated():
    once = apply_suggestions("---\nlicense: mit\n---\nHi\n", FIELDS)
    assert apply_suggestions(once, FIELDS) == once
    # The owner removed our pipeline_tag: a new proposal replaces the section instead of adding a second.
    edited = once.replace("pipeline_tag: image-classification\n", "")
    again = apply_suggestions(edited, FIELDS)
    assert again.count(INFERRED_START) == 1 and again.count("\n## ") == 1  # pipeline_tag alone: from the files
    assert "## Inferred from weights" not in again and "## Read from the model's files" in again
    assert "- **pipeline_tag**" in again and "- **base_model**" not in again


def test_nothing_missing_returns_the_same_text():
    card = ("---\nbase_model: a/b\nbase_model_relation: finetune\nlibrary_name: x\npipeline_tag: y\n"
            "datasets: [mnist]\n---\n")
    assert missing_fields(card) == set()
    assert apply_suggestions(card, FIELDS) is card


def test_missing_fields():
    assert missing_fields("") == {"base_model", "base_model_relation", "library_name", "pipeline_tag", "trained_on",
                                  "lineage"}
    assert "trained_on" not in missing_fields("---\ntags: [trained-on:3]\n---\n")
    assert "trained_on" not in missing_fields("---\ninstance_prompt: a photo of sks dog\n---\n")
    assert "trained_on" not in missing_fields("# M\n\n## Training data\n\nDigits.\n")
    assert "base_model" not in missing_fields("---\nbase_model:\n---\n")  # present, though empty: no duplicate key


@pytest.mark.parametrize("card", ["---\nfoo: [unclosed\n---\n", "---\n- a list\n---\n"])
def test_unparseable_front_matter_is_refused(card):
    with pytest.raises(CardError):
        missing_fields(card)
    with pytest.raises(CardError):
        apply_suggestions(card, FIELDS)


def test_an_edit_that_would_change_meaning_is_refused():
    # Appending to tags that another key aliases would change that key too: refuse, not corrupt.
    with pytest.raises(CardError, match="would change what its owner wrote"):
        apply_suggestions("---\ntags: &t\n- a\nalso: *t\n---\n", FIELDS)


def test_opt_out():
    assert is_opted_out("---\ntags:\n- hf-probex-opt-out\n---\n")
    assert is_opted_out("---\nhf_probex:\n  opt_out: true\n---\n")
    assert is_opted_out("---\ntags: [hf-probex-opt-out\n---\n")  # unparseable, but the wish is clear
    assert not is_opted_out("---\nhf_probex: {opt_out: false}\n---\n")
    assert not is_opted_out("# hf-probex-opt-out in prose is not a tag\n")


def test_owner_wide_opt_out_covers_the_card_it_is_on():
    assert is_opted_out("---\ntags: [hf-probex-opt-out-owner]\n---\n") and is_opted_out("---\nhf_probex: {opt_out: owner}\n---\n")
    assert opts_out_owner({"hf_probex": {"opt_out": "owner"}}) and opts_out_owner({}, tags=["hf-probex-opt-out-owner"])
    assert not opts_out_owner({"tags": ["hf-probex-opt-out"], "hf_probex": {"opt_out": True}})  # this repo only


def test_added_yaml_is_valid_for_odd_values():
    fields = [FieldSuggestion("base_model", "org/name: with colon", 1.0, "x")]
    new = apply_suggestions("---\nlicense: mit\n---\n", fields)
    assert yaml.safe_load(new.split("---\n")[1])["base_model"] == "org/name: with colon"
