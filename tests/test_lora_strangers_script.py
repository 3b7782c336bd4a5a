"""scripts/make_lora_strangers.py on the tiny zoo: a LoRA of the sd tree's root by the script's own DDPM loop, read by
hf_probex as an sd-lora, its truth in manifest.json only, kept when the script runs again; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_probex.adapters import detect
from hf_probex.reading import open_source

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_lora_strangers.py"
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_one_stranger_lora_is_made_read_and_kept(tiny_zoo, tmp_path):
    out = tmp_path / "strangers"
    args = ("--zoo", str(tiny_zoo.root), "--out", str(out), "--trained-concepts", "1", "--per-concept", "1",
            "--per-held-out", "0")
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    ((name, truth),) = manifest.items()
    trained = {s.concept["id"] for s in tiny_zoo.specs("sd") if s.split == "train"}
    assert truth["concept_id"] in trained and truth["held_out"] is False and truth["recipe"] == "stranger-ddpm"
    assert 40 <= truth["steps"] <= 120 and 2 <= truth["batch"] <= 8 and truth["rank"] in (4, 8, 16)
    folder = out / name
    assert detect(open_source(folder)).family == "sd-lora"
    for path in folder.iterdir():  # the files do not say the concept
        assert truth["concept_name"].split()[0] not in path.read_bytes().decode("latin-1")
    made = (folder / truth["file"]).stat().st_mtime_ns
    assert _run(*args).returncode == 0
    assert (folder / truth["file"]).stat().st_mtime_ns == made and json.loads((out / "manifest.json").read_text()) == manifest


def test_a_missing_zoo_or_tree_is_one_line(tiny_zoo, tmp_path):
    missing = _run("--zoo", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "not a zoo" in missing.stderr
    no_tree = _run("--zoo", str(tiny_zoo.root), "--out", str(tmp_path / "out"), "--tree", "vit")
    assert no_tree.returncode == 2 and "no sd-lora tree 'vit'" in no_tree.stderr
