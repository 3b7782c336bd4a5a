"""Model-tree membership: which repos belong to a tree, and how each was found (its card, or its weights).

The Hub lists a tree from cards: `list_models(filter="base_model:<root>")`, then the same for each child
(`walk_tree`). A model without a card, or whose card does not name its base, is in the tree all the same but
never in that list, and those are the models that most need a card. `tree_members` also takes candidates
(an author's or organisation's repos, a Hub search, a list of repo ids), routes each by its weights
(`hf_probex.routing.route`, the experts' routing layers and roots) and keeps those routed into the tree.
The bot uses it (`hf-probex bot run --tree ROOT --author NAME --search TEXT`); the Space and a tree scan can.
A tree scanned before (`hf-probex scan`, `hf_probex.scan`) has its members in its table: `table_members` reads
them back (cards and weights alike, each at the commit read) without a listing or a routing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from huggingface_hub.errors import RepositoryNotFoundError

from .errors import ProbexError, RepoNotFoundError

if TYPE_CHECKING:
    from .bot.client import HubClient
    from .experts.registry import ExpertRegistry
    from .lineage import Edge, LineageCalibration
    from .routing import Route
    from .scan.publish import TableFiles

__all__ = ["Member", "Router", "candidate_repos", "card_members", "check_root", "member_by_weights", "table_lineage",
           "table_members", "tree_members", "walk_tree", "weight_router"]

#: repo id -> where routing places it (`hf_probex.routing.Route`); raises ProbexError for a repo it cannot read.
Router = Callable[[str], "Route"]


@dataclass(frozen=True)
class Member:
    """One repo of a model tree (the root excluded).

    Attributes:
        repo_id: the repo.
        found_by: "card" (its card names a base in the tree) or "weights" (routed into the tree by its weights).
        evidence: for people: "card base_model: acme/root", or routing's evidence (distances, declared lineage,
            "the only known LoRA tree whose base has every module it targets, in these shapes").
        confidence: 1.0 for a card; routing's confidence for weights (a LoRA placed by its shapes alone: 0.5).
        sha: the commit of its main branch when the Hub listed it (None: the listing did not say, or the repo was
            given by id); what a scan compares to know whether a repo changed.
    """

    repo_id: str
    found_by: Literal["card", "weights"]
    evidence: str
    confidence: float = 1.0
    sha: str | None = None


def _walk(client: HubClient, root: str) -> dict[str, tuple[str, str | None]]:
    """Every repo below `root` by the cards' base_model (children of children too), breadth first -> (its parent,
    its commit as listed)."""
    parents: dict[str, tuple[str, str | None]] = {root: ("", None)}
    queue = [root]
    while queue:
        node = queue.pop(0)
        for child in client.children(node):
            if child.repo_id in parents:
                continue
            parents[child.repo_id] = (node, child.sha)
            if child.children != 0:  # the Hub says it has none: no listing to make
                queue.append(child.repo_id)
    del parents[root]
    return parents


def walk_tree(client: HubClient, root: str) -> list[str]:
    """Every repo below `root` in its model tree as the Hub lists it from cards (children of children too),
    breadth first, root excluded. Uses the `base_model:<id>` tag filter of `list_models`, and skips listing
    repos the Hub says have no children. Models whose card does not name their base are not reached: see
    `tree_members`."""
    return list(_walk(client, root))


def card_members(client: HubClient, root: str) -> list[Member]:
    """The members of the tree of `root` the Hub lists from cards (`walk_tree`), breadth first, each with the
    commit the listing showed."""
    return [Member(repo_id, "card", f"card base_model: {parent}", 1.0, sha)
            for repo_id, (parent, sha) in _walk(client, root).items()]


def candidate_repos(client: HubClient, *, authors: Iterable[str] = (), search: str | None = None,
                    candidates: Iterable[str] = (), known: Iterable[str] = ()) -> dict[str, str | None]:
    """The repos to route by weights, in order: those of each of `authors`, those a Hub `search` finds, then
    `candidates`; less the `known` ones (the root, the members by cards). Each maps to the commit its listing
    showed (None for a repo given by id)."""
    listed = [m for author in authors for m in client.listing(author=author)]
    listed += client.listing(search=search) if search else []
    skip = set(known)
    found: dict[str, str | None] = {}
    for repo_id, sha in [*((m.repo_id, m.sha) for m in listed), *((c, None) for c in candidates)]:
        if repo_id not in skip:
            found.setdefault(repo_id, sha)
    return found


def member_by_weights(repo_id: str, found: Route | None, root: str, sha: str | None = None) -> Member | None:
    """The member a routed candidate is (found by weights), or None when its route does not lead into the tree
    of `root` (another tree, no route, the root itself, or unreadable: `found` None)."""
    if found is None or found.root != root or found.is_root:
        return None
    return Member(repo_id, "weights", found.evidence, found.confidence, sha)


def weight_router(registry: ExpertRegistry | None = None, *, token: str | bool | None = None) -> Router:
    """A `Router` reading each repo's small files and routing layers from the Hub (a peft adapter's merged onto its base,
    `routing.route_through`; one whose base cannot be read raises ProbexError): `registry`'s experts (default:
    `ExpertRegistry.default`, the local registry file plus the Hub's experts) say which trees are known."""
    from .adapters import detect
    from .experts.registry import ExpertRegistry
    from .reading import open_source
    from .routing import route_through

    experts = registry if registry is not None else ExpertRegistry.default(token=token)

    def router(repo_id: str) -> Route:
        source = open_source(repo_id, token=token, local=False)  # a listed repo id, never a folder here
        return route_through(source, detect(source), experts, token=token)[2]

    return router


