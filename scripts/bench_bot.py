"""Measure the card bot against the local hub: repos processed per minute, and duplicates after a rerun.

Creates N small real repos (tests/bot_zoo.py: a safetensors file with ground truth, config.json, a
partial card) on a temporary local hub, runs the bot over them as another user with the ground-truth
oracle as its inference (so the numbers measure the bot and the Hub calls, not an expert), then reruns
it with a fresh state and counts new pull requests (must be 0). Nothing is left behind.

    python scripts/bench_bot.py [--repos 40] [--workers 1 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=40, help="repos per measured run (default: 40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="repos at once, values to measure (default: 1 4)")
    args = parser.parse_args()

    from bot_zoo import child_card, ground_truth_infer, make_repo
    from huggingface_hub import HfApi

    from hf_probex.bot import BotConfig, BotState, Budgets, HubClient, run_bot
    from hf_probex.hub import LocalHub, use_endpoint

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "users.yaml").write_text("users:\n  owner: {tokens: [hf_owner]}\n  bot: {tokens: [hf_bot]}\n")
        with LocalHub(tmp / "root", users_file=tmp / "users.yaml") as hub, use_endpoint(hub.endpoint):
            owner = HfApi(token="hf_owner")
            for concurrency in args.workers:
                repos = [f"owner/c{concurrency}-m{i:04d}" for i in range(args.repos)]
                for repo_id in repos:
                    make_repo(owner, repo_id, readme=child_card("owner/root"), base_model="owner/root")

                def run(state_name: str):
                    client = HubClient(HfApi(token="hf_bot"))
                    with BotState(tmp / state_name) as state:
                        return run_bot(repos, client, infer=ground_truth_infer, state=state,
                                       config=BotConfig(concurrency=concurrency, budgets=Budgets.unlimited()))

                first = run(f"c{concurrency}.sqlite")
                rerun = run(f"c{concurrency}-fresh.sqlite")  # state lost: only the Hub's PRs prevent duplicates
                prs = sum(len(list(owner.get_repo_discussions(r, author="bot", discussion_type="pull_request")))
                          for r in repos)
                results[f"concurrency {concurrency}"] = {
                    "repos": len(repos), "proposed": first.counts()["proposed"],
                    "repos_per_minute": round(60 * len(repos) / first.seconds, 1),
                    "rerun_repos_per_minute": round(60 * len(repos) / rerun.seconds, 1),
                    "new_prs_on_rerun": rerun.counts().get("proposed", 0), "prs_on_hub": prs,
                }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
