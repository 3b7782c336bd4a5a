"""The card bot against the local hub, through the real huggingface_hub client.

The bot acts as bob on alice's repos (anyone who can see a repo may open a PR on it, as on the Hub).
Inference is `bot_zoo.ground_truth_infer`, which reads the ground truth the test repos carry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from bot_zoo import child_card, ground_truth_infer, make_repo
from hub_proxy import FaultProxy
from hf_probex.hub.storage import Put, Storage
from hf_probex.reading import MAX_SMALL_FILE_BYTES
from hf_probex.bot import BotConfig, BotState, BotStopped, Budgets, HubClient, run_bot, walk_tree
from hf_probex.cards import INFERRED_END, INFERRED_START, apply_suggestions, metadata_of
from hf_probex.cli import main

TESTS = Path(__file__).resolve().parent


# ---- helpers ----------------------------------------------------------------------------------------------


def bot_client(endpoint: str, token: str, **kwargs) -> HubClient:
    return HubClient(HfApi(endpoint=endpoint, token=token), **kwargs)


def free(**kwargs) -> BotConfig:
    """A run without budgets: these tests are about each repo's proposal (the budgets: tests/test_bot_etiquette.py)."""
    return BotConfig(budgets=Budgets.unlimited(), **kwargs)


#: The same on the command line.
FREE = ["--max-open-per-owner", "1000", "--max-per-owner-per-day", "1000", "--max-per-day", "1000",
        "--minutes-between-prs", "0"]


def bot_prs(api: HfApi, repo_id: str) -> list:
    return list(api.get_repo_discussions(repo_id, author="bob", discussion_type="pull_request", discussion_status="all"))


def readme_at(api: HfApi, repo_id: str, revision: str) -> bytes:
    return Path(api.hf_hub_download(repo_id, "README.md", revision=revision)).read_bytes()


def expected_readme(repo_id: str, readme: str) -> str:
    """What the bot should propose: what the oracle's suggestion lets a pull request carry, applied to the card."""
    fields = ground_truth_infer(repo_id).pull_request_fields
    return apply_suggestions(readme, fields, title=repo_id.split("/")[-1])


@pytest.fixture
def tree(hub):
    """root <- (complete, partial <- grandchild, bare) and a sibling reachable only by id (no base_model)."""
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    ids = {name: hub.repo_id() for name in ("root", "complete", "partial", "grandchild", "bare", "nobase")}
    cards = {
        "root": "---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# Root\n",
        "complete": child_card(ids["root"], extra="library_name: transformers\npipeline_tag: image-classification\n"
                                                  "base_model_relation: finetune\ntags: [trained-on:1]\n"),
        "partial": child_card(ids["root"]),
        "grandchild": child_card(ids["partial"], extra="pipeline_tag: image-classification\n"),
        "bare": None,  # no README: the card is missing; only --repos or a later base_model reaches it
        "nobase": child_card(None),
    }
    parents = {"complete": "root", "partial": "root", "grandchild": "partial", "bare": "root", "nobase": "root"}
    for name, card in cards.items():
        make_repo(alice, ids[name], readme=card, base_model=ids.get(parents.get(name, ""), None))
    return ids, cards, alice


# ---- walking and proposing ---------------------------------------------------------------------------------


def test_walk_tree_finds_children_of_children(hub, tree):
    ids, _, _ = tree
    found = walk_tree(bot_client(hub.endpoint, hub.bob), ids["root"])
    # By the card's base_model (not "bare" and "nobase", whose cards lack it), breadth first.
    assert set(found[:2]) == {ids["complete"], ids["partial"]} and found[2:] == [ids["grandchild"]]


