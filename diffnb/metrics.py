"""Distances between sets of samples."""

from __future__ import annotations

import torch


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between samples x (N, D) and y (M, D).

    Zero only when the two distributions agree (Szekely and Rizzo, 2013). The
    expectations are plain means over all pairs (the V-statistic, diagonal
    included), so the value is never negative; two independent samples of one
    distribution still score about 2 E|X - X'| / N, which is why the book
    always quotes the same-distribution "floor" beside it.
    """
    for name, s in (("x", x), ("y", y)):
        if s.ndim != 2 or s.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, D) with N > 0, got {tuple(s.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    x, y = x.double(), y.double()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(2 * xy - xx - yy)
