"""The card bot on the tiny zoo behind a local hub: its members by cards and by weights, the share of its pull
requests that add a field a reader gains from (base_model, trained_on), and one pull request as the Hub shows it.

Builds the tiny zoo and its experts (about a minute on 2 cores; or pass folders built before), imports the zoo
into a temporary local hub, then for every tree runs `tree_members` (the cards, plus the tree's organisation
routed by weights) and `run_bot` with the real `infer_card`. Prints the numbers, then the first pull request
opened (title, description, diff). Nothing is left behind but what --zoo / --experts name.

    python scripts/bot_zoo_prs.py [--zoo DIR] [--experts DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="a tiny zoo folder (default: build one in a temporary folder)")
    parser.add_argument("--experts", type=Path, help="its experts' folder (default: train them as the demo does)")
    args = parser.parse_args()

    from huggingface_hub import HfApi

    from hf_probex.bot import BotConfig, BotState, Budgets, HubClient, run_bot
    from hf_probex.demo import demo_experts
    from hf_probex.hub import LocalHub, use_endpoint
    from hf_probex.hub.importer import import_zoo
    from hf_probex.infer import infer_card
    from hf_probex.members import tree_members, weight_router
    from hf_probex.suggestions import INFORMATIVE_FIELDS
    from hf_probex.zoo import Zoo, build_zoo

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zoo = Zoo.open(args.zoo) if args.zoo else build_zoo(tmp / "zoo", "tiny", seed=0, workers=1, progress=False)
        experts = demo_experts(zoo, args.experts or tmp / "experts", progress=lambda line: None)
        (tmp / "users.yaml").write_text("users:\n  probex-bot: {tokens: [hf_bot]}\n")
        with LocalHub(tmp / "root", users_file=tmp / "users.yaml") as hub, use_endpoint(hub.endpoint):
            import_zoo(zoo.root, hub.root)
            client = HubClient(HfApi(token="hf_bot"))
            prs, found_by = [], Counter()
            with BotState(tmp / "bot.sqlite") as state:
                for tree in zoo.trees.values():
                    members = tree_members(client, tree["root_repo_id"], authors=[tree["org"]],
                                           router=weight_router(experts))
                    found_by.update(m.found_by for m in members)
                    report = run_bot([m.repo_id for m in members], client, state=state,
                                     config=BotConfig(budgets=Budgets.unlimited()),  # every member's PR, to show them
                                     infer=lambda repo_id: infer_card(repo_id, token="hf_bot", experts=experts))
                    prs += [o for o in report.outcomes if o.outcome == "proposed"]
                    print(f"{tree['root_repo_id']}: {len(members)} members ({sum(m.found_by == 'card' for m in members)} "
                          f"by cards, {sum(m.found_by == 'weights' for m in members)} by weights); "
                          f"{dict(sorted(report.counts().items()))}; skipped: "
                          f"{dict(Counter(o.reason for o in report.outcomes if o.outcome == 'skipped'))}")
            informative = [o for o in prs if INFORMATIVE_FIELDS & set(o.fields)]
            print(f"\nmembers: {found_by['card']} by cards, {found_by['weights']} by weights")
            print(f"pull requests: {len(prs)}, adding base_model or trained_on: {len(informative)}")
            print("fields per pull request:", dict(Counter(", ".join(o.fields) for o in prs)))
            if prs:  # one that adds a base_model, found by weights where there is one: the new paths
                first = next((o for o in prs if "base_model" in o.fields), prs[0])
                details = client.api.get_discussion_details(first.repo_id, first.pr_num)
                print(f"\n# {first.repo_id}, pull request #{first.pr_num}\n\n## title\n\n{details.title}\n\n"
                      f"## description\n\n{details.events[0].content}\n## diff\n\n{details.diff}")


if __name__ == "__main__":
    main()
