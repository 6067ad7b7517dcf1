"""Unit tests of diffnb.exercises: each checker passes the right answer, names the common wrong ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffnb.exercises import (Report, check_beta_schedule, check_ddim_step, check_min_snr_weight, check_posterior_mean,
                              check_q_sample, check_time_embedding)

# --- reference solutions, written as a reader would -------------------------------------


def per_sample(v, x):
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def q_sample(x0, t, noise, alpha_bar):
    ab = per_sample(alpha_bar[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def linear_betas(T, start=1e-4, end=0.02):
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T, s=0.008, max_beta=0.999, dtype=torch.float64, clip=True):
    u = torch.arange(T + 1, dtype=dtype) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta) if clip else betas


def schedule(betas):
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, 0)
    alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return alphas, alpha_bar, alpha_bar_prev


def posterior_mean(x0, xt, t, betas):
    alphas, ab, ab_prev = schedule(betas)
    coef_x0 = ab_prev.sqrt() * betas / (1 - ab)
    coef_xt = alphas.sqrt() * (1 - ab_prev) / (1 - ab)
    return per_sample(coef_x0[t], x0) * x0 + per_sample(coef_xt[t], x0) * xt


def time_embedding(t, dim):
    k = torch.arange(dim // 2, dtype=torch.float32, device=t.device)
    freqs = 10_000.0 ** (-k / (dim // 2))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def ddim_from(x_t, eps, ab_t, ab_prev):
    """The DDIM step with alpha_bar_t and alpha_bar_prev given per sample, shape (B,)."""
    ab_t, ab_prev = per_sample(ab_t, x_t), per_sample(ab_prev, x_t)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


def ddim_step(x_t, eps, t, t_prev, alpha_bar):
    ab_prev = torch.where(t_prev >= 0, alpha_bar[t_prev], torch.ones_like(alpha_bar[t_prev]))
    return ddim_from(x_t, eps, alpha_bar[t], ab_prev)


def min_snr_weight(log_snr, gamma, parameterisation):
    log_gamma = math.log(gamma)
    if parameterisation == "x":
        return torch.exp(torch.clamp(log_snr, max=log_gamma))
    w_eps = torch.exp(torch.clamp(log_gamma - log_snr, max=0.0))    # min(1, gamma / SNR)
    if parameterisation == "eps":
        return w_eps
    return w_eps * torch.sigmoid(log_snr)                           # times SNR / (SNR + 1)


def min_snr_weight_naive(log_snr, gamma, parameterisation):
    """The published formulas as written, through SNR = exp(lambda): inf in float16 above lambda = 11.09."""
    snr = log_snr.exp()
    capped = torch.clamp(snr, max=gamma)
    if parameterisation == "eps":
        return capped / snr
    if parameterisation == "v":
        return capped / (snr + 1)
    return capped


def stub(*args):
    raise NotImplementedError("exercise: fill in")


# --- common wrong answers ---------------------------------------------------------------


def q_no_sqrt(x0, t, noise, alpha_bar):
    ab = per_sample(alpha_bar[t], x0)
    return ab * x0 + (1 - ab) * noise


def q_variance_for_noise(x0, t, noise, alpha_bar):
    ab = per_sample(alpha_bar[t], x0)
    return ab.sqrt() * x0 + (1 - ab) * noise


def q_uniform(x0, t, noise, alpha_bar):
    ab = per_sample(alpha_bar[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * torch.rand_like(x0)


def q_own_gaussian(x0, t, noise, alpha_bar):
    return q_sample(x0, t, torch.randn_like(x0), alpha_bar)


def q_fixed_seed(x0, t, noise, alpha_bar):
    gen = torch.Generator().manual_seed(0)
    return q_sample(x0, t, torch.randn(x0.shape, generator=gen), alpha_bar)


def q_t_minus_1(x0, t, noise, alpha_bar):
    return q_sample(x0, t - 1, noise, alpha_bar)


def q_t_plus_1(x0, t, noise, alpha_bar):
    return q_sample(x0, t + 1, noise, alpha_bar)


def q_t_plus_1_clamped(x0, t, noise, alpha_bar):
    return q_sample(x0, (t + 1).clamp(max=len(alpha_bar) - 1), noise, alpha_bar)


def q_swapped(x0, t, noise, alpha_bar):
    return q_sample(noise, t, x0, alpha_bar)


def q_not_reshaped(x0, t, noise, alpha_bar):
    ab = alpha_bar[t]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_points_only(x0, t, noise, alpha_bar):
    ab = alpha_bar[t][:, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_images_only(x0, t, noise, alpha_bar):
    ab = alpha_bar[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_if_on_t(x0, t, noise, alpha_bar):
    if t > 0:
        return q_sample(x0, t, noise, alpha_bar)
    return x0


def posterior_swapped(x0, xt, t, betas):
    return posterior_mean(xt, x0, t, betas)


def posterior_alpha_bar_t(x0, xt, t, betas):
    alphas, ab, _ = schedule(betas)
    coef_x0 = ab.sqrt() * betas / (1 - ab)
    coef_xt = alphas.sqrt() * (1 - ab) / (1 - ab)
    return per_sample(coef_x0[t], x0) * x0 + per_sample(coef_xt[t], x0) * xt


def _posterior_with_prev(x0, xt, t, betas, prev):
    """The posterior mean with alpha_bar_{t-1} read at index ``prev`` (wrong at t = 0)."""
    alphas, ab, _ = schedule(betas)
    ab_t, ab_prev = ab[t], ab[prev]
    coef_x0 = ab_prev.sqrt() * betas[t] / (1 - ab_t)
    coef_xt = alphas[t].sqrt() * (1 - ab_prev) / (1 - ab_t)
    return per_sample(coef_x0, x0) * x0 + per_sample(coef_xt, x0) * xt


def posterior_wraps_at_0(x0, xt, t, betas):
    return _posterior_with_prev(x0, xt, t, betas, t - 1)


def posterior_clamps_at_0(x0, xt, t, betas):
    return _posterior_with_prev(x0, xt, t, betas, (t - 1).clamp(min=0))


def posterior_alpha_bar_for_alpha(x0, xt, t, betas):
    _, ab, ab_prev = schedule(betas)
    coef_x0 = ab_prev.sqrt() * betas / (1 - ab)
    coef_xt = ab.sqrt() * (1 - ab_prev) / (1 - ab)
    return per_sample(coef_x0[t], x0) * x0 + per_sample(coef_xt[t], x0) * xt


def posterior_float32(x0, xt, t, betas):
    return posterior_mean(x0, xt, t, betas.float())


def posterior_with_variance(x0, xt, t, betas):
    return posterior_mean(x0, xt, t, betas), betas[t]


def embedding_cos_first(t, dim):
    return time_embedding(t, dim).roll(dim // 2, dims=1)


def embedding_interleaved(t, dim):
    e = time_embedding(t, dim)
    return torch.stack([e[:, : dim // 2], e[:, dim // 2:]], dim=-1).reshape(len(t), dim)


def embedding_half_minus_1(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half) / (half - 1))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def embedding_over_dim(t, dim):
    freqs = 10_000.0 ** (-torch.arange(dim // 2) / dim)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def embedding_base_1000(t, dim):
    freqs = 1_000.0 ** (-torch.arange(dim // 2) / (dim // 2))
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def embedding_sin_only(t, dim):
    return time_embedding(t, dim)[:, : dim // 2]


def ddim_t_minus_1(x_t, eps, t, t_prev, alpha_bar):
    return ddim_from(x_t, eps, alpha_bar[t], alpha_bar[t - 1])


def ddim_end_wraps(x_t, eps, t, t_prev, alpha_bar):
    return ddim_from(x_t, eps, alpha_bar[t], alpha_bar[t_prev])


def ddim_end_clamped(x_t, eps, t, t_prev, alpha_bar):
    return ddim_from(x_t, eps, alpha_bar[t], alpha_bar[t_prev.clamp(min=0)])


def ddim_swapped(x_t, eps, t, t_prev, alpha_bar):
    ab_prev = torch.where(t_prev >= 0, alpha_bar[t_prev], torch.ones_like(alpha_bar[t_prev]))
    return ddim_from(x_t, eps, ab_prev, alpha_bar[t])


def ddim_no_sqrt(x_t, eps, t, t_prev, alpha_bar):
    ab_t = per_sample(alpha_bar[t], x_t)
    ab_prev = per_sample(torch.where(t_prev >= 0, alpha_bar[t_prev], 1.0), x_t)
    x0 = (x_t - (1 - ab_t) * eps) / ab_t
    return ab_prev * x0 + (1 - ab_prev) * eps


def ddim_x0_variance(x_t, eps, t, t_prev, alpha_bar):
    ab_t = per_sample(alpha_bar[t], x_t)
    ab_prev = per_sample(torch.where(t_prev >= 0, alpha_bar[t_prev], 1.0), x_t)
    x0 = (x_t - (1 - ab_t) * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


def ddim_not_reshaped(x_t, eps, t, t_prev, alpha_bar):
    ab_t, ab_prev = alpha_bar[t], torch.where(t_prev >= 0, alpha_bar[t_prev], 1.0)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


def ddim_images_only(x_t, eps, t, t_prev, alpha_bar):
    ab_t = alpha_bar[t].view(-1, 1, 1, 1)
    ab_prev = torch.where(t_prev >= 0, alpha_bar[t_prev], 1.0).view(-1, 1, 1, 1)
    x0 = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps


def ddim_if_on_t_prev(x_t, eps, t, t_prev, alpha_bar):
    ab_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(alpha_bar[t])
    return ddim_from(x_t, eps, alpha_bar[t], ab_prev)


def _weight_from(snr, capped, parameterisation):
    """The min-SNR weight's formula with ``capped`` where min(SNR, gamma) belongs."""
    return {"eps": capped / snr, "v": capped / (snr + 1), "x": capped}[parameterisation]


