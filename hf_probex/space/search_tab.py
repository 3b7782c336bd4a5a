"""The "Search LoRAs by text" tab: the tree's zero-shot expert embeds the query with its text encoder and ranks the
tree's LoRAs by how well the query fits them (`experts.vocabulary.query_fit`), from the tree's table when it has
one (`hf_probex.search`: a cached vector index, no LoRA read), else by reading every LoRA's layers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..cards import CardError, metadata_of, trained_on_value
from ..errors import ProbexError
from ..experts.registry import ExpertEntry, ExpertRegistry, load_expert
from .common import DEFAULT_MAX_TREE_MODELS, Progress, PublicNames, SpaceInputError, _as_token, _no_progress, _one_line, _space_message
from .tree_walk import found_by_text, in_parallel, walk

#: How both searches rank (`experts.vocabulary.query_fit`), for the summary.
RANKED_BY = "how much better the query fits each than the other concepts the expert knows"


@dataclass
class SearchView:
    """A zero-shot search: `ranking` (rank, repo, score, what its card declares), a Markdown `summary`, `warnings`."""

    ranking: pd.DataFrame
    summary: str
    warnings: list[str] = field(default_factory=list)


def zero_shot_roots(registry: ExpertRegistry) -> list[str]:
    """The tree roots with a zero-shot (LoRA concept) expert: the trees that can be searched by text."""
    from ..adapters import CONCEPT_TASK

    return sorted({e.root for e in registry.entries if e.task == CONCEPT_TASK and e.root})


def _zero_shot_expert(registry: ExpertRegistry, root: str) -> ExpertEntry:
    from ..adapters import CONCEPT_TASK

    entries = registry.for_root(root, CONCEPT_TASK)
    if not entries:
        known = ", ".join(zero_shot_roots(registry)) or "none yet"
        raise SpaceInputError(f"no zero-shot expert for the tree of {root}: text search works on the LoRA trees "
                              f"with one: {known}")
    return entries[0]


def _declared_concept(readme: str | None) -> str:
    """What a LoRA's card says it draws: `instance_prompt` or `trained-on:` tags ("" if it says nothing)."""
    try:
        metadata = metadata_of(readme or "")
    except CardError:
        return ""
    tags = metadata.get("tags") if isinstance(metadata.get("tags"), list) else []
    declared = [value for value in (trained_on_value(str(t)) for t in tags) if value]
    return str(metadata.get("instance_prompt") or ", ".join(declared))


def search_loras(root: str, query: str, *, registry: ExpertRegistry, token: str | None = None, top_k: int = 20,
                 limit: int = DEFAULT_MAX_TREE_MODELS, authors: Iterable[str] = (),
                 members: Iterable[str] | None = None, table: str | None = None,
                 progress: Progress = _no_progress) -> SearchView:
    """Rank the LoRAs of the tree of `root` by how well their weights match `query` (zero-shot: any text works).

    The tree's zero-shot expert embeds the query with its own text encoder and prompt. When the tree has a tree
    table (`table`, or one `hf_probex.scan.publish.find_table` finds: the default scan folder, a trusted author's on the
    Hub) made with this expert, the LoRAs are ranked from its vectors through the cached index (`hf_probex.search`)
    and no LoRA is read; otherwise the expert reads its layers (of an expert that fuses modules, those a LoRA has)
    of every LoRA in the tree (those whose card names a base_model in it, then those of `authors` routed into it,
    then `members`, as in `browse_tree`) and scores each by how well the query fits it
    (`experts.vocabulary.query_fit`). The summary says which of the two answered (and why not the table, when one
    was found but could not be used).

    Raises:
        SpaceInputError: an empty query, a tree without a zero-shot expert, an unknown root.
    """
    from ..search import checked_query

    try:
        query = checked_query(query)  # the CLI's bounds: not empty, at most MAX_QUERY_CHARS, UTF-8 text
    except ProbexError as err:
        raise SpaceInputError(_one_line(err)) from None
    entry = _zero_shot_expert(registry, (root or "").strip())
    view, why_not = _search_table(root.strip(), query, entry, registry, token, top_k, table, progress)
    if view is not None:
        return view
    return _search_layers(root, query, entry, registry, token, top_k, limit, authors, members, progress,
                          [why_not] if why_not else [])


