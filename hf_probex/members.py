"""Model-tree membership: which repos belong to a tree, and how each was found (its card, or its weights).

The Hub lists a tree from cards: `list_models(filter="base_model:<root>")`, then the same for each child
(`walk_tree`). A model without a card, or whose card does not name its base, is in the tree all the same but
never in that list, and those are the models that most need a card. `tree_members` also takes candidates
(an author's or organisation's repos, a Hub search, a list of repo ids), routes each by its weights
(`hf_probex.routing.route`, the experts' routing layers and roots) and keeps those routed into the tree.
The bot uses it (`hf-probex bot run --tree ROOT --author NAME --search TEXT`); the Space and a tree scan can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from huggingface_hub.errors import RepositoryNotFoundError

from .errors import ProbexError, RepoNotFoundError

if TYPE_CHECKING:
    from .bot.client import HubClient
    from .experts.registry import ExpertRegistry
    from .routing import Route

__all__ = ["Member", "Router", "tree_members", "walk_tree", "weight_router"]

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
    """

    repo_id: str
    found_by: Literal["card", "weights"]
    evidence: str
    confidence: float = 1.0


def _walk(client: HubClient, root: str) -> dict[str, str]:
    """Every repo below `root` by the cards' base_model (children of children too), breadth first -> its parent."""
    parents, queue = {root: ""}, [root]
    while queue:
        node = queue.pop(0)
        for repo_id, children in client.children(node):
            if repo_id in parents:
                continue
            parents[repo_id] = node
            if children != 0:  # the Hub says it has none: no listing to make
                queue.append(repo_id)
    del parents[root]
    return parents


def walk_tree(client: HubClient, root: str) -> list[str]:
    """Every repo below `root` in its model tree as the Hub lists it from cards (children of children too),
    breadth first, root excluded. Uses the `base_model:<id>` tag filter of `list_models`, and skips listing
    repos the Hub says have no children. Models whose card does not name their base are not reached: see
    `tree_members`."""
    return list(_walk(client, root))


def weight_router(registry: ExpertRegistry | None = None, *, token: str | bool | None = None) -> Router:
    """A `Router` reading each repo's small files and routing layers from the Hub: `registry`'s experts (default:
    `ExpertRegistry.default`, the local registry file plus the Hub's experts) say which trees are known."""
    from .adapters import detect
    from .experts.registry import ExpertRegistry
    from .reading import open_source
    from .routing import route

    experts = registry if registry is not None else ExpertRegistry.default(token=token)

    def router(repo_id: str) -> Route:
        source = open_source(repo_id, token=token)
        return route(source, detect(source), experts, token=token)

    return router


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
    try:
        client.head(root)
    except RepositoryNotFoundError:
        raise RepoNotFoundError(f"the tree root {root} was not found on {client.api.endpoint} (or the token cannot "
                                f"see it): check the repo id") from None
    members = [Member(repo_id, "card", f"card base_model: {parent}") for repo_id, parent in _walk(client, root).items()]
    known = {root, *(m.repo_id for m in members)}
    listed = [repo_id for author in authors for repo_id in client.list_repos(author=author)]
    listed += client.list_repos(search=search) if search else []
    unknown = [repo_id for repo_id in dict.fromkeys([*listed, *candidates]) if repo_id not in known]
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
    return members + [Member(repo_id, "weights", found.evidence, found.confidence)
                      for repo_id, found in zip(unknown, routes)
                      if found is not None and found.root == root and not found.is_root]
