"""Every `hf-probex` command that README.md and docs/*.md show in a code block parses as written: the command and
its options exist, each option takes what the page gives it. A renamed flag or command fails here, before a user
copies the page. (What the flows do when run: the tests of each part; docs/scan.md's whole flow as written in
tests/test_docs_flows.py, and tests/test_text_flow.py end to end.)"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from hf_probex.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A page's placeholder for a value (N, DIR, ...): accepted where the option wants a number.
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")


#: Code blocks of commands (a block of another language shows a page, a card or a reply: prose).
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}


def _code_lines(text: str) -> list[str]:
    """The lines of the page's shell code blocks, continuation lines joined."""
    lines, inside, shell, pending = [], False, False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside, pending = not inside, ""
            shell = inside and line.strip().removeprefix("```").strip().lower() in SHELL_BLOCKS
            continue
        if not shell:
            continue
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        lines.append(line)
    return lines


def _commands(text: str) -> list[str]:
    """Each `hf-probex ...` invocation of the page's code blocks, without comments, prompts or what surrounds it."""
    found = []
    for line in _code_lines(text):
        line = re.sub(r"\s#\s.*$", "", line)  # a trailing comment
        for part in re.split(r"&&|\|\||;|\s\|\s", line):  # `|` inside `[a|b]` is an alternative, not a pipe
            part = part.strip().removeprefix("$ ").removesuffix("&").strip()
            at = part.find("hf-probex ")
            if at == 0 or (at > 0 and re.fullmatch(r"(?:[A-Z_]+=\S+\s+)+", part[:at])):  # env assignments before it
                found.append(part[at:])
    return found


def _variants(command: str) -> list[list[str]]:
    """The command with its optional `[...]` parts left out, and with them in (an alternative `a|b` takes `a`)."""
    without = re.sub(r"\s*\[[^\[\]]*\]", "", command)
    within = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split("|")[0], command)
    return [shlex.split(v)[1:] for v in dict.fromkeys([without, within])]


def _documented() -> list[tuple[str, str]]:
    return [(page.name, command) for page in PAGES for command in _commands(page.read_text(encoding="utf-8"))
            if "..." not in command]


def _parse(argv: list[str]) -> None:
    """Parse `argv` as the CLI does, with a placeholder accepted where the page names a number by its role."""
    parser = build_parser()

    def error(message: str):
        bad = re.search(r"invalid \w+ value: '([^']*)'|'([^']*)' is not a number", message)
        value = bad and (bad.group(1) or bad.group(2))
        if value and PLACEHOLDER.fullmatch(value):
            raise _Placeholder()
        raise AssertionError(message)

    for sub in _parsers(parser):
        sub.error = error
    try:
        parser.parse_args(argv)
    except _Placeholder:
        pass


class _Placeholder(Exception):
    pass


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


DOCUMENTED = _documented()


def test_the_pages_show_commands():
    assert len(DOCUMENTED) > 50 and {page for page, _ in DOCUMENTED} >= {"README.md", "scan.md", "bot.md"}


@pytest.mark.parametrize(("page", "command"), DOCUMENTED, ids=[f"{p}:{c[:60]}" for p, c in DOCUMENTED])
def test_a_documented_command_parses_as_written(page, command):
    for argv in _variants(command):
        _parse(argv)