def test_prs_have_exactly_the_expected_readme_and_rerun_adds_none(hub, tree, tmp_path):
    ids, cards, alice = tree
    repos = [ids[n] for n in ("complete", "partial", "grandchild", "bare", "nobase")]
    heads = {r: alice.model_info(r).sha for r in repos}
    with BotState(tmp_path / "bot.sqlite") as state:
        report = run_bot(repos, bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free())
    by_repo = {o.repo_id: o for o in report.outcomes}
    assert by_repo[ids["complete"]].outcome == "skipped" and by_repo[ids["complete"]].reason == "complete"
    for name in ("partial", "grandchild", "bare", "nobase"):
        repo_id, outcome = ids[name], by_repo[ids[name]]
        assert outcome.outcome == "proposed", outcome
        (pr,) = bot_prs(alice, repo_id)
        assert pr.num == outcome.pr_num and pr.status == "open"
        want = expected_readme(repo_id, cards[name] or "")
        assert readme_at(alice, repo_id, f"refs/pr/{pr.num}") == want.encode()
        assert alice.model_info(repo_id).sha == heads[repo_id]  # nothing on main
        details = alice.get_discussion_details(repo_id, pr.num)
        assert details.diff.count("diff --git") == 1 and "README.md" in details.diff  # README.md only
        description = details.events[0].content
        assert "confidence" in description and "hf-probex-opt-out" in description and "Close this pull request" in description
        assert f"revision={heads[repo_id]}" in description and pr.title.startswith("hf-probex: add ")
    assert "trained_on" in by_repo[ids["partial"]].fields and "base_model" in by_repo[ids["nobase"]].fields
    # A rerun with the state: nothing redone. Without it (lost cache): the Hub's PRs prevent duplicates.
    with BotState(tmp_path / "bot.sqlite") as state:
        again = run_bot(repos, bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free())
    assert {o.outcome for o in again.outcomes} == {"unchanged"}
    alice.change_discussion_status(ids["partial"], by_repo[ids["partial"]].pr_num, "closed")  # the owner refuses
    with BotState(tmp_path / "fresh.sqlite") as state:
        fresh = run_bot(repos, bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free())
    assert {o.outcome for o in fresh.outcomes} == {"skipped"}
    assert {o.reason for o in fresh.outcomes if o.repo_id != ids["complete"]} == {"already-proposed"}
    assert all(len(bot_prs(alice, r)) == (r != ids["complete"]) for r in repos)