def _search_table(root: str, query: str, entry: ExpertEntry, registry: ExpertRegistry, token: str | None, top_k: int,
                  table: str | None, progress: Progress) -> tuple[SearchView | None, str]:
    """The search answered from the tree's table, or (None, why it was not: "" when the tree has none)."""
    from ..search import SearchError, TableNotFoundError, open_tree_index

    progress(0.02, f"looking for the tree table of {root}")
    try:
        index = open_tree_index(root, table=table, token=_as_token(token),
                                experts=ExpertRegistry([entry, *(e for e in registry.entries if e != entry)]))
    except TableNotFoundError:
        return None, ""
    except SearchError as err:
        return None, f"the tree table was not used ({_one_line(err)}): every LoRA's layers were read instead"
    except Exception as err:  # noqa: BLE001 - a Hub that fails on the table: the layers still answer
        return None, f"the tree table could not be read ({_one_line(err)}): every LoRA's layers were read instead"
    progress(0.5, f"searching {len(index.index)} LoRAs of the tree table")
    hits = index.search(query, max(1, min(top_k, len(index.index) or 1)))
    ranking = pd.DataFrame({"rank": np.arange(1, len(hits) + 1), "repo": [h.repo_id for h in hits],
                            "score": [round(h.score, 4) for h in hits],
                            "card says": [", ".join(dict.fromkeys(label.value for label in h.labels
                                                                  if label.source.startswith("card"))) or "(nothing)"
                                          for h in hits]},
                           columns=["rank", "repo", "score", "card says"])
    config = index.expert.config
    source = (f"the tree table {index.table.location}@{index.table.commit[:8]}" if index.table.commit
              else "this Space's tree table")
    summary = (f"### “{query}” in the tree of {root}\n\n**{len(index.index)}** LoRAs ranked by {RANKED_BY} "
               f"from {source} ({index.index.kind} index; no LoRA read now) with {index.entry.public_name} "
               f"({index.entry.method}, layer `{index.entry.layer}`, text encoder {config['text_encoder']}, prompt "
               f"“{config['prompt']}”)")
    warnings = [f"{index.unindexed} members of the table have no vector of this expert (not LoRAs of its modules, or "
                "unreadable) and are not ranked"] if index.unindexed else []
    return SearchView(ranking, summary + "".join(f"\n\n> ⚠ {w}" for w in warnings), warnings), ""


def _search_layers(root: str, query: str, entry: ExpertEntry, registry: ExpertRegistry, token: str | None, top_k: int,
                   limit: int, authors: Iterable[str], members: Iterable[str] | None, progress: Progress,
                   warnings: list[str]) -> SearchView:
    """The search answered by reading every LoRA's layers now (a tree without a usable table)."""
    from ..adapters import detect
    from ..experts.vocabulary import query_fit
    from ..reading import open_source
    from ..text import encode_texts

    expert = load_expert(entry.location)
    config = expert.config
    tree = walk(root, token, limit, progress, members, authors, registry)
    public = PublicNames(registry)
    progress(0.05, f"embedding the query with {config['text_encoder']}")
    text = encode_texts([config["prompt"].format(query)], config["text_encoder"])

    def layer(repo_id: str) -> tuple[np.ndarray | None, str, str]:
        try:
            source = open_source(repo_id, token=_as_token(token), local=False)  # never a server folder
            matrix = detect(source).read_input(source, entry.inputs, config["conv_layout"], allow_missing=expert.fused)
            return matrix, _declared_concept(source.read_text("README.md")), ""
        except ProbexError as err:  # not a LoRA of this tree (a full fine-tune, another format): not ranked
            return None, "", _space_message(err, repo_id, public)

    read = in_parallel(layer, tree.repos, progress, "reading LoRA layers") if tree.repos else []
    found = [(repo, matrix, declared) for repo, (matrix, declared, _) in zip(tree.repos, read) if matrix is not None]
    skipped = [(repo, why) for repo, (matrix, _, why) in zip(tree.repos, read) if matrix is None]
    warnings = [*warnings, *tree.warnings]
    if skipped:
        warnings.append(f"{len(skipped)} models were not ranked (not LoRAs of this tree's format), "
                        f"e.g. {skipped[0][0]}: {skipped[0][1]}")
    scores = query_fit(expert, expert.search_vectors(np.concatenate([m for _, m, _ in found])), text[0]) if found \
        else np.zeros(0)
    order = np.argsort(-scores, kind="stable")[: max(1, top_k)]
    ranking = pd.DataFrame({"rank": np.arange(1, len(order) + 1), "repo": [found[i][0] for i in order],
                            "score": [round(float(scores[i]), 4) for i in order],
                            "card says": [found[i][2] or "(nothing)" for i in order]},
                           columns=["rank", "repo", "score", "card says"])
    summary = (f"### “{query}” in the tree of {root.strip()}\n\n**{len(found)}** LoRAs ranked by {RANKED_BY} "
               f"({found_by_text(tree)}; no tree table: every LoRA's layers read now) with {entry.public_name} "
               f"({entry.method}, layer `{entry.layer}`, text encoder {config['text_encoder']}, prompt "
               f"“{config['prompt']}”)" + "".join(f"\n\n> ⚠ {w}" for w in warnings))
    return SearchView(ranking, summary, warnings)