def min_snr_seed_rule(log_snr, gamma, parameterisation):
    return 1 / (1 + torch.clamp(log_snr.exp(), max=gamma))


def min_snr_always_eps(log_snr, gamma, parameterisation):
    return min_snr_weight(log_snr, gamma, "eps")


def min_snr_v_and_x_swapped(log_snr, gamma, parameterisation):
    return min_snr_weight(log_snr, gamma, {"v": "x", "x": "v"}.get(parameterisation, parameterisation))


def min_snr_x_as_eps(log_snr, gamma, parameterisation):
    return min_snr_weight(log_snr, gamma, "eps" if parameterisation == "x" else parameterisation)


def min_snr_uncapped(log_snr, gamma, parameterisation):
    snr = log_snr.exp()
    return _weight_from(snr, snr, parameterisation)


def min_snr_uncapped_v(log_snr, gamma, parameterisation):
    if parameterisation == "v":
        return min_snr_uncapped(log_snr, gamma, parameterisation)
    return min_snr_weight(log_snr, gamma, parameterisation)


def min_snr_uncapped_x(log_snr, gamma, parameterisation):
    if parameterisation == "x":
        return min_snr_uncapped(log_snr, gamma, parameterisation)
    return min_snr_weight(log_snr, gamma, parameterisation)


