"""The book's training loop: AdamW, warm-up and cosine decay, gradient clipping, an EMA of
the weights, mixed precision on GPU, and checkpoints that let an interrupted run resume.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from .fast import FastModel, FastPath, cudnn_autotuning
from .results import write_json

CHECKPOINT_FORMAT = "diffnb-train-1"


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A text progress bar that reads well live and in the rendered book.

    Text rather than a widget: the book is built from notebooks executed
    headless, where widget state is not saved and a widget bar would show as an
    empty box. It writes to stdout, at most once a second, 78 characters wide:
    the width the book's code blocks show.
    """
    kwargs = {"file": sys.stdout, "mininterval": 1.0, "ncols": 78, **kwargs}
    return tqdm(iterable, **kwargs)


class EMA:
    """An exponential moving average of a model's weights, ``module`` (a frozen copy).

    After step k the average moves towards the weights by 1 - d with
    d = min(decay, (1 + k) / (10 + k)): the short warm-up keeps the random
    initial weights from lingering in the average of a short run. The step count
    is a Python integer, so an update never waits for the GPU (torch's
    ``AveragedModel`` reads its counter back from the device every step).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema, live = list(self.module.parameters()), list(model.parameters())
        torch._foreach_lerp_(ema, live, 1 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.decay, self.updates = state["decay"], state["updates"]


@dataclass
class TrainResult:
    """What ``train`` returns. ``losses`` holds every step's loss, the resumed part included;
    ``seconds`` is the training time summed over all the runs that made up these steps."""

    losses: list[float]
    ema: nn.Module | None
    seconds: float
    steps: int
    resumed_from: int = 0

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def train(model: nn.Module, loss_fn: Callable[[nn.Module, object], torch.Tensor], batches, *,
          steps: int, lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
          warmup: int = 0, ema_decay: float | None = None, amp: bool | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int = 500, resume: bool = False,
          log_every: int = 100, desc: str = "train", show_progress: bool = True,
          is_main: bool = True) -> TrainResult:
    """Train ``model`` for ``steps`` AdamW steps.

    ``batches`` is an iterator of batches, or a function returning the next batch (on the
    model's device); ``loss_fn(model, batch)`` returns a scalar loss. The learning rate
    warms up linearly for ``warmup`` steps, then decays along a cosine to zero; gradients
    are clipped to norm ``grad_clip``. With ``ema_decay``, an ``EMA`` of the weights is
    kept and returned as ``result.ema``. ``amp`` runs the forward pass under bfloat16
    autocast; by default it follows the ``FastModel`` the model is wrapped in, else
    ``FastPath.auto(device)`` (on for CUDA GPUs from Ampere on). The same fast path says
    whether AdamW is fused (``fused_adamw``) and whether cuDNN autotunes its convolutions
    during the loop (``cudnn_autotune``).
    The losses are read back from the device every ``log_every`` steps, not every step:
    each read makes the host wait for the GPU.

    With ``checkpoint`` (a file path), the whole state is written there atomically every
    ``checkpoint_every`` steps and at the end: weights, EMA, optimizer, learning-rate
    schedule, random-number state, losses so far and, if ``batches`` has a
    ``state_dict``, its position. ``resume=True`` continues from that file if it exists,
    with the checkpoint's AdamW settings (fused or not, whatever the fast path says now);
    on CPU the resumed run ends with the same weights as an uninterrupted one. A file that
    cannot be read or does not fit the model raises before anything is written.

    ``model`` may be wrapped in a ``FastModel`` and in ``DistributedDataParallel`` (or
    ``DataParallel``): the checkpoint and the EMA then hold the unwrapped module's
    weights, so a checkpoint written by several processes resumes in one and the other
    way round, and one written on the fast path loads into the plain model. In a run of
    several processes every one of them resumes from the same file, but only the one
    given ``is_main=True`` writes checkpoints; pass ``is_main=False`` (and
    ``show_progress=False``) on the others.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every <= 0:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path to resume from")
    # clip_grad_norm_ scales by grad_clip / norm: 0 would freeze the model and a negative value reverse it
    if grad_clip is not None and (isinstance(grad_clip, bool) or not grad_clip > 0):
        raise ValueError(f"grad_clip must be None or a positive number, got {grad_clip!r}")
    next_batch = batches if callable(batches) and not hasattr(batches, "__next__") else iter(batches).__next__
    device = next(model.parameters()).device
    module = _unwrap(model)     # what checkpoints and the EMA hold
    fast = _fast_path(model, device)
    amp = fast.bf16 if amp is None else amp
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fast.fused_adamw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, steps, warmup))
    ema = EMA(module, ema_decay) if ema_decay is not None else None
    losses: list[float] = []
    start, seconds_before = 0, 0.0
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path.exists():
        state = load_checkpoint(path)
        _restore(state, path, steps, module, opt, sched, ema, batches)
        start, losses, seconds_before = state["step"], list(state["losses"]), state["seconds"]

    def save(step):
        if not is_main:
            return
        _save_atomic(path, {
            "format": CHECKPOINT_FORMAT, "step": step, "steps": steps,
            "model": module.state_dict(), "ema": ema.state_dict() if ema else None,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "losses": losses, "seconds": seconds_before + time.perf_counter() - t0,
            "rng": _rng_state(), "batches": batches.state_dict() if hasattr(batches, "state_dict") else None,
        })

    model.train()
    pending: list[torch.Tensor] = []     # losses still on the device: read back in bulk
    t0 = time.perf_counter()
    bar = progress(range(start, steps), desc=desc, disable=not show_progress,
                   initial=start, total=steps)
    with cudnn_autotuning(fast.cudnn_autotune):     # the backward pass reads it too
        for step in bar:
            try:
                batch = next_batch()
            except StopIteration:   # a finite iterable (a list, a DataLoader's epoch) ran dry
                raise ValueError(f"batches ran out after {step} of {steps} steps; pass an endless stream "
                                 "(data.ImageBatches, a generator) or a function that returns a batch") from None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(module)
            pending.append(loss.detach())
            done = step + 1
            if done % log_every == 0 or done == steps or (path and done % checkpoint_every == 0):
                losses.extend(torch.stack(pending).tolist())
                pending.clear()
                bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.4f}", refresh=False)
            if path and (done % checkpoint_every == 0 or done == steps):
                save(done)
    bar.close()
    model.eval()
    seconds = seconds_before + time.perf_counter() - t0
    return TrainResult(losses=losses, ema=ema.module if ema else None, seconds=seconds,
                       steps=steps, resumed_from=start)


