"""Layer sweeps rank layers by cross-validated score and resume after a kill."""

from __future__ import annotations

import json

import pytest

from hf_probex.experts.training.runs import read_done
from hf_probex.experts.training.sweep import select_layer, sweep
from hf_probex.experts.training.fit import TrainConfig
from test_experts_models import write_planted


def test_sweep_ranks_the_informative_layer_first_and_resumes(tmp_path):
    write_planted(tmp_path / "set", n_models=40)
    out = tmp_path / "sweep.jsonl"
    reports = sweep(tmp_path / "set", "Toy", ["ridge"], out, folds=2, config=TrainConfig(epochs=3))
    assert [r["layer"] for r in reports] == ["informative.weight", "noise.weight"]
    assert reports[0]["metrics"]["per_label_acc"]["mean"] > reports[1]["metrics"]["per_label_acc"]["mean"] + 20

    # a sweep killed while writing its second report: one complete line and half a line
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    assert len(read_done(out)) == 1
    again = sweep(tmp_path / "set", "Toy", ["ridge"], out, folds=2, config=TrainConfig(epochs=3))
    assert sorted(r["layer"] for r in again) == ["informative.weight", "noise.weight"]
    assert len(read_done(out)) == 2  # only the missing report was computed again
    assert json.loads(lines[0]) in read_done(out)


def test_sweep_names_an_unknown_layer(tmp_path):
    write_planted(tmp_path / "set", n_models=10)
    with pytest.raises(ValueError, match="no layer 'x'; layers: informative.weight, noise.weight"):
        sweep(tmp_path / "set", "Toy", ["ridge"], tmp_path / "s.jsonl", layers=["x"])


def test_select_layer_picks_the_informative_layer(tmp_path):
    write_planted(tmp_path / "set", n_models=40)
    assert select_layer(tmp_path / "set", "Toy", tmp_path / "select.jsonl", folds=2) == "informative.weight"


def test_select_stack_adds_a_second_informative_layer(tmp_path):
    """Two layers that each carry half of the labels: stacking them beats either alone."""
    import numpy as np
    from safetensors.numpy import save_file

    from hf_probex.experts.training.harness import load_layer_data
    from hf_probex.experts.training.sweep import select_stack

    rng = np.random.default_rng(0)
    for idx in range(60):
        onehot = np.zeros(8, np.float32)
        onehot[rng.choice(8, 4, replace=False)] = 1
        first, second, noise = (rng.normal(0, 1, (4, 4)).astype(np.float32) for _ in range(3))
        first[0] += 3 * onehot[:4]
        second[0] += 3 * onehot[4:]
        repo = tmp_path / "set" / f"models--ProbeX--Model-J__Toy__model_idx_{idx:04d}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("a" * 40)
        (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
        save_file({"a.weight": first, "b.weight": second, "noise.weight": noise},
                  str(repo / "snapshots" / ("a" * 40) / "model.safetensors"),
                  metadata={"dataset_chosen_targets": repr([f"c{i}" for i in np.flatnonzero(onehot)])})
    chosen = select_stack(tmp_path / "set", "Toy", tmp_path / "stack.jsonl", folds=3)
    assert sorted(chosen) == ["a.weight", "b.weight"]
    data = load_layer_data(tmp_path / "set", "Toy", chosen)
    assert data.x.shape == (60, 1, 32) and [name for name, _ in data.inputs] == chosen


def test_bench_plan_adds_a_paper_size_probex_and_runs_use_their_sizes(tmp_path):
    from dataclasses import asdict

    from hf_probex.experts.training.bench import plan_runs
    from hf_probex.experts.methods.models import PAPER
    from hf_probex.experts.training.runs import Run, run_all

    runs = plan_runs("vit", "L", "multilabel", "classifier.weight", ("probex", "ridge"))
    sized = [r for r in runs if r.hparams]
    assert [r.name for r in sized] == ["probex (paper size, 128/128/128)"] and dict(sized[0].hparams) == PAPER["probex"]
    paper = plan_runs("vit", "L", "multilabel", None, ("probex", "mvprobe", "ridge"), paper=True)
    assert {r.name: dict(r.hparams) for r in paper} == {
        "probex": PAPER["probex"], "mvprobe": PAPER["mvprobe"], "ridge": {}, "probex (raw)": PAPER["probex"],
        "mvprobe (raw)": PAPER["mvprobe"], "ridge (change, not its Gram)": {},
        "probex (change, not its Gram)": PAPER["probex"], "mvprobe (change, not its Gram)": PAPER["mvprobe"]}
    assert {r.features for r in paper if "change" in r.name} == {"delta"} and {r.features for r in runs[:2]} == {""}
    # runs at default sizes keep the keys of earlier run files, so their reports are reused
    assert json.loads(Run("vit", (("L", "probex"),)).key(5, 0, TrainConfig()))[-1] == asdict(TrainConfig())

    write_planted(tmp_path / "set", n_models=20)
    small = (("n_probes", 4), ("proj_dim", 4), ("rep_dim", 8))
    report, = run_all(tmp_path / "set", [Run("Toy", (("informative.weight", "probex"),), hparams=small)],
                      tmp_path / "runs.jsonl", folds=2, config=TrainConfig(epochs=2))
    assert report["hparams"] == dict(small)
    assert report["parameters"] < 2000  # the default ProbeX on this layer has tens of thousands


def test_runs_and_layer_selection_can_see_only_some_splits(tiny_zoo, tmp_path, capsys):
    from hf_probex.cli import main
    from hf_probex.experts.training.harness import candidate_layers
    from hf_probex.experts.training.runs import Run, run_all

    layer = next(iter(candidate_layers(tiny_zoo.root, "sd")))  # the tiny sd tree: train, test, val and test_holdout
    runs = [Run("sd", ((layer, "ridge"),)), Run("sd", ((layer, "ridge"),), splits=("train",))]
    every, train_only = run_all(tiny_zoo.root, runs, tmp_path / "runs.jsonl", folds=2)
    train = [s for s in tiny_zoo.specs("sd") if s.split == "train"]
    assert every["models"] > train_only["models"] == len(train) > 0
    assert every["holdout_models"] > 0 and train_only["holdout_models"] == 0  # held-out concepts left unseen

    argv = ["train", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--splits", "train", "--folds", "2",
            "--out", str(tmp_path / "expert")]
    assert main(argv) == 0
    # 3 training models: too few to choose among the ViT's layers, so the family's default layer at the same depth
    assert ("layer auto: vit.encoder.layer.1.attention.output.dense.weight (the family's default layer: fewer than 40 "
            "models on splits train") in capsys.readouterr().out



def test_train_says_each_layer_it_tries_while_choosing(tmp_path, capsys):
    """`hf-probex train --layer auto` cross-validates every layer before training (on a 300-model tree, many minutes):
    a line per layer tried, on stderr, then the choice on stdout."""
    from hf_probex.cli import main

    write_planted(tmp_path / "set", n_models=40)
    assert main(["train", "--zoo", str(tmp_path / "set"), "--tree", "Toy", "--folds", "2", "--out",
                 str(tmp_path / "expert")]) == 0
    printed = capsys.readouterr()
    tried = [line for line in printed.err.splitlines() if line.startswith("choosing the layer: Toy / ")]
    assert {line.split(" / ")[1] for line in tried} >= {"informative.weight", "noise.weight"}  # and stacks of them
    assert printed.out.startswith("layer auto: informative.weight")