def min_snr_lambda_as_snr(log_snr, gamma, parameterisation):
    snr = log_snr
    return _weight_from(snr, torch.clamp(snr, max=gamma), parameterisation)


def min_snr_max_for_min(log_snr, gamma, parameterisation):
    snr = log_snr.exp()
    return _weight_from(snr, torch.clamp(snr, min=gamma), parameterisation)


def min_snr_python_min(log_snr, gamma, parameterisation):
    snr = log_snr.exp()
    return _weight_from(snr, min(snr, gamma), parameterisation)


def min_snr_v_from_eps_naive(log_snr, gamma, parameterisation):
    # the eps weight in log space, but the v weight as it times SNR / (SNR + 1), which is inf / inf in float16
    if parameterisation != "v":
        return min_snr_weight(log_snr, gamma, parameterisation)
    snr = log_snr.exp()
    return min_snr_weight(log_snr, gamma, "eps") * (snr / (snr + 1))


# --- every checker ----------------------------------------------------------------------

CHECKERS = {
    "q_sample": (check_q_sample, q_sample),
    "linear": (lambda fn, **kw: check_beta_schedule(fn, "linear", **kw), linear_betas),
    "cosine": (lambda fn, **kw: check_beta_schedule(fn, "cosine", **kw), cosine_betas),
    "posterior_mean": (check_posterior_mean, posterior_mean),
    "time_embedding": (check_time_embedding, time_embedding),
    "ddim_step": (check_ddim_step, ddim_step),
    "min_snr_weight": (check_min_snr_weight, min_snr_weight),
}
SIGNATURES = {
    "q_sample": ("q_sample(x0, t, noise, alpha_bar)", "check_q_sample"),
    "linear": ("linear_betas(T)", "check_beta_schedule(..., 'linear')"),
    "cosine": ("cosine_betas(T)", "check_beta_schedule(..., 'cosine')"),
    "posterior_mean": ("posterior_mean(x0, xt, t, betas)", "check_posterior_mean"),
    "time_embedding": ("time_embedding(t, dim)", "check_time_embedding"),
    "ddim_step": ("ddim_step(x_t, eps, t, t_prev, alpha_bar)", "check_ddim_step"),
    "min_snr_weight": ("min_snr_weight(log_snr, gamma, parameterisation)", "check_min_snr_weight"),
}


