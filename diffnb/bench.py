"""Measuring time and memory, the same way in every chapter, and the speed benchmark.

``timeit`` reports a median over repetitions after warm-up (the machine is
shared and noisy, so never a single run); ``peak_memory`` reports the most
bytes of tensors alive at once while a function runs. ``python -m diffnb.bench``
times the book's UNets on the fast path (``diffnb.fast``), one switch at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import shlex
import statistics
import sys
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .device import synchronize
from .results import slug, write_json


def timeit(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1,
           device: torch.device | str | None = None) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs, after ``warmup`` runs.

    Given a CUDA ``device``, it is synchronised before and after each run, so the time
    covers the kernels and not just their launch (without one, only the launch is timed).
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


# the host's calls that start work on a CUDA GPU: one kernel each, or a whole recorded graph
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
            "cudaLaunchCooperativeKernel", "cudaGraphLaunch", "cuGraphLaunch")


def _union_us(intervals: list[tuple[float, float]]) -> float:
    """Microseconds covered by at least one of the (start, end) ``intervals``."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _top(durations: Counter, calls: Counter, steps: int, n: int = 8) -> list[dict]:
    """The ``n`` names with the most microseconds in ``durations``, in ms and calls per step."""
    return [{"name": k[:120], "ms_per_step": us / steps / 1e3, "calls_per_step": calls[k] / steps}
            for k, us in durations.most_common(n)]


def summarise_profile(events, steps: int) -> dict:
    """Where ``steps`` profiled steps spent their time, from ``torch.profiler``'s ``events()``.

    - ``operators_per_step``: PyTorch operators the host dispatched at the top level (an
      operator called from within another is part of it), each a fixed cost of host time;
    - ``host_top``: the operators with the most host time of their own;
    and where a GPU ran kernels:
    - ``launches_per_step``: the host's calls that started GPU work (a kernel, or a whole
      CUDA graph: one launch, many kernels), by name in ``launch_calls_per_step``, and
      ``kernels_per_step``: the kernels the GPU ran;
    - ``gpu_busy``: the share of the profiled time in which some kernel was running. Far below
      1, the GPU waits for the host to hand it work;
    - ``gpu_ms_per_step`` and ``gpu_top``: the kernels' time, and the kernels that took most.
    """
    from torch.autograd import DeviceType

    host, host_calls, gpu, gpu_calls, launches = Counter(), Counter(), Counter(), Counter(), Counter()
    operators, kernels, first, last = 0, [], float("inf"), float("-inf")
    for e in events:
        first, last = min(first, e.time_range.start), max(last, e.time_range.end)
        if e.device_type == DeviceType.CPU:
            if e.name in LAUNCHES:
                launches[e.name] += 1
            if not e.name.startswith("aten::"):
                continue
            parent = e.cpu_parent
            while parent is not None and not parent.name.startswith("aten::"):
                parent = parent.cpu_parent
            operators += parent is None
            host[e.name] += e.self_cpu_time_total
            host_calls[e.name] += 1
        # on the GPU's timeline, copies are not kernels, and a region named by record_function
        # (torch.compile names its graphs so) spans kernels and the gaps between them
        elif not (e.name.startswith(("Memcpy", "Memset")) or getattr(e, "is_user_annotation", False)):
            kernels.append((e.time_range.start, e.time_range.end))
            gpu[e.name] += e.time_range.elapsed_us()
            gpu_calls[e.name] += 1
    summary = {"steps": steps, "operators_per_step": operators / steps, "host_top": _top(host, host_calls, steps)}
    if kernels:
        summary.update(launches_per_step=sum(launches.values()) / steps,
                       launch_calls_per_step={k: n / steps for k, n in sorted(launches.items())},
                       kernels_per_step=len(kernels) / steps, gpu_busy=_union_us(kernels) / (last - first),
                       gpu_ms_per_step=sum(gpu.values()) / steps / 1e3, gpu_top=_top(gpu, gpu_calls, steps))
    return summary


