"""Every chapter runs in the quick profile on the CPU, and the numbers it records move the right way."""

from __future__ import annotations

import pytest

import diffnb
from conftest import build


def check_two_moons(r: dict) -> None:
    for key in ("energy_distance", "energy_distance_floor", "energy_distance_noise", "energy_distance_T10"):
        assert key in r, f"{key} not recorded"
        assert r[key] > 0
    # the quick-profile target: the model is far closer to the data than noise is
    assert r["energy_distance"] * 10 <= r["energy_distance_noise"], r
    assert r["energy_distance_T10"] * 5 <= r["energy_distance_noise"], r
    # the floor (two real samples) is the smallest figure any sample set should reach, up to noise
    assert r["energy_distance_floor"] < 0.1 * r["energy_distance_noise"]
    # the text says the smaller sampler variance hurts at T = 10: the run must agree
    assert r["ratio_T10_beta_tilde"] > r["ratio_T10"], r
    # with 10 steps the linear schedule keeps most of the signal (why the chapter uses the cosine one)
    assert r["alpha_bar_T10_linear"] > 0.8
    # closed form against iterated steps: within a few Monte Carlo standard errors
    assert r["forward_mc_max_error"] < 6 * r["mc_standard_error"], r


CHECKS = {"01_two_moons": check_two_moons}


def test_every_notebook_has_checks():
    assert {p.stem for p in build.notebooks()} == set(CHECKS)


@pytest.mark.parametrize("stem", sorted(CHECKS))
def test_notebook_quick_profile(executed_quick, stem):
    results = diffnb.read_results(executed_quick[stem])
    CHECKS[stem](results)