def _arguments(signature: str) -> str:
    """The arguments of a signature, "(x0, t, noise, alpha_bar)" of "q_sample(x0, t, noise, alpha_bar)"."""
    return signature[signature.index("("):]


@pytest.mark.parametrize("name", CHECKERS)
def test_reference_solution_passes(name, capsys):
    check, right = CHECKERS[name]
    report = check(right)
    assert isinstance(report, Report)
    assert report.passed and bool(report)
    assert report.hint is None and report.case is None
    assert "correct" in report.message
    assert " ".join(capsys.readouterr().out.split()) == report.message   # printed, wrapped


@pytest.mark.parametrize("name", CHECKERS)
def test_stub_is_not_implemented_yet(name):
    check, _ = CHECKERS[name]
    report = check(stub, quiet=True)
    assert not report.passed and not report
    signature, checker = SIGNATURES[name]
    if name not in ("linear", "cosine"):   # a function goes by the stub's own name
        signature = "stub" + _arguments(signature)
    assert report.message == (f"not implemented yet: {signature} still raises NotImplementedError; "
                              f"write its body, then run {checker} again.")


@pytest.mark.parametrize("name", CHECKERS)
def test_messages_name_the_function_as_the_student_wrote_it(name):
    check, right = CHECKERS[name]

    def my_attempt(*args):   # another name than the exercise's, as a chapter's second try has
        return right(*args)

    schedule = name in ("linear", "cosine")                  # a schedule keeps its name
    exercise = f"{name} schedule" if schedule else name
    named = exercise if schedule else "my_attempt"
    assert check(my_attempt, quiet=True).message.startswith(f"{named} is correct")
    assert check(lambda *a: right(*a) + 1, quiet=True).message.startswith(f"{exercise} fails case 1")

    def my_short():
        return None

    params = _arguments(SIGNATURES[name][0])
    assert check(my_short, quiet=True).message == (
        f"{exercise if schedule else 'my_short'} must take the arguments {params}; yours is my_short().")


def raises_value_error(*args):
    raise ValueError("bad input")


def returns_numpy(*args):
    return np.zeros((2, 2))


def returns_list(*args):
    return [[0.0, 0.0]]


def returns_none(*args):
    return None


def returns_scalar_tensor(*args):
    return torch.tensor(1.0)


def takes_wrong_arguments(x):
    return x


ODD = [raises_value_error, returns_numpy, returns_list, returns_none, returns_scalar_tensor, takes_wrong_arguments,
       "not a function"]


@pytest.mark.parametrize("odd", ODD, ids=lambda f: getattr(f, "__name__", "str"))
@pytest.mark.parametrize("name", CHECKERS)
def test_a_broken_function_fails_without_raising(name, odd):
    check, _ = CHECKERS[name]
    report = check(odd, quiet=True)
    assert not report.passed
    assert report.message and "Traceback" not in report.message


@pytest.mark.parametrize("name", CHECKERS)
def test_exception_is_named_with_its_case(name):
    check, _ = CHECKERS[name]
    report = check(raises_value_error, quiet=True)
    assert "raised ValueError on case 1" in report.message
    assert "bad input" in report.message
    assert "raise ValueError" in report.message      # the line that raised
    assert report.case.startswith("case 1")


@pytest.mark.parametrize("name", CHECKERS)
def test_output_type_is_reported(name):
    check, _ = CHECKERS[name]
    assert "returned a NumPy array" in check(returns_numpy, quiet=True).message
    assert "returned a list of 1, not a torch.Tensor" in check(returns_list, quiet=True).message


@pytest.mark.parametrize("name", CHECKERS)
def test_wrong_device_dtype_and_shape_are_reported(name):
    check, right = CHECKERS[name]
    on_meta = check(lambda *a: torch.empty(right(*a).shape, device="meta"), quiet=True)
    assert not on_meta.passed and "on meta, expected one on cpu" in on_meta.message
    as_int = check(lambda *a: right(*a).long(), quiet=True)
    assert not as_int.passed and "dtype torch.int64" in as_int.message
    flat = check(lambda *a: right(*a)[None], quiet=True)
    assert not flat.passed and "returned shape" in flat.message


def test_unexpected_float64_fails_where_float32_is_expected():
    report = check_time_embedding(lambda t, dim: time_embedding(t, dim).double(), quiet=True)
    assert not report.passed and "dtype torch.float64, expected torch.float32" in report.message


