"""Measure infer_card on a zoo's test split: precision / recall of proposed fields, routing, bytes, latency.

Experts are trained (or reused from --experts) on the train and val splits of every tree with
`hf-probex train`'s defaults (ridge on stacked layers for class subsets, MVProbe for LoRA concepts,
calibrated out of fold); the layer choice sees those splits too, so the expert's metrics on the test
split are reported on models nothing was selected on. Then, for every finished test-split child:

- its folder as the zoo wrote it (cards of every style): every field the card lacks that infer_card
  proposes is checked against the zoo's truth; `trained_on` counts each proposed class (or concept)
  as one decision; recall = right proposals / fields the cards lack (each missing class counts);
- its bare weights file (no config, no card) for the discriminative trees: the tree it routes to;
- test repos uploaded to a local Hub: bytes read against the repo size; then the card bot over them
  with the same experts: the share of values its pull requests add that are right, repos per minute,
  and new pull requests after a rerun with a fresh state (must be 0);
- warm latency of infer_card on a local folder (experts cached in memory).

    python scripts/bench_infer.py ZOO --experts DIR [--trees vit,vit-twin,resnet,sd] [--limit N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from hf_probex.text import DEFAULT_TEXT_ENCODER

TRAIN_SPLITS = ("train", "val")  # what layer selection, training and calibration see; the test split is reported


def train_experts(zoo_dir: Path, out: Path, trees: list[str], select: Path | None) -> None:
    from hf_probex.experts.training.harness import DEFAULT_METHODS, load_layer_data, train_expert, tree_task
    from hf_probex.experts.training.sweep import select_inputs

    for tree in trees:
        folder = out / tree
        if (folder / "config.json").is_file():
            continue
        start = time.perf_counter()
        method = DEFAULT_METHODS[tree_task(zoo_dir, tree)]
        layers = select_inputs(zoo_dir, tree, method, select or out / f"{tree}.select.jsonl", splits=TRAIN_SPLITS,
                               workers=2)
        data = load_layer_data(zoo_dir, tree, layers, splits=TRAIN_SPLITS)
        expert, report = train_expert(data, method, folds=5)
        expert.save_pretrained(folder)
        c = expert.calibration or {}
        print(f"{tree}: {method} on {data.layer}, {len(data.y)} models, {time.perf_counter() - start:.0f} s; CV "
              + ", ".join(f"{k} {v['mean']:.1f}" for k, v in report["metrics"].items())
              + f"; threshold {c.get('threshold', float('nan')):.2f} (oof precision {c.get('oof_precision', 0):.3f}, "
                f"recall {c.get('oof_recall', 0):.3f})", flush=True)


def test_split_metrics(zoo_dir: Path, tree: str, expert_dir: Path, split: str) -> dict[str, float]:
    """The expert's metrics on the models of `split` (and `split`_holdout for concepts): layers selected and
    the expert trained on TRAIN_SPLITS only, so these numbers are reported on models nothing was chosen on."""
    import numpy as np

    from hf_probex.experts.training.harness import evaluate, load_layer_data
    from hf_probex.experts.hub import Expert

    expert = Expert.from_pretrained(expert_dir)
    layers = [name for name, _ in expert.config["inputs"]]
    data = load_layer_data(zoo_dir, tree, layers if len(layers) > 1 else layers[0], splits=(split, f"{split}_holdout"),
                           text_encoder=expert.config["text_encoder"] or DEFAULT_TEXT_ENCODER, prompt=expert.config["prompt"])
    if data.task == "zeroshot":  # rank among the expert's own concepts, as in cross-validation
        data.y = np.array([expert.vocabulary.index(data.vocabulary[i]) for i in data.y])
    return evaluate([expert], [data], np.arange(len(data.y)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("--experts", required=True, help="folder of the experts (trained there if missing)")
    parser.add_argument("--trees", default=None, help="comma-separated (default: every tree)")
    parser.add_argument("--split", default="test", help="the split to measure on (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many test models per tree")
    parser.add_argument("--hub-models", type=int, default=20, help="test repos per tree on the local Hub (default: 20)")
    parser.add_argument("--select", help="JSON-lines file of layer-selection runs to reuse or extend "
                                         "(default: one per tree in the experts folder)")
    args = parser.parse_args()

    from hf_probex import infer_card
    from hf_probex.cards import missing_fields
    from hf_probex.demo import truth_of
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.zoo import Zoo

    zoo = Zoo.open(args.zoo)
    trees = args.trees.split(",") if args.trees else list(zoo.trees)
    out = Path(args.experts)
    train_experts(zoo.root, out, trees, Path(args.select) if args.select else None)
    registry = ExpertRegistry.from_locations(out / t for t in trees)
    print(f"\n| tree | expert metrics on the {args.split} split (layers selected and expert trained on "
          f"{' + '.join(TRAIN_SPLITS)}) |\n|---|---|")
    for tree in trees:
        metrics = test_split_metrics(zoo.root, tree, out / tree, args.split)
        print(f"| {tree} | " + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()) + " |")

    per_field: dict[str, list[int]] = {}  # field -> [proposed, right, missing]
    by_source: dict[tuple[str, str], list[int]] = {}  # (field, evidence source) -> [proposed, right]
    routing: dict[str, list[int]] = {}  # tree -> [right, total]
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        for tree in trees:
            tests = [s for s in zoo.specs(tree) if s.role == "child" and s.split == args.split and zoo.is_finished(s)]
            for spec in tests[: args.limit]:
                folder = zoo.model_dir(tree, spec.name)
                truth = truth_of(zoo, spec)
                start = time.perf_counter()
                result = infer_card(folder, experts=registry)
                latencies.append(time.perf_counter() - start)
                readme = folder / "README.md"
                lacking = missing_fields(readme.read_text() if readme.is_file() else "")
                for name in lacking & set(truth):
                    counts = per_field.setdefault(name, [0, 0, 0])
                    true = truth[name]
                    counts[2] += len(true) if isinstance(true, list) else 1
                    field = result.proposed.get(name)
                    if field is None:
                        continue
                    values = field.value if isinstance(field.value, list) else [field.value]
                    hits = sum(v in true if isinstance(true, list) else v == true for v in values)
                    counts[0] += len(values)
                    counts[1] += hits
                    source = by_source.setdefault((name, field.source), [0, 0])
                    source[0] += len(values)
                    source[1] += hits
                if zoo.trees[tree]["family"] != "sd-lora":
                    bare = Path(scratch) / f"{tree}-{spec.name}.safetensors"
                    shutil.copy(folder / "model.safetensors", bare)
                    routed = infer_card(bare, experts=registry).tree
                    hits = routing.setdefault(tree, [0, 0])
                    hits[0] += routed == zoo.trees[tree]["root_repo_id"]
                    hits[1] += 1
            print(f"done {tree}: {len(tests[: args.limit])} test models", flush=True)
        hub_rows, bot_lines = hub_bytes(zoo, trees, registry, Path(scratch), args.hub_models, args.split)

    folder = zoo.model_dir(trees[0], next(s.name for s in zoo.specs(trees[0]) if s.role == "child"))
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        infer_card(folder, experts=registry)
        timings.append((time.perf_counter() - start) * 1000)

    print("\n| field | proposed | right | precision | missing in cards | recall |\n|---|---|---|---|---|---|")
    total = [0, 0, 0]
    for name, (proposed, right, missing) in sorted(per_field.items()):
        total = [a + b for a, b in zip(total, (proposed, right, missing))]
        print(f"| {name} | {proposed} | {right} | {_pct(right, proposed)} | {missing} | {_pct(right, missing)} |")
    print(f"| **all** | {total[0]} | {total[1]} | **{_pct(total[1], total[0])}** | {total[2]} | {_pct(total[1], total[2])} |")
    print("\n| field | evidence | proposed | right | precision |\n|---|---|---|---|---|")
    for (name, source), (proposed, right) in sorted(by_source.items()):
        print(f"| {name} | {source} | {proposed} | {right} | {_pct(right, proposed)} |")
    print("\n| tree | routed right by weights alone (bare file) |\n|---|---|")
    for tree, (right, n) in routing.items():
        print(f"| {tree} | {right} / {n} ({_pct(right, n)}) |")
    print("\n| tree | repo | bytes read | repo size | share |\n|---|---|---|---|---|")
    for row in hub_rows:
        print("| " + " | ".join(row) + " |")
    print("\n" + "\n".join(bot_lines))
    if latencies:
        print(f"\nlatency over the split (first calls load experts): median {statistics.median(latencies) * 1000:.0f} ms")
    print(f"warm latency, local folder, 20 calls: median {statistics.median(timings):.1f} ms, "
          f"min {min(timings):.1f} ms, max {max(timings):.1f} ms")


def hub_bytes(zoo, trees, registry, scratch: Path, per_tree: int, split: str) -> tuple[list[list[str]], list[str]]:
    """Upload up to `per_tree` test models per tree to a local Hub; infer each by repo id (bytes read
    against the repo size), then run the card bot over them with the same experts and check every field
    its pull requests add against the truth. Returns (bytes rows, bot summary lines)."""
    from huggingface_hub import HfApi

    from hf_probex import infer_card
    from hf_probex.bot import BotConfig, BotState, Budgets, HubClient, run_bot
    from hf_probex.cards import TRAINED_ON_TAG_PREFIX, metadata_of
    from hf_probex.demo import truth_of
    from hf_probex.hub import LocalHub, use_endpoint
    from hf_probex.reading import open_source

    (scratch / "users.yaml").write_text("users:\n  bench: {tokens: [hf_bench_write_token]}\n"
                                       "  bot: {tokens: [hf_bot_write_token]}\n")
    rows, uploaded = [], {}
    with LocalHub(scratch / "hub", users_file=scratch / "users.yaml") as server, use_endpoint(server.endpoint):
        api = HfApi(endpoint=server.endpoint, token="hf_bench_write_token")
        for tree in trees:
            specs = [s for s in zoo.specs(tree) if s.role == "child" and s.split == split and zoo.is_finished(s)]
            for spec in specs[:per_tree]:
                repo_id = f"bench/{tree}-{spec.name}"
                api.create_repo(repo_id, exist_ok=True)
                api.upload_folder(repo_id=repo_id, folder_path=zoo.model_dir(tree, spec.name))
                uploaded[repo_id] = spec
                result = infer_card(repo_id, experts=registry)
                size = open_source(repo_id).size
                rows.append([tree, repo_id, f"{result.bytes_read:,}", f"{size:,}", _pct(result.bytes_read, size)])
        bot = HfApi(endpoint=server.endpoint, token="hf_bot_write_token")
        start = time.perf_counter()
        unlimited = BotConfig(budgets=Budgets.unlimited())  # a benchmark of reading, not of the bot's manners
        report = run_bot(list(uploaded), HubClient(bot), state=BotState(scratch / "bot.sqlite"), config=unlimited,
                         infer=lambda repo_id: infer_card(repo_id, experts=registry))
        minutes = (time.perf_counter() - start) / 60
        proposed = right = 0
        for outcome in report.outcomes:
            if outcome.outcome != "proposed":
                continue
            pr = bot.get_discussion_details(outcome.repo_id, outcome.pr_num)
            readme = Path(bot.hf_hub_download(outcome.repo_id, "README.md", revision=pr.git_reference)).read_text()
            added, truth = metadata_of(readme), truth_of(zoo, uploaded[outcome.repo_id])
            for name in outcome.fields:
                if name == "trained_on":
                    values = [t.removeprefix(TRAINED_ON_TAG_PREFIX) for t in added.get("tags", [])
                              if t.startswith(TRAINED_ON_TAG_PREFIX)]
                    true = truth[name] if isinstance(truth[name], list) else [truth[name]]
                    proposed, right = proposed + len(values), right + sum(v in true for v in values)
                elif name in truth:
                    proposed, right = proposed + 1, right + (added.get(name) == truth[name])
        again = run_bot(list(uploaded), HubClient(bot), state=BotState(scratch / "fresh.sqlite"), config=unlimited,
                        infer=lambda repo_id: infer_card(repo_id, experts=registry))
        summary = [f"bot over {len(uploaded)} repos: {dict(report.counts())}, {len(uploaded) / minutes:.0f} repos/min",
                   f"PR content: {right} of {proposed} proposed values right ({_pct(right, proposed)})",
                   f"rerun with a fresh state: {sum(o.outcome == 'proposed' for o in again.outcomes)} new PRs"]
    return rows, summary


def _pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f} %" if b else "-"


if __name__ == "__main__":
    main()