def test_malformed_metadata_stays_byte_identical_apart_from_added_keys(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repo_id = hub.repo_id()
    readme = ("---\r\n# owner's notes\r\nlicense:    mit   # sic\r\ntags:\r\n  - digits\r\nmodel-index:\r\n"
              "- name: x\r\n  results: [{bogus: true}]\r\n---\r\n# Card\r\n\r\nWritten by hand.\r\n").encode()
    make_repo(alice, repo_id, readme=readme, base_model="acme/root")
    with BotState(tmp_path / "bot.sqlite") as state:
        (outcome,) = run_bot([repo_id], bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free()).outcomes
    proposed = readme_at(alice, repo_id, f"refs/pr/{outcome.pr_num}").decode()
    assert proposed == expected_readme(repo_id, readme.decode())
    old_lines, new_lines = readme.decode().splitlines(keepends=True), proposed.splitlines(keepends=True)
    ops = SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes()
    assert {op[0] for op in ops} == {"equal", "insert"}  # not one byte of the owner's lines changed
    inserted = [line for op, _, _, j1, j2 in ops if op == "insert" for line in new_lines[j1:j2]]
    assert inserted[:6] == ["  - trained-on:3\r\n", "  - trained-on:7\r\n", "base_model: acme/root\r\n",
                            "library_name: transformers\r\n", "pipeline_tag: image-classification\r\n", "\r\n"]
    assert inserted[6] == INFERRED_START + "\r\n" and inserted[-1] == INFERRED_END + "\r\n"
    assert metadata_of(proposed)["model-index"] == [{"name": "x", "results": [{"bogus": True}]}]


@pytest.mark.timeout(120)
def test_hostile_cards_get_no_pull_request(hub, tmp_path):
    """An alias bomb is an unreadable card, skipped in milliseconds; a card whose front matter holds our
    start marker (the end one in its body) is skipped too, where the old merge replaced its front matter."""
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    bomb, quoted = hub.repo_id(), hub.repo_id()
    names = "abcdefgh"
    bomb_card = ("---\na: &a [l,l,l,l,l,l,l,l,l]\n" + "".join(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n"
                                                             for prev, name in zip(names, names[1:]))
                 + "tags: *h\n---\n# m\n")
    make_repo(alice, bomb, readme=None, base_model="acme/root")
    storage = Storage(hub.root)  # the hub refuses the bomb at commit: write it as an older hub could have kept it
    with storage.lock(bomb):
        storage.commit_operations(bomb, "refs/heads/main", [Put("README.md", storage.put_blob(bomb_card.encode()))],
                                  summary="card", description="", author="alice")
    make_repo(alice, quoted, readme=f"---\nlicense: apache-2.0\n# {INFERRED_START}\n---\n# Card\n\nText.\n{INFERRED_END}\n",
              base_model="acme/root")
    huge = hub.repo_id()  # larger than any card: refused by its listed size, never downloaded
    make_repo(alice, huge, readme=b"# big\n" + b"x" * MAX_SMALL_FILE_BYTES, base_model="acme/root")
    with BotState(tmp_path / "bot.sqlite") as state:
        report = run_bot([bomb, quoted, huge], bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free())
    assert [(o.outcome, o.reason) for o in report.outcomes] == [("skipped", "invalid-card"), ("skipped", "unsafe-edit"),
                                                                ("skipped", "invalid-card")]
    assert bot_prs(alice, bomb) == [] and bot_prs(alice, quoted) == [] and bot_prs(alice, huge) == []


def test_below_threshold_and_derivable_only_are_not_proposed(hub, tmp_path):
    """A value below its floor never goes into a PR, whatever --min-confidence says; the fields left (config.json's
    library and task) are derivable: no PR for them alone. A PR with one informative field carries them too."""
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    unsure, partly, derivable, informative = (hub.repo_id() for _ in range(4))
    make_repo(alice, unsure, readme=child_card("a/b", extra="library_name: transformers\npipeline_tag: image-classification\n"
                                               "base_model_relation: finetune\n"), confidence=0.5)
    make_repo(alice, partly, readme=child_card("a/b"), confidence=0.5)
    make_repo(alice, derivable, readme=child_card("a/b", extra="tags: [trained-on:3]\n"))
    make_repo(alice, informative, readme=child_card("a/b"))
    repos = [unsure, partly, derivable, informative]
    with BotState(tmp_path / "bot.sqlite") as state:
        report = run_bot(repos, bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state,
                         config=free(min_confidence=0.0))
    assert [(o.outcome, o.reason) for o in report.outcomes] == [
        ("skipped", "below-threshold"), ("skipped", "below-threshold"), ("skipped", "derivable-only"), ("proposed", None)]
    assert [len(bot_prs(alice, r)) for r in repos] == [0, 0, 0, 1]
    assert report.outcomes[-1].fields == ["library_name", "pipeline_tag", "trained_on"]


def test_opt_out_by_tag_key_and_list(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    by_tag, by_key, by_list = hub.repo_id(), hub.repo_id(), hub.repo_id()
    make_repo(alice, by_tag, readme=child_card(None, extra="tags: [hf-probex-opt-out]\n"))
    make_repo(alice, by_key, readme=child_card(None, extra="hf_probex:\n  opt_out: true\n"))
    make_repo(alice, by_list, readme=None)
    (tmp_path / "opt-out.txt").write_text(f"# owners who asked\n{by_list}\n")
    (tmp_path / "repos.txt").write_text(f"{by_tag}\n{by_key}\n{by_list}\n")
    code = main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--opt-out-list", str(tmp_path / "opt-out.txt"),
                 "--state", str(tmp_path / "bot.sqlite"), "--token", hub.bob, "--infer", "bot_zoo:ground_truth_infer",
                 "--quiet"])
    assert code == 0
    assert all(bot_prs(alice, r) == [] for r in (by_tag, by_key, by_list))
    with BotState(tmp_path / "bot.sqlite") as state:
        assert {r.repo_id: r.reason for r in state.records()} == {by_tag: "opt-out-card", by_key: "opt-out-card",
                                                                   by_list: "opt-out-list"}


def test_a_listed_repo_outside_the_tree_gets_no_proposal(hub, tree, tmp_path):
    """A tree table (anyone's writing) or a repos file may list models of other trees: with --tree, the bot proposes
    only for those routed into it."""
    ids, _, alice = tree
    stranger = hub.repo_id()
    make_repo(alice, stranger, readme=child_card(None))  # a root of its own, missing the same fields
    with BotState(tmp_path / "bot.sqlite") as state:
        report = run_bot([ids["partial"], stranger], bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer,
                         state=state, config=free(tree=ids["root"]))
    assert [(o.outcome, o.reason) for o in report.outcomes] == [("proposed", None), ("skipped", "not-in-tree")]
    assert bot_prs(alice, stranger) == [] and len(bot_prs(alice, ids["partial"])) == 1


