"""The fast path: the switches that make the book's models quick on a GPU.

Each switch is a field of ``FastPath``, so that the benchmark
(``python -m diffnb.bench``) can turn them on one at a time and show what each buys:

- ``bf16``: the forward pass under bfloat16 autocast. Tensor cores run bfloat16 at
  many times their float32 rate; the weights, the optimizer and the loss stay in
  float32. GPUs before Ampere (Colab's T4) lack bfloat16 units and only emulate it.
- ``channels_last``: convolutions on NHWC tensors, the layout that cuDNN's tensor-core
  kernels read without transposing.
- ``sdpa``: attention through ``F.scaled_dot_product_attention`` (fused kernels that
  never build the (HW)^2 attention matrix) rather than ``softmax(q k^T) v``.
- ``compile``: ``torch.compile`` fuses the many small elementwise kernels of a small
  UNet. Off by default: compiling takes a minute or more and needs a C++ compiler on
  the CPU, so it pays only on long runs.
- ``cuda_graphs``: with ``compile``, torch.compile's ``mode="reduce-overhead"``, which
  records the compiled forward and backward passes as CUDA graphs and replays each
  with one launch. A small UNet on a fast GPU is bound by the host, not the GPU: the
  CPU spends longer launching each step's thousand-odd kernels (cuDNN's convolutions
  cost 0.1 ms or more of host time apiece) than the GPU spends running them, and a
  replay removes that cost. A graph is recorded for each new input shape.
- ``cudnn_autotune``: cuDNN times each of its convolution algorithms on the first call of
  every new input shape and keeps the fastest, where it otherwise picks one by heuristics.
  The first step of a run pays for the timing; the later ones may run faster kernels.
  PyTorch keeps the choice in one global setting (``torch.backends.cudnn.benchmark``),
  which the backward pass reads too, outside the network's call: ``FastModel`` sets it
  around each call and ``diffnb.train`` around its whole loop, and both put it back
  afterwards. It changes nothing off CUDA.
- ``pinned``: batches copied to the GPU from page-locked host memory, without waiting.
- ``fused_adamw``: ``diffnb.train`` builds its AdamW with ``fused=True``, which updates
  every weight in one pass over all of them. Without it PyTorch loops over the weights in
  Python on the CPU (a UNet has a hundred or more weight tensors) and launches a few
  kernels per group of weights on a GPU. The result differs only by rounding.
- ``max_batch``: without gradients (sampling, judging), the network sees at most this
  many images per call, and larger batches are split into slices. On a CPU a sampling
  batch of a thousand small images makes buffers of megabytes, which spill out of the
  caches and which the C library may map fresh from the system on every call (page
  faults); slices of a few hundred avoid both and run faster per image, by how much
  depending on what the process allocated before. The slices are cut and joined back
  in order, so the outputs are those of one call, up to rounding.

One more habit of the fast path is not a switch here but a property of
``diffnb.train.train``: it reads the loss back to the host only every ``log_every``
steps, since each read makes the CPU wait for the GPU to finish.

``FastPath.auto(device)`` is what the chapters use. On the CPU it is the plain float32
path with fused attention, fused AdamW and sampling batches cut into slices of 256
images; on Apple MPS, fused attention only. A CPU with bfloat16 kernels (AVX512
or AMX, as on the book's CPU) does train faster under bfloat16 autocast, and the benchmark
shows by how much; the chapters keep float32 there all the same, so that a seed gives the
same numbers on every CPU. (A CPU without them, AVX2 only, runs bfloat16 convolutions
through slow reference kernels.)

The environment variable ``DIFFNB_BF16`` overrides the ``bf16`` choice of ``auto``: ``1``
turns bfloat16 autocast on for every device (so a CPU can run a chapter with a GPU's
arithmetic, as the tests do), ``0`` turns it off (float32 on a GPU, to tell a rounding
effect from a bug).
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .device import default_device


CPU_MAX_BATCH = 256   # images per network call when sampling on the CPU


@dataclass(frozen=True)
class FastPath:
    """Which speed-ups to use; see the module's docstring for what each one does."""

    bf16: bool = False
    channels_last: bool = False
    sdpa: bool = True
    compile: bool = False
    cuda_graphs: bool = False
    cudnn_autotune: bool = False
    pinned: bool = False
    fused_adamw: bool = False
    max_batch: int | None = None

    def __post_init__(self):
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs=True needs compile=True: torch.compile records the graphs "
                             "(mode='reduce-overhead')")
        n = self.max_batch
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ValueError(f"max_batch must be a positive integer or None, got {n!r}")

    @classmethod
    def auto(cls, device: torch.device | str) -> "FastPath":
        """The book's choice for ``device``: on a CUDA GPU everything but ``compile`` (and so
        ``cuda_graphs``), ``channels_last`` and ``cudnn_autotune`` (``bf16`` only from compute
        capability 8.0, Ampere, on); on the CPU fused attention, fused AdamW and
        ``max_batch=CPU_MAX_BATCH``; on MPS fused attention only. Channels-last stays off:
        on an H100 it trained the book's UNets slower in all but one of the benchmark's rows,
        eager and under CUDA graphs (``benchmarks/``).
        ``DIFFNB_BF16=1`` or ``0`` in the environment forces ``bf16`` on or off."""
        device = torch.device(device)
        cuda = device.type == "cuda"
        bf16 = bf16_override()
        if bf16 is None:
            bf16 = cuda and bf16_supported(device)
        return cls(bf16=bf16, pinned=cuda, fused_adamw=device.type in ("cpu", "cuda"),
                   max_batch=CPU_MAX_BATCH if device.type == "cpu" else None)

    @classmethod
    def off(cls) -> "FastPath":
        """Plain float32 eager PyTorch, attention written out: the benchmark's baseline."""
        return cls(sdpa=False)

    def as_dict(self) -> dict:
        return asdict(self)


