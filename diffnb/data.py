"""Datasets of the book, all available offline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sklearn.datasets import make_moons

SCALINGS = ("minmax", "standard")


def moons_pool(n: int = 100_000, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A large pool of two-moons points in raw coordinates, shape (n, 2), float32.

    ``make_moons`` spaces its points evenly along the arcs, so two calls give
    nearly the same points; draw training and evaluation sets at random from
    this pool (``draw``) to get independent samples.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n!r}")
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32)


def draw(pool: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` rows of ``pool`` drawn at random (with replacement), shape (n, ...).

    ``generator``, if given, must live on ``pool``'s device.
    """
    idx = torch.randint(0, pool.shape[0], (n,), generator=generator, device=pool.device)
    return pool[idx]


@dataclass(frozen=True)
class Scaling:
    """An affine map x -> (x - shift) / scale, per coordinate, and its inverse."""

    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, method: str = "minmax") -> "Scaling":
        """``"minmax"`` maps each coordinate's range onto [-1, 1]; ``"standard"`` to mean 0, std 1."""
        if method not in SCALINGS:
            raise ValueError(f"unknown scaling {method!r}; allowed: {', '.join(map(repr, SCALINGS))}")
        if x.ndim != 2:
            raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
        if method == "minmax":
            lo, hi = x.min(0).values, x.max(0).values
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            shift, scale = x.mean(0), x.std(0)
        if not (scale > 0).all():
            i = int((~(scale > 0)).nonzero()[0])
            raise ValueError(f"coordinate {i} of x is constant ({x[0, i].item():.6g}); cannot scale it")
        return cls(shift=shift, scale=scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift.to(x.device)) / self.scale.to(x.device)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale.to(y.device) + self.shift.to(y.device)
