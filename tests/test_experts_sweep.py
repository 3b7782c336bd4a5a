"""Layer sweeps rank layers by cross-validated score and resume after a kill."""

from __future__ import annotations

import json

import pytest

from hf_probex.experts.runs import read_done
from hf_probex.experts.sweep import select_layer, sweep
from hf_probex.experts.training import TrainConfig
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
