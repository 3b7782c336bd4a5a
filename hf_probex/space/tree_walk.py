"""What browse and search share: walking a tree's members on the Hub (cards, then weights, then members known
otherwise) and reading each on a few threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import RepoNotFoundError
from ..experts.registry import ExpertRegistry
from .common import Progress, SpaceInputError, _as_token, _hub_api

if TYPE_CHECKING:
    from ..bot import HubClient

READ_THREADS = 4  # reading cards and layers is network-bound: a few at once, not more, on a shared Space
T = TypeVar("T")


@dataclass
class WalkedTree:
    """A walked tree: the Hub client, its repos (by cards first, then by weights, then the others given) and how
    each was found ("card", "weights" or "other")."""

    client: HubClient
    repos: list[str]
    found_by: dict[str, str]
    warnings: list[str]


def walk(root: str, token: str | None, limit: int, progress: Progress, members: Iterable[str] | None,
          authors: Iterable[str] = (), registry: ExpertRegistry | None = None) -> WalkedTree:
    """The first `limit` repos of the tree of `root` (`hf_probex.members.tree_members`): those whose cards name it
    as base_model (children of children too), then the repos of `authors` that `registry`'s experts route into
    the tree by their weights, then `members` known otherwise; and warnings."""
    from huggingface_hub.errors import HfHubHTTPError

    from ..bot import BotStopped, HubClient
    from ..members import tree_members, weight_router
    from ..reading import looks_like_repo_id

    root = (root or "").strip()
    if not looks_like_repo_id(root):
        raise SpaceInputError(f"{root!r} is not a Hub repo id: type the tree's root as namespace/name")
    authors = [a.strip() for a in authors if a.strip()]
    if not all(looks_like_repo_id(a, namespaced=False) for a in authors):
        raise SpaceInputError(f"{', '.join(authors)}: type user or organisation names, separated by commas")
    client = HubClient(_hub_api(token), max_retries=2, max_wait_s=10.0)
    progress(0.02, f"listing the tree of {root}" + (f" and routing the models of {', '.join(authors)}" if authors else ""))
    router = weight_router(registry, token=_as_token(token)) if authors else None
    try:
        listed = tree_members(client, root, authors=authors, router=router)
    except RepoNotFoundError:
        raise SpaceInputError(f"{root}: no such model on {client.api.endpoint} (or it is private: paste a token)") from None
    except BotStopped:
        raise SpaceInputError(f"the Hub refused the token for the tree of {root}: paste a valid token, or clear the "
                              "token box to browse public models") from None
    except (HfHubHTTPError, OSError):
        raise SpaceInputError(f"the Hub did not answer the tree listing of {root}: try again in a moment") from None
    found_by = {m.repo_id: m.found_by for m in listed}
    for repo_id in dict.fromkeys(members or ()):
        found_by.setdefault(repo_id, "other")
    found_by.pop(root, None)
    repos = list(found_by)
    warnings = [] if repos else [f"no model names {root} as its base_model: the tree has only its root"]
    if len(repos) > limit:
        warnings.append(f"the tree has {len(repos)} models; only the first {limit} (by cards first) are shown")
    return WalkedTree(client, repos[:limit], {r: found_by[r] for r in repos[:limit]}, warnings)


def in_parallel(func: Callable[[str], T], repos: list[str], progress: Progress, what: str) -> list[T]:
    """`func` over `repos` on a few threads, in order, reporting progress as each finishes."""
    results: list[T] = []
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for done, result in enumerate(pool.map(func, repos), start=1):
            results.append(result)
            progress(0.05 + 0.9 * done / len(repos), f"{what} {done}/{len(repos)}")
    return results


def found_by_text(tree: WalkedTree) -> str:
    """How the tree's members were found, for the summaries."""
    counts = Counter(tree.found_by.values())
    words = {"card": "found by their cards' base_model", "weights": "by their weights", "other": "otherwise"}
    return ", ".join(f"**{counts[kind]}** {words[kind]}" for kind in words if counts[kind] or kind == "card")