def bf16_override() -> bool | None:
    """``DIFFNB_BF16`` from the environment: True for ``1``, False for ``0``, None when unset."""
    value = os.environ.get("DIFFNB_BF16", "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"DIFFNB_BF16={value!r}: allowed values are 1 (bfloat16 autocast on every "
                         "device), 0 (float32 everywhere) or unset (bfloat16 on GPUs that have it)")
    return None if value == "" else value == "1"


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` has bfloat16 arithmetic in hardware (CUDA compute capability >= 8.0)."""
    device = torch.device(device)
    return (device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.get_device_capability(device) >= (8, 0))


@contextmanager
def ieee_float32():
    """Inside the block, float32 convolutions and matrix products on a CUDA GPU run in full
    float32. By default PyTorch runs float32 convolutions on Ampere and later GPUs as TF32,
    on inputs rounded to a 10-bit mantissa (float32 has 23): harmless for training and
    sampling, too coarse for a check that two formulas agree over a thousand steps. On the
    CPU and MPS the block changes nothing."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(cudnn, "conv"):      # torch 2.9 and later
        settings = [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    else:
        settings = [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
    before = [getattr(obj, name) for obj, name, _ in settings]
    for obj, name, value in settings:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), value in zip(settings, before):
            setattr(obj, name, value)


@contextmanager
def cudnn_autotuning(enabled: bool):
    """Inside the block, with ``enabled``, cuDNN autotunes its convolutions
    (``torch.backends.cudnn.benchmark``); afterwards the setting is as it was. Without
    ``enabled`` the block leaves the setting alone, so a global choice made elsewhere holds."""
    before = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def set_sdpa(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch every attention layer of ``model`` that offers it (``use_sdpa``) to the fused
    kernel or to the written-out softmax; returns ``model``."""
    for module in model.modules():
        if hasattr(module, "use_sdpa"):
            module.use_sdpa = enabled
    return model


class FastModel(nn.Module):
    """``model`` run on the fast path ``path``: the same call and, up to bfloat16 rounding,
    the same outputs, always float32.

    Converts ``model``'s weights to channels-last in place (when asked) and sets its
    attention layers' kernel; with ``path.max_batch``, a call made without gradients on
    more images than that is run slice by slice. ``module`` is the wrapped model: its
    ``state_dict`` is what checkpoints hold (``diffnb.train`` unwraps a ``FastModel``),
    and attributes the wrapper lacks are looked up there (``fast.in_channels`` is
    ``model.in_channels``).
    """

    def __init__(self, model: nn.Module, path: FastPath | None = None):
        super().__init__()
        if isinstance(model, FastModel):
            raise TypeError("model is already a FastModel; wrap its .module instead")
        if path is None:
            path = FastPath.auto(default_device(model))
        if not isinstance(path, FastPath):
            raise TypeError(f"path must be a FastPath, got {type(path).__name__}")
        self.path = path
        self.module = set_sdpa(model, path.sdpa)
        if path.channels_last:
            model.to(memory_format=torch.channels_last)
        # kept out of the module tree, so that the state_dict holds each weight once
        mode = "reduce-overhead" if path.cuda_graphs else "default"
        self.__dict__["_run"] = torch.compile(model, mode=mode) if path.compile else model

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        n = self.path.max_batch
        if n is not None and len(x) > n and not torch.is_grad_enabled():
            # positional tensors with one entry per image (such as t) are sliced alongside x
            parts = [a.split(n) if torch.is_tensor(a) and a.ndim and len(a) == len(x)
                     else itertools.repeat(a) for a in args]
            return torch.cat([self(*part, **kwargs) for part in zip(x.split(n), *parts)])
        if self.path.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with (torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.path.bf16),
              cudnn_autotuning(self.path.cudnn_autotune)):
            out = self._run(x, *args, **kwargs)
        # a graph's replay writes its outputs into the same memory: hand out a copy
        return out.to(torch.float32, copy=self.path.cuda_graphs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)


def cpu_threads() -> int:
    """The CPUs this process may really use: its affinity mask, capped by a container's
    CPU quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, rounded down), which
    ``os.cpu_count()`` and OpenMP ignore."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(n, int(quota))) if quota is not None else n


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of time per period allowed by the cgroup, or None where nothing caps it."""
    try:
        quota, period = open(f"{root}/cpu.max").read().split()[:2]             # cgroup v2
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open(f"{root}/cpu/cpu.cfs_quota_us").read())             # cgroup v1
        period = int(open(f"{root}/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def set_cpu_threads(n: int | None = None, *, processes: int = 1) -> int:
    """Use ``n`` threads for torch's CPU operators (default: ``cpu_threads()`` shared among
    ``processes`` processes on this machine, at least one each), unless the environment
    chose with OMP_NUM_THREADS; returns the number in use.

    In a container torch may start one thread per core of the host: 64 threads
    sharing 2 CPUs are much slower than 2.
    """
    if n is None and "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    n = max(1, cpu_threads() // processes) if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
