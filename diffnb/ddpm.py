"""Discrete-time DDPM (Ho et al., 2020): forward process, posterior, loss, sampling.

Shapes: ``x0``, ``xt`` and noise are (B, ...) batches; ``t`` is an integer
tensor of shape (B,) with values in [0, T) (see ``schedules`` for the index
convention). A noise-prediction model is called as ``model(xt, t)`` and
returns a tensor shaped like ``xt``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .device import default_device
from .schedules import DiscreteSchedule

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
VARIANCES = ("beta_tilde", "beta")


def _per_sample(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to (B, 1, 1, ...) so that it broadcasts against ``x``."""
    return values.to(x.device)[t].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def check_timesteps(t: torch.Tensor, x: torch.Tensor, T: int) -> None:
    """Raise unless ``t`` is an integer tensor of shape (B,) with values in [0, T)."""
    if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer tensor of shape ({x.shape[0]},), got {t!r:.60}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape ({x.shape[0]},) to match a batch of {x.shape[0]}, got {tuple(t.shape)}")
    if t.numel() and (t.min() < 0 or t.max() >= T):
        bad = t[(t < 0) | (t >= T)][0].item()
        raise ValueError(f"time step t = {bad} is outside [0, {T}) for a schedule with T = {T}")


def check_same_shape(name: str, a: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if a.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name}, {tuple(ref.shape)}; got {tuple(a.shape)}")


