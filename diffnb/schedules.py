"""Noise schedules: discrete beta schedules of DDPM, continuous log-SNR schedules.

Discrete: a schedule is the list of per-step noise variances beta_1 .. beta_T.
Index convention used throughout ``diffnb``: a time step is an integer ``t`` in
``[0, T)``; index ``t`` holds the paper's beta_{t+1}, so ``alpha_bar[t]`` is the
signal kept after ``t + 1`` noising steps and ``alpha_bar[T - 1]`` is (nearly)
pure noise.

Continuous (``diffnb.continuous`` uses these): a schedule maps a float time
``t`` in [0, 1] to the log signal-to-noise ratio lambda(t) = log(alpha_t^2 /
sigma_t^2), decreasing from ``lambda_max`` (almost clean, t = 0) to
``lambda_min`` (almost pure noise, t = 1). ``discrete_log_snr`` puts a
``DiscreteSchedule`` on the same axes.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Callable

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


# --- continuous log-SNR schedules ---------------------------------------------------

LOG_SNR_NAMES = ("cosine", "shifted_cosine", "interpolated_cosine")


def cosine_log_snr(t: torch.Tensor, *, lambda_min: float = -15.0, lambda_max: float = 15.0) -> torch.Tensor:
    """The cosine schedule in log-SNR form, lambda(t) = -2 log tan(a t + b); same shape as ``t``.

    ``t`` is a float tensor of any shape with values in [0, 1]. Without clipping,
    -2 log tan(pi t / 2) is the cosine schedule alpha_t = cos(pi t / 2) and runs from
    +inf to -inf; here t is mapped into the arc where lambda stays in
    [lambda_min, lambda_max]: b = atan(exp(-lambda_max / 2)), a = atan(exp(-lambda_min / 2)) - b,
    so lambda(0) = lambda_max and lambda(1) = lambda_min, and the curve stays smooth
    (clamping lambda itself would put corners in it).
    """
    _check_time(t)
    _check_lambda_range(lambda_min, lambda_max)
    b = _atan_exp(-lambda_max / 2)
    a = _atan_exp(-lambda_min / 2) - b
    e = _atan_exp(lambda_min / 2)            # pi/2 - (a + b), formed without cancellation
    # Near t = 1, a t + b lies within 1e-3 of pi/2, and tan depends on the distance to pi/2,
    # of which float32 keeps only a few digits there. So past pi/4 use tan(u) = 1 / tan(pi/2 - u)
    # with pi/2 - u = e + a (1 - t): a sum of positive terms, accurate in any precision.
    near_clean = -2 * torch.log(torch.tan(b + a * t))
    near_noise = 2 * torch.log(torch.tan(e + a * (1 - t)))
    return torch.where(b + a * t <= math.pi / 4, near_clean, near_noise)


def shifted_cosine_log_snr(t: torch.Tensor, *, resolution: float, base: float = 64,
                           lambda_min: float = -15.0, lambda_max: float = 15.0) -> torch.Tensor:
    """The shifted cosine schedule of simple diffusion: cosine(t) + 2 log(base / resolution).

    An image of side ``resolution`` averaged down to side ``base`` has its noise
    variance cut by (resolution / base)^2, so matching the SNR seen at the ``base``
    resolution takes that much more noise. The clipping bounds move with the shift:
    the result equals ``cosine_log_snr(t) + shift`` for every t, so it runs from
    lambda_max + shift (t = 0) down to lambda_min + shift (t = 1); ``lambda_min`` and
    ``lambda_max`` are the bounds of the unshifted cosine. Requires base <= resolution.
    """
    shift = _shift(resolution, base)
    return cosine_log_snr(t, lambda_min=lambda_min, lambda_max=lambda_max) + shift


def interpolated_cosine_log_snr(t: torch.Tensor, *, resolution: float, base: tuple[float, float],
                                lambda_min: float = -15.0, lambda_max: float = 15.0) -> torch.Tensor:
    """Simple diffusion's interpolated schedule: two shifted cosines blended in t.

    With ``base = (low, high)`` (low <= high <= resolution, e.g. (32, 256) at 512x512):

        lambda(t) = t * shifted(t; base=low) + (1 - t) * shifted(t; base=high)

    The low reference (more noise) gets weight t, the noisy end; the high one
    (less noise) gets weight 1 - t, the detailed end: lambda(0) = lambda_max +
    2 log(high / resolution) and lambda(1) = lambda_min + 2 log(low / resolution).
    The weights follow ``logsnr_schedule_interpolated`` of the reference
    implementations (lucidrains' denoising-diffusion-pytorch, simple_diffusion.py).
    """
    low, high = _base_pair(base)
    return (t * shifted_cosine_log_snr(t, resolution=resolution, base=low, lambda_min=lambda_min,
                                       lambda_max=lambda_max)
            + (1 - t) * shifted_cosine_log_snr(t, resolution=resolution, base=high, lambda_min=lambda_min,
                                               lambda_max=lambda_max))


def log_snr_schedule(name: str, *, resolution: float | None = None, base: float | tuple[float, float] = 64,
                     lambda_min: float = -15.0, lambda_max: float = 15.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A named log-SNR schedule as a function t -> lambda(t) (float tensor, shape kept).

    - ``cosine``: ``cosine_log_snr``; takes no ``resolution``.
    - ``shifted_cosine``: ``shifted_cosine_log_snr``; needs ``resolution``, ``base`` a number.
    - ``interpolated_cosine``: ``interpolated_cosine_log_snr``; needs ``resolution`` and
      ``base=(low, high)``.

    Every argument is checked here, so a bad one fails now, not at the first call.
    """
    if name not in LOG_SNR_NAMES:
        raise ValueError(f"unknown log-SNR schedule {name!r}; allowed: {', '.join(map(repr, LOG_SNR_NAMES))}")
    _check_lambda_range(lambda_min, lambda_max)
    bounds = {"lambda_min": lambda_min, "lambda_max": lambda_max}
    if name == "cosine":
        if resolution is not None:
            raise ValueError(f"the 'cosine' schedule takes no resolution (got {resolution!r}); "
                             "did you mean 'shifted_cosine'?")
        return functools.partial(cosine_log_snr, **bounds)
    if resolution is None:
        raise ValueError(f"the {name!r} schedule needs the image resolution (resolution=..., the side in "
                         "pixels): its shift is 2 log(base / resolution)")
    if name == "shifted_cosine":
        if isinstance(base, (tuple, list)):
            raise ValueError(f"'shifted_cosine' takes one reference resolution, base = a number; got {base!r} "
                             "(a pair is for 'interpolated_cosine')")
        _shift(resolution, base)
        return functools.partial(shifted_cosine_log_snr, resolution=resolution, base=base, **bounds)
    low, high = _base_pair(base)
    _shift(resolution, low)
    _shift(resolution, high)
    return functools.partial(interpolated_cosine_log_snr, resolution=resolution, base=(low, high), **bounds)


def discrete_log_snr(schedule: DiscreteSchedule | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A discrete schedule on the continuous axes: ``(t, lambda)``, shape (T,) each.

    ``schedule`` is a ``DiscreteSchedule`` or its ``alpha_bar`` (1-D, values in (0, 1)).
    Step index i (0-based) sits at t = (i + 1) / T, with lambda = log(alpha_bar_i / (1 - alpha_bar_i)),
    so the last step lands on t = 1 as the continuous schedules' noisy end does.
    """
    if isinstance(schedule, DiscreteSchedule):
        log_snr = schedule.snr.log()    # snr was formed in float64: 1 - alpha_bar kept its digits
    elif isinstance(schedule, torch.Tensor) and schedule.ndim == 1 and schedule.numel() > 0 \
            and schedule.dtype.is_floating_point:
        bad = ~((schedule > 0) & (schedule < 1))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"alpha_bar must lie in the open interval (0, 1); alpha_bar[{i}] = "
                             f"{schedule[i].item()!r}")
        log_snr = schedule.log() - torch.log1p(-schedule)
    else:
        raise TypeError(f"expected a DiscreteSchedule or a 1-D float tensor alpha_bar, got {schedule!r:.80}")
    T = log_snr.numel()
    t = torch.arange(1, T + 1, dtype=log_snr.dtype, device=log_snr.device) / T
    return t, log_snr


def _check_time(t) -> None:
    if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
        raise TypeError(f"t must be a float tensor with values in [0, 1] (continuous time), got {t!r:.80}")


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_lambda_range(lambda_min, lambda_max) -> None:
    _check_number("lambda_min", lambda_min)
    _check_number("lambda_max", lambda_max)
    if lambda_min >= lambda_max:
        raise ValueError(f"lambda_min must be below lambda_max, got lambda_min = {lambda_min!r} "
                         f">= lambda_max = {lambda_max!r}")


def _shift(resolution, base) -> float:
    """2 log(base / resolution) (<= 0), after checking both are positive and base <= resolution."""
    for name, value in (("resolution", resolution), ("base", base)):
        _check_number(name, value)
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if resolution < base:
        raise ValueError(f"resolution {resolution!r} is below the reference resolution base = {base!r}: "
                         "the shift 2 log(base / resolution) would take noise away; use base <= resolution")
    return 2 * math.log(base / resolution)


def _base_pair(base) -> tuple[float, float]:
    if not isinstance(base, (tuple, list)) or len(base) != 2:
        raise ValueError(f"'interpolated_cosine' needs two reference resolutions, base = (low, high), "
                         f"e.g. (32, 256) at 512x512; got base = {base!r}")
    low, high = base
    _check_number("base low", low)
    _check_number("base high", high)
    if low > high:
        raise ValueError(f"base = (low, high) must have low <= high, got low = {low!r} > high = {high!r}")
    return low, high


def _atan_exp(y: float) -> float:
    """atan(exp(y)) without overflowing exp for large y."""
    return math.atan(math.exp(y)) if y <= 0 else math.pi / 2 - math.atan(math.exp(-y))
