"""Shared fixtures: the notebooks are executed once per test session (quick profile, CPU)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build  # noqa: E402  (tools/build.py)


@pytest.fixture(scope="session")
def executed_quick(tmp_path_factory) -> dict[str, Path]:
    """Every chapter executed with papermill, profile="quick", device="cpu": {stem: executed path}."""
    out = tmp_path_factory.mktemp("executed")
    paths = build.execute(build.notebooks(), out, profile="quick", device="cpu", seed=0, timeout=600)
    return {p.stem: p for p in paths}


@pytest.fixture
def one_thread():
    """One intra-op thread, restored afterwards: for files of tiny models, where a second
    thread only fights for the two cores with whatever else runs (worker processes, CI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
