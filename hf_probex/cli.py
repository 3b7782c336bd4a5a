"""The `hf-probex` command line: the parser built from the command groups of `hf_probex.commands`.

Every command has `--help`. Heavy libraries (torch, transformers, diffusers) are imported inside the
commands, never at module import, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .commands import GROUPS
from .commands.common import UserError
from .settings import default_cache_dir

__all__ = ["UserError", "build_parser", "default_cache_dir", "main"]


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: an argument it does not know is reported with the command's usage (`hf-probex infer
    --jsn` shows infer's options), where argparse would leave it to the top-level parser's; options are matched
    whole, never by a prefix."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--json` must never silently mean `--json-out FILE`
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """The full `hf-probex` argument parser."""
    parser = argparse.ArgumentParser(
        prog="hf-probex",
        description="Infer the missing model-card fields of Hugging Face models from their weights.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('hf_probex').__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser)
    for group in GROUPS:
        group.register(commands)
    return parser


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from .errors import ProbexError
    from .zoo.store import ZooError

    try:
        return func(args)
    except (UserError, ZooError, ProbexError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hf-probex` console script."""
    args = build_parser().parse_args(argv)
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
