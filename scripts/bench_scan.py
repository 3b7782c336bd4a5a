"""Benchmark `scan_tree` on a zoo imported into a local hub: repos/min with 1 and 2 local workers and with Ray,
bytes read per repo against what the reads need, and a rerun with nothing changed (listings only).

    python scripts/bench_scan.py [--zoo DIR] [--preset tiny] [--trees sd,vit] [--work DIR] [--experts REGISTRY]

The zoo (built if DIR holds none), its experts (trained as the demo trains them) and the local hub live under
--work. Every scan reads the tree's members by card plus the tree organisation's repos routed by weights
(`--author`), through the real huggingface_hub client and HTTP; an untimed scan first loads the experts (in the
Ray workers too), so the timings are of reading, not of start-up. Requests are counted from the hub's own access
log. "Needed" bytes per repo are computed independently from the zoo's files: the small files present
(README.md, config.json, adapter_config.json, model_index.json), the safetensors header (8 + its length), and the
tensors of the layers the reads use (the expert's inputs, the routing layers, a LoRA's two factors per module).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

SMALL_FILES = ("README.md", "config.json", "adapter_config.json", "model_index.json")


class RequestLog(logging.Handler):
    """Counts the hub's requests by kind, from uvicorn's access log."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]) if len(args) > 2 else ""
        if path.startswith("/api/models?"):
            self.kinds["listing"] += 1
        elif "/resolve/" in path:
            self.kinds["file read"] += 1
        elif path.startswith("/api/models/"):
            self.kinds["repo info"] += 1
        else:
            self.kinds["other"] += 1


def needed_bytes(folder: Path, tensors: set[str]) -> int:
    """Small files + the checkpoint's header + the named tensors, from the zoo folder's own files."""
    total = sum((folder / name).stat().st_size for name in SMALL_FILES if (folder / name).is_file())
    for weights in sorted(folder.rglob("*.safetensors")):
        raw = weights.read_bytes()
        length = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + length])
        named = {k: v for k, v in header.items() if k in tensors}
        if named or weights.name in ("model.safetensors", "pytorch_lora_weights.safetensors"):
            total += 8 + length + sum(v["data_offsets"][1] - v["data_offsets"][0] for v in named.values())
    return total


def tensors_read(row: dict, registry, folder: Path) -> set[str]:
    """The stored tensor names a row's reads needed: embedding layers (a LoRA module's factors) and the routing layers
    of every expert (routing compares a full model with each known root whose routing layers it has: twin trees)."""
    layers = set(row["embedding_layers"] or [])
    for entry in registry.entries:
        layers |= {name for name, _ in entry.routing_layers}
    names = set()
    for weights in folder.rglob("*.safetensors"):
        raw = weights.read_bytes()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        for key in header:
            module = key.removeprefix("unet.").replace(".lora.down.weight", "").replace(".lora.up.weight", "")
            if key in layers or f"unet.{module}" in layers:
                names.add(key)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", help="an existing zoo folder (default: build --preset under --work)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--trees", default="sd,vit")
    parser.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--experts", help="a registry file of the zoo's experts (default: train them as the demo does)")
    args = parser.parse_args()

    import ray

    from hf_probex.demo import demo_experts
    from hf_probex.experts.registry import ExpertRegistry
    from hf_probex.hub import LocalHub, use_endpoint
    from hf_probex.hub.importer import import_zoo
    from hf_probex.scan import scan_tree
    from hf_probex.zoo import Zoo, build_zoo

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scan-"))
    zoo = Zoo.open(args.zoo) if args.zoo else build_zoo(work / "zoo", args.preset, seed=0, workers=2, progress=False)
    registry = ExpertRegistry.from_file(args.experts) if args.experts else \
        demo_experts(zoo, work / "experts", progress=lambda line: None)
    shutil.rmtree(work / "hub", ignore_errors=True)
    import_zoo(zoo.root, work / "hub")
    log = RequestLog()
    logging.getLogger("uvicorn.access").addHandler(log)
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)

    speed, sizes, reruns = [], [], []
    with LocalHub(work / "hub") as hub, use_endpoint(hub.endpoint):
        started = time.monotonic()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.monotonic() - started
        for tree in args.trees.split(","):
            root, org = zoo.trees[tree]["root_repo_id"], zoo.trees[tree]["org"]
            for engine, workers in (("local", 1), ("local", 2), ("ray", 2)):
                out = work / "scans" / f"{tree}-{engine}-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                if workers == 1 or engine == "ray":  # an untimed scan first loads the experts (Ray: in its workers)
                    scan_tree(root, out=work / "scans" / "warm", experts=registry, token=False, authors=[org],
                              engine=engine, workers=workers)
                    shutil.rmtree(work / "scans" / "warm")
                log.kinds.clear()
                result = scan_tree(root, out=out, experts=registry, token=False, authors=[org], engine=engine,
                                   workers=workers)
                speed.append((tree, engine, workers, len(result.read), result.rows, result.seconds,
                              60 * len(result.read) / result.seconds, dict(log.kinds)))
                if engine == "local" and workers == 2:
                    rows = result.table().to_pylist()
                    for row in rows:
                        folder = zoo.model_dir(tree, row["repo_id"].split("/", 1)[1].removeprefix(f"{tree}-"))
                        need = needed_bytes(folder, tensors_read(row, registry, folder))
                        repo_size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                        sizes.append((tree, row["repo_id"], row["bytes_read"], need, repo_size))
                    log.kinds.clear()
                    again = scan_tree(root, out=out, experts=registry, token=False, authors=[org], workers=workers)
                    reruns.append((tree, len(again.read), again.rows, again.seconds, dict(log.kinds)))
        ray.shutdown()

    print(f"zoo: {zoo.root} (preset {args.preset}); Ray local cluster start: {ray_start:.1f} s (not in the timings)\n")
    print("| tree | engine | workers | repos read | members | seconds | repos/min | requests |")
    print("|---|---|---|---|---|---|---|---|")
    for tree, engine, workers, read, rows, seconds, rate, kinds in speed:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(f"| {tree} | {engine} | {workers} | {read} | {rows} | {seconds:.1f} | {rate:.0f} | {shown} |")
    print("\n| tree | repos | bytes read per repo (mean) | needed per repo (mean) | read / needed (max) | of the repo (mean) |")
    print("|---|---|---|---|---|---|")
    for tree in args.trees.split(","):
        mine = [s for s in sizes if s[0] == tree]
        if mine:
            ratio = max(read / need for _, _, read, need, _ in mine)
            share = sum(read / size for _, _, read, _, size in mine) / len(mine)
            print(f"| {tree} | {len(mine)} | {sum(s[2] for s in mine) / len(mine):,.0f} | "
                  f"{sum(s[3] for s in mine) / len(mine):,.0f} | {ratio:.3f} | {100 * share:.1f} % |")
    print("\n| tree | rerun, nothing changed: repos read | members | seconds | requests |")
    print("|---|---|---|---|---|")
    for tree, read, rows, seconds, kinds in reruns:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        print(f"| {tree} | {read} | {rows} | {seconds:.2f} | {shown} |")


if __name__ == "__main__":
    main()
