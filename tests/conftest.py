"""Shared fixtures: one tiny zoo per test session (built for real, in seconds)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    from hf_probex.zoo import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo") / "tiny", "tiny", seed=0, workers=1, progress=False)
