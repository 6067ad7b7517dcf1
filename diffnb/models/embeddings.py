"""Time-step embeddings shared by the book's networks."""

from __future__ import annotations

import math

import torch


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer-style embedding of (possibly fractional) times ``t``, shape (B,) -> (B, dim).

    Half the features are sin(t * f_k), half cos(t * f_k), with frequencies
    f_k = max_period ** (-k / (dim / 2)) from 1 down to about 1 / max_period.
    """
    if dim <= 0 or dim % 2:
        raise ValueError(f"embedding dim must be a positive even integer, got {dim!r}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)