def q_step(sched: DiscreteSchedule, x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One forward step, a draw from q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)."""
    check_timesteps(t, x_prev, sched.T)
    check_same_shape("noise", noise, "x_prev", x_prev)
    beta = _per_sample(sched.betas, t, x_prev)
    return (1 - beta).sqrt() * x_prev + beta.sqrt() * noise


def q_sample(sched: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Closed form, a draw from q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""
    check_timesteps(t, x0, sched.T)
    check_same_shape("noise", noise, "x0", x0)
    ab = _per_sample(sched.alpha_bar, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def predict_x0(sched: DiscreteSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert the closed form: x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    ab = _per_sample(sched.alpha_bar, t, xt)
    return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()


def posterior(sched: DiscreteSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor):
    """Mean and variance of q(x_{t-1} | x_t, x_0); the variance is beta-tilde_t, shape (B, 1, ...).

    mean = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0
         + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    """
    check_timesteps(t, xt, sched.T)
    check_same_shape("x0", x0, "xt", xt)
    coef_x0 = _per_sample(sched.posterior_coef_x0, t, xt)
    coef_xt = _per_sample(sched.posterior_coef_xt, t, xt)
    mean = coef_x0 * x0 + coef_xt * xt
    return mean, _per_sample(sched.posterior_variance, t, xt)


LOSSES = ("mse", "l1", "huber")


def eps_loss(model: Model, sched: DiscreteSchedule, x0: torch.Tensor,
             generator: torch.Generator | None = None, kind: str = "mse") -> torch.Tensor:
    """The simple DDPM loss: E_{t, eps} || eps - model(x_t, t) ||^2, t uniform in [0, T).

    ``kind`` swaps the squared error for the absolute error (``"l1"``) or the Huber loss
    (``"huber"``: squared below 1, absolute above), variants some implementations use.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; allowed: {', '.join(map(repr, LOSSES))}")
    t = torch.randint(0, sched.T, (x0.shape[0],), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    pred = model(q_sample(sched, x0, t, noise), t)
    check_same_shape("the model's output", pred, "x0", x0)   # else the loss would broadcast
    if kind == "l1":
        return F.l1_loss(pred, noise)
    if kind == "huber":
        return F.huber_loss(pred, noise, delta=1.0)
    return F.mse_loss(pred, noise)


def p_step(model: Model, sched: DiscreteSchedule, xt: torch.Tensor, t: int, noise: torch.Tensor,
           variance: str = "beta", clip_x0: float | None = None):
    """One ancestral step x_t -> x_{t-1}; returns (x_{t-1}, predicted x0).

    The model's noise estimate gives an estimate of x0, which goes into the
    posterior mean. ``variance`` is ``"beta"`` (beta_t, the default, as Ho et
    al. sampled) or ``"beta_tilde"`` (beta-tilde_t, the posterior's own): the
    upper and lower choices of their paper. No noise is added at the last step.
    ``clip_x0`` clamps the x0 estimate to [-clip_x0, clip_x0] (useful for images).
    """
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; allowed: {', '.join(map(repr, VARIANCES))}")
    _check_clip(clip_x0)
    tt = torch.full((xt.shape[0],), t, device=xt.device, dtype=torch.long)
    check_timesteps(tt, xt, sched.T)
    if t > 0:   # the last step adds none, so noise may be None there only
        if noise is None:
            raise ValueError(f"noise is None; it must be a tensor of the shape of x_t, {tuple(xt.shape)}, "
                             "except at the last step")
        check_same_shape("noise", noise, "x_t", xt)
    x0 = predict_x0(sched, xt, tt, model(xt, tt))
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    mean, var = posterior(sched, x0, xt, tt)
    if variance == "beta":
        var = _per_sample(sched.betas, tt, xt)
    if t == 0:
        return mean, x0
    return mean + var.sqrt() * noise, x0


def _check_clip(clip_x0) -> None:
    # bool is an int: clip_x0=True would clamp to [-1, 1] and False to zero
    if clip_x0 is not None and (isinstance(clip_x0, bool) or not clip_x0 > 0):
        raise ValueError(f"clip_x0 must be None or a positive number, got {clip_x0!r}")


@torch.no_grad()
def sample(model: Model, sched: DiscreteSchedule, shape: tuple[int, ...], *, device=None,
           generator: torch.Generator | None = None, variance: str = "beta",
           clip_x0: float | None = None, keep_every: int = 0):
    """Ancestral sampling from x_T ~ N(0, I) down to x_0, through all T steps, on ``device``
    (by default the model's; ``generator`` must live there).

    Returns the samples, shape ``shape``; with ``keep_every=k > 0`` returns
    ``(samples, xs, x0s)``: ``xs`` stacks x_T and every k-th x_t, shape
    (n_kept, *shape), and ``x0s`` the model's estimates of x_0 at the same steps
    (x_T's entry is zeros: there is no estimate yet), both on the CPU.
    """
    device = default_device(model, device)
    x = torch.randn(shape, device=device, generator=generator)
    xs, x0s = [x.cpu()], [torch.zeros(shape)]
    for i, t in enumerate(reversed(range(sched.T))):
        noise = torch.randn(shape, device=device, generator=generator) if t > 0 else None
        x, x0 = p_step(model, sched, x, t, noise, variance=variance, clip_x0=clip_x0)
        if keep_every and ((i + 1) % keep_every == 0 or t == 0):
            xs.append(x.cpu())
            x0s.append(x0.cpu())
    return (x, torch.stack(xs), torch.stack(x0s)) if keep_every else x


def timesteps(T: int, steps: int) -> torch.Tensor:
    """``steps`` time steps spread evenly over [0, T - 1], increasing, both ends included."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, {T}] for a schedule with T = {T}, got {steps!r}")
    if steps == 1:
        return torch.tensor([T - 1])
    return torch.linspace(0, T - 1, steps).round().long()


def ddim_step(sched: DiscreteSchedule, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
              t_prev: torch.Tensor, *, eta: float = 0.0, noise: torch.Tensor | None = None,
              clip_x0: float | None = None):
    """One DDIM step from time t to an earlier time t_prev; returns (x_prev, predicted x0).

    ``x_t``, ``eps`` (the model's noise estimate) and ``noise``: (B, ...); ``t`` and
    ``t_prev``: (B,) integer tensors, -1 <= t_prev < t < T, where t_prev = -1 is the end
    of the chain (abar = 1 there, so x_prev is the x0 estimate). With abar = alpha_bar,

        x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),
        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma noise,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).

    ``eta=0`` (the default) is deterministic and needs no ``noise``; ``noise`` is needed
    when eta > 0, except at the end of the chain, where sigma = 0. ``clip_x0`` clamps the
    x0 estimate to [-clip_x0, clip_x0], and eps becomes the noise the clamped x0 implies.
    """
    _check_eta(eta)
    _check_clip(clip_x0)
    check_timesteps(t, x_t, sched.T)
    check_same_shape("eps", eps, "x_t", x_t)
    if (not isinstance(t_prev, torch.Tensor) or t_prev.dtype.is_floating_point or t_prev.dtype == torch.bool
            or t_prev.shape != t.shape or not ((t_prev >= -1) & (t_prev < t)).all()):
        raise ValueError(f"t_prev must be an integer tensor of shape {tuple(t.shape)} with -1 <= t_prev < t")
    if eta > 0 and noise is None and (t_prev >= 0).any():
        raise ValueError("eta > 0 needs noise, except at the end of the chain (t_prev = -1)")
    if noise is not None:
        check_same_shape("noise", noise, "x_t", x_t)
    a_t = _per_sample(sched.alpha_bar, t, x_t)
    a_s = _per_sample(sched.alpha_bar_prev, t_prev + 1, x_t)   # alpha_bar[t_prev], and 1 at t_prev = -1
    x0 = predict_x0(sched, x_t, t, eps)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()     # the noise the clamped x0 implies
    sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
    x_prev = a_s.sqrt() * x0 + (1 - a_s - sigma ** 2).clamp(min=0).sqrt() * eps
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


def _check_eta(eta) -> None:
    if not eta >= 0:
        raise ValueError(f"eta must be non-negative, got {eta!r}")


@torch.no_grad()
def ddim_sample(model: Model, sched: DiscreteSchedule, shape: tuple[int, ...], *, steps: int,
                eta: float = 0.0, device=None, generator: torch.Generator | None = None,
                clip_x0: float | None = None, keep_every: int = 0):
    """DDIM (Song, Meng and Ermon, 2021) over ``steps`` of the T time steps (``timesteps``).

    From x_t, with the model's x0 estimate and the noise it implies, the step to the
    previous kept time s is

        x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z,
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s).

    ``eta=0`` is deterministic; ``eta=1`` is ancestral sampling on the kept steps with
    the posterior variance (with ``steps=T`` it equals ``sample(variance="beta_tilde")``).
    Returns like ``sample``: the samples, or ``(samples, xs, x0s)`` with ``keep_every``; runs
    on ``device``, by default the model's.
    """
    _check_eta(eta)
    _check_clip(clip_x0)
    device = default_device(model, device)
    ts = timesteps(sched.T, steps).tolist()
    x = torch.randn(shape, device=device, generator=generator)
    xs, x0s = [x.cpu()], [torch.zeros(shape)]
    for i in reversed(range(len(ts))):
        tt = torch.full((shape[0],), ts[i], device=device, dtype=torch.long)
        eps = model(x, tt)
        noise = torch.randn(shape, device=device, generator=generator) if i > 0 and eta > 0 else None
        x, x0 = ddim_step(sched, x, eps, tt, torch.full_like(tt, ts[i - 1] if i > 0 else -1),
                          eta=eta, noise=noise, clip_x0=clip_x0)
        if keep_every and ((len(ts) - i) % keep_every == 0 or i == 0):
            xs.append(x.cpu())
            x0s.append(x0.cpu())
    return (x, torch.stack(xs), torch.stack(x0s)) if keep_every else x