def test_value_failure_gives_case_largest_difference_and_tolerance():
    report = check_q_sample(lambda *a: q_sample(*a) + 0.5 * (a[1] == 999).float().reshape(-1, 1), quiet=True)
    assert not report.passed and report.hint is None
    assert "case 1 of 5" in report.message
    assert "largest difference from the reference 0.5" in report.message
    assert "the sample with t = 999" in report.message
    assert "atol=1e-05, rtol=1e-05" in report.message


def test_nan_is_reported():
    report = check_posterior_mean(lambda *a: posterior_mean(*a) * float("nan"), quiet=True)
    assert not report.passed and "returned nan" in report.message


# --- the hints --------------------------------------------------------------------------

HINTS = [
    (check_q_sample, q_no_sqrt, "missing_sqrt", "standard deviations"),
    (check_q_sample, q_variance_for_noise, "missing_sqrt", "(1 - alpha_bar_t) noise"),
    (check_q_sample, q_uniform, "uniform_noise", "uniform noise"),
    (check_q_sample, q_own_gaussian, "own_noise", "draws noise of its own"),
    (check_q_sample, q_fixed_seed, "ignores_noise", "does not change when `noise` does"),
    (check_q_sample, q_t_minus_1, "off_by_one", "closed form at t - 1"),
    (check_q_sample, q_t_plus_1, "off_by_one", "one past the end"),
    (check_q_sample, q_t_plus_1_clamped, "off_by_one", "closed form at t + 1"),
    (check_q_sample, q_swapped, "swapped", "exchanged"),
    (check_q_sample, q_not_reshaped, "broadcast", "reshape it to (B, 1, ..., 1)"),
    (check_q_sample, q_points_only, "broadcast", "reshape it to (B, 1, ..., 1)"),
    (check_q_sample, q_images_only, "broadcast", "reshape it to (B, 1, ..., 1)"),
    (check_q_sample, q_if_on_t, "tensor_condition", "`if` on it"),
    (check_posterior_mean, posterior_swapped, "swapped", "weights are exchanged"),
    (check_posterior_mean, posterior_alpha_bar_t, "off_by_one", "alpha_bar_t stands where alpha_bar_{t-1}"),
    (check_posterior_mean, posterior_wraps_at_0, "t0_edge", "wraps around to alpha_bar[T - 1]"),
    (check_posterior_mean, posterior_clamps_at_0, "t0_edge", "taken as alpha_bar[0]"),
    (check_posterior_mean, posterior_alpha_bar_for_alpha, "alpha_bar_for_alpha", "sqrt(alpha_t)"),
    (check_posterior_mean, posterior_with_variance, "tuple", "return the mean alone"),
    (check_time_embedding, embedding_cos_first, "sin_cos_swapped", "cos half comes first"),
    (check_time_embedding, embedding_interleaved, "interleaved", "alternate"),
    (check_time_embedding, embedding_half_minus_1, "frequency", "dim / 2 - 1"),
    (check_time_embedding, embedding_over_dim, "frequency", "dim in the exponent"),
    (check_time_embedding, embedding_base_1000, "frequency", "base 1000"),
    (check_time_embedding, embedding_sin_only, "half_features", "dim / 2 sines"),
    (check_ddim_step, ddim_t_minus_1, "t_prev_ignored", "the step to t - 1"),
    (check_ddim_step, ddim_end_wraps, "end_not_handled", "wraps around to alpha_bar[T - 1]"),
    (check_ddim_step, ddim_end_clamped, "end_not_handled", "taken as alpha_bar[0]"),
    (check_ddim_step, ddim_swapped, "swapped", "alpha_bar_t and alpha_bar_prev are exchanged"),
    (check_ddim_step, ddim_no_sqrt, "missing_sqrt",
     "sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t), sqrt(alpha_bar_prev) and sqrt(1 - alpha_bar_prev) are missing"),
    (check_ddim_step, ddim_x0_variance, "missing_sqrt", "sqrt(1 - alpha_bar_t) is missing the square root"),
    (check_ddim_step, ddim_not_reshaped, "broadcast", "reshape it to (B, 1, ..., 1)"),
    (check_ddim_step, ddim_images_only, "broadcast", "reshape it to (B, 1, ..., 1)"),
    (check_ddim_step, ddim_if_on_t_prev, "tensor_condition", "`if` on it"),
    (check_min_snr_weight, min_snr_seed_rule, "seed_rule", "not the published min-SNR-gamma weight"),
    (check_min_snr_weight, min_snr_always_eps, "wrong_parameterisation",
     "the eps-MSE weight min(SNR, gamma) / SNR, but parameterisation = 'v' asks for min(SNR, gamma) / (SNR + 1)"),
    (check_min_snr_weight, min_snr_v_and_x_swapped, "wrong_parameterisation",
     "the x-MSE weight min(SNR, gamma), but parameterisation = 'v'"),
    (check_min_snr_weight, min_snr_x_as_eps, "wrong_parameterisation",
     "the eps-MSE weight min(SNR, gamma) / SNR, but parameterisation = 'x' asks for min(SNR, gamma) ("),
    (check_min_snr_weight, min_snr_uncapped, "uncapped", "SNR / SNR = 1, the weight without its cap"),
    (check_min_snr_weight, min_snr_uncapped_v, "uncapped", "SNR / (SNR + 1), the weight without its cap"),
    (check_min_snr_weight, min_snr_uncapped_x, "uncapped", "equals SNR, the weight without its cap"),
    (check_min_snr_weight, min_snr_lambda_as_snr, "lambda_as_snr", "SNR = exp(lambda)"),
    (check_min_snr_weight, min_snr_max_for_min, "max_for_min", "max(SNR, gamma) in place of min(SNR, gamma)"),
    (check_min_snr_weight, min_snr_python_min, "tensor_condition", "Python's min(snr, gamma)"),
    (check_min_snr_weight, min_snr_weight_naive, "float16_overflow", "so gamma / SNR is 0 where the weight"),
    (check_min_snr_weight, min_snr_v_from_eps_naive, "float16_overflow", "so SNR / (SNR + 1) is inf / inf, NaN"),
]


