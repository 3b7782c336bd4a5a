"""Weight sets from a tree table: a tree's documented members on the Hub as an expert's training data (issue 15).

A tree table (`hf-probex scan`, `hf_probex.scan`) holds every member of a model tree with the labels harvested
from its files and card, each with its source. The members whose owners documented what they trained on are
free training data for the undocumented ones. `open_table_weight_set` reads a published table and turns its
**documented** rows into `WeightRecord`s, the same records zoo folders and Model-J give, so
`hf_probex.experts.training.harness` trains and calibrates on them unchanged:

- **What documents a member** (`DOCUMENTING_SOURCES`, per kind of tree, in order of trust): for class subsets
  config.json's `id2label` when the names are real, the card's `trained-on:` tags, the card's `datasets`; for
  LoRAs the card's `instance_prompt`, its `trained-on:` tags, its widget texts. A row's labels are those of the
  first source that has any (a LoRA's: the first label of it). `sources=` chooses others.
- **What never does** (`is_file_metadata`): labels read from a weights file's safetensors metadata
  (`<file> metadata instance_prompt` / `concept_name`). A training tool writes them, not the owner, and the
  hf_probex zoo writes its ground truth there (as Model-J does), so counting them would make every member
  "documented" and every measurement circular. They are refused even when `sources=` names them.
- **Recipe families** (`WeightRecord.group`): where the card says how the model was trained (`RECIPE_TAGS`:
  tags that name a training tool), or where the caller knows it (`groups=`); otherwise None, and the experts
  cross-validate in random folds instead of leaving one family out.
- **Splits**: a deterministic share of the documented members (`held_out`, default 20 %), chosen by a hash of
  the seed and the repo id, is `test`: never trained or calibrated on, kept to measure the published expert on
  members it never saw (`train --from-table` reports it). The rest is `train`, calibrated out of fold.
- **Weights**: only the files an expert reads (config.json, the safetensors files and their index, an adapter's
  adapter_config.json: a peft adapter of a full model is read merged onto the base it declares), each pinned to
  the commit the row was read at, downloaded through huggingface_hub into its cache; sizes are checked against
  the listing before any download (`MAX_MODEL_BYTES`); never a pickle.
  The tree's root comes the same way, at the commit the scan read it (centring and routing), for class-subset trees.

Undocumented members stay in `TableWeightSet.undocumented`: what the trained expert proposes for.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadFileError, ProbexError, RepoNotFoundError, hub_errors
from .reading import safe_relpath
from .scan.table import ScanRow
from .weightsets import WeightRecord, WeightSet

__all__ = ["DOCUMENTING_SOURCES", "MAX_MODEL_BYTES", "RECIPE_TAGS", "NoDocumentedMembersError", "TableWeightSet",
           "documented_labels", "is_file_metadata", "open_table_weight_set", "table_kind", "table_split"]

#: Label sources that document a member, per kind of tree, in order of trust (`scan.harvest` names them).
DOCUMENTING_SOURCES: dict[str, tuple[str, ...]] = {
    "classifier": ("config.json id2label", "config_setfit.json labels", "card trained-on tag", "card datasets"),
    "lora": ("card instance_prompt", "card trained-on tag", "card widget"),
}
#: Label sources that list the classes in the order of the head's rows (`WeightRecord.head_order`).
HEAD_ORDER_SOURCES = ("config.json id2label", "config_setfit.json labels")
#: Card tags that name the tool a model was trained with, as its recipe family (the Hub's own conventions).
RECIPE_TAGS: dict[str, str] = {
    "autotrain": "autotrain", "dreambooth": "dreambooth", "template:sd-lora": "diffusers-script",
    "diffusers-training": "diffusers-script", "kohya-ss": "kohya-ss", "kohya_ss": "kohya-ss", "unsloth": "unsloth",
    "axolotl": "axolotl", "trl": "trl", "sft": "trl",
}
#: Files an expert reads of a member (and of the root): nothing else is downloaded.
EXPERT_FILES: dict[str, tuple[str, ...]] = {
    "classifier": ("config.json", "*.safetensors", "*.safetensors.index.json", "adapter_config.json"),
    "lora": ("*.safetensors", "adapter_config.json"),
}
#: A member whose expert files add up to more than this is skipped (listed sizes, before any download).
MAX_MODEL_BYTES = 20_000_000_000
#: Rows of a table `open_table_weight_set` reads at most.
MAX_ROWS = 2_000_000


class NoDocumentedMembersError(ProbexError):
    """A tree table has no member documented by the sources that count: nothing to train on."""


def is_file_metadata(source: str) -> bool:
    """Whether a label's source is a weights file's safetensors metadata (`<file> metadata <key>`): never
    documentation (see the module docstring)."""
    return " metadata " in source


def documented_labels(row: ScanRow, kind: str, sources: Iterable[str] | None = None) -> tuple[tuple[str, ...], str | None]:
    """(labels, source) of a row: those of the first of `sources` (default `DOCUMENTING_SOURCES[kind]`) it has any of
    (a LoRA's: the first one), or ((), None) for an undocumented row. File metadata never counts."""
    for source in [s for s in (DOCUMENTING_SOURCES[kind] if sources is None else sources) if not is_file_metadata(s)]:
        values = list(dict.fromkeys(label.value for label in row.labels if label.source == source))
        if values:
            return (tuple(values[:1]) if kind == "lora" else tuple(values)), source
    return (), None


def table_split(repo_id: str, held_out: float, seed: int = 0) -> str:
    """`test` for a deterministic share `held_out` of repo ids (by a hash of the seed and the id), else `train`."""
    digest = hashlib.sha256(f"{seed}:{repo_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < held_out else "train"


def _recipe_family(row: ScanRow) -> str | None:
    families = {RECIPE_TAGS[tag.lower()] for tag in row.card_tags if tag.lower() in RECIPE_TAGS}
    return families.pop() if len(families) == 1 else None


@dataclass
class TableWeightSet(WeightSet):
    """A `WeightSet` of a tree table's documented members, with where it came from and what it left out."""

    table: str = ""  # the dataset repo
    commit: str = ""  # the table commit read
    root: str = ""  # the tree's root repo (the table's `scan_of`)
    kind: str = "classifier"  # "classifier" | "lora"
    sources: tuple[str, ...] = ()  # the label sources that counted as documentation
    label_sources: dict[str, str] = field(default_factory=dict)  # repo id -> the source of its labels
    undocumented: list[ScanRow] = field(default_factory=list)  # readable members without documentation
    metadata_only: int = 0  # of them, those whose only labels are a weights file's metadata (never documentation)
    excluded: dict[str, int] = field(default_factory=dict)  # why rows were left out -> how many

    @property
    def documented(self) -> int:
        """How many members documented what they were trained on (every record)."""
        return len(self.records)

    def summary(self) -> str:
        """One line: the table, its documented and undocumented members, what was left out."""
        splits = Counter(r.split for r in self.records)
        left = ", ".join(f"{n} {why}" for why, n in sorted(self.excluded.items()))
        return (f"{self.table}@{self.commit[:12]} (tree of {self.root}): {self.documented} documented members "
                f"({splits.get('train', 0)} train, {splits.get('test', 0)} held out), {len(self.undocumented)} "
                f"undocumented ({self.metadata_only} labelled only by file metadata)" + (f"; left out: {left}" if left else ""))


def table_kind(families: Iterable[str | None]) -> str | None:
    """"lora" or "classifier": the kind of tree whose readable members are of `families` (the table's `family` column,
    None for an unreadable row), by the most common family; None when no member is readable."""
    counted = Counter(family for family in families if family)
    if not counted:
        return None
    return "lora" if counted.most_common(1)[0][0].endswith("lora") else "classifier"


def _download(api, repo_id: str, sha: str | None, kind: str, max_bytes: int) -> Path:
    """The snapshot folder holding the expert's files of `repo_id` at `sha` (see `EXPERT_FILES`).

    Raises:
        ProbexError: the Hub refused, the files are too large, a name leaves the repo, or there are no safetensors.
    """
    with hub_errors(repo_id, sha, authenticated=bool(api.token), endpoint=api.endpoint):
        info = api.model_info(repo_id, revision=sha, files_metadata=True)
        names = {safe_relpath(s.rfilename, f"the listing of {repo_id}"): s.size or 0 for s in info.siblings or []}
        wanted = sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in EXPERT_FILES[kind]))
        if not any(n.endswith(".safetensors") for n in wanted):
            raise BadFileError(f"{repo_id}: no .safetensors weights to read")
        total = sum(names[n] for n in wanted)
        if total > max_bytes:
            raise BadFileError(f"{repo_id}: its weights hold {total:,} bytes, more than {max_bytes:,}")
        paths = [Path(api.hf_hub_download(repo_id, name, revision=info.sha)) for name in wanted]
    snapshot = paths[0]
    for _ in range(wanted[0].count("/") + 1):
        snapshot = snapshot.parent
    return snapshot


