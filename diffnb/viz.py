"""Figures the chapters draw more than once."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def scatter_panels(point_sets, titles, *, lim: float = 2.5, size: float = 2.6, s: float = 1.0,
                   color="C0", ncols: int | None = None):
    """One square scatter plot per (N, 2) tensor, ``ncols`` to a row (default: all); returns the figure."""
    ncols = ncols or len(point_sets)
    nrows = -(-len(point_sets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[len(point_sets):]:
        ax.axis("off")
    for ax, pts, title in zip(axes.flat, point_sets, titles):
        pts = torch.as_tensor(pts).detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=0.5, color=color, linewidths=0)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=title, xticks=[], yticks=[], aspect="equal")
    fig.tight_layout()
    return fig
