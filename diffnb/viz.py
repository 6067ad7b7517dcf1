"""Figures the chapters draw more than once."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def scatter_panels(point_sets, titles, *, lim: float = 2.5, size: float = 2.6, s: float = 1.0, color="C0"):
    """One square scatter plot per (N, 2) tensor, side by side; returns the figure."""
    fig, axes = plt.subplots(1, len(point_sets), figsize=(size * len(point_sets), size), squeeze=False)
    for ax, pts, title in zip(axes[0], point_sets, titles):
        pts = torch.as_tensor(pts).detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=0.5, color=color, linewidths=0)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=title, xticks=[], yticks=[], aspect="equal")
    fig.tight_layout()
    return fig