@pytest.mark.parametrize("check, wrong, key, text", HINTS, ids=lambda x: getattr(x, "__name__", None))
def test_common_wrong_answer_gets_its_hint(check, wrong, key, text):
    report = check(wrong, quiet=True)
    assert not report.passed
    assert report.hint == key, report.message
    assert "Hint: " in report.message and text in report.message


SCHEDULE_HINTS = [
    ("linear", lambda T: linear_betas(T, 1e-4 * 1000 / T, 0.02 * 1000 / T), "rescaled", "1000 / T"),
    ("linear", lambda T: 1e-4 + (0.02 - 1e-4) * torch.arange(T, dtype=torch.float64) / T, "endpoint",
     "includes both ends"),
    ("linear", lambda T: torch.linspace(1e-4, 0.02, T + 1), "length", "one beta per step"),
    ("sigmoid", lambda T: 1e-4 + (0.02 - 1e-4) * torch.sigmoid(torch.linspace(-6, 6, T + 1, dtype=torch.float64)),
     "length", "one beta per step, T in all: torch.linspace(-6, 6, T)."),
    ("cosine", lambda T: cosine_betas(T, clip=False), "not_clipped", "max_beta = 0.999"),
    ("cosine", lambda T: cosine_betas(T, clip=False, dtype=torch.float32), "not_clipped", "max_beta = 0.999"),
    ("cosine", lambda T: cosine_betas(T, s=0.0), "offset", "s = 0.008"),
    ("cosine", lambda T: cosine_betas(T, dtype=torch.float32), "precision", "float64"),
    ("cosine", lambda T: torch.cat([torch.zeros(1, dtype=torch.float64), cosine_betas(T)]), "length", "T + 1 points"),
]


@pytest.mark.parametrize("name, wrong, key, text", SCHEDULE_HINTS, ids=[f"{n}-{k}" for n, _, k, _ in SCHEDULE_HINTS])
def test_common_wrong_schedule_gets_its_hint(name, wrong, key, text):
    report = check_beta_schedule(wrong, name, quiet=True)
    assert not report.passed
    assert report.hint == key, report.message
    assert text in report.message


def test_no_hint_for_an_unrecognised_mistake():
    report = check_posterior_mean(lambda x0, xt, t, betas: posterior_mean(x0, xt, t, betas) + 0.1, quiet=True)
    assert not report.passed and report.hint is None and "Hint" not in report.message


# --- tolerances: what passes besides the exact answer ----------------------------------


def test_float32_schedule_values_are_fine():
    assert check_beta_schedule(lambda T: linear_betas(T).float(), "linear", quiet=True).passed
    assert check_beta_schedule(lambda T: cosine_betas(T).float(), "cosine", quiet=True).passed


def test_posterior_computed_in_float32_passes():
    assert check_posterior_mean(posterior_float32, quiet=True).passed


