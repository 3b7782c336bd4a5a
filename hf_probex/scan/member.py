"""Reading one member of a tree into one table row: the unit of work every engine runs.

`read_member(job, settings)` opens the repo at the commit its listing showed (`reading.open_source`:
small files, safetensors headers, single tensors, never a pickle), recognises its family (`adapters`),
routes it (`routing.route_through`, as `infer_card` does: a peft adapter of a full model is read merged onto its
base, by the base family's adapter; one whose base cannot be read is an error row), and for a member fills the card
fields and the labels harvested from its own files (`harvest`) and the embedding of the weights routing read
(`embedding`). A candidate found by a listing (not by its card) is
read only as far as routing: when its route does not lead into the tree (`members.member_by_weights`)
the row says so (`in_tree` False) and nothing more is read.

It never raises: a repo that cannot be read becomes a row with `error` (one line) and `error_kind`, and a
problem that leaves the rest readable (an unreadable card, a layer the expert cannot read) a note. It is a
plain module-level function of picklable arguments, so a Ray worker runs it as a thread does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..adapters import detect
from ..errors import ProbexError
from ..experts.registry import ExpertRegistry
from ..members import member_by_weights
from ..reading import open_source
from ..routing import route_through
from .embedding import DEFAULT_SKETCH_DIM, DEFAULT_SKETCH_SEED, member_embedding
from .harvest import card_fields, harvest_labels
from .table import ScanRow

__all__ = ["MemberJob", "ScanSettings", "read_member"]

#: The longest wait between two tries of one repo.
MAX_RETRY_WAIT_S = 30.0


@dataclass(frozen=True)
class MemberJob:
    """One repo to read: its id, the commit its listing showed (None: read main), and how it was found."""

    repo_id: str
    sha: str | None
    found_by: str  # "card": a member by its card; "weights": a candidate, a member if routed into the tree
    evidence: str = ""


@dataclass(frozen=True)
class ScanSettings:
    """What every read of one scan shares: the tree, the experts, the token, the sketch. Picklable (Ray ships it
    to its workers once); the token is left out of its repr, so it never reaches a log."""

    root: str
    registry: ExpertRegistry
    token: str | bool | None = field(default=None, repr=False)
    sketch_dim: int = DEFAULT_SKETCH_DIM
    sketch_seed: int = DEFAULT_SKETCH_SEED
    retries: int = 3


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_member(job: MemberJob, settings: ScanSettings) -> ScanRow:
    """The table row of `job`'s repo (see the module docstring); never raises.

    A read the Hub or the network failed (`HubConnectionError`: 429 or 5xx on the repo's info, a dropped
    connection) is tried again up to `settings.retries` times, waiting 1, 2, 4... seconds (at most
    `MAX_RETRY_WAIT_S`); file reads have huggingface_hub's own backoff (`http_backoff`) besides.
    """
    from huggingface_hub import constants

    for attempt in range(settings.retries + 1):
        row = _read_once(job, settings)
        if row.error_kind != "HubConnectionError" or attempt == settings.retries or constants.HF_HUB_OFFLINE:
            return row
        time.sleep(min(MAX_RETRY_WAIT_S, 2.0 ** attempt))
    raise AssertionError("unreachable")


def _read_once(job: MemberJob, settings: ScanSettings) -> ScanRow:
    row = ScanRow(job.repo_id, job.sha, job.found_by, job.evidence, 1.0 if job.found_by == "card" else 0.0,
                  in_tree=job.found_by == "card")
    source = weights = None
    try:
        source = open_source(job.repo_id, revision=job.sha, token=settings.token, local=False)
        row.sha = source.revision
        adapter = detect(source)
        row.family = adapter.family
        # a peft adapter of a full model is read merged onto its base, as infer_card reads it; no base: an error row
        reader, weights, found = route_through(source, adapter, settings.registry, token=settings.token)
        row.route_root, row.route_confidence, row.declared_bases = found.root, found.confidence, list(found.declared)
        row.route_distance = found.distances.get(found.root) if found.root else None
        row.route_evidence, row.route_finding = found.evidence or found.reason, found.finding
        if job.found_by == "weights":
            member = member_by_weights(job.repo_id, found, settings.root, job.sha)
            if member is None:
                return row  # not of this tree: nothing more to read
            row.in_tree, row.member_evidence, row.member_confidence = True, member.evidence, member.confidence
        card = card_fields(source.read_text("README.md"))
        row.has_card, row.card_base_model, row.card_datasets, row.card_tags = (card.has_card, card.base_model,
                                                                              card.datasets, card.tags)
        row.card_pipeline_tag, row.card_library_name = card.pipeline_tag, card.library_name
        row.card_license, row.card_language, row.card_missing = card.license, card.language, card.missing
        row.notes += [card.problem] if card.problem else []
        row.labels = harvest_labels(source, adapter, card)
        try:
            embedding = member_embedding(weights, reader, settings.root, settings.registry, dim=settings.sketch_dim,
                                         seed=settings.sketch_seed)
            row.embedding, row.embedding_kind, row.embedding_layers = embedding.vector, embedding.kind, embedding.layers
        except (ProbexError, ValueError) as err:  # another shape, NaN / inf: the row stands without an embedding
            row.notes.append(f"no embedding: {_one_line(err)}")
    except ProbexError as err:
        row.error, row.error_kind = _one_line(err), type(err).__name__
    except Exception as err:  # a bug or a library's surprise: this row only, retried by the next run
        row.error, row.error_kind = f"{type(err).__name__}: {_one_line(err)}", "unexpected"
    finally:
        read = weights if weights is not None else source  # a merged view counts the adapter's bytes and its base's
        row.bytes_read = read.bytes_read if read is not None else 0
    return row
