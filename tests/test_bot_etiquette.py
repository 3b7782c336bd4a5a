"""The bot at Hub scale against the local hub: budgets per owner and per day that survive restarts, owner-wide
opt-outs honoured before any request to the owner's repos, priority when the budget is short, and digests (one
discussion per owner; pull requests when the owner accepts).

Inference is a fake (`infer_base`): these tests are about whom the bot asks, what and when, not about what it
infers. Time is a `FakeClock`: the state counts the budgets by it and the bot waits by it, so nothing here sleeps.
The bot is bob; alice and dave own repos (dave speaks for the organisations quiet-lab and tuning-lab).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from huggingface_hub import HfApi, get_session, hf_hub_download
from huggingface_hub.utils import hf_raise_for_status

from hf_probex.bot import BotConfig, BotState, Budgets, HubClient, read_commands, run_bot
from hf_probex.bot.state import SCHEMA_VERSION
from hf_probex.cli import main
from hf_probex.hub.discussions import Discussions
from hf_probex.hub.storage import Put, Storage
from hf_probex.suggestions import CardSuggestion, FieldSuggestion
from hub_proxy import FaultProxy

CARD = "---\nlicense: apache-2.0\n---\n# A fine-tune\n"  # no base_model: the bot proposes one
CONFIG = json.dumps({"architectures": ["ViTForImageClassification"], "model_type": "vit"}).encode()
DAY = 86_400.0


class FakeClock:
    """Seconds since the epoch that move only when told to, or when the bot waits (`sleep`, recorded)."""

    def __init__(self) -> None:
        self.now = 1_900_000_000.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def publish(hub, repo_ids: list[str], readme: str = CARD) -> None:
    """Public repos with a card and a config.json (what the Hub counts a download of), written to the hub's storage
    as `hub import` writes (fifty repos in a blink; the bot reads them through the real client)."""
    storage = Storage(hub.root)
    for repo_id in repo_ids:
        storage.create_repo(repo_id, private=False, author=repo_id.split("/")[0])
        with storage.lock(repo_id):
            storage.commit_operations(repo_id, "refs/heads/main", [Put("README.md", storage.put_blob(readme.encode())),
                                                                   Put("config.json", storage.put_blob(CONFIG))],
                                      summary="model", description="", author=repo_id.split("/")[0])


def base_model(confidence: float = 1.0) -> FieldSuggestion:
    return FieldSuggestion("base_model", "acme/vit-root", confidence, "weights: cosine distance 0.011 to acme/vit-root",
                           "weights", floor=0.9)


def infer_base(repo_id: str) -> CardSuggestion:
    """Every repo is a fine-tune of acme/vit-root, found by weights routing at 100 %."""
    return CardSuggestion(repo_id, fields={"base_model": base_model()})


def run(hub, repos: list[str], state_path, clock: FakeClock, *, infer=infer_base, endpoint: str | None = None,
        on_wait=None, **config):
    """One bot run as bob, as after a restart: a new client and a new connection to the state file."""
    client = HubClient(HfApi(endpoint=endpoint or hub.endpoint, token=hub.bob), sleep=clock.sleep)
    with BotState(state_path, clock=clock.time) as state:
        return run_bot(repos, client, infer=infer, state=state, config=BotConfig(**config), on_wait=on_wait)


def bot_threads(api: HfApi, repo_id: str, kind: str = "pull_request") -> list:
    return list(api.get_repo_discussions(repo_id, author="bob", discussion_type=kind, discussion_status="all"))


def bot_pr_counts(hub, repo_ids: list[str]) -> list[int]:
    """How many pull requests of the bot each repo has, read from the hub's storage (the server's truth, without a
    request per repo)."""
    discussions = Discussions(Storage(hub.root))
    return [sum(t["isPullRequest"] and t["author"] == "bob" for t in discussions.list(r)) for r in repo_ids]


def outcomes(report) -> dict[str, tuple[str, str | None]]:
    return {o.repo_id: (o.outcome, o.reason) for o in report.outcomes}


# ---- budgets -------------------------------------------------------------------------------------------------


def test_an_owner_with_50_repos_gets_the_budgeted_prs_and_a_restart_keeps_the_budget(hub, tmp_path, capsys):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repos = [hub.repo_id() for _ in range(50)]
    publish(hub, repos)
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    first = run(hub, repos, path, clock)  # the documented defaults: 1 open PR per owner
    assert outcomes(first)[repos[0]] == ("proposed", None)  # equal gains: the order given
    assert {outcomes(first)[r] for r in repos[1:]} == {("deferred", "owner-open-budget")}
    assert bot_pr_counts(hub, repos) == [1] + [0] * 49
    clock.now += 2 * DAY  # a restart two days later: the daily budgets are free again, the open PR still holds
    again = run(hub, repos, path, clock)
    assert again.counts() == {"unchanged": 1, "deferred": 49} and sum(bot_pr_counts(hub, repos)) == 1
    with BotState(path, clock=clock.time) as state:
        owner = state.summary()["owners"]["alice"]
    assert owner["open"] == [{"repo_id": repos[0], "kind": "pr", "num": 1, "status": "open"}]
    assert (owner["new_24h"], owner["waiting"], owner["refused"]) == (0, 49, None)
    assert main(["bot", "status", "--state", str(path)]) == 0
    status = capsys.readouterr().out
    assert "waiting for budget: 49\n    owner-open-budget: 49" in status
    assert "alice: 1 open, " in status and f"49 waiting for budget: PR #1 on {repos[0]} (open)" in status
    alice.merge_pull_request(repos[0], 1)  # the owner's answer frees the slot: the next PR goes
    clock.now += 60
    third = run(hub, repos, path, clock)
    assert (third.counts()["proposed"], third.counts()["deferred"]) == (1, 48) and outcomes(third)[repos[1]][0] == "proposed"
    assert clock.waits == []  # the last PR was two days ago


def test_daily_budgets_per_owner_and_in_all(hub, tmp_path):
    alice, dave = HfApi(endpoint=hub.endpoint, token=hub.alice), HfApi(endpoint=hub.endpoint, token=hub.dave)
    mine, daves = [hub.repo_id() for _ in range(4)], [hub.repo_id("dave") for _ in range(2)]
    publish(hub, mine)
    publish(hub, daves)
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    budgets = Budgets(max_open_per_owner=10, max_new_per_owner_per_day=3, max_new_per_day=4, minutes_between=3)
    first = run(hub, mine + daves, path, clock, budgets=budgets)
    assert [outcomes(first)[r] for r in mine + daves] == [("proposed", None)] * 3 + [
        ("deferred", "owner-daily-budget"), ("proposed", None), ("deferred", "daily-budget")]
    assert clock.waits == [180.0] * 3  # 3 minutes between two PRs
    clock.now += 60
    again = run(hub, mine + daves, path, clock, budgets=budgets)  # a restart the same day: nothing more
    assert again.counts() == {"unchanged": 4, "deferred": 2} and clock.waits == [180.0] * 3
    clock.now += DAY
    later = run(hub, mine + daves, path, clock, budgets=budgets)
    assert [outcomes(later)[r][0] for r in (mine[3], daves[1])] == ["proposed", "proposed"]
    assert [len(bot_threads(alice if r in mine else dave, r)) for r in mine + daves] == [1] * 6


def test_the_spacing_between_prs_survives_a_restart(hub, tmp_path):
    first, second = hub.repo_id(), hub.repo_id("dave")
    publish(hub, [first])
    publish(hub, [second])
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    assert run(hub, [first], path, clock).counts() == {"proposed": 1}
    clock.now += 60
    told = []
    assert run(hub, [second], path, clock, on_wait=told.append).counts() == {"proposed": 1}
    assert clock.waits == [120.0]  # the default 3 minutes, counted from the PR the previous run opened
    assert told == [120.0]  # and the run says so before it waits (the CLI prints until when)


def test_the_cli_says_how_long_it_waits_and_why(capsys):
    from hf_probex.commands.bot import _print_wait

    _print_wait(171.4, 3)
    said = capsys.readouterr().out
    assert said.startswith("waiting 2 min 51 s, until ") and " UTC, before the next proposal (--minutes-between-prs 3" in said


def test_when_the_budget_is_short_the_largest_gain_goes_first(hub, tmp_path):
    names = ("plain", "popular", "liked", "unsure", "trained")
    ids = {name: hub.repo_id() for name in names}
    publish(hub, [ids[n] for n in names if n != "trained"])
    publish(hub, [ids["trained"]], readme="---\nbase_model: acme/vit-root\n---\n# Documented lineage\n")
    for name, count in (("popular", 3), ("unsure", 3), ("trained", 10)):
        for _ in range(count):
            hf_hub_download(ids[name], "config.json", cache_dir=hub.cache, force_download=True)
    hf_raise_for_status(get_session().post(f"{hub.endpoint}/api/models/{ids['liked']}/like",
                                           headers={"authorization": f"Bearer {hub.dave}"}))
    trained_on = FieldSuggestion("trained_on", ["3", "7"], 0.99, "expert acme/expert-vit", "expert", floor=0.9)

    def infer(repo_id: str) -> CardSuggestion:
        field = {ids["unsure"]: base_model(0.92), ids["trained"]: trained_on}.get(repo_id, base_model())
        return CardSuggestion(repo_id, fields={field.name: field})

    clock = FakeClock()
    report = run(hub, [ids[n] for n in names], tmp_path / "bot.sqlite", clock, infer=infer,
                 budgets=Budgets(max_open_per_owner=10, max_new_per_owner_per_day=10, max_new_per_day=3))
    by_name = {name: next(o for o in report.outcomes if o.repo_id == ids[name]) for name in names}
    # base_model (gain 2) before trained_on (1); more downloads, a like (worth 10), more confidence first.
    assert sorted(names, key=lambda n: -by_name[n].priority) == ["liked", "popular", "unsure", "trained", "plain"]
    assert [by_name[n].outcome for n in names] == ["deferred", "proposed", "proposed", "proposed", "deferred"]
    assert {by_name[n].reason for n in ("plain", "trained")} == {"daily-budget"}


# ---- owner-wide opt-out ----------------------------------------------------------------------------------------


def test_an_owner_wide_opt_out_stops_every_proposal_before_any_request_to_their_repos(hub, tmp_path, capsys):
    dave = HfApi(endpoint=hub.endpoint, token=hub.dave)
    card_repo, repos = hub.repo_id("quiet-lab"), [hub.repo_id("quiet-lab") for _ in range(2)]
    publish(hub, repos)
    publish(hub, [card_repo], readme="---\ntags: [hf-probex-opt-out-owner]\n---\n# Not in this run's list\n")
    inferred: list[str] = []

    def infer(repo_id: str) -> CardSuggestion:
        inferred.append(repo_id)
        return infer_base(repo_id)

    def skipped_untouched() -> list[tuple[str, str | None]]:
        proxy = FaultProxy(hub.endpoint, [])
        try:
            report = run(hub, repos, tmp_path / "bot.sqlite", FakeClock(), infer=infer, endpoint=proxy.endpoint)
        finally:
            proxy.close()
        touched = [path for _, path in proxy.requests if any(r.split("/")[1] in path for r in repos)]
        assert touched == [] and inferred == []  # not one request to their repos
        return [(o.outcome, o.reason) for o in report.outcomes]

    assert skipped_untouched() == [("skipped", "opt-out-owner")] * 2  # the tag on one card of theirs
    dave.upload_file(path_or_fileobj=b"---\nhf_probex:\n  opt_out: owner\n---\n# Still no\n", path_in_repo="README.md",
                     repo_id=card_repo)
    assert skipped_untouched() == [("skipped", "opt-out-owner")] * 2  # or the key that names the scope
    dave.upload_file(path_or_fileobj=b"# Changed my mind\n", path_in_repo="README.md", repo_id=card_repo)
    (tmp_path / "refused.txt").write_text("# owners who wrote to us\nquiet-lab/*\n")
    (tmp_path / "repos.txt").write_text("\n".join(repos) + "\n")
    proxy = FaultProxy(hub.endpoint, [])
    try:
        from hf_probex.hub import use_endpoint

        with use_endpoint(proxy.endpoint):
            assert main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--opt-out-list", str(tmp_path / "refused.txt"),
                         "--state", str(tmp_path / "list.sqlite"), "--token", hub.bob, "--infer", "bot_zoo:ground_truth_infer",
                         "--quiet"]) == 0
    finally:
        proxy.close()
    assert [path for _, path in proxy.requests if "quiet-lab" in path] == []  # the operator's list: no request at all
    assert "2 repos in" in capsys.readouterr().out
    with BotState(tmp_path / "list.sqlite") as state:
        assert {r.reason for r in state.records()} == {"opt-out-list"}
    # Nothing opts them out any more: the same run proposes.
    assert run(hub, repos, tmp_path / "bot.sqlite", FakeClock()).counts() == {"proposed": 1, "deferred": 1}


def test_closing_prs_without_merging_any_refuses_the_owner(hub, tmp_path, capsys):
    alice, dave = HfApi(endpoint=hub.endpoint, token=hub.alice), HfApi(endpoint=hub.endpoint, token=hub.dave)
    mine, daves = [hub.repo_id() for _ in range(3)], [hub.repo_id("dave") for _ in range(3)]
    publish(hub, mine)
    publish(hub, daves)
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    budgets = Budgets(max_open_per_owner=2, minutes_between=0)
    first = run(hub, mine + daves, path, clock, budgets=budgets)
    assert [outcomes(first)[r][0] for r in mine + daves] == ["proposed", "proposed", "deferred"] * 2
    for repo_id in mine[:2]:  # alice closes both: a refusal of the bot for all her repos
        alice.change_discussion_status(repo_id, 1, "closed")
    dave.change_discussion_status(daves[0], 1, "closed")  # dave closes one and merges the other: not a refusal
    dave.merge_pull_request(daves[1], 1)
    clock.now += DAY
    second = run(hub, mine + daves, path, clock, budgets=budgets)
    assert outcomes(second)[mine[2]] == ("skipped", "owner-refused") and outcomes(second)[daves[2]] == ("proposed", None)
    assert bot_threads(alice, mine[2]) == []
    assert main(["bot", "status", "--state", str(path)]) == 0
    assert "alice: refused: closed 2 of hf-probex's pull requests and merged none" in capsys.readouterr().out


def test_budget_and_refusal_options_reach_the_run(hub, tmp_path, capsys):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repos = [hub.repo_id() for _ in range(3)]
    publish(hub, repos)
    (tmp_path / "repos.txt").write_text("\n".join(repos) + "\n")
    command = ["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--state", str(tmp_path / "bot.sqlite"), "--token",
               hub.bob, "--infer", "test_bot_etiquette:infer_base", "--quiet", "--minutes-between-prs", "0"]
    assert main([*command, "--max-open-per-owner", "5", "--max-per-owner-per-day", "5", "--max-per-day", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{repos[2]}: waits for budget (daily-budget): base_model" in out and "2 proposed" in out
    alice.change_discussion_status(repos[0], 1, "closed")  # one closed PR is a refusal when the operator says so
    assert main([*command, "--refuse-after-closed", "1", "--max-per-day", "10"]) == 0
    assert "3 repos in" in capsys.readouterr().out and bot_threads(alice, repos[2]) == []
    with BotState(tmp_path / "bot.sqlite") as state:
        assert {r.reason for r in state.records()} == {"owner-refused"}


# ---- digests -----------------------------------------------------------------------------------------------------


def test_a_digest_per_owner_lists_every_proposal_and_an_accept_reply_opens_the_prs(hub, tmp_path):
    alice, dave = HfApi(endpoint=hub.endpoint, token=hub.alice), HfApi(endpoint=hub.endpoint, token=hub.dave)
    lab, mine = [hub.repo_id("tuning-lab") for _ in range(3)], [hub.repo_id() for _ in range(2)]
    publish(hub, lab)
    publish(hub, mine)
    hf_hub_download(lab[1], "config.json", cache_dir=hub.cache)  # the lab's most downloaded model: its digest goes there
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    first = run(hub, lab + mine, path, clock, digest=True)
    assert {o.outcome for o in first.outcomes} == {"digested"} and len(first.digests) == 2
    by_owner = {d.owner: d for d in first.digests}
    assert by_owner["tuning-lab"].repo_id == lab[1] and set(by_owner["tuning-lab"].listed) == set(lab)
    for owner, repos, api in (("tuning-lab", lab, dave), ("alice", mine, alice)):
        digest = by_owner[owner]
        (thread,) = bot_threads(api, digest.repo_id, "discussion")
        assert thread.num == digest.num and thread.title == digest.title and thread.status == "open"
        text = api.get_discussion_details(digest.repo_id, digest.num).events[0].content
        assert text.count("\n#### ") == len(repos) and all(f". {repo_id}\n" in text for repo_id in repos)
        # every proposal with its value, origin, confidence and evidence, and how to answer
        assert "| `base_model` | acme/vit-root | weights routing | 100% | weights: cosine distance 0.011" in text
        assert "/hf-probex accept all" in text and "/hf-probex refuse" in text
    assert all(bot_threads(api, r) == [] for api, rs in ((dave, lab), (alice, mine)) for r in rs)  # no PR yet
    clock.now += 3600
    assert run(hub, lab + mine, path, clock, digest=True).counts() == {"unchanged": 5}  # one digest, not one a run
    # A stranger cannot accept for the lab; its member accepts two; alice refuses hers.
    lab_digest, her_digest = by_owner["tuning-lab"], by_owner["alice"]
    alice.comment_discussion(lab[1], lab_digest.num, "/hf-probex accept all")
    dave.comment_discussion(lab[1], lab_digest.num, f"Thanks! Two of them:\n\n/hf-probex accept {lab[0].split('/')[1]} {lab[2]}\n")
    alice.comment_discussion(her_digest.repo_id, her_digest.num, "> /hf-probex accept all\n\n/hf-probex refuse")
    clock.now += 3600
    third = run(hub, lab + mine, path, clock, digest=True)
    assert [outcomes(third)[r][0] for r in lab] == ["proposed", "unchanged", "proposed"]
    assert {outcomes(third)[r] for r in mine} == {("skipped", "owner-refused")}
    assert [len(bot_threads(dave, r)) for r in lab] == [1, 0, 1] and all(bot_threads(alice, r) == [] for r in mine)
    assert clock.waits == [180.0, 180.0]  # between the two digests, and between the two PRs asked for
    answers = [e for e in dave.get_discussion_details(lab[1], lab_digest.num).events
               if e.type == "comment" and e.author == "bob" and e.content.startswith("Thank you")]
    assert len(answers) == 1 and "opened 2 pull requests" in answers[0].content  # the owner is told where they are
    for repo_id in (lab[0], lab[2]):
        (pr,) = bot_threads(dave, repo_id)
        assert f"- {repo_id}: [pull request #{pr.num}]({hub.endpoint}/{repo_id}/discussions/{pr.num})" in answers[0].content
    clock.now += 3600
    assert run(hub, lab + mine, path, clock, digest=True).counts()["unchanged"] == 3  # asked for once, opened once
    assert len([e for e in dave.get_discussion_details(lab[1], lab_digest.num).events if e.type == "comment"]) == 4


def test_a_digest_is_never_opened_twice(hub, tmp_path):
    """Not after a crash between opening it and recording it, not with the state file lost."""
    dave = HfApi(endpoint=hub.endpoint, token=hub.dave)
    repos = [hub.repo_id("dave") for _ in range(2)]
    publish(hub, repos)
    clock, path = FakeClock(), tmp_path / "bot.sqlite"
    (digest,) = run(hub, repos, path, clock, digest=True).digests
    with sqlite3.connect(path) as db:  # as if killed after the discussion was created, before it was recorded
        db.execute("UPDATE contacts SET status = 'pending', num = NULL")
        db.execute("DELETE FROM repos")
    clock.now += 3600
    resumed = run(hub, repos, path, clock, digest=True)
    assert resumed.digests == [] and resumed.counts() == {"unchanged": 2}
    lost = run(hub, repos, tmp_path / "fresh.sqlite", clock, digest=True)  # the digest on the Hub still counts
    assert lost.digests == [] and {(o.outcome, o.reason) for o in lost.outcomes} == {("deferred", "owner-open-budget")}
    assert len(bot_threads(dave, digest.repo_id, "all")) == 1


def test_dry_run_digest_shows_it_as_it_would_appear(hub, tmp_path, capsys):
    dave = HfApi(endpoint=hub.endpoint, token=hub.dave)
    repos = [hub.repo_id("dave") for _ in range(2)]
    publish(hub, repos)
    (tmp_path / "repos.txt").write_text("\n".join(repos) + "\n")
    assert main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--digest", "--dry-run", "--token", hub.bob,
                 "--infer", "test_bot_etiquette:infer_base", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"would open a digest for dave on {repos[0]}: 2 models" in out
    assert "title: hf-probex: card fields for 2 of dave's models, as pull requests only if you ask" in out
    assert f"#### 2. {repos[1]}" in out and f"<!-- hf-probex-digest repos={repos[0]},{repos[1]} -->" in out
    assert all(bot_threads(dave, r, "all") == [] for r in repos)


def test_reply_commands():
    listed = ["lab/a", "lab/b", "lab/c"]
    assert read_commands(["/hf-probex accept all"], listed).accepted == set(listed)
    assert read_commands(["Nice.\n/HF-PROBEX Accept a, `lab/c` lab/zzz"], listed).accepted == {"lab/a", "lab/c"}
    assert read_commands(["> /hf-probex accept all", "   /hf-probex accept b"], listed).accepted == {"lab/b"}
    # shown, not said: a fenced block (closed, or open to the end), a line indented as code, inline code
    shown = ["What would this do?\n```\n/hf-probex accept all\n```\nI have not decided.", "~~~~md\n/hf-probex refuse\n~~~",
             "```\n/hf-probex accept a", "    /hf-probex accept all", "`/hf-probex accept all`", "\t/hf-probex accept c"]
    assert read_commands(shown, listed) == read_commands([], listed)
    assert read_commands(["```\ncode\n```\n/hf-probex accept c"], listed).accepted == {"lab/c"}  # after the fence
    refused = read_commands(["/hf-probex accept a", "/hf-probex refuse", "/hf-probex accept all"], listed)
    assert refused.refused and refused.accepted == {"lab/a"}  # a refusal is final
    assert read_commands(["please accept all of them"], listed).accepted == set()


# ---- state and command line ----------------------------------------------------------------------------------------


def test_a_state_from_before_the_budgets_is_migrated(tmp_path, capsys):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema of version 0, with a PR, an intent and a skip
        db.execute("CREATE TABLE repos (repo_id TEXT PRIMARY KEY, revision TEXT, outcome TEXT NOT NULL, reason TEXT, "
                   "fields TEXT NOT NULL DEFAULT '[]', pr_num INTEGER, updated_at TEXT NOT NULL)")
        db.executemany("INSERT INTO repos VALUES (?, ?, ?, ?, ?, ?, ?)", [
            ("alice/a", "r1", "proposed", None, '["base_model"]', 3, "2026-11-30T12:00:00+00:00"),
            ("alice/b", "r2", "pending", None, '["base_model"]', None, "2026-11-30T12:05:00+00:00"),
            ("alice/c", "r3", "skipped", "complete", "[]", None, "2026-11-30T12:06:00+00:00")])
    now = 1_796_040_600.0  # 2026-11-30T12:10:00Z
    with BotState(path, clock=lambda: now) as state:
        assert state.get("alice/a").pr_num == 3 and not state.get("alice/a").requested
        assert [(c.repo_id, c.num, c.status) for c in state.contacts()] == [("alice/a", 3, "open"), ("alice/b", None, "pending")]
        assert state.open_count("alice") == 2 and state.new_since(now - DAY) == 2 and state.new_since(now - 300) == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)  # every step, in one transaction
        db.execute("PRAGMA user_version = 7")  # a state written by a newer hf_probex
    assert main(["bot", "status", "--state", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"schema version 7 is newer than this hf_probex's ({SCHEMA_VERSION}): upgrade hf_probex" in err[0]


DAMAGES = {
    "a negative schema version": ("PRAGMA user_version = -1", "schema version -1"),
    "contacts.listed not JSON": ("UPDATE contacts SET listed = 'not json'", "not a JSON list"),
    "a dropped table": ("DROP TABLE owners", "table owners is missing"),
    "text in an integer column": ("UPDATE repos SET pr_num = 'seven'", "in the column pr_num"),
    "a column dropped": ("ALTER TABLE repos DROP COLUMN priority", "table repos has the columns"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_state_is_one_line_naming_the_file(tmp_path, capsys, damage):
    path = tmp_path / "state.sqlite"
    with BotState(path) as state:
        state.put("alice/a", revision="r1", outcome="proposed", fields=["base_model"], pr_num=3)
        state.adopt("alice", "alice/a", "pr", 3, "open")
    statement, said = DAMAGES[damage]
    with sqlite3.connect(path) as db:
        db.execute(statement)
    assert main(["bot", "status", "--state", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and said in err[0], err


def test_budget_options_help_and_bad_values(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["bot", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--digest", "--max-open-per-owner N", "(default: 1)", "--max-per-owner-per-day N", "(default: 3)",
                   "--max-per-day N", "(default: 50)", "--minutes-between-prs M", "(default: 3;",
                   "--refuse-after-closed N", "(default: 2)", "owners none of whose repos to touch (owner/*)"):
        assert option in text, option
    (tmp_path / "bad.txt").write_text("alice/ok\nalice/*\njust-a-name\n")
    runs = [["--max-open-per-owner", "0"], ["--max-per-day", "-1"], ["--minutes-between-prs", "-2"],
            ["--refuse-after-closed", "0"], ["--opt-out-list", str(tmp_path / "bad.txt")]]
    for extra in runs:
        assert main(["bot", "run", "--repos", "x", "--dry-run", *extra]) == 2, extra
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(runs) and all(line.startswith("error: ") for line in err)
    assert "'just-a-name' is neither a repo id (owner/name) nor an owner (owner/* for all their repos)" in err[-1]
