"""`hf-probex infer` (one model's missing card fields) and `hf-probex demo` (the whole flow on the tiny zoo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..settings import default_cache_dir
from .common import UserError, probability


def format_suggestion(suggestion) -> str:
    """A readable table of a `CardSuggestion`: fields with confidence and evidence, abstentions, the diff."""
    lines = [f"{suggestion.source}: family {suggestion.family or '?'}, tree {suggestion.tree or 'unknown'}, "
             f"{suggestion.bytes_read:,} bytes read",
             f"{'field':<20} {'value':<40} {'conf.':>5}  {'card':<8} evidence"]
    for name, field in suggestion.fields.items():
        value = ", ".join(field.value) if isinstance(field.value, list) else str(field.value)
        value = value if len(value) <= 40 else value[:37] + "..."
        lines.append(f"{name:<20} {value:<40} {field.confidence:>5.2f}  {'missing' if field.missing else 'has it':<8} "
                     f"{field.evidence}")
    for name, why in suggestion.abstained.items():
        lines.append(f"{name:<20} abstained: {why}")
    nothing = ("nothing to propose: see why the card abstained above" if "card" in suggestion.abstained
               else "nothing to propose: the card has every field we can fill")
    lines.append("\n" + (suggestion.diff or nothing))
    return "\n".join(lines)


def _infer(args: argparse.Namespace) -> int:
    from ..head_naming import read_candidates
    from ..infer import infer_card

    candidates = parents = None
    try:
        if args.candidates:
            candidates = read_candidates(args.candidates)
        if args.parents:
            from ..lineage import read_edges

            parents = read_edges(args.parents)
    except ValueError as err:
        raise UserError(str(err)) from None
    suggestion = infer_card(args.source, revision=args.revision, experts=args.expert or None,
                            min_confidence=args.min_confidence, candidates=candidates, base=args.base,
                            parents=parents)
    print(suggestion.to_json(indent=2) if args.json else format_suggestion(suggestion))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import format_demo, run_demo

    print(format_demo(run_demo(Path(args.cache) if args.cache else default_cache_dir())))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `infer` and `demo` to the `hf-probex` parser."""
    infer = commands.add_parser(
        "infer", help="infer a model's missing card fields from its files and one layer of its weights",
        description="Read a model (Hub repo id, local folder or .safetensors file) without downloading it: its "
                    "small files, safetensors headers and one layer. Print the card fields it can fill, each with "
                    "confidence and evidence, what it abstained on, and the README.md diff. See docs/infer.md.",
    )
    infer.add_argument("source", help="Hub repo id (namespace/name), local model folder, or .safetensors file")
    infer.add_argument("--revision", help="branch, tag or commit of a Hub repo (default: main)")
    infer.add_argument("--expert", action="append", metavar="DIR_OR_REPO",
                       help="use this expert (repeatable; default: the local registry and, online, the Hub's experts)")
    infer.add_argument("--min-confidence", type=probability,
                       help="propose fields at or above this confidence (default: each expert's calibrated threshold)")
    infer.add_argument("--candidates", metavar="FILE",
                       help="a LoRA's concept, or a text classifier's classes (it is run on them), are chosen among "
                            "these: a text file, one a line, any text, optionally followed by example texts of the class "
                            "after tabs (default for LoRAs: the zero-shot expert's training and held-out concepts)")
    infer.add_argument("--base", metavar="DIR_OR_REPO",
                       help="a peft adapter's base, read merged with it (default: the Hub repo its files declare)")
    infer.add_argument("--parents", metavar="FILE",
                       help="the tree's edges as `hf-probex lineage ROOT ... --json` wrote them, SOURCE among its members "
                            "as named there: base_model is the member its edge names (default: the root, from the "
                            "weights alone)")
    infer.add_argument("--json", action="store_true", help="print the full result as JSON")
    infer.set_defaults(func=_infer)

    demo = commands.add_parser(
        "demo", help="cards from weights alone: build two small zoos, train their experts, infer held-out models' cards",
        description="Build the small zoo (cached; a synthetic ResNet tree, five recipe families, about a minute) and "
                    "the text-small zoo (the real all-MiniLM-L6-v2 and 26 fine-tunes on fortunes categories in every "
                    "layout users save, about a minute and a half; it fetches Debian's fortunes package), train their "
                    "experts on the train and val splits (cached), strip the test split's models of their cards and "
                    "class names, then print what infer_card reads from their weights (base_model, trained_on) "
                    "beside the truth (text classifiers are also run on the tree's categories), and one suggested "
                    "card. See docs/infer.md.",
    )
    demo.add_argument("--cache", help="cache folder (default: $HF_PROBEX_CACHE or ~/.cache/hf_probex)")
    demo.set_defaults(func=_demo)
