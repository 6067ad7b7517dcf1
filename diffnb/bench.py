"""Measuring time and memory, the same way in every chapter.

``timeit`` reports a median over repetitions after warm-up (the machine is
shared and noisy, so never a single run); ``peak_memory`` reports the most
bytes of tensors alive at once while a function runs.
"""

from __future__ import annotations

import statistics
import time
import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .device import synchronize


def timeit(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1,
           device: torch.device | str | None = None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs, after ``warmup`` runs.

    On CUDA the device is synchronised before and after each run, so the time
    covers the kernels and not just their launch.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat!r}, warmup={warmup!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _LiveTensors(TorchDispatchMode):
    """Counts the bytes of every storage created under it until that storage is freed."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self.seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = id(storage), storage.nbytes()
            if key in self.seen or nbytes == 0:
                continue
            self.seen.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            # torch keeps one Python object per storage, so this fires when it is freed
            weakref.finalize(storage, self._free, key, nbytes)
        return out


def peak_memory(fn: Callable[[], object], device: torch.device | str | None = None) -> int:
    """The most bytes held at once by tensors that ``fn()`` creates.

    On CUDA: the allocator's peak above what was allocated before the call. On
    other devices: every tensor an operator returns is counted until it is freed
    (views share their base's storage and count once), which is what an
    allocator would need, less its rounding and caching.
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    tracker = _LiveTensors()
    with tracker:
        fn()
    return tracker.peak
