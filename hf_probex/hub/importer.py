"""`hf-probex hub import`: publish a zoo into a hub root, one public repo per finished model.

Repos are named by the zoo plan (`probex-zoo-<tree>/<tree>-...`, one org per tree) and hold the model
folder exactly as the zoo wrote it, card included (or no card, for the zoo's card-less models), so the
hub derives the same `base_model` tags and model trees the real Hub would. The import writes to the
root directly, under each repo's lock, so it is safe while `hf-probex hub serve` runs on the same
root; rerunning it commits only models whose files changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ..zoo import Zoo
from .errors import RepoNotFound
from .storage import Delete, Put, Storage

IMPORT_AUTHOR = "hf-probex"


@dataclass
class ImportReport:
    """How many models the import created, updated, found unchanged, or skipped as unfinished."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return (f"{self.created} repos created, {self.updated} updated, {self.unchanged} unchanged, "
                f"{self.skipped} unfinished models skipped")


def _folder_files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by its repo path (hidden files and folders, e.g. caches, left out)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.startswith("."):
                path = Path(dirpath) / filename
                found[path.relative_to(folder).as_posix()] = path
    return found


def import_zoo(zoo_dir: str | os.PathLike, root: str | os.PathLike,
               progress: Callable[[str], None] | None = None, trees: Collection[str] | None = None) -> ImportReport:
    """Publish every finished model of the zoo at `zoo_dir` (of the trees named in `trees`: default all) into the
    hub root `root`."""
    zoo = Zoo.open(zoo_dir)
    storage = Storage(root)
    report = ImportReport()
    for spec in zoo.specs():
        if trees is not None and spec.tree not in trees:
            continue
        if not zoo.is_finished(spec):
            report.skipped += 1
            continue
        files = _folder_files(zoo.model_dir(spec.tree, spec.name))
        try:
            storage.repo(spec.repo_id)
            created = False
        except RepoNotFound:
            storage.create_repo(spec.repo_id, private=False, author=IMPORT_AUTHOR)
            created = True
        with storage.lock(spec.repo_id):
            current = storage.resolve(spec.repo_id, "main").tree
            operations: list[Put | Delete] = []
            for rel, path in files.items():
                blob = storage.put_blob(path.read_bytes())
                if current.get(rel) != blob.entry():
                    operations.append(Put(rel, blob))
            operations += [Delete(rel) for rel in current if rel not in files and rel != ".gitattributes"]
            if operations:
                storage.commit_operations(spec.repo_id, "refs/heads/main", operations,
                                          summary=f"Import {spec.tree}/{spec.name} from an hf_probex zoo",
                                          description="", author=IMPORT_AUTHOR)
        if created:
            report.created += 1
        elif operations:
            report.updated += 1
        else:
            report.unchanged += 1
        if progress is not None:
            progress(spec.repo_id)
    return report
