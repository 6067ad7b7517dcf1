"""Where tensors live, and how runs are made repeatable.

``get_device`` is the book's one device switch: every notebook passes its
``device`` parameter through it, so CI (CPU), Colab (CUDA) and a laptop (MPS
or CPU) run the same code.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """Names of the devices this machine can use, best first (``"cpu"`` is always last)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def get_device(name: str | torch.device = "auto") -> torch.device:
    """Resolve a device name to a ``torch.device``.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. An explicit name that
    this machine lacks is an error, never a silent fallback: a run that asked
    for a GPU should not quietly take an hour on the CPU.
    """
    if isinstance(name, torch.device):
        if name.index not in (None, 0):   # dropping it would silently run on another GPU
            raise ValueError(f"device {str(name)!r}: get_device takes a device type, and resolves 'cuda' to "
                             "the current GPU; to run on another, make it the only one visible "
                             f"(CUDA_VISIBLE_DEVICES={name.index})")
        name = name.type
    if not isinstance(name, str) or name.lower() not in DEVICE_NAMES:
        raise ValueError(f"unknown device {name!r}; allowed: {', '.join(map(repr, DEVICE_NAMES))}")
    name = name.lower()
    found = available_devices()
    if name == "auto":
        return torch.device(found[0])
    if name not in found:
        raise RuntimeError(
            f"device {name!r} was asked for but is not available on this machine; "
            f"available: {', '.join(map(repr, found))} (or use 'auto')"
        )
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way.

    Same seed, same profile, same CPU: same numbers. (GPU kernels are not all
    deterministic, so GPU runs agree only statistically.)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device(model, device: torch.device | str | None = None) -> torch.device:
    """The device to sample on: ``device`` if given, else that of ``model``'s first parameter
    (the CPU for a plain function or a model without parameters)."""
    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


def synchronize(device: torch.device | str | None) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU), so that a
    timer read afterwards measures the work rather than its launch."""
    if device is None:
        return
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()
