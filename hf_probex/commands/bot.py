"""`hf-probex bot`: propose model-card pull requests over a model tree or a list of repos, and report."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import UserError, probability

if TYPE_CHECKING:
    from ..scan.publish import TableFiles


def _lines(path: str, what: str) -> list[str]:
    """The non-blank, non-comment lines of a file of repo ids."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read the {what} {path} ({err.strerror})") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _opt_out_list(path: str) -> frozenset[str]:
    """The operator's opt-out list: repo ids (`owner/name`) and owners (`owner/*`), one a line."""
    from ..reading import looks_like_repo_id

    entries = _lines(path, "opt-out list")
    for entry in entries:
        owner, _, name = entry.partition("/")
        if not (looks_like_repo_id(entry) or (name == "*" and looks_like_repo_id(owner, namespaced=False))):
            raise UserError(f"--opt-out-list {path}: {entry!r} is neither a repo id (owner/name) nor an owner "
                            "(owner/* for all their repos): fix that line")
    return frozenset(entries)


def _load_infer(spec: str):
    """`module:function` -> the function (a repo id -> CardSuggestion callable)."""
    module, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise UserError(f"--infer {spec}: cannot load it ({err})") from None
    if not callable(func):
        raise UserError(f"--infer {spec} is not callable")
    return func


def _print_outcome(outcome, dry_run: bool) -> None:
    if outcome.outcome == "proposed":
        print(f"{outcome.repo_id}: opened PR #{outcome.pr_num} ({', '.join(outcome.fields)})")
    elif outcome.outcome == "would-propose":
        print(f"{outcome.repo_id}: would propose {', '.join(outcome.fields)}\n{outcome.diff}")
    elif outcome.outcome == "error":
        print(f"{outcome.repo_id}: error: {outcome.reason}")
    elif outcome.outcome == "deferred":
        print(f"{outcome.repo_id}: {'would wait' if dry_run else 'waits'} for budget ({outcome.reason}): "
              f"{', '.join(outcome.fields)}")
    elif dry_run and outcome.outcome != "would-digest":
        print(f"{outcome.repo_id}: {outcome.outcome} ({outcome.reason})")


def _print_wait(seconds: float, minutes_between: float) -> None:
    import datetime

    from tqdm.auto import tqdm

    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    minutes, rest = divmod(round(seconds), 60)
    tqdm.write(f"waiting {minutes} min {rest:02d} s, until {until:%H:%M:%S} UTC, before the next proposal "
               f"(--minutes-between-prs {minutes_between:g} since the latest one, this run's or an earlier one's)")


def _print_digest(digest, dry_run: bool) -> None:
    if dry_run:
        print(f"would open a digest for {digest.owner} on {digest.repo_id}: {len(digest.listed)} models\n"
              f"title: {digest.title}\n{digest.description}")
    else:
        print(f"{digest.owner}: opened digest #{digest.num} on {digest.repo_id} ({len(digest.listed)} models)")


def _open_state(path: str | Path):
    """The bot's state database; a path that is not one is a UserError."""
    import sqlite3

    from ..bot import BotState

    try:
        return BotState(path)
    except (sqlite3.Error, OSError) as err:
        raise UserError(f"cannot open the bot state {path} ({err}): pass another --state, or delete that file to "
                        "start over") from None


def _tree_members(args: argparse.Namespace, client) -> tuple[list, str, TableFiles | None]:
    """The members of --tree, where they were listed from, and the tree table they came from: the table (--table, or
    the one `find_table` finds when neither --walk, --author nor --search asks for a listing now), else the Hub's
    listing (no table)."""
    from ..members import table_members, tree_members
    from ..scan.publish import TableError, TableNotFoundError, find_table

    if not (args.walk or args.author or args.search):
        try:
            table = find_table(args.tree, args.table, token=args.token)
            members = table_members(table)
        except TableNotFoundError:
            if args.table:
                raise
        except TableError as err:
            if args.table:
                raise
            print(f"the tree table of {args.tree} was not used ({err}): listing the tree on the Hub")
        else:
            at = f"@{table.commit[:8]}" if table.commit else ""
            scanned = table.described.get("scanned_at") or "an unknown date"
            return members, f"from the tree table {table.location}{at} (scanned {scanned}; --walk lists the Hub now)", table
    members = tree_members(client, args.tree, authors=args.author or (), search=args.search,
                           concurrency=args.workers)
    return members, "listed on the Hub", None