def profile_steps(run: Callable[[], object], steps: int, device: torch.device | str | None = None) -> dict:
    """``summarise_profile`` of one call of ``run``, which takes ``steps`` steps, under
    ``torch.profiler`` (with the GPU's kernels on CUDA). Warm ``run`` up first: a first call
    that compiles or records a graph is not what later calls do. As in the timed runs, what
    a call does once (building the optimizer) is shared among its steps. The profiler adds a
    little host time to every operator, so the GPU looks slightly less busy than it is."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device is not None and torch.device(device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    else:   # else the profiler's library logs an error when it looks for a GPU and finds none
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    synchronize(device)
    with profile(activities=activities) as prof:
        run()
        synchronize(device)
    return summarise_profile(prof.events(), steps)


# --- the benchmark: python -m diffnb.bench ---------------------------------------------------
#
# Times the book's UNets at 32, 64 and 128 pixels on the fast path, one switch at a time:
# training images per second (forward, backward, AdamW step: diffnb.train.train itself),
# peak memory, sampling milliseconds per image per step (diffnb.continuous.sample, DDIM) in a
# batch and for one image alone, and FLOPs counted by torch.utils.flop_counter. Prints a
# table and writes JSON.

BENCH_MODELS: dict[int, tuple[str, dict]] = {
    32: ("chapter 3's default UNet: 1 channel, base 16, mults 1-2-4",
         dict(in_channels=1, base=16, mults=(1, 2, 4))),
    64: ("chapter 3's RGB UNet: 3 channels, base 32, mults 1-2-2-4, full attention at 1/8",
         dict(in_channels=3, base=32, mults=(1, 2, 2, 4), attention=("none", "linear", "linear", "full"))),
    128: ("the 64-pixel UNet on 2x2 patches (simple diffusion's high-resolution input)",
          dict(in_channels=3, base=32, mults=(1, 2, 2, 4), attention=("none", "linear", "linear", "full"),
               patch=2)),
}
# images per step: enough to fill a GPU, few enough for a laptop's CPU
BENCH_BATCH = {"cuda": {32: 256, 64: 128, 128: 64}, "other": {32: 32, 64: 16, 128: 8}}

# Each variant adds one switch to the one before, so each row shows what its switch buys;
# the last takes channels-last away from "+ CUDA graphs" again, to show what it costs there.
# (name, FastPath fields, losses read back every step?)
_FUSED = dict(pinned=True, fused_adamw=True)
_GRAPHS = dict(_FUSED, bf16=True, compile=True, cuda_graphs=True)
VARIANTS: list[tuple[str, dict, bool]] = [
    ("fp32 eager", dict(sdpa=False), True),
    ("+ no per-step sync", dict(sdpa=False), False),
    ("+ pinned memory", dict(sdpa=False, pinned=True), False),
    ("+ SDPA attention", dict(pinned=True), False),
    ("+ fused AdamW", _FUSED, False),
    ("+ bf16 autocast", dict(_FUSED, bf16=True), False),
    ("+ channels-last", dict(_FUSED, bf16=True, channels_last=True), False),
    ("+ torch.compile", dict(_FUSED, bf16=True, channels_last=True, compile=True), False),
    ("+ CUDA graphs", dict(_GRAPHS, channels_last=True), False),
    ("+ cuDNN autotuning", dict(_GRAPHS, channels_last=True, cudnn_autotune=True), False),
    ("CUDA graphs, no channels-last", _GRAPHS, False),
]
VARIANT_NAMES = tuple(v[0] for v in VARIANTS)

# Dense peak arithmetic rates from NVIDIA's data sheets, TFLOP/s: (bfloat16 tensor cores,
# float32 without tensor cores). The first name contained in the device's name applies.
DEVICE_PEAKS: list[tuple[str, tuple[float | None, float]]] = [
    ("H100 PCIe", (756.0, 51.2)), ("H100", (989.4, 66.9)), ("H200", (989.4, 66.9)),
    ("A100", (312.0, 19.5)), ("L4", (121.0, 30.3)), ("T4", (None, 8.1)),
]


def device_peak(name: str, bf16: bool) -> float | None:
    """The data-sheet peak TFLOP/s of the GPU called ``name`` in bfloat16 (``bf16``) or
    float32, or None for a device the table lacks (every CPU)."""
    for key, (peak_bf16, peak_fp32) in DEVICE_PEAKS:
        if key in name:
            return peak_bf16 if bf16 else peak_fp32
    return None


def count_flops(model, loss_fn, x) -> tuple[int, int]:
    """FLOPs of one forward pass and of one forward-and-backward pass of ``loss_fn(model, x)``
    (a multiply-add counts 2), by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            loss_fn(model, x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, x).backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


