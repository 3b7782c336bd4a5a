"""`hf-probex zoo ...`: help, bad input, kill-and-resume, determinism, corrupt models."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from hf_probex.cli import main

CLI = [sys.executable, "-m", "hf_probex.cli"]


@pytest.mark.parametrize("command", [[], ["zoo"], ["zoo", "build"], ["zoo", "info"], ["zoo", "signal"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: hf-probex" in capsys.readouterr().out


def test_help_does_not_import_the_heavy_stack():
    code = "import sys; from hf_probex.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_preset_is_one_clear_line(tmp_path, capsys):
    assert main(["zoo", "build", "--preset", "huge", "--out", str(tmp_path / "z")]) == 2
    line = _error_line(capsys)
    assert "unknown preset 'huge'" in line and "tiny" in line and "bench" in line
    assert not (tmp_path / "z").exists()


def test_foreign_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["zoo", "build", "--out", str(tmp_path), "--quiet"]) == 2
    assert "not empty and holds no zoo" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_unwritable_output_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["zoo", "build", "--out", str(blocker / "zoo"), "--quiet"]) == 2
    assert "cannot write to" in _error_line(capsys)


def test_other_seed_in_existing_zoo_is_refused(tiny_zoo, capsys):
    assert main(["zoo", "build", "--out", str(tiny_zoo.root), "--seed", "3", "--quiet"]) == 2
    assert "seed 0" in _error_line(capsys)


def test_info_prints_trees_and_accuracies(tiny_zoo, capsys):
    assert main(["zoo", "info", str(tiny_zoo.root), "--check"]) == 0
    out = capsys.readouterr().out
    for tree in ("vit", "vit-twin", "resnet", "sd"):
        assert f"\n{tree} " in out
    assert "train=" in out and "test_holdout=" in out
    # accuracy per recipe family (the LoRA tree's children have no test accuracy: shown as "-")
    assert "\nvit       trainer-adamw " in out and "\nsd        diffusers-script     10      - / -" in out


def test_info_on_a_missing_zoo_is_one_line(tmp_path, capsys):
    assert main(["zoo", "info", str(tmp_path)]) == 2
    assert "is not a zoo" in _error_line(capsys)


def _tensors(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_zoo(tiny_zoo, tmp_path):
    """Kill a 2-worker build mid-way, resume it: same models, bit for bit, as an uninterrupted build."""
    out = tmp_path / "zoo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*CLI, "zoo", "build", "--preset", "tiny", "--out", str(out), "--workers", "2", "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    records = out / "records"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(records.rglob("*.json"))) < 6:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = len(list(records.rglob("*.json")))
    assert 0 < finished_before < 25
    result = subprocess.run([*CLI, "zoo", "build", "--preset", "tiny", "--out", str(out), "--workers", "2", "--quiet"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not any((out / ".tmp").glob("*"))
    from hf_probex.zoo import Zoo
    from hf_probex.zoo.trees import FAMILIES

    resumed = Zoo.open(out)
    for spec in tiny_zoo.specs():
        assert resumed.is_finished(spec)
        rel = FAMILIES[tiny_zoo.trees[spec.tree]["family"]].weight_files(spec)[0]
        ours, reference = _tensors(resumed.model_dir(spec.tree, spec.name) / rel), _tensors(tiny_zoo.model_dir(spec.tree, spec.name) / rel)
        assert ours.keys() == reference.keys()
        assert all((ours[k] == reference[k]).all() for k in ours), f"{spec.tree}/{spec.name} differs"


def test_corrupt_model_is_reported_then_rebuilt(tiny_zoo, tmp_path, capsys):
    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo.root, copy)
    weights = copy / "models" / "vit" / "ft-0001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["zoo", "info", str(copy), "--check"]) == 1
    line = _error_line(capsys)
    assert "ft-0001/model.safetensors is corrupt" in line and "hf-probex zoo build" in line
    assert main(["zoo", "build", "--out", str(copy), "--quiet", "--workers", "1"]) == 0
    assert "rebuilding vit/ft-0001" in capsys.readouterr().err
    assert main(["zoo", "info", str(copy), "--check"]) == 0