def check_root(client: HubClient, root: str) -> str:
    """The commit of the tree root's main branch; RepoNotFoundError when the client cannot see the root."""
    try:
        return client.head(root)
    except RepositoryNotFoundError:
        raise RepoNotFoundError(f"the tree root {root} was not found on {client.api.endpoint} (or the token cannot "
                                f"see it): check the repo id") from None


def tree_members(client: HubClient, root: str, *, authors: Iterable[str] = (), search: str | None = None,
                 candidates: Iterable[str] = (), router: Router | None = None, concurrency: int = 4) -> list[Member]:
    """The members of the tree of `root`: those the Hub lists from cards (`walk_tree`), then, among the
    candidates (the repos of each of `authors`, those a Hub `search` finds, `candidates`), those routed into the
    tree by their weights.

    Args:
        client: the Hub client (listing and the root check; `router` reads the candidates).
        root: the tree's root repo id; it must exist.
        authors: users or organisations whose repos are candidates.
        search: a Hub search (repo names containing it) whose results are candidates.
        candidates: more repo ids to route.
        router: how a candidate is routed (default: `weight_router()` with the client's token).
        concurrency: candidates routed at once (each reads a header and a few layers).

    Returns:
        Members found by cards (breadth first), then those found by weights (in candidate order). A candidate
        that cannot be read as a model (no safetensors, an unknown architecture, gone) is not a member.

    Raises:
        RepoNotFoundError: `root` is not a repo the client can see.
    """
    check_root(client, root)
    members = card_members(client, root)
    unknown = candidate_repos(client, authors=authors, search=search, candidates=candidates,
                              known=[root, *(m.repo_id for m in members)])
    if not unknown:
        return members
    router = router or weight_router(token=client.api.token)

    def place(repo_id: str) -> Route | None:
        try:
            return router(repo_id)
        except ProbexError:  # not a model hf_probex can read: not a member it can show
            return None

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        routes = list(pool.map(place, unknown))
    found = (member_by_weights(repo_id, route, root, sha) for (repo_id, sha), route in zip(unknown.items(), routes))
    return members + [member for member in found if member is not None]


def table_members(table: TableFiles) -> list[Member]:
    """The members of a tree table, in table order, each as the scan found it (card or weights) at the commit it
    read; rows the scan could not read are members all the same. Reads five columns of the table.

    Raises:
        TableError: the table's shards cannot be read, or lack the columns.
    """
    rows = table.read_columns(["repo_id", "sha", "found_by", "member_evidence", "member_confidence"]).to_pylist()
    return [Member(row["repo_id"], "weights" if row["found_by"] == "weights" else "card", row["member_evidence"] or "",
                   row["member_confidence"] if row["member_confidence"] is not None else 1.0, row["sha"])
            for row in rows]


def table_lineage(table: TableFiles, calibration: LineageCalibration, root: str) -> tuple[list[Edge], int]:
    """Each member's parent named from a tree table's sketches alone (`lineage.lineage_from_sketches`), no weights
    read: the rows whose `embedding` is the sketch `calibration` was fitted on (its kind and layers); and how many
    rows were left out (no such sketch: unread, or scanned with another expert or hf_probex). Reads four columns.

    Raises:
        TableError: the table's shards cannot be read, or lack the columns.
        ProbexError: `calibration` is not one of sketches.
    """
    import numpy as np

    from .lineage import lineage_from_sketches

    rows = table.read_columns(["repo_id", "embedding", "embedding_kind", "embedding_layers"]).to_pylist()
    usable = [row for row in rows if row["embedding"] is not None and row["embedding_kind"] == calibration.sketch
              and tuple(row["embedding_layers"] or ()) == calibration.layers and row["repo_id"] != root]
    if not usable:
        return [], len(rows)
    size = Counter(len(row["embedding"]) for row in usable).most_common(1)[0][0]  # a row of another length lies
    usable = [row for row in usable if len(row["embedding"]) == size]
    sketches = np.array([row["embedding"] for row in usable], dtype=np.float32)
    return lineage_from_sketches([row["repo_id"] for row in usable], sketches, calibration, root), len(rows) - len(usable)
