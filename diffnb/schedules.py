"""Discrete beta schedules of DDPM.

A schedule is the list of per-step noise variances beta_1 .. beta_T. Index
convention used throughout ``diffnb``: a time step is an integer ``t`` in
``[0, T)``; index ``t`` holds the paper's beta_{t+1}, so ``alpha_bar[t]`` is the
signal kept after ``t + 1`` noising steps and ``alpha_bar[T - 1]`` is (nearly)
pure noise.
"""

from __future__ import annotations

import math

import torch

SCHEDULE_NAMES = ("linear", "polynomial", "quadratic", "sigmoid", "cosine")


def beta_schedule(name: str, T: int, *, beta_start: float = 1e-4, beta_end: float = 0.02,
                  power: float = 2.0, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of a named schedule, shape (T,), float64, each in (0, 1).

    - ``linear``: evenly spaced from ``beta_start`` to ``beta_end`` (Ho et al., 2020).
    - ``polynomial``: ``beta_start + (beta_end - beta_start) * u**power`` with u in
      [0, 1]: small steps near t = 0, where the data's fine detail lives.
    - ``quadratic``: linear in sqrt(beta), squared.
    - ``sigmoid``: a sigmoid over [-6, 6] rescaled to [beta_start, beta_end].
    - ``cosine``: alpha_bar(t) = cos^2(((t / T + s) / (1 + s)) * pi / 2)
      (Nichol and Dhariwal, 2021), betas clipped at ``max_beta``. It ends near
      pure noise for any ``T``, which the fixed-range schedules do not.
    """
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(map(repr, SCHEDULE_NAMES))}")
    check_steps(T)
    u = torch.linspace(0, 1, T, dtype=torch.float64)
    if name == "linear":
        betas = beta_start + (beta_end - beta_start) * u
    elif name == "polynomial":
        betas = beta_start + (beta_end - beta_start) * u**power
    elif name == "quadratic":
        betas = (math.sqrt(beta_start) + (math.sqrt(beta_end) - math.sqrt(beta_start)) * u) ** 2
    elif name == "sigmoid":
        betas = beta_start + (beta_end - beta_start) * torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64))
    else:  # cosine
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    check_betas(betas)
    return betas


def check_steps(T) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"number of steps T must be a positive integer, got {T!r}")


def check_betas(betas: torch.Tensor) -> None:
    """Raise unless ``betas`` is a non-empty 1-D tensor with every value in (0, 1)."""
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1 or betas.numel() == 0:
        shape = tuple(betas.shape) if isinstance(betas, torch.Tensor) else type(betas).__name__
        raise ValueError(f"betas must be a non-empty 1-D tensor of shape (T,), got {shape}")
    bad = ~((betas > 0) & (betas < 1))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"betas must lie in the open interval (0, 1); betas[{i}] = {betas[i].item():.6g} "
            f"({int(bad.sum())} of {betas.numel()} out of range)"
        )


class DiscreteSchedule:
    """A beta schedule and every quantity DDPM derives from it, shape (T,) each.

    Attributes: ``betas``, ``alphas`` (1 - beta), ``alpha_bar`` (cumulative
    product), ``alpha_bar_prev`` (shifted right, starting at 1),
    ``posterior_variance`` (beta-tilde), ``posterior_coef_x0`` and
    ``posterior_coef_xt`` (the posterior mean's weights), ``snr``
    (alpha_bar / (1 - alpha_bar)).
    Products are taken in float64, then stored as float32.
    """

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        check_betas(betas)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        self.T = betas.numel()
        f32 = lambda x: x.to(torch.float32)  # noqa: E731
        self.betas = f32(betas)
        self.alphas = f32(alphas)
        self.alpha_bar = f32(alpha_bar)
        self.alpha_bar_prev = f32(alpha_bar_prev)
        self.posterior_variance = f32(betas * (1 - alpha_bar_prev) / (1 - alpha_bar))
        # mean of q(x_{t-1} | x_t, x_0) = coef_x0 * x_0 + coef_xt * x_t, in float64 first
        # (near t = 0 the float32 alpha_bar loses the last digits of 1 - alpha_bar)
        self.posterior_coef_x0 = f32(alpha_bar_prev.sqrt() * betas / (1 - alpha_bar))
        self.posterior_coef_xt = f32(alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar))
        self.snr = f32(alpha_bar / (1 - alpha_bar))

    @classmethod
    def from_name(cls, name: str, T: int, **kwargs) -> "DiscreteSchedule":
        """``DiscreteSchedule(beta_schedule(name, T, **kwargs))``."""
        return cls(beta_schedule(name, T, **kwargs))

    def to(self, device) -> "DiscreteSchedule":
        """A copy whose tensors live on ``device``."""
        new = object.__new__(DiscreteSchedule)
        for key, value in vars(self).items():
            setattr(new, key, value.to(device) if isinstance(value, torch.Tensor) else value)
        return new

    def __repr__(self) -> str:
        return (f"DiscreteSchedule(T={self.T}, beta in [{self.betas.min().item():.3g}, "
                f"{self.betas.max().item():.3g}], alpha_bar_T={self.alpha_bar[-1].item():.3g})")