def _parents_infer(args: argparse.Namespace, repos: list[str], table: TableFiles | None):
    """`infer_card` with every listed member's edge among the others (`--parents`): named from the tree `table`'s
    sketches where its rows hold those the tree's expert is calibrated on (`members.table_lineage`, no weights read),
    else from the members read whole once (`hf_probex.lineage.recover_lineage`), at the tree expert's calibration."""
    from ..errors import ProbexError
    from ..infer import DIRECT_PARENT_CONFIDENCE, expert_registry, infer_card
    from ..lineage import MAX_MEMBERS, lineage_calibration, recover_lineage
    from ..members import table_lineage

    token = args.token
    registry = expert_registry(None, token)
    edges, read = [], ""
    if table is not None:
        try:
            calibration = lineage_calibration(registry, args.tree, sketches=True)
            edges, _ = table_lineage(table, calibration, args.tree)
            read = f"{len(edges)} members named from the tree table's sketches (no weights read)"
        except ProbexError:  # no expert calibrated on sketches, or a table without them: the weights are read
            edges = []
    if not edges:
        if len(repos) > MAX_MEMBERS:
            raise UserError(f"--parents reads every member whole: {len(repos):,} members are more than {MAX_MEMBERS:,}; "
                            "pass --limit, or a --table scanned by this hf_probex (its sketches name parents)")
        calibration = lineage_calibration(registry, args.tree)
        edges = recover_lineage(args.tree, repos, calibration, root_id=args.tree, token=token, from_hub=set(repos),
                                progress=lambda line: print(line, file=sys.stderr))
        read = f"{len(edges)} of {len(repos)} members read whole"
    named = sum(edge.names_member for edge in edges)
    print(f"parents: {read}; {named} have a member as parent, at {calibration.member_precision:.2f} (pull requests "
          f"need {DIRECT_PARENT_CONFIDENCE:.2f}); the others keep the root, as sure as their weights alone make it")
    return lambda repo_id: infer_card(repo_id, token=token, hub_only=True, parents=edges)


def _bot_run(args: argparse.Namespace) -> int:
    import sqlite3

    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    from ..bot import BotConfig, BotStopped, Budgets, HubClient, default_state_path, run_bot

    if args.workers < 1 or (args.limit is not None and args.limit < 0):
        raise UserError("--workers must be positive, --limit not negative")
    if min(args.max_open_per_owner, args.max_per_owner_per_day, args.max_per_day, args.refuse_after_closed) < 1:
        raise UserError("--max-open-per-owner, --max-per-owner-per-day, --max-per-day and --refuse-after-closed must be "
                        "at least 1 (to open nothing, use --dry-run)")
    if not args.minutes_between_prs >= 0:
        raise UserError("--minutes-between-prs must be 0 or more")
    if (args.author or args.search or args.table or args.walk) and not args.tree:
        raise UserError("--author, --search, --table and --walk look for members of a tree: give its root with --tree")
    if args.table and (args.walk or args.author or args.search):
        raise UserError("--table takes the members from a tree table; --walk, --author and --search list them from "
                        "the Hub now: choose one")
    if args.parents and (args.infer or not args.tree):
        raise UserError("--parents names parents among the members of --tree for hf_probex's own inference: give "
                        "--tree, and leave out --infer")
    infer = _load_infer(args.infer) if args.infer else None
    opt_out = _opt_out_list(args.opt_out_list) if args.opt_out_list else frozenset()
    client = HubClient(HfApi(token=args.token), max_retries=args.max_retries)
    budgets = Budgets(max_open_per_owner=args.max_open_per_owner, max_new_per_owner_per_day=args.max_per_owner_per_day,
                      max_new_per_day=args.max_per_day, minutes_between=args.minutes_between_prs)
    config = BotConfig(min_confidence=args.min_confidence, dry_run=args.dry_run, concurrency=args.workers,
                       opt_out=opt_out, budgets=budgets, digest=args.digest, refuse_after_closed=args.refuse_after_closed,
                       tree=args.tree)
    state = None if args.dry_run else _open_state(args.state or default_state_path())
    try:
        if not args.dry_run:
            client.whoami()  # no token, or a refused one: say so before a long tree listing
        if args.tree:
            members, listed_from, table = _tree_members(args, client)
            by_weights = [m for m in members if m.found_by == "weights"]
            print(f"tree {args.tree}: {len(members)} members {listed_from}, {len(members) - len(by_weights)} found by "
                  f"cards, {len(by_weights)} by weights")
            repos = [m.repo_id for m in members]
        else:
            repos, table = _lines(args.repos, "repos file"), None
        repos = repos[: args.limit] if args.limit is not None else repos
        if args.parents:
            infer = _parents_infer(args, repos, table)
        report = run_bot(repos, client, infer=infer, state=state, config=config, progress=not args.quiet,
                         on_outcome=lambda o: _print_outcome(o, args.dry_run),
                         on_wait=lambda seconds: _print_wait(seconds, args.minutes_between_prs))
    except BotStopped as err:
        raise UserError(str(err)) from None
    except sqlite3.Error as err:  # a state file damaged by hand or by another program while the run read it
        raise UserError(f"the bot state {state.path if state else 'in memory'} is damaged ({err}): move it aside "
                        "to start over (the bot finds its open pull requests again on the Hub)") from None
    except (OfflineModeIsEnabled, httpx2.HTTPError) as err:
        raise UserError(f"cannot reach the Hub at {client.api.endpoint} ({type(err).__name__}): check the network and "
                        "HF_ENDPOINT, and unset HF_HUB_OFFLINE") from None
    finally:
        if state is not None:
            state.close()
    for digest in report.digests:
        _print_digest(digest, args.dry_run)
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.counts().items())) or "nothing to do"
    print(f"{len(report.outcomes)} repos in {report.seconds:.1f}s: {counts}; {report.retries} calls retried")
    return 0