def test_dry_run_writes_nothing(hub, tree, tmp_path, capsys):
    ids, _, alice = tree
    state = tmp_path / "bot.sqlite"
    code = main(["bot", "run", "--tree", ids["root"], "--dry-run", "--state", str(state), "--token", hub.bob,
                 "--infer", "bot_zoo:ground_truth_infer", "--quiet", *FREE])
    out = capsys.readouterr().out
    assert code == 0 and not state.exists()
    assert f"{ids['partial']}: would propose" in out and "+pipeline_tag: image-classification" in out
    assert all(bot_prs(alice, r) == [] for r in ids.values())
    assert all(len(list(alice.list_repo_commits(r))) == 2 for r in ids.values())
    assert main(["bot", "run", "--tree", ids["root"], "--dry-run", "--limit", "1", "--token", hub.bob,
                 "--infer", "bot_zoo:ground_truth_infer", "--quiet"]) == 0
    assert "\n1 repos in " in capsys.readouterr().out


def test_title_and_description_say_where_each_value_comes_from():
    from hf_probex.bot import pr_description, pr_title
    from hf_probex.suggestions import FieldSuggestion

    declared = FieldSuggestion("base_model", "acme/root", 1.0, "adapter_config.json base_model_name_or_path", "lineage")
    library = FieldSuggestion("library_name", "peft", 1.0, "adapter_config.json")
    expert = FieldSuggestion("trained_on", "corgi", 0.97, "expert acme/expert-sd (mvprobe)", "expert", floor=0.8)
    assert pr_title([declared, library]) == ("hf-probex: add base_model, library_name to the model card, from declared "
                                             "lineage and the model's files")
    assert pr_title([declared, expert]).endswith("from declared lineage and an expert")
    files_only = pr_description([declared, library], "abc", "+x\n")
    assert "hf-probex read this model's files,\n" in files_only and 'section "Read from the model\'s files"' in files_only
    assert "| `base_model` | acme/root | declared lineage | 100% |" in files_only
    assert 'section "Inferred from weights"' in pr_description([declared, expert], "abc", "+x\n")


# ---- crashes and resumes ----------------------------------------------------------------------------------