_PARALLEL = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def _unwrap(model: nn.Module, wrappers: tuple[type, ...] = (*_PARALLEL, FastModel)) -> nn.Module:
    """The module inside ``DistributedDataParallel``, ``DataParallel`` and ``FastModel``
    wrappers (or only inside ``wrappers``), else ``model``."""
    while isinstance(model, wrappers):
        model = model.module
    return model


def _fast_path(model: nn.Module, device: torch.device) -> FastPath:
    """The fast path of the ``FastModel`` inside ``model``'s wrappers, else the device's default."""
    model = _unwrap(model, _PARALLEL)
    return model.path if isinstance(model, FastModel) else FastPath.auto(device)


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _rng_state() -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _save_atomic(path: Path, state: dict) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash mid-write leaves the
    previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``train`` (tensors and plain values only:
    ``weights_only=True``), with a clear error for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:          # torch raises several types for a damaged file
        raise ValueError(f"cannot read checkpoint {str(path)!r}: it is damaged or not a torch file "
                         f"({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a diffnb training checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT!r})")
    return state


def _restore(state, path, steps, model, opt, sched, ema, batches) -> None:
    if state["steps"] != steps:
        raise ValueError(f"checkpoint {str(path)!r} belongs to a run of {state['steps']} steps, "
                         f"not {steps}: its learning-rate schedule would not match")
    if (state["ema"] is None) != (ema is None):
        have = "has" if state["ema"] is not None else "has no"
        raise ValueError(f"checkpoint {str(path)!r} {have} EMA weights, but ema_decay is {ema and ema.decay!r}")
    saved, own = state["model"], model.state_dict()
    wrong = sorted(set(saved) ^ set(own)) or [k for k in own if saved[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        detail = (f"{k!r} has shape {tuple(saved[k].shape)} there and {tuple(own[k].shape)} here"
                  if k in saved and k in own else f"{k!r} is only {'there' if k in saved else 'here'}")
        raise ValueError(f"checkpoint {str(path)!r} does not fit this model ({len(wrong)} tensors "
                         f"differ; {detail})")
    try:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit this model: {str(err)[:300]}") from None
    sched.load_state_dict(state["scheduler"])
    if state["batches"] is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(state["batches"])
    # last: nothing may draw from the global generators between here and the first step
    torch.set_rng_state(state["rng"]["cpu"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


# --- command line: python -m diffnb.train ---------------------------------------------------
#
# Runs the continuous-time ("simple diffusion") training of the book outside a notebook, in
# one process or in several (torchrun / accelerate launch). The rest of diffnb is imported
# inside the functions: run with -m, this file is imported twice (as diffnb.train by the
# package, and as __main__), and main() must not depend on which copy it is.

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _dataset_name(text: str) -> str:
    from .data import OFFLINE_DATASETS
    if text in OFFLINE_DATASETS or "/" in text:
        return text
    raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; allowed: "
                                     f"{', '.join(map(repr, OFFLINE_DATASETS))} or a hub dataset 'owner/name'")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas (e.g. 1,2,2), "
                                         f"got {text!r}")
    return values


def _base_resolution(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or not all(0 < v < math.inf for v in values):
        raise argparse.ArgumentTypeError(f"must be a positive number (shifted_cosine) or two, low,high "
                                         f"(interpolated_cosine), got {text!r}")
    return tuple(int(v) if v.is_integer() else v for v in values)


def _parser():
    from .continuous import PARAMETERISATIONS
    from .data import OFFLINE_DATASETS
    from .device import DEVICE_NAMES
    from .schedules import LOG_SNR_NAMES

    p = argparse.ArgumentParser(
        prog="python -m diffnb.train",
        description="Train the book's continuous-time (simple diffusion) model outside a notebook. "
                    "Runs in one process, or in several under torchrun / accelerate launch "
                    "(WORLD_SIZE > 1: DistributedDataParallel, nccl on CUDA, gloo on the CPU).")
    a = p.add_argument
    a("--data", type=_dataset_name, default="digits",
      help=f"dataset: {', '.join(OFFLINE_DATASETS)} (shipped, offline) or a Hugging Face hub dataset "
           "'owner/name' (falls back to digits when the hub cannot be reached); default: digits")
    a("--image-size", type=_positive_int, default=32,
      help="side of the training images in pixels; the data are resized to it with the chapters' "
           "pipeline (load_image_data), so digits above 8 are upsampled; default: 32")
    a("--channels", type=int, choices=(1, 3), default=1, help="1 (grey) or 3 (RGB); default: 1")
    a("--schedule", choices=LOG_SNR_NAMES, default="shifted_cosine",
      help="log-SNR noise schedule (diffnb.schedules.log_snr_schedule); default: shifted_cosine")
    a("--base-resolution", type=_base_resolution, default=(8,), metavar="BASE",
      help="reference resolution of the shifted cosine (shift 2 log(BASE / image size)), or LOW,HIGH "
           "for interpolated_cosine; at most --image-size; ignored by cosine; default: 8")
    a("--parameterisation", choices=PARAMETERISATIONS, default="v",
      help="what the network predicts: eps, x or v; default: v")
    a("--weighting", choices=("none", "min_snr"), default="min_snr",
      help="loss weighting: none, or min_snr (min-SNR-gamma); default: min_snr")
    a("--gamma", type=_positive_float, default=5.0, help="gamma of the min-SNR weighting; default: 5")
    a("--steps", type=_positive_int, default=2000, help="optimizer steps of the whole run; default: 2000")
    a("--batch-size", type=_positive_int, default=128,
      help="images per step over all processes; each of N processes takes batch-size // N; default: 128")
    a("--lr", type=_positive_float, default=4e-3, help="peak learning rate (AdamW); default: 4e-3")
    a("--warmup", type=int, default=None,
      help="linear warm-up steps before the cosine decay; default: 5%% of --steps")
    a("--weight-decay", type=float, default=0.0, help="AdamW weight decay; default: 0")
    a("--grad-clip", type=_positive_float, default=1.0, help="gradient-norm clipping; default: 1")
    a("--ema-decay", type=float, default=0.995, help="decay of the weights' EMA, in [0, 1); default: 0.995")
    a("--unet-base", type=_positive_int, default=16, help="channels of the UNet's first level; default: 16")
    a("--mults", type=_int_list, default=(1, 2, 2),
      help="channel multipliers, one per UNet level, comma-separated; default: 1,2,2")
    a("--patch", type=_positive_int, default=1,
      help="fold PATCH x PATCH pixel blocks into channels first, so the UNet works at 1/PATCH "
           "of the image size (simple diffusion's cheap high-resolution input); default: 1")
    a("--checkpoint", default=None,
      help="checkpoint file, written atomically; a summary goes to CHECKPOINT.json beside it; "
           "default: runs/<data><image-size>.pt")
    a("--checkpoint-every", type=_positive_int, default=250,
      help="write the checkpoint every this many steps (and at the end); default: 250")
    a("--resume", action="store_true",
      help="continue from --checkpoint if it exists (it must be from a run with the same --steps)")
    a("--device", choices=DEVICE_NAMES, default="auto",
      help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps; with several processes, process k "
           "uses cuda:LOCAL_RANK; default: auto")
    a("--amp", action=argparse.BooleanOptionalAction, default=None,
      help="bfloat16 autocast for the forward pass; default: on for CUDA GPUs from Ampere on")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=None,
      help="channels-last (NHWC) memory format for the convolutions; default: off")
    a("--fused-adamw", action=argparse.BooleanOptionalAction, default=None,
      help="AdamW's fused update of all weights at once; default: on for the CPU and CUDA")
    a("--compile", action="store_true",
      help="torch.compile the UNet: a minute or more of compiling first, for faster steps on a GPU")
    a("--cuda-graphs", action="store_true",
      help="with --compile (implied), replay each step's kernels as CUDA graphs, which pays where the "
           "host cannot launch them as fast as the GPU runs them (small UNets); one process only")
    a("--cudnn-autotune", action="store_true",
      help="on CUDA, let cuDNN time its convolution algorithms on the first step and keep the fastest")
    a("--workers", type=int, default=None,
      help="data-loader worker processes; default: up to 4 on CUDA (keeping one CPU for the "
           "training process), 0 elsewhere")
    a("--seed", type=int, default=0,
      help="seed of the weights and data split; process k draws its batches and noise with seed + k; "
           "default: 0")
    a("--quiet", action="store_true", help="no progress bar")
    return p


def _check_args(parser, args) -> None:
    """Errors in the values' combinations, through ``parser.error`` (exit code 2)."""
    base = args.base_resolution
    if args.schedule == "shifted_cosine" and len(base) != 1:
        parser.error(f"--base-resolution {','.join(map(str, base))}: shifted_cosine takes one reference "
                     "resolution (a pair LOW,HIGH is for interpolated_cosine)")
    if args.schedule == "interpolated_cosine" and (len(base) != 2 or base[0] > base[1]):
        parser.error(f"--base-resolution {','.join(map(str, base))}: interpolated_cosine needs two "
                     "reference resolutions LOW,HIGH with LOW <= HIGH, e.g. 8,16")
    if args.schedule != "cosine" and max(base) > args.image_size:
        parser.error(f"--image-size {args.image_size} is below --base-resolution {max(base):g}: "
                     f"allowed image sizes are {max(base):g} or more (or lower the base resolution)")
    if not 0 <= args.ema_decay < 1:
        parser.error(f"--ema-decay {args.ema_decay!r}: allowed values are in [0, 1)")
    if args.warmup is not None and not 0 <= args.warmup <= args.steps:
        parser.error(f"--warmup {args.warmup}: allowed values are 0 to --steps ({args.steps})")
    if args.weight_decay < 0:
        parser.error(f"--weight-decay {args.weight_decay!r}: allowed values are 0 or more")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers {args.workers}: allowed values are 0 or more")


def _distributed() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the environment torchrun and accelerate set."""
    env = os.environ
    return int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0"))


class _RankBatches:
    """One process's share of the data, and the noise generator of each step.

    Wraps the process's ``ImageBatches`` (its own seed, seed + rank). ``next`` returns
    (images, generator), the generator reseeded from (seed, rank, step): the noise of a
    step depends on nothing else, so a resumed run draws the same noise in every process
    without a saved generator state. ``state_dict`` records the step with the run's seed
    and global batch size, not the process's, so a checkpoint resumes under another
    number of processes (with the same --seed and --batch-size).
    """

    def __init__(self, stream, *, seed: int, rank: int, world_size: int, batch_size: int, device):
        self.stream, self.seed, self.rank = stream, seed, rank
        self.world_size, self.batch_size = world_size, batch_size
        self.generator = torch.Generator(device=device)

    def __iter__(self):
        return self

    def __next__(self):
        step = self.stream.step
        x = next(self.stream)
        self.generator.manual_seed(((self.seed * 1_000_003 + step) * 4099 + self.rank) % 2**63)
        return x, self.generator

    def state_dict(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size,
                "step": self.stream.step}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["batch_size"]) != (self.seed, self.batch_size):
            raise ValueError(f"the checkpoint is from a run with --seed {state['seed']} and --batch-size "
                             f"{state['batch_size']}; this one has {self.seed} and {self.batch_size}")
        self.stream.load_state_dict({"seed": self.stream.seed, "batch_size": self.stream.batch_size,
                                     "step": int(state["step"])})


def main(argv: list[str] | None = None) -> int:
    """``python -m diffnb.train``: see ``--help``. Returns 0 (bad arguments exit with 2)."""
    import platform

    import torch.distributed as dist

    from . import continuous
    from .data import load_image_data, ImageBatches
    from .device import get_device, seed_everything
    from .fast import cpu_threads, set_cpu_threads
    from .models import UNet
    from .schedules import log_snr_schedule

    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    world_size, rank, local_rank = _distributed()
    is_main = rank == 0
    try:
        device = get_device(args.device)
    except (ValueError, RuntimeError) as err:
        parser.error(f"--device {args.device}: {err}")
    per_rank = args.batch_size // world_size
    if per_rank == 0:
        parser.error(f"--batch-size {args.batch_size} is below the number of processes ({world_size}): "
                     f"allowed batch sizes are {world_size} or more")
    if world_size > 1 and args.cuda_graphs:
        parser.error(f"--cuda-graphs with {world_size} processes: allowed with one process only "
                     "(the gradients' all-reduce runs outside the graphs)")
    if world_size > 1 and device.type == "mps":
        parser.error("--device mps: several processes need CUDA or the CPU")
    checkpoint = Path(args.checkpoint or f"runs/{args.data.replace('/', '_')}{args.image_size}.pt")
    summary_path = checkpoint.with_name(checkpoint.name + ".json")
    warmup = args.steps // 20 if args.warmup is None else args.warmup

    seed_everything(args.seed)            # same initial weights in every process
    try:
        model = UNet(args.channels, base=args.unet_base, mults=args.mults, patch=args.patch)
    except ValueError as err:             # e.g. channels that GroupNorm's 8 groups do not divide
        parser.error(f"--unet-base {args.unet_base} --mults {','.join(map(str, args.mults))}: {err}")
    if args.image_size % model.multiple:
        parser.error(f"--image-size {args.image_size} cannot be halved {len(args.mults) - 1} times for --mults "
                     f"{','.join(map(str, args.mults))} --patch {args.patch}: "
                     f"allowed sizes are multiples of {model.multiple}")

    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    try:
        images = load_image_data(args.data, image_size=args.image_size, channels=args.channels, seed=args.seed)
        if per_rank > len(images.train):
            parser.error(f"--batch-size {args.batch_size}: each process takes {per_rank} images per step, "
                         f"but {args.data!r} has {len(images.train)} training images")
        base = args.base_resolution
        resolution = None if args.schedule == "cosine" else args.image_size
        log_snr = log_snr_schedule(args.schedule, resolution=resolution, base=base[0] if len(base) == 1 else base)
        if device.type == "cpu":            # the processes on this machine share its CPUs
            set_cpu_threads(processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        given = {k: v for k, v in dict(bf16=args.amp, channels_last=args.channels_last,
                                       fused_adamw=args.fused_adamw).items() if v is not None}
        path = dataclasses.replace(   # the device's default path, with the switches given
            FastPath.auto(device), compile=args.compile or args.cuda_graphs, cuda_graphs=args.cuda_graphs,
            cudnn_autotune=args.cudnn_autotune, **given)
        workers = args.workers if args.workers is not None else (
            min(4, cpu_threads() - 1) if device.type == "cuda" else 0)
        model = FastModel(model.to(device), path)
        n_params = sum(p.numel() for p in model.parameters())
        if world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        stream = _RankBatches(ImageBatches(images.train, per_rank, seed=args.seed + rank, device=device,
                                           num_workers=workers),
                              seed=args.seed, rank=rank, world_size=world_size, batch_size=args.batch_size,
                              device=device)
        weighting = None if args.weighting == "none" else args.weighting

        def loss_fn(m, batch):
            x, generator = batch
            return continuous.loss(m, x, log_snr, args.parameterisation, weighting, args.gamma, generator)

        run = train(model, loss_fn, stream, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay,
                    grad_clip=args.grad_clip, warmup=warmup, ema_decay=args.ema_decay,
                    checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
                    desc="simple diffusion", show_progress=is_main and not args.quiet, is_main=is_main)
        tail = run.losses[-100:]
        final = torch.tensor(sum(tail) / len(tail), dtype=torch.float64, device=device)
        if world_size > 1:
            dist.all_reduce(final)            # sum over the processes
            final /= world_size
        final_loss = final.item()
        if is_main:
            images_per_second = run.steps * per_rank * world_size / run.seconds if run.seconds > 0 else None
            settings = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}
            settings.update(checkpoint=str(checkpoint), warmup=warmup, batch_per_process=per_rank,
                            workers=workers, fast_path=path.as_dict())
            summary = {
                "settings": settings, "steps": run.steps, "resumed_from": run.resumed_from,
                "seconds": run.seconds, "images_per_second": images_per_second,
                "final_loss": final_loss, "world_size": world_size, "device": str(device),
                "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                else platform.processor() or platform.machine()),
                "torch": torch.__version__, "unet_params": n_params, "data": images.credit,
                "image_size": images.image_size,
            }
            write_json(summary_path, summary)
            rate = f"{images_per_second:,.0f} images/s" if images_per_second else "no new steps"
            resumed = f" (resumed from step {run.resumed_from})" if run.resumed_from else ""
            print(f"diffnb.train: {run.steps} steps{resumed} in {run.seconds:.1f} s, "
                  f"{rate}, final loss {final_loss:.4f} (mean of the last {len(tail)} steps), "
                  f"{world_size} process{'es' if world_size > 1 else ''} on {device.type}; "
                  f"checkpoint {checkpoint}, summary {summary_path}", flush=True)
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
