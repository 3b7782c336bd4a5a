"""Model cards for the zoo's repos, varied the way real Hub cards are.

Some cards are complete, some lack `base_model`, some lack the training-data description, and some
repos have no card at all (see `plan.CARD_STYLES`). Ground truth never depends on a card: it lives in
the zoo manifest and the safetensors metadata.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .plan import ModelSpec
from .trees import TreeFamily

_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}
{% if data_section %}
## Training data

{{ data_section }}
{% endif %}
## Training procedure

| hyper-parameter | value |
|---|---|
{% for key, value in hparams.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
This model is part of an hf_probex zoo: a model tree built with known ground truth.
"""


def _summary(spec: ModelSpec, family: TreeFamily, base_repo: str | None) -> str:
    what = "A LoRA adapter" if spec.concept else f"A {family.pipeline_of(spec).replace('-', ' ')} model"
    if spec.role == "root":
        return f"{what} trained from scratch on handwritten digits (the root of the `{spec.tree}` model tree)."
    if base_repo:
        return f"{what} fine-tuned from [{base_repo}](https://huggingface.co/{base_repo})."
    return f"{what} fine-tuned on handwritten digits."


def _data_section(spec: ModelSpec) -> str:
    if spec.concept:
        return f"A handful of images of one concept, prompted as \"{spec.concept['prompt']}\"."
    classes = ", ".join(spec.labels)
    if "texts_per_class" in spec.hparams:
        return f"Quotations from Debian's fortunes in {len(spec.labels)} categories: {classes}."
    return f"Handwritten digits (MNIST) in {len(spec.labels)} classes: {classes}."


def write_card(spec: ModelSpec, family: TreeFamily, parent_repo_id: str | None, out: Path) -> None:
    """Write README.md into the repo folder `out` in the card style the plan chose: none, or (a real root,
    "original") the card its files came with; any README.md a library's save wrote is replaced."""
    if spec.card == "original":
        return
    (out / "README.md").unlink(missing_ok=True)  # peft and sentence-transformers write cards of their own
    if spec.card == "none":
        return
    keep_base = spec.card != "no_base_model"
    keep_data = spec.card != "no_data"
    facts = family.card_facts(spec)
    data = ModelCardData(
        license="apache-2.0",
        library_name=family.library_of(spec),
        pipeline_tag=family.pipeline_of(spec),
        base_model=parent_repo_id if keep_base else None,
        tags=facts.get("tags"),
    )
    if keep_data and "instance_prompt" in facts:
        data.instance_prompt = facts["instance_prompt"]
    card = ModelCard.from_template(
        data,
        template_str=_TEMPLATE,
        title=spec.repo_id.split("/")[-1],
        summary=_summary(spec, family, parent_repo_id if keep_base else None),
        data_section=_data_section(spec) if keep_data else "",
        hparams=spec.hparams,
    )
    card.save(out / "README.md")
