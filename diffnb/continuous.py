"""Continuous-time diffusion in log-SNR form (Kingma et al., 2021; Hoogeboom, Heek and Salimans, 2023).

Shapes: ``x`` (data), ``z`` (noised data) and ``noise`` are (B, ...) batches;
time ``t`` is a float tensor of shape (B,) in [0, 1]; ``log_snr`` is lambda(t)
of shape (B,), broadcast over the other dimensions of ``x``. The noise level
is lambda = log(alpha^2 / sigma^2) with alpha^2 = sigmoid(lambda) and
sigma^2 = sigmoid(-lambda) (so alpha^2 + sigma^2 = 1), and
z_t = alpha_t x + sigma_t eps. The schedules t -> lambda live in
``diffnb.schedules`` (``log_snr_schedule``).

A model is called as ``model(z_t, log_snr)`` and returns a tensor shaped like
``z_t``: the network is told the noise level lambda itself, not the clock t.
What a denoiser must undo depends on lambda alone, so a network trained on one
schedule can be sampled with another (or with other step counts). Unscaled lambda
(roughly -25 to 15 for these schedules) suits the sinusoidal embedding of ``models.UNet``,
which takes float times as they are: its slowest features (frequency ~1e-4) are
monotonic over the whole range, so no two levels share an embedding, and its
fastest (frequency 1) turn once every 2 pi ~ 6 units of lambda.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from .device import default_device

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LogSNRSchedule = Callable[[torch.Tensor], torch.Tensor]
PARAMETERISATIONS = ("eps", "x", "v")
WEIGHTINGS = (None, "min_snr")
SAMPLERS = ("ancestral", "ddim")


def alpha_sigma(log_snr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) = (sqrt(sigmoid(lambda)), sqrt(sigmoid(-lambda))), each shaped like ``log_snr``.

    Through the sigmoid, never exp(lambda): both stay finite and accurate in
    float32 at lambda = +-15 (the small one is about 5.5e-4, not 0).
    """
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def diffuse(x: torch.Tensor, log_snr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z_t = alpha_t x + sigma_t noise, a draw from q(z_t | x); shape of ``x``."""
    _check_log_snr(log_snr, x)
    _check_same_shape("noise", noise, x)
    alpha, sigma = alpha_sigma(_per_sample(log_snr, x))
    return alpha * x + sigma * noise


def target(x: torch.Tensor, noise: torch.Tensor, log_snr: torch.Tensor, parameterisation: str) -> torch.Tensor:
    """What a model of the given parameterisation learns to output for z_t = diffuse(x, log_snr, noise).

    ``eps``: the noise; ``x``: the data; ``v``: alpha noise - sigma x (Salimans and Ho, 2022).
    """
    _check_parameterisation(parameterisation)
    _check_log_snr(log_snr, x)
    _check_same_shape("noise", noise, x)
    if parameterisation == "eps":
        return noise
    if parameterisation == "x":
        return x
    alpha, sigma = alpha_sigma(_per_sample(log_snr, x))
    return alpha * noise - sigma * x


def to_x_eps(output: torch.Tensor, z: torch.Tensor, log_snr: torch.Tensor,
             parameterisation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, eps_hat), the data and noise estimates implied by a model ``output`` at ``z``.

    ``eps`` divides by alpha, so its x_hat loses accuracy at low SNR (float32: ~1e-7
    / alpha); ``x`` divides by sigma, the same at high SNR. ``v`` only rotates,
    x = alpha z - sigma v and eps = sigma z + alpha v (alpha^2 + sigma^2 = 1):
    accurate at every lambda, one reason simple diffusion predicts v.
    """
    _check_parameterisation(parameterisation)
    _check_log_snr(log_snr, z)
    _check_same_shape("output", output, z)
    alpha, sigma = alpha_sigma(_per_sample(log_snr, z))
    if parameterisation == "eps":
        return (z - sigma * output) / alpha, output
    if parameterisation == "x":
        return output, (z - alpha * output) / sigma
    return alpha * z - sigma * output, sigma * z + alpha * output


def min_snr_weight(log_snr: torch.Tensor, gamma: float = 5.0, parameterisation: str = "eps") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al., 2023), shape of ``log_snr``.

    One weighting, min(SNR, gamma) on the x-MSE, written for each loss space (the
    eps-MSE is SNR times the x-MSE, the v-MSE (1 + SNR) times it):

    - ``eps``: min(SNR, gamma) / SNR        = exp(min(0, log gamma - lambda))
    - ``v``:   min(SNR, gamma) / (SNR + 1)  = exp(min(lambda, log gamma) - softplus(lambda))
    - ``x``:   min(SNR, gamma)              = exp(min(lambda, log gamma))

    Formed from lambda in log space, so no SNR = exp(lambda) is ever built (it
    overflows float16 past lambda = 11, float32 past 88).
    (1 / (1 + min(SNR, gamma)), which some implementations apply to the epsilon-error of a
    v-model, is none of these.)
    """
    _check_parameterisation(parameterisation)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma < math.inf:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    log_gamma = math.log(gamma)
    if parameterisation == "eps":
        return torch.exp(torch.clamp(log_gamma - log_snr, max=0.0))
    if parameterisation == "v":
        return torch.exp(torch.clamp(log_snr, max=log_gamma) - F.softplus(log_snr))
    return torch.exp(torch.clamp(log_snr, max=log_gamma))


def loss(model: Model, x: torch.Tensor, log_snr_fn: LogSNRSchedule, parameterisation: str = "v",
         weighting: str | None = None, gamma: float = 5.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """The training loss, a scalar: E_{t, eps} w(lambda_t) || model(z_t, lambda_t) - target ||^2.

    t ~ U(0, 1) and eps ~ N(0, I) are drawn per sample (from ``generator``);
    the squared error is averaged over each sample's elements, weighted by
    ``min_snr_weight(lambda_t, gamma, parameterisation)`` when
    ``weighting="min_snr"`` (``None``: unweighted), then averaged over the batch.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; allowed: {', '.join(map(repr, WEIGHTINGS))}")
    _check_parameterisation(parameterisation)
    t = torch.rand(x.shape[0], device=x.device, dtype=x.dtype, generator=generator)
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    log_snr = log_snr_fn(t)
    out = model(diffuse(x, log_snr, noise), log_snr)
    _check_same_shape("the model's output", out, x)
    per_sample = (out - target(x, noise, log_snr, parameterisation)).pow(2).flatten(1).mean(1)
    if weighting == "min_snr":
        per_sample = per_sample * min_snr_weight(log_snr, gamma, parameterisation)
    return per_sample.mean()


