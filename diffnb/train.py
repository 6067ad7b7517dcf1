"""The book's training loop."""

from __future__ import annotations

import math
import sys
from typing import Callable, Iterable

import torch
from tqdm import tqdm
from torch import nn


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A text progress bar that reads well live and in the rendered book.

    Text rather than a widget: the book is built from notebooks executed
    headless, where widget state is not saved and a widget bar would show as an
    empty box. It writes to stdout, at most once a second.
    """
    kwargs = {"file": sys.stdout, "mininterval": 1.0, "ncols": 90, **kwargs}
    return tqdm(iterable, **kwargs)


def train(model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
          batches: Callable[[], torch.Tensor], *, steps: int, lr: float = 1e-3,
          weight_decay: float = 0.0, grad_clip: float | None = 1.0, warmup: int = 0,
          desc: str = "train", show_progress: bool = True) -> list[float]:
    """Train ``model`` for ``steps`` AdamW steps; return the loss of every step.

    ``batches()`` returns the next batch (already on the model's device) and
    ``loss_fn(model, batch)`` a scalar loss. The learning rate warms up
    linearly for ``warmup`` steps, then decays along a cosine to zero;
    gradients are clipped to norm ``grad_clip``.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps!r}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, steps, warmup))
    model.train()
    losses = []
    bar = progress(range(steps), desc=desc, disable=not show_progress)
    for _ in bar:
        loss = loss_fn(model, batches())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 100 == 0:
            bar.set_postfix(loss=f"{sum(losses[-100:]) / 100:.4f}", refresh=False)
    model.eval()
    return losses


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