def test_pending_intent_is_reconciled_with_the_hub(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repo_id = hub.repo_id()
    make_repo(alice, repo_id, readme=child_card(None))
    with BotState(tmp_path / "bot.sqlite") as state:
        (first,) = run_bot([repo_id], bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free()).outcomes
        # As if the process died after opening the PR and before recording it.
        state.reserve_pr(repo_id, revision=first.revision, fields=first.fields)
        (again,) = run_bot([repo_id], bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free()).outcomes
        assert (again.outcome, again.reason, again.pr_num) == ("proposed", "reconciled", first.pr_num)
        assert state.get(repo_id).outcome == "proposed"
        assert [(c.num, c.status) for c in state.contacts()] == [(first.pr_num, "open")]  # counted once by the budgets
    assert len(bot_prs(alice, repo_id)) == 1


def test_kill_9_in_the_middle_then_resume_gives_one_pr_per_repo(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repos = [hub.repo_id() for _ in range(4)]
    for repo_id in repos:
        make_repo(alice, repo_id, readme=child_card(None))
    (tmp_path / "repos.txt").write_text("\n".join(repos) + "\n")
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_TOKEN": hub.bob,
           "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "hf_probex.cli", "bot", "run", "--repos", str(tmp_path / "repos.txt"),
               "--state", str(tmp_path / "bot.sqlite"), "--infer", "bot_zoo:ground_truth_infer", "--workers", "1",
               "--quiet"]
    budgets = ["--max-open-per-owner", "10", "--max-per-owner-per-day", "10"]
    process = subprocess.Popen([*command, *budgets, "--minutes-between-prs", "0.05"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # 3 s between PRs: the kill lands between two
    deadline = time.monotonic() + 60
    while not bot_prs(alice, repos[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    opened = sum(len(bot_prs(alice, r)) for r in repos)
    assert 1 <= opened < len(repos), "the kill should land after the first PR and before the last"
    done = subprocess.run([*command, *budgets, "--minutes-between-prs", "0"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert [len(bot_prs(alice, r)) for r in repos] == [1] * len(repos)
    with BotState(tmp_path / "bot.sqlite") as state:
        assert {r.outcome for r in state.records()} == {"proposed"}
        assert sorted(r.pr_num for r in state.records()) == [1] * len(repos)


# ---- manners: 429 / 5xx, 401 / 403 ------------------------------------------------------------------------


def test_429_and_5xx_are_retried_without_duplicates(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repo_id = hub.repo_id()
    make_repo(alice, repo_id, readme=child_card(None))
    proxy = FaultProxy(hub.endpoint, [
        ("GET", "/discussions", 429, "1", False),   # rate limited: wait what Retry-After says
        ("POST", "/commit/", 429, "0", False),     # refused: retried
        ("POST", "/commit/", 503, None, True),     # done, then a 503: the retry must find the PR, not open a second
    ])
    try:
        client = bot_client(proxy.endpoint, hub.bob, max_wait_s=5)
        started = time.monotonic()
        with BotState(tmp_path / "bot.sqlite") as state:
            (outcome,) = run_bot([repo_id], client, infer=ground_truth_infer, state=state, config=free()).outcomes
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert [status for _, _, status in proxy.injected] == [429, 429, 503]
    assert outcome.outcome == "proposed" and client.retries == 2 and elapsed >= 1.0  # the 503 needed no wait
    assert [p.num for p in bot_prs(alice, repo_id)] == [outcome.pr_num]


def test_retries_are_bounded(hub):
    repo_id = hub.repo_id()
    make_repo(HfApi(endpoint=hub.endpoint, token=hub.alice), repo_id, readme=None)
    proxy = FaultProxy(hub.endpoint, [("GET", f"/api/models/{repo_id}", 502, "0", False)] * 3)
    waits: list[float] = []
    try:
        client = bot_client(proxy.endpoint, hub.bob, max_retries=2, sleep=waits.append)
        (outcome,) = run_bot([repo_id], client, infer=ground_truth_infer, config=BotConfig(dry_run=True)).outcomes
    finally:
        proxy.close()
    assert outcome.outcome == "error" and "502" in outcome.reason and waits == [0.0, 0.0]


def test_401_stops_with_one_clear_message(hub, tmp_path, capsys):
    (tmp_path / "repos.txt").write_text("alice/anything\n")
    code = main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--state", str(tmp_path / "bot.sqlite"),
                 "--token", "hf_not_a_real_token", "--infer", "bot_zoo:ground_truth_infer", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: the Hub answered 401 (unauthorized)") and "hf_not_a_real_token" not in err[0]


def test_403_stops_the_run_and_a_resume_finishes_it(hub, tmp_path):
    alice = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repos = [hub.repo_id() for _ in range(3)]
    for repo_id in repos:
        make_repo(alice, repo_id, readme=child_card(None))
    with BotState(tmp_path / "bot.sqlite") as state:
        with pytest.raises(BotStopped, match="403"):  # carol's token is read-only: PRs are refused
            run_bot(repos, bot_client(hub.endpoint, hub.carol), infer=ground_truth_infer, state=state,
                    config=free(concurrency=1))
        assert [r.outcome for r in state.records()] == ["pending"]
        report = run_bot(repos, bot_client(hub.endpoint, hub.bob), infer=ground_truth_infer, state=state, config=free())
    assert [o.outcome for o in report.outcomes] == ["proposed"] * 3
    assert [len(bot_prs(alice, r)) for r in repos] == [1, 1, 1]


# ---- the command line -------------------------------------------------------------------------------------


def test_bot_status(hub, tree, tmp_path, capsys):
    ids, _, _ = tree
    state = tmp_path / "bot.sqlite"
    (tmp_path / "repos.txt").write_text("\n".join([ids["complete"], ids["partial"], "alice/does-not-exist"]) + "\n")
    assert main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--state", str(state), "--token", hub.bob,
                 "--infer", "bot_zoo:ground_truth_infer", "--quiet"]) == 0
    run_out = capsys.readouterr().out
    assert f"{ids['partial']}: opened PR #1" in run_out and "3 repos in" in run_out
    assert main(["bot", "status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "repos scanned: 3" in out and "proposed: 1" in out and f"{ids['partial']} #1" in out
    assert "complete: 1" in out and "errors: 1" in out and "alice/does-not-exist: RepositoryNotFoundError" in out
    assert main(["bot", "status", "--state", str(state), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outcomes"] == {"proposed": 1, "skipped": 1, "error": 1}
    assert main(["bot", "status", "--state", str(tmp_path / "none.sqlite")]) == 2
    BotState(tmp_path / "fresh.sqlite").close()  # a state that has proposed nothing yet
    assert main(["bot", "status", "--state", str(tmp_path / "fresh.sqlite")]) == 0
    assert "proposals in the last 24 h: 0 (none opened yet)" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["bot"], ["bot", "run"], ["bot", "status"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0 and "usage: hf-probex bot" in capsys.readouterr().out


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert main(["bot", "run", "--repos", str(tmp_path / "missing.txt"), "--dry-run"]) == 2
    assert main(["bot", "run", "--repos", "x", "--infer", "no_such_module:f"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    with pytest.raises(SystemExit) as exit_info:  # refused by the parser, with run's usage
        main(["bot", "run", "--repos", "x", "--min-confidence", "2"])
    assert exit_info.value.code == 2 and "--min-confidence: 2 is not between 0 and 1" in capsys.readouterr().err


def test_no_token_is_one_error_line_not_a_traceback(hub, tmp_path):
    """The installed `hf-probex`, as a user runs it: no HF_TOKEN, no stored login."""
    (tmp_path / "repos.txt").write_text("alice/anything\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))
    done = subprocess.run([str(Path(sys.executable).parent / "hf-probex"), "bot", "run", "--repos",
                           str(tmp_path / "repos.txt"), "--state", str(tmp_path / "bot.sqlite"), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "error: no Hub token: pass --token, set HF_TOKEN, or log in with `hf auth login`"]


def test_an_unreachable_hub_is_one_error_line(tmp_path, capsys):
    from hf_probex.hub import use_endpoint

    (tmp_path / "repos.txt").write_text("alice/anything\n")
    with use_endpoint("http://127.0.0.1:9"):  # nothing listens on the discard port
        code = main(["bot", "run", "--repos", str(tmp_path / "repos.txt"), "--state", str(tmp_path / "bot.sqlite"),
                     "--token", "hf_x", "--max-retries", "0", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot reach the Hub at http://127.0.0.1:9")


def test_bot_errors_are_one_line_and_exit_2(hub, tmp_path, capsys):
    """A misspelt root is not an empty tree; members options need a tree; a state that is not one is refused."""
    runs = [
        ["bot", "run", "--tree", "nobody/nothing", "--dry-run", "--token", hub.bob, "--quiet"],
        ["bot", "run", "--tree", "nobody/nothing", "--state", str(tmp_path / "bot.sqlite"), "--token", hub.bob],
        ["bot", "run", "--repos", "x", "--author", "alice", "--dry-run"],
        ["bot", "run", "--repos", "x", "--state", str(tmp_path), "--token", hub.bob],  # a folder, not a database
        ["bot", "run", "--tree", "alice/root", "--table", "alice/no-table", "--dry-run", "--token", hub.bob, "--quiet"],
        ["bot", "run", "--tree", "alice/root", "--table", "alice/no-table", "--walk", "--dry-run"],
    ]
    (tmp_path / "not-a-db.sqlite").write_text("hello\n" * 200)
    for argv in runs:
        assert main(argv) == 2, argv
    assert main(["bot", "status", "--state", str(tmp_path / "not-a-db.sqlite")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7 and all(line.startswith("error: ") for line in err)
    assert "the tree root nobody/nothing was not found" in err[0] and "check the repo id" in err[1]
    assert "--author, --search, --table and --walk look for members of a tree" in err[2]
    assert err[3].startswith(f"error: cannot open the bot state {tmp_path}")
    assert "alice/no-table: no tree table on" in err[4] and "hf-probex scan alice/root --to alice/no-table" in err[4]
    assert "--table takes the members from a tree table" in err[5] and "not-a-db.sqlite" in err[6]
