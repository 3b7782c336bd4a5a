"""The package's rooms (hf_probex.<module or subpackage>) stand on floors and never import each other in a circle.

pyproject.toml's import contracts ([tool.importlinter]) name the floors; `make lint` runs them with `lint-imports`,
and so does this suite, so a new circle or an import up a floor fails here too. The room-level check below counts
what the contracts count (imports inside functions too, not those under `if TYPE_CHECKING:`), with grimp directly,
and names the circle it finds. Every `from hf_probex... import ...` that README.md and docs/*.md show still imports:
code that moves to its floor leaves its public name where the pages say it is (and where the Space's files and the
benchmarks import it).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Imports the contracts ignore (`ignore_imports`): a deprecated alias kept at a name the pages once showed, which
#: nothing in the package imports.
ALIASES = {("hf_probex.experts.from_table", "hf_probex.from_table")}


def _contracts() -> list[dict]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("hf_probex", exclude_type_checking_imports=True, cache_dir=None)


def _room(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _room_graph(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if _room(module) != _room(imported) and (module, imported) not in ALIASES:
                rooms.setdefault(_room(module), set()).add(_room(imported))
    return rooms


def _circle(rooms: dict[str, set[str]]) -> list[str] | None:
    """One circle of rooms (its first room again at the end), or None."""
    done: set[str] = set()  # rooms from which no circle leads
    for start in sorted(rooms):
        if start in done:
            continue
        path, stack = [start], [iter(sorted(rooms.get(start, ())))]
        while stack:
            following = next(stack[-1], None)
            if following is None:  # every room this one imports is done: so is this one
                done.add(path.pop())
                stack.pop()
            elif following in path:
                return path[path.index(following):] + [following]
            elif following not in done:
                path.append(following)
                stack.append(iter(sorted(rooms.get(following, ()))))
    return None


def test_the_import_contracts_are_kept():
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_two_rooms_import_each_other_round_any_circle(graph):
    circle = _circle(_room_graph(graph))
    assert circle is None, "rooms import each other in a circle: " + " -> ".join(circle)


def test_the_circle_check_finds_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_room_but_the_front_ends_is_forbidden_to_import_them(graph):
    (contract,) = [c for c in _contracts() if c["id"] == "front-ends"]
    front_ends = set(contract["forbidden_modules"])
    rooms = {_room(module) for module in graph.modules} - {"hf_probex"}
    assert set(contract["source_modules"]) == rooms - front_ends, "name a new room in the front-ends contract too"


def test_the_contracts_ignore_only_the_aliases_and_nothing_imports_them(graph):
    ignored = {tuple(part.strip() for part in line.split("->")) for c in _contracts() for line in c.get("ignore_imports", [])}
    assert ignored == ALIASES
    for alias, _ in ALIASES:
        assert graph.find_modules_that_directly_import(alias) == set(), f"{alias} is a deprecated alias: import its new home"


def test_the_from_table_alias_still_imports_the_moved_names():
    from hf_probex import from_table

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        from hf_probex.experts.from_table import measure_proposals, propose_for_undocumented, train_from_table
    assert (train_from_table, propose_for_undocumented, measure_proposals) == (
        from_table.train_from_table, from_table.propose_for_undocumented, from_table.measure_proposals)


def _documented_imports() -> list[tuple[str, str]]:
    """(module, name) of every `from hf_probex... import ...` that README.md and docs/*.md show, and that the Space's
    files (spaces/) and the benchmarks (scripts/) run."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for module, names in re.findall(r"\bfrom (hf_probex[\w.]*) import \(?([\w, ]+)", page.read_text()):
            found += [(module, name.strip()) for name in names.split(",") if name.strip()]
    for script in sorted([*(ROOT / "spaces").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "hf_probex":
                found += [(node.module, alias.name) for alias in node.names]
    return sorted(set(found))


@pytest.mark.parametrize(("module", "name"), _documented_imports())
def test_what_the_pages_import_is_where_they_say(module, name):
    import importlib

    assert hasattr(importlib.import_module(module), name), f"`from {module} import {name}` (README.md, docs/, spaces/, scripts/) fails"
