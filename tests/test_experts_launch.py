"""Multi-process runs through accelerate: launched processes share a sweep's runs and write each report once.

The launch is real (`torchrun`, as `accelerate launch --multi_gpu` starts it), on CPU processes over gloo:
the same code path a multi-GPU machine takes, one device per process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_probex.experts.training.runs import read_done
from test_experts_models import write_planted


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("HF_PROBEX_DEVICE", None)
    return subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_launched_processes_share_a_sweep_and_write_each_report_once(tmp_path):
    write_planted(tmp_path / "set", n_models=40)
    done = _torchrun("-m", "hf_probex.cli", "expert", "sweep", str(tmp_path / "set"), "--tree", "Toy",
                     "--method", "ridge", "--method", "dense", "--out", "s.jsonl", "--folds", "2", "--epochs", "3",
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = read_done(tmp_path / "s.jsonl")
    runs = sorted((r["layer"], r["method"]) for r in reports)
    assert runs == [("informative.weight", "dense"), ("informative.weight", "ridge"),
                    ("noise.weight", "dense"), ("noise.weight", "ridge")]  # every run once, none twice
    assert done.stdout.count("Toy: 2-fold CV") == 1  # the ranking, printed by the main process only


def test_train_refuses_a_multi_process_launch(tmp_path):
    write_planted(tmp_path / "set", n_models=10)
    done = _torchrun("-m", "hf_probex.cli", "train", "--zoo", str(tmp_path / "set"), "--tree", "Toy",
                     "--layer", "informative.weight", "--out", "e", cwd=tmp_path)
    assert done.returncode != 0
    assert "hf-probex train runs in one process" in done.stderr
