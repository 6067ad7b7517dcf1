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


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to features a (N, D) and b (M, D):

        |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)).

    The quantity behind FID (Heusel et al., 2017), here in any feature space. It
    is biased upwards by a finite sample (more so for small N), so compare only
    distances computed from equal numbers of samples.
    """
    for name, s in (("a", a), ("b", b)):
        if s.ndim != 2 or s.shape[0] < 2:
            raise ValueError(f"{name} must have shape (N, D) with N >= 2, got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same dimension D, got {a.shape[1]} and {b.shape[1]}")
    a, b = a.double().cpu(), b.double().cpu()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _psd_sqrt(cov_a)
    # tr sqrt(S_a^1/2 S_b S_a^1/2): the eigenvalues of a symmetric PSD matrix, rooted
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def _psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