def open_table_weight_set(table: str, tree: str, *, revision: str | None = None, token: str | bool | None = None,
                          sources: Iterable[str] | None = None, held_out: float = 0.2, seed: int = 0,
                          groups: Mapping[str, str] | None = None, exclude: Collection[str] = (), workers: int = 4,
                          max_model_bytes: int = MAX_MODEL_BYTES) -> TableWeightSet:
    """The documented members of the tree table published at `table` (a dataset repo) as a weight set of tree `tree`.

    Args:
        table: the dataset repo of a tree table (`hf-probex scan ... --to REPO`).
        tree: the tree's name in the weight set and the expert (e.g. `resnet`).
        revision: the table's branch, tag or commit (default main); the commit read is recorded.
        token: a Hub token (default: the saved one or HF_TOKEN; False sends none). Never logged.
        sources: label sources that count as documentation, in order (default `DOCUMENTING_SOURCES`); file
            metadata never counts (`is_file_metadata`).
        held_out: share of documented members kept out of training as `test` (`table_split`).
        seed: seeds the held-out choice.
        groups: recipe families known from elsewhere, repo id -> family (default: those cards name, `RECIPE_TAGS`).
        exclude: repo ids left out entirely (models kept for a measurement of one's own).
        workers: downloads at once.
        max_model_bytes: a member whose expert files are larger is left out.

    Raises:
        RepoNotFoundError: no dataset repo `table`, or it holds no tree table.
        NoDocumentedMembersError: no member is documented by the sources that count.
        ProbexError: the Hub refused or could not be reached, or the root's weights cannot be read.
    """
    from huggingface_hub import HfApi

    from .bot.client import HubClient
    from .scan.publish import published_table

    if not 0 <= held_out < 1:
        raise ValueError(f"held_out is a share of the documented members, in [0, 1): got {held_out}")
    api = HfApi(token=token)
    published = published_table(HubClient(api), table, revision=revision)
    root = published.described.get("scan_of") if published else None
    if published is None or not isinstance(root, str):
        raise RepoNotFoundError(f"{table} is not a tree table on {api.endpoint}: no dataset repo of that name, or no "
                                f"hf_probex scan card in it (make one with `hf-probex scan ROOT_ID --to {table}`)")
    rows = published.read_rows()
    if len(rows) > MAX_ROWS:
        raise BadFileError(f"{table} holds {len(rows):,} rows, more than {MAX_ROWS:,}")
    kind = table_kind(row.family for row in rows if row.error is None)
    if kind is None:
        raise NoDocumentedMembersError("the table has no readable member (every row has an error)")
    chosen = tuple(s for s in (DOCUMENTING_SOURCES[kind] if sources is None else sources) if not is_file_metadata(s))
    excluded: Counter[str] = Counter()
    documented: list[tuple[ScanRow, tuple[str, ...], str]] = []
    undocumented: list[ScanRow] = []
    metadata_only = 0
    for row in rows:
        if row.repo_id in exclude:
            excluded["excluded by the caller"] += 1
            continue
        if row.error is not None or row.family is None:
            excluded["unreadable"] += 1
            continue
        if ("lora" if row.family.endswith("lora") else "classifier") != kind:
            excluded["of another family"] += 1
            continue
        labels, source = documented_labels(row, kind, chosen)
        if source is None:
            undocumented.append(row)
            metadata_only += any(is_file_metadata(label.source) for label in row.labels)
        else:
            documented.append((row, labels, source))
    if not documented:
        raise NoDocumentedMembersError(
            f"{table} has no member documented by {', '.join(chosen) or 'the sources given (file metadata never counts)'} "
            f"({len(rows)} rows, "
            f"{len(undocumented)} undocumented): nothing to train an expert on")
    known = dict(groups or {})

    def fetch(item: tuple[ScanRow, tuple[str, ...], str]) -> WeightRecord | str:
        row, labels, source = item
        try:
            path = _download(api, row.repo_id, row.sha, kind, max_model_bytes)
        except ProbexError as err:
            return str(err)
        group = known.get(row.repo_id) or _recipe_family(row)
        return WeightRecord(tree, row.repo_id, table_split(row.repo_id, held_out, seed), labels, path, kind, group,
                            head_order=source in HEAD_ORDER_SOURCES, parent=next(iter(row.declared_bases), None))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        fetched = list(pool.map(fetch, documented))
    records = [r for r in fetched if isinstance(r, WeightRecord)]
    excluded["weights not downloadable"] += len(fetched) - len(records)
    if not records:
        raise NoDocumentedMembersError(f"{table}: no documented member's weights could be downloaded ({fetched[0]})")
    root_path = None
    if kind == "classifier":  # the root the table read (its card's `root_sha`); without it experts read uncentred layers
        root_sha = published.described.get("root_sha")
        try:
            root_path = _download(api, root, root_sha if isinstance(root_sha, str) else None, kind,
                                  max_model_bytes)
        except ProbexError:
            excluded["root weights not downloadable (layers read uncentred)"] += 1
    vocabulary = sorted({label for r in records for label in r.labels})
    return TableWeightSet(
        source=f"table {table}@{published.commit}", records=records, vocabularies={tree: vocabulary},
        roots={tree: root_path}, root_ids={tree: root}, table=table, commit=published.commit,
        root=root, kind=kind, sources=chosen,
        label_sources={row.repo_id: source for row, _, source in documented},
        undocumented=undocumented, metadata_only=metadata_only, excluded={k: v for k, v in excluded.items() if v},
    )