def device_name(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU's model, the vector instructions torch's
    kernels use (AVX2, AVX512: only the latter run bfloat16 at speed) and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({model}, {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


def _loss_fn():
    from . import continuous
    from .schedules import log_snr_schedule

    log_snr = log_snr_schedule("cosine")
    return log_snr, lambda m, x: continuous.loss(m, x, log_snr, "v", "min_snr")


def bench_variant(size: int, variant: tuple[str, dict, bool], *, device: torch.device, batch: int,
                  steps: int, sample_steps: int, repeat: int, warmup: int, profile: bool = False) -> dict:
    """One row of the benchmark: the UNet of ``size`` on one ``VARIANTS`` entry; with
    ``profile``, also where one timed run's steps spend their time (``profile_steps``)."""
    from . import continuous
    from .fast import FastModel, FastPath
    from .models import UNet
    from .train import train

    name, fields, sync = variant
    path = FastPath(**{**fields, "pinned": fields.get("pinned", False) and device.type == "cuda"})
    if path.compile:
        # TorchDynamo counts the graphs it compiles for UNet.forward across every model in the
        # process and falls back to eager past 8: each row would leave fewer to the next
        torch.compiler.reset()
    torch.manual_seed(0)
    config = BENCH_MODELS[size][1]
    model = FastModel(UNet(**config).to(device), path)
    shape = (batch, config["in_channels"], size, size)
    # four batches in host memory, handed over the way a DataLoader hands them over
    host = torch.rand(4, *shape) * 2 - 1
    if path.pinned:
        host = host.pin_memory()
    count = itertools.count()

    def next_batch():
        return host[next(count) % len(host)].to(device, non_blocking=path.pinned)

    log_snr, loss_fn = _loss_fn()

    def run(n):
        train(model, loss_fn, next_batch, steps=n, lr=1e-4, amp=path.bf16,
              log_every=1 if sync else n, show_progress=False)

    warmup = max(warmup, 1) if path.compile else warmup      # the first call compiles
    train_s = timeit(lambda: run(steps), repeat=repeat, warmup=warmup, device=device)
    # the tracker of CPU memory sees only what runs outside a compiled graph, and CUDA graphs
    # hold their memory in a pool taken when they were recorded, before the tracker starts
    unseen = path.cuda_graphs or (path.compile and device.type != "cuda")
    memory = None if unseen else peak_memory(lambda: run(1), device)

    def sample_ms_per_step(n):      # milliseconds per DDIM step for a batch of n images
        return timeit(lambda: continuous.sample(model, log_snr, (n, *shape[1:]), sample_steps, sampler="ddim"),
                      repeat=repeat, warmup=warmup, device=device) / sample_steps * 1e3

    per_step = sample_ms_per_step(batch) / batch
    extra = {}
    if profile:
        try:
            extra["profile"] = profile_steps(lambda: run(steps), steps, device)
        except RuntimeError as err:     # a diagnostic: keep the row's timings all the same
            print(f"{size} px, {name}: the profile failed: {err}", file=sys.stderr)
            extra["profile"] = {"error": str(err)}
    return {"size": size, "variant": name, "fast_path": path.as_dict(), "losses_read_every_step": sync,
            "batch": batch, "train_images_per_second": steps * batch / train_s,
            "train_ms_per_step": train_s / steps * 1e3, "peak_memory_mb": memory / 2**20 if memory else None,
            "sample_ms_per_image_step": per_step, "ddim20_ms_per_image": 20 * per_step,
            # one image alone: the wait for a single sample, where the batch's throughput hides the
            # fixed cost of each network call
            "ddim20_ms_one_image": 20 * sample_ms_per_step(1), **extra}


def bench_loader(size: int, batch: int, workers: int, *, device: torch.device, repeat: int,
                 batches: int = 10) -> dict:
    """Images per second that the chapters' data pipeline (digits resized to ``size``, through
    ``ImageBatches``) delivers to ``device`` with ``workers`` loader processes."""
    from .data import ImageBatches, load_image_data

    channels = BENCH_MODELS[size][1]["in_channels"]
    images = load_image_data("digits", image_size=size, channels=channels, seed=0)
    stream = ImageBatches(images.train, min(batch, len(images.train)), device=device, num_workers=workers)
    seconds = timeit(lambda: [next(stream) for _ in range(batches)], repeat=repeat, warmup=1, device=device)
    return {"size": size, "workers": workers, "batch": stream.batch_size,
            "images_per_second": batches * stream.batch_size / seconds}


def run_benchmark(*, device: torch.device, sizes=(32, 64, 128), variants=VARIANT_NAMES,
                  batch: int | None = None, steps: int = 5, sample_steps: int = 5, repeat: int = 3,
                  warmup: int = 1, workers=(0,), threads_scan: bool = False, profile: bool = False, progress=print,
                  partial: Callable[[dict], None] | None = None) -> dict:
    """Run the benchmark; returns what ``main`` writes as JSON (see ``format_table``).

    ``partial``, if given, receives the result so far after each row, so that a run cut
    short keeps what it measured."""
    from .fast import FastPath, cpu_threads
    from .models import UNet

    kind = "cuda" if device.type == "cuda" else "other"
    rows, loaders, flops, threads = [], [], {}, []

    def result() -> dict:
        return {
            "device": device.type, "device_name": device_name(device),
            "auto_fast_path": FastPath.auto(device).as_dict(),
            "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                         "python": platform.python_version()},
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d"),
            "settings": {"steps": steps, "sample_steps": sample_steps, "repeat": repeat, "warmup": warmup,
                         "threads": torch.get_num_threads(), "loss": "v-prediction, min-SNR-5, cosine log-SNR",
                         "sampler": "diffnb.continuous.sample, DDIM"},
            "models": {str(k): v for k, v in flops.items()}, "rows": rows, "loader": loaders, "threads": threads,
        }

    for size in sizes:
        b = batch or BENCH_BATCH[kind][size]
        torch.manual_seed(0)
        net = UNet(**BENCH_MODELS[size][1]).to(device)
        _, loss_fn = _loss_fn()
        x = torch.rand(b, net.in_channels, size, size, device=device) * 2 - 1
        forward, both = count_flops(net, loss_fn, x)
        flops[size] = {"model": BENCH_MODELS[size][0], "parameters": sum(p.numel() for p in net.parameters()),
                       "gflop_per_image_forward": forward / b / 1e9, "gflop_per_image_train": both / b / 1e9}
        for variant in VARIANTS:
            if variant[0] not in variants or (variant[0] == "+ pinned memory" and device.type != "cuda"):
                continue
            progress(f"{size} px, {variant[0]} ...")
            row = bench_variant(size, variant, device=device, batch=b, steps=steps,
                                sample_steps=sample_steps, repeat=repeat, warmup=warmup, profile=profile)
            row["train_tflops"] = flops[size]["gflop_per_image_train"] * row["train_images_per_second"] / 1e3
            peak = device_peak(device_name(device), row["fast_path"]["bf16"])
            row["peak_tflops"] = peak
            row["peak_fraction"] = row["train_tflops"] / peak if peak else None
            rows.append(row)
            if partial:
                partial(result())
        for w in workers:
            progress(f"{size} px, data loader, {w} workers ...")
            loaders.append(bench_loader(size, b, w, device=device, repeat=repeat))
        if partial:
            partial(result())
    if threads_scan and device.type == "cpu":
        before = torch.get_num_threads()
        try:
            for n in range(1, cpu_threads() + 1):
                torch.set_num_threads(n)
                progress(f"{sizes[0]} px, {n} threads ...")
                row = bench_variant(sizes[0], VARIANTS[1], device=device, batch=batch or BENCH_BATCH[kind][sizes[0]],
                                    steps=steps, sample_steps=sample_steps, repeat=repeat, warmup=warmup)
                threads.append({"threads": n, "size": sizes[0],
                                "train_images_per_second": row["train_images_per_second"]})
        finally:
            torch.set_num_threads(before)
    return result()


def _speedups(result: dict) -> dict[tuple[int, str], float]:
    """Each row's training speed over the fp32 eager row of its size."""
    base = {r["size"]: r["train_images_per_second"] for r in result["rows"] if r["variant"] == VARIANTS[0][0]}
    return {(r["size"], r["variant"]): r["train_images_per_second"] / base[r["size"]]
            for r in result["rows"] if r["size"] in base}


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _profiled(row: dict) -> bool:
    """Whether ``row`` holds a profile (one that failed holds only its error)."""
    return "operators_per_step" in row.get("profile", {})


def format_table(result: dict) -> str:
    """``result`` (from ``run_benchmark``) as markdown: one table of every size and variant
    (the fraction of the device's peak only for a GPU that ``DEVICE_PEAKS`` knows), then the
    profiled rows' operators, launches and kernels per step (``--profile``), the data loader
    and, on a CPU, the thread counts."""
    speed = _speedups(result)
    peak = any(r.get("peak_fraction") is not None for r in result["rows"])   # a GPU the table knows
    lines = ["| size | variant | train img/s | vs fp32 eager | peak memory (MiB) | sample ms/img/step "
             "| DDIM-20, one image (ms) | train TFLOP/s |" + (" of peak |" if peak else ""),
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if peak else "")]
    for r in result["rows"]:
        frac = r.get("peak_fraction")
        lines.append(
            f"| {r['size']} | {r['variant']} | {r['train_images_per_second']:,.0f} "
            f"| {_num(speed.get((r['size'], r['variant'])), '.2f')}x | {_num(r['peak_memory_mb'], ',.0f')} "
            f"| {r['sample_ms_per_image_step']:.3f} | {_num(r.get('ddim20_ms_one_image'), ',.1f')} "
            f"| {r['train_tflops']:.3f} |"
            + ((" – |" if frac is None else f" {frac:.1%} |") if peak else ""))
    profiled = [r for r in result["rows"] if _profiled(r)]
    if profiled:
        gpu = any("gpu_busy" in r["profile"] for r in profiled)
        lines += ["", "| size | variant | operators/step |"
                  + (" kernel launches/step | kernels/step | GPU busy | GPU kernels ms/step |" if gpu else ""),
                  "| ---: | --- | ---: |" + (" ---: | ---: | ---: | ---: |" if gpu else "")]
        for r in profiled:
            prof = r["profile"]
            line = f"| {r['size']} | {r['variant']} | {prof['operators_per_step']:,.0f} |"
            if gpu:
                line += (" – | – | – | – |" if "gpu_busy" not in prof else
                         f" {prof['launches_per_step']:,.0f} | {prof['kernels_per_step']:,.0f} "
                         f"| {prof['gpu_busy']:.0%} | {prof['gpu_ms_per_step']:.2f} |")
            lines.append(line)
    if result["loader"]:
        lines += ["", "| size | loader workers | batch | loader img/s |", "| ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['size']} | {r['workers']} | {r['batch']} | {r['images_per_second']:,.0f} |"
                  for r in result["loader"]]
    if result["threads"]:
        lines += ["", "| size | CPU threads | train img/s (fp32, no per-step sync) |", "| ---: | ---: | ---: |"]
        lines += [f"| {r['size']} | {r['threads']} | {r['train_images_per_second']:,.0f} |"
                  for r in result["threads"]]
    return "\n".join(lines) + "\n"


def _default_and_best(result: dict, size: int) -> tuple[dict | None, dict]:
    """The row of ``size`` that runs the book's default path, if any, and the row that trains
    fastest. The default is ``FastPath.auto`` as it chooses now, not as the file recorded it:
    the page describes the book as it is, and the choice may have changed since the run. Only
    ``bf16`` is taken from the file, since it depends on the GPU that ran it."""
    from .fast import FastPath

    def switches(path):     # max_batch aside: no row sets it, and the rows' batches are never sliced
        # a switch newer than the file is missing from it: it was off then
        return {k: v for k, v in {**FastPath().as_dict(), **path}.items() if k != "max_batch"}

    now = dataclasses.replace(FastPath.auto(result["device"]), bf16=result["auto_fast_path"]["bf16"])
    auto = switches(now.as_dict())
    rows = [r for r in result["rows"] if r["size"] == size]
    default = next((r for r in rows if switches(r["fast_path"]) == auto and not r["losses_read_every_step"]), None)
    return default, max(rows, key=lambda r: r["train_images_per_second"])


def summary_lines(result: dict) -> list[str]:
    """What the fast path bought in ``result``, in sentences: the training speed-up of the
    book's default path (``FastPath.auto``) and of the fastest row, per size, and the time of
    a 20-step DDIM sample."""
    speed = _speedups(result)
    lines = []
    for size in sorted({r["size"] for r in result["rows"]}):
        default, best = _default_and_best(result, size)
        parts = []
        if default is not None and (size, default["variant"]) in speed:
            parts.append(f"the default path (row \"{default['variant']}\") trains "
                         f"{speed[(size, default['variant'])]:.2f}x as fast as fp32 eager")
        if (size, best["variant"]) in speed and best is not default:
            parts.append(f"the fastest row, \"{best['variant']}\", {speed[(size, best['variant'])]:.2f}x")
        chosen = default or best
        one = chosen.get("ddim20_ms_one_image")
        parts.append(f"20 DDIM steps take {chosen['ddim20_ms_per_image']:.1f} ms per image "
                     f"in batches of {chosen['batch']}"
                     + ("" if one is None else f", and {one:.1f} ms for one image alone"))
        lines.append(f"- {size} pixels: " + "; ".join(parts) + ".")
    return lines


# The aims for a GPU, for the 64-pixel UNet: the fastest path trains at least this many
# times as fast as fp32 eager, and 20 DDIM steps make an image in under this many ms.
AIM_SPEEDUP, AIM_DDIM20_MS = 3.0, 50.0


def aim_lines(result: dict) -> list[str]:
    """For a GPU run that reached the 64-pixel UNet, the measured figures against the
    aims (``AIM_SPEEDUP``, ``AIM_DDIM20_MS``), each said to be met or not: the training
    aim by the row that trains fastest, the sampling aim by the row that makes one image
    fastest (and the default path's time beside it, where that is another row)."""
    speed = _speedups(result)
    if result["device"] != "cuda" or (64, VARIANTS[0][0]) not in speed:
        return []
    default, best = _default_and_best(result, 64)
    fast = speed[(64, best["variant"])]
    timed = [r for r in result["rows"] if r["size"] == 64 and r.get("ddim20_ms_one_image") is not None]
    if timed:               # the aim is the wait for one image
        quick = min(timed, key=lambda r: r["ddim20_ms_one_image"])
        ms = quick["ddim20_ms_one_image"]
        took = f"make one image in {ms:.1f} ms on the row \"{quick['variant']}\""
        if default is not None and default is not quick and default.get("ddim20_ms_one_image") is not None:
            took += f" ({default['ddim20_ms_one_image']:.1f} ms on the default path)"
    else:                   # a file written before that was timed: the batch's share per image
        chosen = default or best
        ms = chosen["ddim20_ms_per_image"]
        took = (f"take {ms:.1f} ms per image in batches of {chosen['batch']} "
                f"on the {'default path' if default else 'fastest row'}")
    return [f"Against the aims for the 64-pixel UNet, by this run's rows: the fastest row trains "
            f"{fast:.2f}x as fast as fp32 eager, where the aim is at least {AIM_SPEEDUP:g}x "
            f"(**{'met' if fast >= AIM_SPEEDUP else 'not met'}**); 20 DDIM steps {took}, where the aim is "
            f"under {AIM_DDIM20_MS:g} ms on an H100-class GPU (**{'met' if ms < AIM_DDIM20_MS else 'not met'}**).",
            ""]


def _shown_command(command: str) -> str:
    """``command`` without its ``--out`` file: where a run wrote its JSON on its own machine
    says nothing about the measurement (the file is in ``benchmarks/`` now)."""
    words = shlex.split(command)
    return shlex.join(w for i, w in enumerate(words)
                      if not (w == "--out" or w.startswith("--out=") or (i and words[i - 1] == "--out")))


def results_markdown(results: list[dict]) -> str:
    """The book's page of measured speeds: for each benchmark result (JSON written by
    ``main``), its device, versions and table; then which figures are still unmeasured.
    A result's ``notes`` (a list of sentences, added to a file by hand) follow the line
    that says how it was measured: what a reader must know to read its figures."""
    lines = []
    if not results:
        lines += ["No benchmark result has been recorded yet.", ""]
    # GPUs first; for one device, the run of more sizes first, then the smaller sizes, then
    # the run of fewer compiled rows
    def order(r):
        sizes = {row["size"] for row in r["rows"]}
        compiled = sum(row["fast_path"]["compile"] for row in r["rows"])
        return r["device"] != "cuda", r["device_name"], -len(sizes), min(sizes, default=0), compiled

    for r in sorted(results, key=order):
        v = r["versions"]
        sizes = sorted({row["size"] for row in r["rows"]})
        compiled = any(row["fast_path"]["compile"] for row in r["rows"])
        graphs = any(row["fast_path"].get("cuda_graphs") for row in r["rows"])
        profiled = any(map(_profiled, r["rows"]))
        lines += [f"### {r['device_name']}: {', '.join(map(str, sizes))} pixels"
                  + (", with torch.compile" if compiled else "")
                  + (" and CUDA graphs" if graphs else "") + (", profiled" if profiled else ""), "",
                  f"Measured {r['date']} with torch {v['torch']}"
                  + (f" (CUDA {v['cuda']})" if r["device"] == "cuda" else "")
                  + f", Python {v['python']}, {r['settings']['threads']} CPU threads: "
                  f"`{_shown_command(r['command'])}`. "
                  f"Medians of {r['settings']['repeat']} timed runs after {r['settings']['warmup']} "
                  f"untimed ones; each run is {r['settings']['steps']} training steps or "
                  f"{r['settings']['sample_steps']} DDIM steps."
                  + (" The run was cut short: it holds only the rows shown." if r.get("incomplete") else "")
                  + "".join(f" {note}" for note in r.get("notes", [])), "",
                  format_table(r), *summary_lines(r), "", *aim_lines(r)]
    gpu_sizes = {row["size"] for r in results if r["device"] == "cuda" for row in r["rows"]}
    if not gpu_sizes:
        lines += ["No GPU has run the benchmark for this edition, so the GPU figures are unmeasured: "
                  "the speed-up of the fast path on a GPU (the aim is at least 3x over fp32 eager for "
                  "the 64-pixel UNet), its TFLOP/s and fraction of the device's peak, and the time of "
                  "a 64-pixel image with 20 DDIM steps (the aim is under 50 ms on an H100-class GPU).", ""]
    elif 64 not in gpu_sizes:
        lines += ["No GPU run has reached the 64-pixel UNet yet, so its figures are unmeasured: the "
                  "speed-up of the fast path there (the aim is at least 3x over fp32 eager) and the time "
                  "of a 64-pixel image with 20 DDIM steps (the aim is under 50 ms on an H100-class GPU).", ""]
    profiled = any("gpu_busy" in row.get("profile", {}) for r in results if r["device"] == "cuda"
                   for row in r["rows"])
    if gpu_sizes and not profiled:
        lines += ["No GPU run has been profiled yet (`--profile`), so how many kernels the host "
                  "launches per step and how much of the time the GPU is busy are unmeasured.", ""]
    return "\n".join(lines)


def _sizes(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = None
    if size not in BENCH_MODELS:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed sizes are {', '.join(map(str, BENCH_MODELS))}")
    return size


def _count(text: str, least: int = 1) -> int:
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or n < least:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer of at least {least}")
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m diffnb.bench``: see ``--help``."""
    from .device import DEVICE_NAMES, get_device
    from .fast import set_cpu_threads

    p = argparse.ArgumentParser(
        prog="python -m diffnb.bench",
        description="Time the book's UNets at 32, 64 and 128 pixels on the fast path, one switch at a "
                    "time: training images/s, peak memory, sampling ms per image per step, TFLOP/s. "
                    "Prints a markdown table and writes JSON (device, versions, settings, rows).")
    a = p.add_argument
    a("--device", choices=DEVICE_NAMES, default="auto", help="default: auto (CUDA, then MPS, then CPU)")
    a("--sizes", type=_sizes, nargs="+", default=list(BENCH_MODELS), help="image sizes; default: 32 64 128")
    a("--variants", nargs="+", choices=VARIANT_NAMES, default=None, metavar="VARIANT",
      help=f"which rows to run, of: {'; '.join(VARIANT_NAMES)}; default: all "
           "(torch.compile and CUDA graphs on CUDA only)")
    a("--batch-size", type=_count, default=None,
      help="images per step for every size; default: 256/128/64 on CUDA, 32/16/8 elsewhere")
    a("--steps", type=_count, default=None, help="training steps per timed run; default: 10 on CUDA, 3 elsewhere")
    a("--sample-steps", type=_count, default=None, help="DDIM steps per timed run; default: 10 on CUDA, 3 elsewhere")
    a("--repeat", type=_count, default=5, help="timed runs per measurement (the median is kept); default: 5")
    a("--warmup", type=lambda s: _count(s, 0), default=2, help="untimed runs first; default: 2")
    a("--workers", type=lambda s: _count(s, 0), nargs="*", default=None,
      help="loader worker counts to time; default: 0 and the usable CPUs")
    a("--profile", action="store_true",
      help="also run each row's training once under torch.profiler: operators dispatched per step and, "
           "on CUDA, kernel launches, kernels and the share of the time the GPU was busy")
    a("--out", default=None, help="JSON file to write; default: benchmarks/<device>.json")
    args = p.parse_args(argv)
    try:
        device = get_device(args.device)
    except (ValueError, RuntimeError) as err:
        p.error(f"--device {args.device}: {err}")
    threads = set_cpu_threads()
    cuda = device.type == "cuda"
    variants = args.variants or [name for name, fields, _ in VARIANTS if cuda or not fields.get("compile")]
    workers = args.workers if args.workers is not None else sorted({0, threads})
    command = "python -m diffnb.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out or f"benchmarks/{slug(device_name(device))}.json")

    def write(result: dict, complete: bool = False) -> None:
        # rewritten after each row, so an interrupted run keeps the rows it finished
        write_json(out, {**result, "command": command, **({} if complete else {"incomplete": True})})

    result = run_benchmark(
        device=device, sizes=args.sizes, variants=variants, batch=args.batch_size,
        steps=args.steps or (10 if cuda else 3), sample_steps=args.sample_steps or (10 if cuda else 3),
        repeat=args.repeat, warmup=args.warmup, workers=workers, threads_scan=not cuda, profile=args.profile,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True), partial=write)
    write(result, complete=True)
    print(f"{result['device_name']}, torch {result['versions']['torch']}, {result['date']}")
    print(format_table(result))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
