"""diffnb.bench: medians of repeated timings, and the peak bytes of live tensors."""

from __future__ import annotations

import pytest
import torch

from diffnb.bench import peak_memory, timeit


def test_timeit_returns_the_median_after_warmup():
    calls, durations = [], iter([0.0, 0.03, 0.01, 0.02])   # the first call is the warm-up
    import time

    def fn():
        calls.append(1)
        time.sleep(next(durations))

    median = timeit(fn, repeat=3, warmup=1)
    assert len(calls) == 4
    assert 0.015 < median < 0.028     # the middle of 0.03, 0.01, 0.02


@pytest.mark.parametrize("kw", [dict(repeat=0), dict(warmup=-1)])
def test_timeit_rejects_bad_counts(kw):
    with pytest.raises(ValueError, match="repeat >= 1 and warmup >= 0"):
        timeit(lambda: None, **kw)


def test_peak_memory_counts_the_largest_set_alive_at_once():
    def two_at_once():
        a = torch.ones(1000)            # 4,000 bytes
        b = torch.ones(2000)            # 8,000 bytes, both alive: 12,000
        del a, b
        c = torch.ones(500)             # 2,000 bytes, after both were freed
        return c.sum()

    peak = peak_memory(two_at_once)
    assert 12_000 <= peak < 12_000 + 64   # + the scalar sum


def test_peak_memory_counts_views_once_and_grows_with_size():
    x = torch.randn(64, 64)

    def views():
        y = x * 2                    # 16 KiB
        return y.view(-1)[:10], y.t(), y[0]

    assert 64 * 64 * 4 <= peak_memory(views) < 64 * 64 * 4 + 64
    small = peak_memory(lambda: torch.randn(8, 8) @ torch.randn(8, 8))
    large = peak_memory(lambda: torch.randn(64, 64) @ torch.randn(64, 64))
    assert large == pytest.approx(64 * small, rel=0.01)
