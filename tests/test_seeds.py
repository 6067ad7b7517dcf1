"""tools/seeds.py and the seed table it records for chapter 5."""

from __future__ import annotations

import json

import pytest

import seeds  # tools/seeds.py (tests/conftest.py puts tools/ on the path)
from diffnb.results import read_results


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(seeds.SEEDS_FILE.read_text())


def test_row_reads_every_key_the_chapter_records(executed_quick):
    row = seeds.row(executed_quick[seeds.NOTEBOOK])
    assert set(row) == set(seeds.KEYS)
    assert all(isinstance(v, (int, float)) for v in row.values())
    assert row["fd_floor"] < row["fd_cosine_base"]


def test_row_names_what_a_notebook_does_not_record(executed_quick):
    with pytest.raises(KeyError, match="does not record.*fd_shifted_high"):
        seeds.row(executed_quick["01_two_moons"])


def test_merge_replaces_one_profile_and_keeps_the_other():
    before = seeds.merge({}, "full", {"seeds": {"0": {"fd_floor": 1.0}}})
    after = seeds.merge(before, "quick", {"seeds": {"0": {"fd_floor": 2.0}}})
    assert after["runs"]["full"] == before["runs"]["full"]
    assert after["runs"]["quick"]["seeds"]["0"]["fd_floor"] == 2.0
    again = seeds.merge(after, "full", {"seeds": {"1": {"fd_floor": 3.0}}})
    assert list(again["runs"]["full"]["seeds"]) == ["1"]
    assert again["notebook"] == seeds.NOTEBOOK and again["keys"] == list(seeds.KEYS)


@pytest.mark.parametrize("argv, named", [(["--seeds", "1", "1"], "[1, 1]"), (["--seeds", "-1"], "[-1]"),
                                          (["--profile", "slow"], "'slow'")])
def test_bad_arguments_are_refused_before_anything_runs(argv, named, capsys, monkeypatch):
    monkeypatch.setattr(seeds.build, "execute", lambda *a, **k: pytest.fail("ran a notebook"))
    with pytest.raises(SystemExit) as exit_:
        seeds.main(argv)
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


def test_the_shipped_file_holds_both_profiles_over_several_seeds(recorded):
    assert recorded["notebook"] == seeds.NOTEBOOK
    assert set(recorded["runs"]) == {"quick", "full"}
    for profile, run in recorded["runs"].items():
        assert {"device", "torch", "date", "command", "seeds"} <= set(run)
        assert f"--profile {profile}" in run["command"]
        assert len(run["seeds"]) >= 3
        for row in run["seeds"].values():
            assert set(seeds.KEYS) <= set(row)
            runs = [k for k in seeds.KEYS if k.startswith("fd_") and k not in ("fd_floor", "fd_resample_spread")]
            assert len(runs) == 4 and all(row["fd_floor"] < row[k] for k in runs)


def test_the_full_profile_backs_the_chapters_claim_for_every_seed(recorded):
    """Chapter 5's prose says the shifted cosine beats the plain one at the high resolution
    in the full profile; the recorded seeds must all agree."""
    rows = recorded["runs"]["full"]["seeds"]
    for seed, row in rows.items():
        assert row["fd_shifted_high"] < row["fd_cosine_high"], f"seed {seed}: {row}"
        # "the interpolated schedule scores between the two"
        assert row["fd_shifted_high"] <= row["fd_interpolated_high"] <= row["fd_cosine_high"], f"seed {seed}"
    # "the training seed moves the plain cosine over a wider range than any run's sample sets cover"
    plain = [r["fd_cosine_high"] for r in rows.values()]
    assert max(plain) - min(plain) > 2 * max(r["fd_resample_spread"] for r in rows.values())


def test_the_chapter_shows_the_shipped_table(executed_quick, recorded):
    results = read_results(executed_quick[seeds.NOTEBOOK])
    for profile, run in recorded["runs"].items():
        assert results[f"seeds_{profile}_n"] == len(run["seeds"])
        wins = sum(r["fd_shifted_high"] < r["fd_cosine_high"] for r in run["seeds"].values())
        assert results[f"seeds_{profile}_shift_wins"] == wins
