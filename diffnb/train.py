"""The book's training loop: AdamW, warm-up and cosine decay, gradient clipping, an EMA of
the weights, mixed precision on GPU, and checkpoints that let an interrupted run resume.
"""

from __future__ import annotations

import copy
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

CHECKPOINT_FORMAT = "diffnb-train-1"


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A text progress bar that reads well live and in the rendered book.

    Text rather than a widget: the book is built from notebooks executed
    headless, where widget state is not saved and a widget bar would show as an
    empty box. It writes to stdout, at most once a second.
    """
    kwargs = {"file": sys.stdout, "mininterval": 1.0, "ncols": 90, **kwargs}
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
          desc: str = "train", show_progress: bool = True) -> TrainResult:
    """Train ``model`` for ``steps`` AdamW steps.

    ``batches`` is an iterator of batches, or a function returning the next batch (on the
    model's device); ``loss_fn(model, batch)`` returns a scalar loss. The learning rate
    warms up linearly for ``warmup`` steps, then decays along a cosine to zero; gradients
    are clipped to norm ``grad_clip``. With ``ema_decay``, an ``EMA`` of the weights is
    kept and returned as ``result.ema``. ``amp`` (default: on for CUDA) runs the forward
    pass under bfloat16 autocast.

    With ``checkpoint`` (a file path), the whole state is written there atomically every
    ``checkpoint_every`` steps and at the end: weights, EMA, optimizer, learning-rate
    schedule, random-number state, losses so far and, if ``batches`` has a
    ``state_dict``, its position. ``resume=True`` continues from that file if it exists;
    on CPU the resumed run ends with the same weights as an uninterrupted one. A file that
    cannot be read or does not fit the model raises before anything is written.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path to resume from")
    next_batch = batches if callable(batches) and not hasattr(batches, "__next__") else iter(batches).__next__
    device = next(model.parameters()).device
    amp = device.type == "cuda" if amp is None else amp
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, steps, warmup))
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    losses: list[float] = []
    start, seconds_before = 0, 0.0
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path.exists():
        state = load_checkpoint(path)
        _restore(state, path, steps, model, opt, sched, ema, batches)
        start, losses, seconds_before = state["step"], list(state["losses"]), state["seconds"]

    def save(step):
        _save_atomic(path, {
            "format": CHECKPOINT_FORMAT, "step": step, "steps": steps,
            "model": model.state_dict(), "ema": ema.state_dict() if ema else None,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "losses": losses, "seconds": seconds_before + time.perf_counter() - t0,
            "rng": _rng_state(), "batches": batches.state_dict() if hasattr(batches, "state_dict") else None,
        })

    model.train()
    pending: list[torch.Tensor] = []     # losses still on the device: read back in bulk
    t0 = time.perf_counter()
    bar = progress(range(start, steps), desc=desc, disable=not show_progress,
                   initial=start, total=steps)
    for step in bar:
        batch = next_batch()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        pending.append(loss.detach())
        done = step + 1
        if done % 100 == 0 or done == steps or (path and done % checkpoint_every == 0):
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