def test_other_schedules_are_checked_against_beta_schedule():
    report = check_beta_schedule(lambda T: torch.linspace(1e-4 ** 0.5, 0.02 ** 0.5, T, dtype=torch.float64) ** 2,
                                 "quadratic", quiet=True)
    assert report.passed


def test_unknown_schedule_name_is_an_error():
    with pytest.raises(ValueError, match=r"unknown schedule 'cosin'; allowed: 'linear'"):
        check_beta_schedule(linear_betas, "cosin")


# --- the report and its side effects ----------------------------------------------------


def test_report_str_repr_and_bool():
    report = Report(False, "q_sample fails case 1.", "q_sample", "case 1", "missing_sqrt")
    assert str(report) == "q_sample fails case 1."
    assert repr(report) == "Report('q_sample': failed, hint='missing_sqrt')"
    assert not report
    assert bool(Report(True, "fine"))


def test_quiet_prints_nothing(capsys):
    check_q_sample(q_no_sqrt, quiet=True)
    assert capsys.readouterr().out == ""
    report = check_q_sample(q_no_sqrt)
    assert " ".join(capsys.readouterr().out.split()) == report.message


def test_global_random_state_is_left_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_q_sample(q_own_gaussian, quiet=True)
    check_q_sample(q_sample, quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_inputs_written_in_place_do_not_leak_into_later_cases():
    def in_place(x0, t, noise, alpha_bar):
        out = q_sample(x0, t, noise, alpha_bar)
        x0.zero_(), noise.zero_(), alpha_bar.zero_()
        return out

    assert check_q_sample(in_place, quiet=True).passed


def test_not_implemented_on_a_later_case_names_it():
    def points_only(x0, t, noise, alpha_bar):
        if x0.ndim > 2:
            raise NotImplementedError
        return q_sample(x0, t, noise, alpha_bar)

    report = check_q_sample(points_only, quiet=True)
    assert report.message.startswith("not implemented yet: ") and "case 2 of 5 (images" in report.message


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name, wrong, key", [("q_sample", q_no_sqrt, "missing_sqrt"),
                                              ("posterior_mean", posterior_swapped, "swapped"),
                                              ("time_embedding", embedding_cos_first, "sin_cos_swapped")])
def test_on_cuda(name, wrong, key):
    check, right = CHECKERS[name]
    assert check(right, device="cuda", quiet=True).passed
    report = check(lambda *a: right(*a).cpu(), device="cuda", quiet=True)
    assert not report.passed and "on cpu, expected one on cuda:0" in report.message
    assert check(wrong, device="cuda", quiet=True).hint == key


# --- the DDIM step ----------------------------------------------------------------------


def test_ddim_step_keeps_the_dtype_of_its_inputs():
    report = check_ddim_step(lambda *a: ddim_step(*a).float(), quiet=True)
    assert not report.passed and "case 3 of 4 (float64 2-D points" in report.message
    assert "dtype torch.float32, expected torch.float64, that of the inputs" in report.message


def test_ddim_step_computed_in_float64_or_rearranged_passes():
    def in_float64(x_t, eps, t, t_prev, alpha_bar):
        return ddim_step(x_t.double(), eps.double(), t, t_prev, alpha_bar.double()).to(x_t.dtype)

    def coefficients(x_t, eps, t, t_prev, alpha_bar):
        ab = torch.cat([alpha_bar.new_ones(1), alpha_bar])       # ab[t + 1] = alpha_bar[t], 1 at t = -1
        a, s = per_sample(ab[t + 1], x_t), per_sample(ab[t_prev + 1], x_t)
        return (s / a).sqrt() * x_t + ((1 - s).sqrt() - (s * (1 - a) / a).sqrt()) * eps

    assert check_ddim_step(in_float64, quiet=True).passed
    assert check_ddim_step(coefficients, quiet=True).passed


def test_ddim_step_leaves_the_global_random_state_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_ddim_step(lambda x_t, eps, t, t_prev, alpha_bar: ddim_step(x_t, torch.randn_like(eps), t, t_prev,
                                                                     alpha_bar), quiet=True)
    check_ddim_step(ddim_step, quiet=True)
    assert torch.equal(torch.rand(3), expected)


# --- the min-SNR weight -----------------------------------------------------------------


def test_min_snr_weight_keeps_the_dtype_of_its_inputs():
    report = check_min_snr_weight(lambda *a: min_snr_weight(*a).float(), quiet=True)
    assert not report.passed and "case 4 of 13 (float64 lambda" in report.message
    assert "dtype torch.float32, expected torch.float64, that of the inputs" in report.message