def posterior(z_t: torch.Tensor, x: torch.Tensor, log_snr_t: torch.Tensor,
              log_snr_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(z_s | z_t, x) for an earlier time s (lambda_s > lambda_t).

    With alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
    (the forward step from s to t), and c = 1 - SNR_t / SNR_s = -expm1(lambda_t - lambda_s):

        mean = (alpha_{t|s} sigma_s^2 / sigma_t^2) z_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x
             = alpha_s (1 - c) / alpha_t * z_t + alpha_s c x
        var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 = c sigma_s^2          (shape (B, 1, ...))

    since sigma_{t|s}^2 = sigma_t^2 c. expm1 keeps c's digits when the step is small.
    """
    _check_log_snr(log_snr_t, z_t)
    _check_log_snr(log_snr_s, z_t)
    _check_same_shape("x", x, z_t)
    lt, ls = _per_sample(log_snr_t, z_t), _per_sample(log_snr_s, z_t)
    c = -torch.expm1(lt - ls)
    # alpha_s / alpha_t * (1 - c) in log space: alpha_s / alpha_t alone reaches ~1800 at lambda_t = -15
    coef_z = torch.exp(0.5 * (F.logsigmoid(ls) - F.logsigmoid(lt)) + lt - ls)
    alpha_s = torch.sigmoid(ls).sqrt()
    return coef_z * z_t + alpha_s * c * x, c * torch.sigmoid(-ls)


@torch.no_grad()
def sample(model: Model, log_snr_fn: LogSNRSchedule, shape: tuple[int, ...], steps: int, *,
           sampler: str = "ancestral", parameterisation: str = "v", clip_x: bool = True, device=None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw samples of ``shape`` by stepping t from 1 to 0 in ``steps`` equal steps.

    Starts from z_1 ~ N(0, I). At each step t -> s the model's output gives
    (x_hat, eps_hat) (``to_x_eps``), x_hat clamped to [-1, 1] with ``clip_x`` (then
    eps_hat is recomputed to match it), and

    - ``ancestral``: z_s ~ q(z_s | z_t, x = x_hat), ``posterior`` (VDM's sampler);
    - ``ddim``: z_s = alpha_s x_hat + sigma_s eps_hat, deterministic (Song et al., 2021).

    The last step, to t = 0, goes to clean data (infinite SNR) rather than to
    lambda(0) = lambda_max: there the posterior collapses onto x_hat (c = 1, zero
    variance) and DDIM lands on x_hat, so both return the model's x_hat at t = 1 / steps.
    ``device`` defaults to the model's (its first parameter's), else the CPU.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(map(repr, SAMPLERS))}")
    _check_parameterisation(parameterisation)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(clip_x, bool):
        raise ValueError(f"clip_x must be True or False, got {clip_x!r}")
    device = default_device(model, device)
    z = torch.randn(shape, device=device, generator=generator)
    times = torch.linspace(1.0, 0.0, steps + 1, device=device)
    for i in range(steps):
        log_snr_t = log_snr_fn(times[i].expand(shape[0]))
        x_hat, eps_hat = to_x_eps(model(z, log_snr_t), z, log_snr_t, parameterisation)
        if clip_x:
            x_hat = x_hat.clamp(-1.0, 1.0)
            alpha_t, sigma_t = alpha_sigma(_per_sample(log_snr_t, z))
            eps_hat = (z - alpha_t * x_hat) / sigma_t      # the noise the clamped x_hat implies
        if i == steps - 1:
            return x_hat
        log_snr_s = log_snr_fn(times[i + 1].expand(shape[0]))
        if sampler == "ddim":
            alpha_s, sigma_s = alpha_sigma(_per_sample(log_snr_s, z))
            z = alpha_s * x_hat + sigma_s * eps_hat
        else:
            mean, var = posterior(z, x_hat, log_snr_t, log_snr_s)
            z = mean + var.sqrt() * torch.randn(shape, device=device, generator=generator)
    raise AssertionError("unreachable: the loop returns at its last step")


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) so that it broadcasts against ``x``."""
    return values.reshape(-1, *([1] * (x.ndim - 1)))


def _check_log_snr(log_snr, x: torch.Tensor) -> None:
    if not isinstance(log_snr, torch.Tensor) or not log_snr.dtype.is_floating_point:
        raise TypeError(f"log_snr must be a float tensor of shape ({x.shape[0]},), got {log_snr!r:.60}")
    if log_snr.shape != (x.shape[0],):
        raise ValueError(f"log_snr must have shape ({x.shape[0]},) to match a batch of {x.shape[0]}, "
                         f"got {tuple(log_snr.shape)}")


def _check_same_shape(name: str, a: torch.Tensor, ref: torch.Tensor) -> None:
    if a.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of the data, {tuple(ref.shape)}; got {tuple(a.shape)}")


def _check_parameterisation(parameterisation) -> None:
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(f"unknown parameterisation {parameterisation!r}; "
                         f"allowed: {', '.join(map(repr, PARAMETERISATIONS))}")
