"""The "Browse a tree" tab: a model tree from its table or the Hub's `base_model` listing, what each member's card
lacks and each field's coverage, and the tree drawn (parents from the cards, or from the weights)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from ..cards import CardError, metadata_of, missing_fields
from ..errors import BadFileError, ProbexError
from ..experts.registry import ExpertRegistry
from ..suggestions import CARD_FIELDS
from .common import (
    DEFAULT_MAX_TREE_MODELS, Progress, SpaceInputError, _as_token, _display, _hub_api, _no_progress, _one_line,
)
from .experts_tab import resolve_registry
from .tree_walk import WalkedTree, found_by_text, in_parallel, walk

if TYPE_CHECKING:
    from ..bot import HubClient
    from ..scan.publish import TableFiles

#: The card fields browse counts: those of the Hub's card (`lineage` is hf_probex's own section, not one of them).
BROWSED_FIELDS = tuple(name for name in CARD_FIELDS if name != "lineage")
#: The browse table's columns, by the key of a model's row.
BROWSE_COLUMNS = {"repo": "repo", "base_model": "base_model", "missing": "fields missing", "n_missing": "how many",
                  "found by": "found by"}


@dataclass
class TreeView:
    """A model tree: `models` (repo, declared base_model, missing fields, how it was found), `coverage` (field,
    share of the tree's models whose card states it, count), a Markdown `summary`, `warnings`, and `drawing`: the
    tree drawn in Markdown, each model under its parent (`tree_drawing`)."""

    models: pd.DataFrame
    coverage: pd.DataFrame
    summary: str
    warnings: list[str] = field(default_factory=list)
    drawing: str = ""


def _from_table(root: str, table: str | None, token: str | None, limit: int, members: Iterable[str] | None,
                progress: Progress) -> tuple[list[dict], WalkedTree, str, TableFiles]:
    """The tree's rows from its tree table (`table`, or the one `scan.publish.find_table` finds) as `browse_tree`
    shows them, the tree they make, a line saying which table, scanned when, and the table.

    Raises:
        TableError: no table (`TableNotFoundError`), or one that cannot be used; BadFileError: an oversized file.
    """
    from ..bot import HubClient
    from ..scan.publish import find_table

    progress(0.02, f"looking for the tree table of {root}")
    found = find_table(root, table, token=_as_token(token))
    columns = ["repo_id", "found_by", "has_card", "card_base_model", "card_missing", "error"]
    rows = found.read_columns(columns).to_pylist()
    found_by = {row["repo_id"]: row["found_by"] for row in rows if row["repo_id"] != root}
    for repo_id in dict.fromkeys(members or ()):
        found_by.setdefault(repo_id, "other")
    repos = list(found_by)
    warnings = [] if repos else [f"the tree table of {root} holds no model below the root"]
    if len(repos) > limit:
        warnings.append(f"the tree has {len(repos)} models; only the first {limit} of its table are shown")
    tree = WalkedTree(HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0), repos[:limit],
                 {r: found_by[r] for r in repos[:limit]}, warnings)
    shown = []
    for row in rows:
        if row["repo_id"] not in tree.found_by:
            continue
        missing = row["card_missing"]
        if row["error"] is not None or missing is None:
            why = f"(not read: {row['error']})" if row["error"] else "(the card's metadata does not parse)"
            shown.append({"repo": row["repo_id"], "base_model": "", "missing": why, "n_missing": None,
                          "found by": row["found_by"]})
            continue
        shown.append(_card_row(row["repo_id"], row["found_by"], row["card_base_model"] or None, set(missing),
                               bool(row["has_card"])))
    at = f"@{found.commit[:8]}" if found.commit else ""
    scanned = found.described.get("scanned_at") or "at an unknown date"
    where = f" {found.location}{at}" if found.commit else ""  # a Hub dataset; a folder of this server stays unnamed
    source = f"from the tree table{where}, scanned {scanned}: cards edited since show after its next scan"
    return shown, tree, source, found


def _read_card(client: HubClient, repo_id: str, found_by: str) -> dict:
    """One model of the browse table from its card on the Hub now (an unreadable one says why)."""
    try:
        raw = client.readme(repo_id, "main")
        readme = raw.decode("utf-8") if raw is not None else ""
        missing = missing_fields(readme)
        base = metadata_of(readme).get("base_model")
    except (CardError, BadFileError, UnicodeDecodeError):
        return {"repo": repo_id, "base_model": "", "missing": "(the card's metadata does not parse)", "n_missing": None,
                "found by": found_by}
    except Exception as err:  # noqa: BLE001 - one repo the Hub fails on must not hide the rest of the tree
        return {"repo": repo_id, "base_model": "", "missing": f"(not read: {_one_line(err)})", "n_missing": None,
                "found by": found_by}
    return _card_row(repo_id, found_by, base, missing, raw is not None)


def _card_row(repo_id: str, found_by: str, base: object, missing: set[str], has_card: bool) -> dict:
    """One model of the browse table: its declared base_model and the fields its card lacks."""
    ordered = [name for name in BROWSED_FIELDS if name in missing]
    first = base[0] if isinstance(base, list) and base else base
    return {"repo": repo_id, "base_model": _display(base) if base else "", "missing": ", ".join(ordered) or "nothing",
            "n_missing": len(ordered), "found by": found_by, "has_card": has_card, "missing_set": missing,
            "declared": first if isinstance(first, str) else None}


def tree_drawing(root: str, declared: dict[str, str | None], recovered: dict[str, tuple[str, float]] | None = None) -> str:
    """The tree of `root` as Markdown: an indented drawing in a code block, each model under its parent.

    A model's parent is the base its card declares (`declared`: repo -> its first base_model, or None) where that
    is the root or another model shown; else the one its weights name (`recovered`: repo -> (parent, confidence),
    `hf_probex.lineage`), marked with that confidence; else it hangs from the root, marked "parent unknown". Models
    whose declared bases loop (hostile cards) are listed after the tree."""
    recovered = recovered or {}
    shown = set(declared)
    parent_of: dict[str, str] = {}
    how: dict[str, str] = {}
    for repo, base in declared.items():
        if base == root or base in shown:
            parent_of[repo], how[repo] = base, "card"
        elif repo in recovered and (recovered[repo][0] == root or recovered[repo][0] in shown):
            parent_of[repo], how[repo] = recovered[repo][0], f"weights {recovered[repo][1]:.2f}"
        else:
            parent_of[repo], how[repo] = root, "parent unknown"
    children: dict[str, list[str]] = {}
    for repo, parent in parent_of.items():
        children.setdefault(parent, []).append(repo)
    lines, reached = [root], set()
    stack = [(child, "", i == len(children.get(root, [])) - 1) for i, child in enumerate(children.get(root, []))][::-1]
    while stack:  # depth-first without recursion: a tree of any depth draws
        repo, indent, last = stack.pop()
        reached.add(repo)
        lines.append(f"{indent}{'└── ' if last else '├── '}{repo}  ({how[repo]})")
        below = [c for c in children.get(repo, []) if c not in reached]
        stack += [(child, indent + ("    " if last else "│   "), i == len(below) - 1) for i, child in enumerate(below)][::-1]
    looped = [repo for repo in declared if repo not in reached]
    if looped:
        lines += ["", "declared bases that loop, never reaching the root:"] + [f"  {repo} -> {parent_of[repo]}" for repo in looped]
    return "```text\n" + "\n".join(lines).replace("`", "'") + "\n```"


def _recovered_parents(root: str, repos: list[str], registry: ExpertRegistry | None, token: str | None,
                       progress: Progress, table: TableFiles | None = None) -> tuple[dict[str, tuple[str, float]], str]:
    """Each repo's parent among `repos` and the root as its weights name it (`hf_probex.lineage`, by the calibration
    the tree's expert carries): repo -> (parent, confidence); and a warning where it could not be done. From the
    tree's `table`'s sketches where its rows hold the ones the expert is calibrated on (no weights read), else
    every repo read whole."""
    from ..lineage import lineage_calibration, recover_lineage
    from ..members import table_lineage

    if not repos:
        return {}, ""
    registry = registry or resolve_registry(None)
    if table is not None:
        progress(0.5, "naming parents from the tree table's sketches")
        try:
            edges, left_out = table_lineage(table, lineage_calibration(registry, root, sketches=True), root)
        except ProbexError:  # an expert without that calibration, a table without the column: read the weights
            edges, left_out = [], 0
        if edges:
            shown = set(repos)
            note = f"{left_out} models of the table have no sketch to name their parents by" if left_out else ""
            return {e.child: (e.parent, e.confidence) for e in edges if e.child in shown}, note
    try:
        calibration = lineage_calibration(registry, root)
    except ProbexError as err:
        return {}, f"parents not named from weights: {_one_line(err)}"
    progress(0.5, f"reading the weights of {len(repos)} models to name their parents")
    left_out: list[str] = []
    try:
        edges = recover_lineage(root, repos, calibration, root_id=root, token=_as_token(token), progress=left_out.append,
                                from_hub=set(repos))
    except ProbexError as err:
        return {}, f"parents not named from weights: {_one_line(err)}"
    note = f"{len(left_out)} models could not be read for their parents ({left_out[0]})" if left_out else ""
    return {e.child: (e.parent, e.confidence) for e in edges}, note


def browse_tree(root: str, *, token: str | None = None, limit: int = DEFAULT_MAX_TREE_MODELS,
                authors: Iterable[str] = (), registry: ExpertRegistry | None = None,
                members: Iterable[str] | None = None, table: str | None = None,
                parents_from_weights: bool = False, progress: Progress = _no_progress) -> TreeView:
    """The models of the tree of `root` on the Hub, what each card lacks, and each field's coverage.

    The tree's table (`hf-probex scan`) answers when there is one: `table`, else the one `scan.publish.find_table`
    finds (the default scan folder, a trusted author's on the Hub); it was read at its scan, so the summary says
    when. Without one (or with `authors`, which asks for routing now), the tree is listed and each card read now.

    Args:
        authors: users or organisations whose repos are routed by their weights (with `registry`'s experts;
            default the local and trusted Hub experts): those in the tree are listed though no card names it.
        members: repo ids known to belong to the tree by other means than their card; listed last.
        table: a tree table (dataset repo id or scan folder) to read the tree from.
        parents_from_weights: also name each model's parent among the others from their weights, as `hf-probex
            lineage` does, for the drawing of models whose card names none: from the table's sketches where the
            tree came from a table whose rows hold them (`members.table_lineage`), else every model read whole
            (slow).

    Raises:
        SpaceInputError: not a repo id, an unknown root, a Hub that does not answer the listing, a `table` given
            that cannot be used.
    """
    from ..reading import looks_like_repo_id
    from ..scan.publish import TableError, TableNotFoundError

    authors = [a.strip() for a in authors if a.strip()]
    root = (root or "").strip()
    from_table, why_not = None, ""
    if not authors and looks_like_repo_id(root):
        try:
            from_table = _from_table(root, table, token, limit, members, progress)
        except TableNotFoundError:
            if table:
                raise SpaceInputError(f"{table}: no tree table of {root} there: browse without a table") from None
        except (TableError, BadFileError) as err:
            if table:
                raise SpaceInputError(_one_line(err)) from None
            why_not = f"the tree table was not used ({_one_line(err)}): the cards were read now"
        except Exception as err:  # noqa: BLE001 - a Hub that fails on the table: the walk still answers
            why_not = f"the tree table could not be read ({_one_line(err)}): the cards were read now"
    found_table = None
    if from_table is not None:
        rows, tree, source, found_table = from_table
    else:
        tree = walk(root, token, limit, progress, members, authors, registry)
        tree.warnings += [why_not] if why_not else []
        rows, source = [], "listed on the Hub, each card read now"
    unread = [r for r in tree.repos if r not in {row["repo"] for row in rows}]  # all of them, or members given
    if unread:
        read_now = in_parallel(lambda r: _read_card(tree.client, r, tree.found_by[r]), unread, progress, "reading cards")
        order = {repo_id: i for i, repo_id in enumerate(tree.repos)}
        rows = sorted(rows + read_now, key=lambda row: order[row["repo"]])
    read = [r for r in rows if r["n_missing"] is not None]
    coverage = pd.DataFrame({
        "field": list(BROWSED_FIELDS),
        "documented": [sum(name not in r["missing_set"] for r in read) / len(read) if read else 0.0
                       for name in BROWSED_FIELDS],
        "models": [sum(name not in r["missing_set"] for r in read) for name in BROWSED_FIELDS],
    })
    models = pd.DataFrame([{column: r[key] for key, column in BROWSE_COLUMNS.items()} for r in rows],
                          columns=list(BROWSE_COLUMNS.values()))
    complete = sum(r["n_missing"] == 0 for r in read)
    no_card = sum(not r["has_card"] for r in read)
    summary = (f"### {root}\n\n**{len(rows)}** models below the root ({found_by_text(tree)}) &nbsp;·&nbsp; "
               f"**{complete}** with every field &nbsp;·&nbsp; **{no_card}** without a card &nbsp;·&nbsp; "
               f"**{len(rows) - len(read)}** unreadable\n\n{source[0].upper()}{source[1:]}."
               + "".join(f"\n\n> ⚠ {w}" for w in tree.warnings))
    recovered: dict[str, tuple[str, float]] = {}
    if parents_from_weights:
        recovered, note = _recovered_parents(root, tree.repos, registry, token, progress, found_table)
        if note:
            tree.warnings.append(note)
            summary += f"\n\n> ⚠ {note}"
    drawing = tree_drawing(root, {r["repo"]: r.get("declared") for r in rows}, recovered)
    return TreeView(models, coverage, summary, tree.warnings, drawing)