def _bot_status(args: argparse.Namespace) -> int:
    import sqlite3

    from ..bot import default_state_path

    path = Path(args.state) if args.state else default_state_path()
    if not path.is_file():
        raise UserError(f"no bot state at {path} (run `hf-probex bot run` first, or pass --state)")
    with _open_state(path) as state:
        try:
            summary = state.summary()
        except sqlite3.Error as err:
            raise UserError(f"{path} is damaged or not a bot state ({err}): pass the --state that `bot run` wrote, or "
                            "move it aside to start over") from None
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    outcomes = summary["outcomes"]
    print(f"state: {path}")
    print(f"repos scanned: {summary['repos']}")
    print(f"  proposed: {outcomes.get('proposed', 0)}")
    for repo_id, num in summary["prs"].items():
        print(f"    {repo_id} #{num}")
    print(f"  skipped: {outcomes.get('skipped', 0)}")
    for reason, n in sorted(summary["skipped"].items()):
        print(f"    {reason}: {n}")
    print(f"  in digests: {outcomes.get('digested', 0)}")
    print(f"  waiting for budget: {outcomes.get('deferred', 0)}")
    for reason, n in sorted(summary["waiting"].items()):
        print(f"    {reason}: {n}")
    print(f"  errors: {outcomes.get('error', 0)}")
    for repo_id, message in summary["errors"].items():
        print(f"    {repo_id}: {message}")
    if summary["pending"]:
        print(f"  pending (reconciled on the next run): {', '.join(summary['pending'])}")
    latest = f"the latest at {summary['last_opened_at']}" if summary["last_opened_at"] else "none opened yet"
    print(f"proposals in the last 24 h: {summary['new_24h']} ({latest})")
    if summary["owners"]:
        print("owners:")
    for owner, entry in summary["owners"].items():
        if entry["refused"]:
            print(f"  {owner}: refused: {entry['refused']}")
            continue
        parts = [f"{len(entry['open'])} open", f"{entry['new_24h']} new in 24 h", f"{entry['waiting']} waiting for budget"]
        if entry["requested"]:
            parts.append(f"{entry['requested']} asked for in a digest")
        opened = ", ".join(f"{'digest' if c['kind'] == 'digest' else 'PR'} #{c['num'] or '?'} on {c['repo_id']} ({c['status']})"
                           for c in entry["open"])
        print(f"  {owner}: {', '.join(parts)}" + (f": {opened}" if opened else ""))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `hf-probex` parser."""
    from ..bot.etiquette import DEFAULT_REFUSE_AFTER_CLOSED, Budgets
    from ..bot.run import DEFAULT_MIN_CONFIDENCE

    bot = commands.add_parser("bot", help="propose model-card pull requests with inferred fields",
                              description="The card bot: one pull request per repo, adding only missing card "
                                          "fields inferred with enough confidence. See docs/bot.md.")
    bot_commands = bot.add_subparsers(dest="bot_command", metavar="SUBCOMMAND", required=True)
    run = bot_commands.add_parser(
        "run", help="scan a model tree or a list of repos and open pull requests",
        description="Scan every repo below --tree (children of children too, and with --author / --search the "
                    "models routed into the tree by their weights; from its tree table when `hf-probex scan` "
                    "published one) or listed in --repos, infer the missing card "
                    "fields, and open one pull request per repo that adds an informative field (never a commit to "
                    "main, never a second PR for the same fields), the most useful first, within budgets per owner "
                    "and per day (the rest wait for a later run); with --digest, one discussion per owner instead. "
                    "Resumable: rerun the same command after a crash. The token (HF_TOKEN or --token) must be able to "
                    "open pull requests and discussions.",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--tree", metavar="ROOT_ID",
                        help="the root repo of a model tree: every repo whose card names a base in it, plus those "
                             "--author and --search find and routing places in it by their weights")
    source.add_argument("--repos", metavar="FILE", help="a file of repo ids, one a line (# comments)")
    run.add_argument("--author", action="append", metavar="NAME",
                     help="with --tree: route the repos of this user or organisation by their weights and keep those "
                          "in the tree (reaches models without a card; repeatable)")
    run.add_argument("--search", metavar="TEXT",
                     help="with --tree: route the repos a Hub search for TEXT finds, and keep those in the tree")
    run.add_argument("--table", metavar="REPO_OR_FOLDER",
                     help="with --tree: take the members from this tree table (`hf-probex scan`: a dataset repo id or "
                          "a scan folder). Default: the tree's table when one is found (the scan folder, or a trusted "
                          "author's on the Hub), else the Hub's listing")
    run.add_argument("--walk", action="store_true",
                     help="with --tree: list the tree on the Hub now, even when a tree table exists")
    run.add_argument("--dry-run", action="store_true", help="print what would be proposed; write nothing")
    run.add_argument("--limit", type=int, help="process at most N repos")
    run.add_argument("--min-confidence", type=probability, default=DEFAULT_MIN_CONFIDENCE,
                     help=f"propose only fields at least this confident (default: {DEFAULT_MIN_CONFIDENCE})")
    run.add_argument("--state", metavar="DB", help="state database (default: bot.sqlite in the hf_probex cache)")
    run.add_argument("--workers", type=int, default=4, help="repos read and inferred at once (default: 4)")
    run.add_argument("--opt-out-list", metavar="FILE",
                     help="repo ids never to touch, and owners none of whose repos to touch (owner/*), one a line")
    run.add_argument("--digest", action="store_true",
                     help="one discussion per owner listing every proposal (with how to accept or refuse them) instead "
                          "of one pull request per repo; pull requests follow for the repos the owner accepts")
    defaults = Budgets()
    run.add_argument("--max-open-per-owner", type=int, default=defaults.max_open_per_owner, metavar="N",
                     help="at most N pull requests or digests of one owner waiting for an answer "
                          f"(default: {defaults.max_open_per_owner})")
    run.add_argument("--max-per-owner-per-day", type=int, default=defaults.max_new_per_owner_per_day, metavar="N",
                     help=f"at most N new for one owner in 24 hours (default: {defaults.max_new_per_owner_per_day})")
    run.add_argument("--max-per-day", type=int, default=defaults.max_new_per_day, metavar="N",
                     help=f"at most N new in 24 hours, all owners together (default: {defaults.max_new_per_day})")
    run.add_argument("--minutes-between-prs", type=float, default=defaults.minutes_between, metavar="M",
                     help="wait at least M minutes between two pull requests or digests, across runs "
                          f"(default: {defaults.minutes_between:g}; 0 only for a local hub)")
    run.add_argument("--refuse-after-closed", type=int, default=DEFAULT_REFUSE_AFTER_CLOSED, metavar="N",
                     help="an owner who closed N of the bot's pull requests and merged none is never proposed to again "
                          f"(default: {DEFAULT_REFUSE_AFTER_CLOSED})")
    run.add_argument("--max-retries", type=int, default=5, help="retries of a call after 429/5xx (default: 5)")
    run.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login)")
    run.add_argument("--infer", metavar="MODULE:FUNCTION",
                     help="a repo id -> CardSuggestion callable to use instead of hf_probex.infer_card")
    run.add_argument("--parents", action="store_true",
                     help="with --tree: name each member's parent first (`hf-probex lineage`: from the tree table's "
                          "sketches where its rows hold them, else every member read whole) and give each model the "
                          "member it was fine-tuned from as base_model, where the tree's expert is sure enough; "
                          "without it, base_model is the root only where a model that near it is surely its child")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_bot_run)
    status = bot_commands.add_parser("status", help="summarise the bot's state: scanned, proposed, skipped, waiting, errors",
                                     description="Summarise the state database: repos scanned, pull requests "
                                                 "opened, repos skipped by reason, waiting for budget, errors, and per "
                                                 "owner what is open, new in 24 hours, waiting or refused.")
    status.add_argument("--state", metavar="DB", help="state database (default: bot.sqlite in the hf_probex cache)")
    status.add_argument("--json", action="store_true", help="print the summary as JSON")
    status.set_defaults(func=_bot_status)