def test_min_snr_weight_in_log_space_with_sigmoid_or_in_float64_passes():
    def log_space(log_snr, gamma, parameterisation):
        capped = torch.clamp(log_snr, max=math.log(gamma))
        return {"eps": torch.exp(capped - log_snr), "v": torch.exp(capped - torch.nn.functional.softplus(log_snr)),
                "x": torch.exp(capped)}[parameterisation]

    def with_sigmoid(log_snr, gamma, parameterisation):
        snr = log_snr.exp()
        if parameterisation == "eps":       # gamma * exp(-lambda), not gamma / snr: snr is inf in float16
            return torch.where(snr < gamma, torch.ones_like(snr), gamma * torch.exp(-log_snr))
        if parameterisation == "v":
            return torch.where(snr < gamma, torch.sigmoid(log_snr), gamma * torch.sigmoid(-log_snr))
        return torch.minimum(snr, torch.full_like(snr, gamma))

    def in_float64(log_snr, gamma, parameterisation):    # exp(lambda) is finite in float64
        return min_snr_weight_naive(log_snr.double(), gamma, parameterisation).to(log_snr.dtype)

    for fn in (log_space, with_sigmoid, in_float64):
        assert check_min_snr_weight(fn, quiet=True).passed, fn.__name__


def test_min_snr_weight_failure_names_lambda():
    def off_at_the_top(log_snr, gamma, parameterisation):
        return min_snr_weight(log_snr, gamma, parameterisation) + 0.5 * (log_snr == 15)

    report = check_min_snr_weight(off_at_the_top, quiet=True)
    assert not report.passed and report.hint is None
    assert "case 1 of 13 (float32 lambda = -15, -12.5, ..., 15 and log(gamma), gamma = 5, parameterisation = 'eps')" \
        in report.message
    assert "the weight with lambda = 15" in report.message and "atol=1e-06, rtol=1e-05" in report.message


def test_min_snr_weight_through_the_snr_fails_in_float16_and_says_why():
    # right in float32 and float64, where exp(15) is finite: only the float16 cases, last, catch it
    report = check_min_snr_weight(min_snr_weight_naive, quiet=True)
    assert not report.passed and report.hint == "float16_overflow"
    assert report.case == "case 12 of 13 (float16 lambda = 11, 12 and 15, gamma = 5, parameterisation = 'eps')"
    assert "the weight with lambda = 12 (got 0, expected 3.06964e-05" in report.message
    assert "overflows to inf above lambda = log 65504 = 11.09" in report.message
    assert "exp(min(0, log(gamma) - lambda))" in report.message and "sigmoid(lambda)" in report.message
    report = check_min_snr_weight(min_snr_v_from_eps_naive, quiet=True)
    assert report.case.startswith("case 13 of 13 (float16") and report.hint == "float16_overflow"
    assert "it returned nan at index 1, the weight with lambda = 12, where the reference is 3.07e-05" \
        in report.message


def test_min_snr_weight_float16_cases_pass_the_log_space_forms():
    # the reference (the chapter's solution, with sigmoid) and diffnb's own (with softplus), both in float16
    from diffnb.continuous import min_snr_weight as diffnb_weight
    for fn in (min_snr_weight, diffnb_weight):
        report = check_min_snr_weight(fn, quiet=True)
        assert report.passed, report.message
        assert "13 cases" in report.message and "float16" in report.message


def test_min_snr_weight_hint_needs_the_whole_case():
    # 1 / (1 + SNR) is the seed rule below the kink and about the eps weight, 1, at the lowest SNR, but above the
    # kink it is neither
    report = check_min_snr_weight(lambda log_snr, gamma, p: 1 / (1 + log_snr.exp()), quiet=True)
    assert not report.passed and report.hint is None and "Hint" not in report.message
    # asked for v: the eps weight above lambda = 0, the v weight below; neither formula over the whole case
    report = check_min_snr_weight(lambda log_snr, gamma, p: torch.where(
        log_snr > 0, min_snr_weight(log_snr, gamma, "eps"), min_snr_weight(log_snr, gamma, p)), quiet=True)
    assert not report.passed and report.hint is None


def test_min_snr_weight_leaves_the_global_random_state_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_min_snr_weight(lambda log_snr, gamma, p: min_snr_weight(log_snr, gamma, p) * torch.rand_like(log_snr),
                         quiet=True)
    check_min_snr_weight(min_snr_weight, quiet=True)
    assert torch.equal(torch.rand(3), expected)
