"""Figures the chapters draw more than once."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def _grid(n: int, ncols: int | None, size: float, extra_height: float = 0.0):
    """A figure of ceil(n / ncols) rows of ``ncols`` square panels (default: one row),
    with the unused panels switched off; returns (figure, axes as a 2-D array)."""
    ncols = ncols or n
    if ncols <= 0:
        raise ValueError(f"ncols must be positive, got {ncols!r}")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + extra_height),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def loss_curves(curves: dict, *, window: int = 100, title: str = "training loss"):
    """Running means over ``window`` steps of each loss list in ``curves`` ({label: losses}),
    against the step, on a log scale; returns the figure."""
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    for label, losses in curves.items():
        if len(losses) < window:
            raise ValueError(f"curve {label!r} has {len(losses)} losses, fewer than window = {window}; "
                             "pass a smaller window")
    fig, ax = plt.subplots(figsize=(7, 3))
    stride = max(1, window // 10)
    for label, losses in curves.items():
        means = torch.as_tensor(losses, dtype=torch.float64).unfold(0, window, stride).mean(1)
        ax.plot(window + stride * torch.arange(len(means)), means, label=label)
    ax.set(xlabel="step", ylabel=f"loss (mean of {window} steps)", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def scatter_panels(point_sets, titles, *, lim: float = 2.5, size: float = 2.6, s: float = 1.0,
                   color="C0", ncols: int | None = None):
    """One square scatter plot per (N, 2) tensor, ``ncols`` to a row (default: all); returns the figure."""
    if not len(point_sets) or len(titles) != len(point_sets):
        raise ValueError(f"scatter_panels needs one title per point set and at least one set; "
                         f"got {len(point_sets)} point sets and {len(titles)} titles")
    fig, axes = _grid(len(point_sets), ncols, size)
    for ax, pts, title in zip(axes.flat, point_sets, titles):
        pts = torch.as_tensor(pts).detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=0.5, color=color, linewidths=0)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=title, xticks=[], yticks=[], aspect="equal")
    fig.tight_layout()
    return fig


def _display(x: torch.Tensor):
    """(C, H, W) in [-1, 1] -> (H, W, C) in [0, 1] for imshow; values outside are clipped."""
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"an image must have shape (3, H, W) or (1, H, W), got {tuple(x.shape)}")
    return ((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).squeeze(-1).numpy()


def show_images(images, titles=None, *, ncols: int | None = None, size: float = 2.0,
                row_labels=None, col_titles=None, suptitle: str | None = None):
    """A grid of images, each (C, H, W) in [-1, 1]; returns the figure.

    ``titles`` labels every panel; for a table of images, ``col_titles`` labels
    the columns and ``row_labels`` the rows instead. Noised images leave
    [-1, 1]: values outside are clipped for display.
    """
    images = list(images)
    if not images:
        raise ValueError("images is empty")
    if titles is not None and col_titles is not None:
        raise ValueError("give titles (one per image) or col_titles (one per column), not both")
    fig, axes = _grid(len(images), ncols, size, extra_height=0.3 * bool(suptitle))
    nrows, ncols = axes.shape
    for name, labels, n in (("titles", titles, len(images)), ("row_labels", row_labels, nrows),
                            ("col_titles", col_titles, ncols)):
        if labels is not None and len(labels) != n:
            plt.close(fig)
            raise ValueError(f"got {len(images)} images in {nrows} rows of {ncols} "
                             f"but {len(labels)} {name} (expected {n})")
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, img) in enumerate(zip(axes.flat, images)):
        ax.imshow(_display(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    for ax, title in zip(axes[0], col_titles or []):
        ax.set_title(title, fontsize=14)
    for ax, label in zip(axes[:, 0], row_labels or []):
        ax.text(-0.06, 0.5, label, transform=ax.transAxes, rotation=90,
                ha="right", va="center", fontsize=14)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def animate_images(frames, titles=None, *, size: float = 3.0, interval: int = 200):
    """A matplotlib animation of a sequence of images (each (C, H, W) in [-1, 1]), ``size`` inches wide.

    In a notebook, ``IPython.display.HTML(anim.to_jshtml())`` shows it with its
    own play controls, which keep working in the static book.
    """
    from matplotlib import animation

    frames = list(frames)
    if not frames:
        raise ValueError("frames is empty")
    titles = list(titles) if titles is not None else [None] * len(frames)
    if len(titles) != len(frames):
        raise ValueError(f"got {len(frames)} frames but {len(titles)} titles")
    first = _display(frames[0])
    height, width = first.shape[:2]
    fig_height = size * height / width + 0.4     # 0.4 inch for the title
    fig, ax = plt.subplots(figsize=(size, fig_height))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1 - 0.4 / fig_height)
    ax.axis("off")
    im = ax.imshow(first, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    title = ax.set_title(titles[0] or "", fontsize=10)

    def update(i):
        im.set_data(_display(frames[i]))
        title.set_text(titles[i] or "")
        return im, title

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    plt.close(fig)   # the animation, not a still of its first frame, is the output
    return anim
