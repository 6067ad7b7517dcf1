"""Self-checking exercises: a reader's function compared with diffnb's own.

A checker calls the reader's function on a handful of inputs, edge cases included
(t = 0 and t = T - 1, a batch of one, a one-step schedule), compares each output
with diffnb's reference implementation at a stated tolerance, prints one or two
plain sentences and returns a :class:`Report`. A failure names the first failing
case, how it fails (type, shape, dtype, device or value, with the largest
difference), and, when the output equals a known wrong answer (a missing square
root, an off-by-one in t, ...), that mistake. A checker never raises because of
the function it checks: exceptions, stubs that raise ``NotImplementedError`` and
outputs of the wrong kind all become a failed report.

The checkers, and how each calls the function it checks:

- ``check_q_sample(fn)``: ``fn(x0, t, noise, alpha_bar) -> x_t``
- ``check_beta_schedule(fn, name)``: ``fn(T) -> betas``
- ``check_posterior_mean(fn)``: ``fn(x0, xt, t, betas) -> mean``
- ``check_time_embedding(fn)``: ``fn(t, dim) -> embedding``
- ``check_ddim_step(fn)``: ``fn(x_t, eps, t, t_prev, alpha_bar) -> x_prev``
- ``check_min_snr_weight(fn)``: ``fn(log_snr, gamma, parameterisation) -> weights``

For a teacher, the report is the grade::

    report = check_q_sample(q_sample, quiet=True)
    report.passed    # also bool(report): what a grading tool records
    report.hint      # the recognised mistake, e.g. "missing_sqrt", or None
    report.case      # the first failing case, or None
    report.message   # the sentences the student sees, also str(report)

Checkers run on the CPU unless given ``device``; stay there while a function is
new, since on a GPU an out-of-range index is a device-side assert that leaves CUDA
unusable until the kernel restarts. Random inputs come from a fixed seed, and the
global random state is restored afterwards, so a check does not change what the
rest of a notebook draws.
"""

from __future__ import annotations

import inspect
import itertools
import math
import os
import re
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from . import ddpm
from .continuous import min_snr_weight
from .device import get_device
from .models.embeddings import sinusoidal_embedding
from .schedules import SCHEDULE_NAMES, DiscreteSchedule, beta_schedule

__all__ = ["Report", "check_q_sample", "check_beta_schedule", "check_posterior_mean", "check_time_embedding",
           "check_ddim_step", "check_min_snr_weight"]

Tensor = torch.Tensor

# (key, sentence, wrong answer): the wrong answer is computed only when needed
Wrong = tuple[str, str, Callable[[], Tensor]]


@dataclass(frozen=True)
class Report:
    """Outcome of one check.

    ``passed``: whether every case matched; ``message``: the sentences shown to the
    student; ``exercise``: which exercise; ``case``: the first failing case (None
    when passed); ``hint``: key of the recognised mistake, or None.
    ``bool(report)`` is ``report.passed`` and ``str(report)`` the message.
    """

    passed: bool
    message: str
    exercise: str = ""
    case: str | None = None
    hint: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        # kept short: in a notebook the checker has just printed the message
        status = "passed" if self.passed else "failed"
        hint = f", hint={self.hint!r}" if self.hint else ""
        return f"Report({self.exercise!r}: {status}{hint})"


@dataclass
class _Case:
    label: str                     # shown to the student
    args: tuple                    # the function is called as fn(*args)
    expected: Tensor               # the reference output
    t: Tensor | None = None        # per-row time steps, to say which row differs
    row: str = "sample"            # what a row is called
    t_name: str = "t"              # what the values in t are called
    extra: dict = field(default_factory=dict)


@dataclass
class _Exercise:
    name: str                      # e.g. "q_sample"
    signature: str                 # e.g. "q_sample(x0, t, noise, alpha_bar)"
    checker: str                   # e.g. "check_q_sample"
    summary: str                   # the cases, in a few words, for the pass message
    atol: float
    rtol: float
    dtype: torch.dtype | str | None  # None: any floating-point dtype; "input": the reference's, case by case
    wrong: Callable[[_Case], Iterator[Wrong]] = lambda case: iter(())
    hint_tol: tuple[float, float] | None = None  # (atol, rtol) to match a wrong answer; default atol, rtol
    # (case, output, call) -> (key, sentence) or None, tried before the wrong answers
    diagnose: Callable | None = None
    # (case, exception) -> (key, sentence) or None
    on_error: Callable | None = None


# --- the six checkers ------------------------------------------------------------------


def check_q_sample(fn: Callable, *, device: str | torch.device = "cpu", quiet: bool = False) -> Report:
    """Check ``fn(x0, t, noise, alpha_bar) -> x_t``, the closed form of q(x_t | x_0).

    ``x0`` and ``noise``: (B, ...) float32 (2-D points (B, 2), images (B, C, H, W),
    1-D data (B, 1)); ``t``: (B,) int64 in [0, T), 0 and T - 1 included;
    ``alpha_bar``: (T,) float32, as ``DiscreteSchedule.alpha_bar``. Expected:
    sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise, per sample, same shape,
    dtype and device as ``x0``, to atol = rtol = 1e-5.

    Hints: ``own_noise``, ``uniform_noise`` (draws noise instead of using ``noise``),
    ``ignores_noise``, ``missing_sqrt``, ``off_by_one`` (t - 1 or t + 1), ``swapped``
    (x0 and noise exchanged), ``broadcast`` (alpha_bar[t] not reshaped per sample),
    ``tensor_condition`` (``if`` on the tensor t).
    """
    dev = get_device(device)
    gen = torch.Generator().manual_seed(0)
    keys = (("linear", 1000), ("cosine", 1000), ("cosine", 10))
    scheds = {key: DiscreteSchedule.from_name(*key) for key in keys}
    specs = [
        ("2-D points", (8, 2), ("linear", 1000), [0, 999, 1, 998, 10, 250, 500, 750]),
        ("images", (4, 3, 8, 8), ("cosine", 1000), [0, 999, 500, 1]),
        ("1-D data", (5, 1), ("linear", 1000), [999, 0, 3, 400, 700]),
        ("two 2-D points", (2, 2), ("cosine", 1000), [999, 0]),
        ("a batch of one image", (1, 1, 4, 4), ("cosine", 10), [9]),
    ]
    cases = []
    for what, shape, key, ts in specs:
        sched = scheds[key]
        x0 = torch.randn(shape, generator=gen).to(dev)
        noise = torch.randn(shape, generator=gen).to(dev)
        t = torch.tensor(ts).to(dev)
        expected = ddpm.q_sample(sched.to(dev), x0, t, noise)
        label = f"{what} {shape}, {key[0]} schedule with T = {key[1]}, t = {ts}"
        cases.append(_Case(label, (x0, t, noise, sched.alpha_bar.to(dev)), expected, t))
    ex = _Exercise(
        "q_sample", "q_sample(x0, t, noise, alpha_bar)", "check_q_sample",
        "2-D points, images, 1-D data and a batch of one, t from 0 to T - 1",
        atol=1e-5, rtol=1e-5, dtype=torch.float32,
        wrong=_q_sample_wrong, diagnose=_q_sample_noise, on_error=_per_sample_error)
    return _run(ex, fn, cases, dev, quiet)


def check_beta_schedule(fn: Callable, name: str, *, quiet: bool = False) -> Report:
    """Check ``fn(T) -> betas``, the named beta schedule, for T = 1000, 100, 10 and 1.

    Expected: ``beta_schedule(name, T)`` with its default parameters, shape (T,),
    on the CPU; float32 or float64 both pass if the values agree to 1e-6.

    Hints: ``length`` (T + 1 or T - 1 values), ``rescaled`` (linear range scaled by
    1000 / T), ``endpoint`` (linear stops short of beta_end), ``not_clipped``
    (cosine betas above 0.999), ``offset`` (cosine without s = 0.008),
    ``precision`` (right to about 1e-5 only: computed in float32).
    """
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(map(repr, SCHEDULE_NAMES))}")
    cases = [_Case(f"T = {T}", (T,), beta_schedule(name, T), extra={"name": name, "T": T})
             for T in (1000, 100, 10, 1)]
    ex = _Exercise(
        f"{name} schedule", f"{name}_betas(T)", f"check_beta_schedule(..., {name!r})",
        "T = 1000, 100, 10 and 1", atol=1e-6, rtol=0.0, dtype=None,
        wrong=_betas_wrong, hint_tol=BETAS_HINT_TOL, diagnose=_betas_diagnose)
    return _run(ex, fn, cases, torch.device("cpu"), quiet)


def check_posterior_mean(fn: Callable, *, device: str | torch.device = "cpu", quiet: bool = False) -> Report:
    """Check ``fn(x0, xt, t, betas) -> mean`` of q(x_{t-1} | x_t, x_0).

    ``x0``, ``xt``: (B, ...) float32; ``t``: (B,) int64 in [0, T), 0 and T - 1
    included; ``betas``: (T,) float64, as ``beta_schedule`` returns them. Expected:
    the mean of ``ddpm.posterior``, shape of ``xt``, any floating dtype, to
    atol = rtol = 1e-3: loose enough for a float32 computation, whose
    1 - alpha_bar keeps only three or four digits near t = 0; the mistakes below
    are off by far more.

    Hints: ``swapped`` (the two weights exchanged), ``off_by_one`` (alpha_bar_t where
    alpha_bar_{t-1} belongs, or the reverse, or the posterior of step t - 1),
    ``t0_edge`` (alpha_bar_{-1} taken from alpha_bar[-1] or alpha_bar[0] instead of 1),
    ``alpha_bar_for_alpha`` (sqrt(alpha_bar_t) weighting x_t), ``tuple`` (mean and
    variance returned), ``broadcast``, ``tensor_condition``.
    """
    dev = get_device(device)
    gen = torch.Generator().manual_seed(1)
    specs = [
        ("2-D points", (6, 2), ("linear", 1000), [0, 1, 2, 500, 998, 999]),
        ("images", (4, 3, 8, 8), ("cosine", 100), [0, 99, 1, 50]),
        ("2-D points", (3, 2), ("linear", 10), [0, 5, 9]),
        ("a one-step schedule", (2, 2), ("linear", 1), [0, 0]),
    ]
    cases = []
    for what, shape, (name, T), ts in specs:
        betas = beta_schedule(name, T)
        x0 = torch.randn(shape, generator=gen).to(dev)
        xt = torch.randn(shape, generator=gen).to(dev)
        t = torch.tensor(ts).to(dev)
        expected = ddpm.posterior(DiscreteSchedule(betas).to(dev), x0, xt, t)[0]
        label = f"{what} {shape}, {name} schedule with T = {T}, t = {ts}"
        cases.append(_Case(label, (x0, xt, t, betas.to(dev)), expected, t))
    ex = _Exercise(
        "posterior_mean", "posterior_mean(x0, xt, t, betas)", "check_posterior_mean",
        "2-D points and images, T from 1 to 1000, t from 0 to T - 1",
        atol=1e-3, rtol=1e-3, dtype=None, wrong=_posterior_wrong, diagnose=_posterior_tuple,
        on_error=_per_sample_error)
    return _run(ex, fn, cases, dev, quiet)


def check_time_embedding(fn: Callable, *, device: str | torch.device = "cpu", quiet: bool = False) -> Report:
    """Check ``fn(t, dim) -> (B, dim)``, the sinusoidal time embedding.

    ``t``: (B,) int64 or float32 (fractional times too); ``dim``: even, 2 included.
    Expected: ``diffnb.models.sinusoidal_embedding(t, dim)``: the first dim / 2
    features sin(t f_k), the last dim / 2 cos(t f_k), f_k = 10000 ** (-k / (dim / 2))
    for k = 0 .. dim / 2 - 1; float32, on the device of ``t``, to atol = 2e-4
    (float32 sines of t up to 1000 carry errors near 1e-4).

    Hints: ``sin_cos_swapped``, ``interleaved`` (sin and cos alternating),
    ``frequency`` (another exponent or base), ``half_features`` (sin or cos only).
    """
    dev = get_device(device)
    specs = [
        # every ninth step from 0 to 999: small enough that torch runs it on one thread
        ("integer t = 0, 9, 18, ..., 999", torch.arange(0, 1000, 9), 64),
        ("t = [0, 1, 500, 999]", torch.tensor([0, 1, 500, 999]), 128),
        ("fractional t = [0.0, 0.5, 12.25, 999.9]", torch.tensor([0.0, 0.5, 12.25, 999.9]), 32),
        ("dim = 2, a single frequency, t = [0, 1, 7]", torch.tensor([0, 1, 7]), 2),
    ]
    cases = []
    for what, t, dim in specs:
        t = t.to(dev)
        label = f"{what}, dim = {dim}" if "dim" not in what else what
        cases.append(_Case(label, (t, dim), sinusoidal_embedding(t, dim), t, row="row"))
    ex = _Exercise(
        "time_embedding", "time_embedding(t, dim)", "check_time_embedding",
        "integer and fractional t from 0 to 999, dim from 2 to 128",
        atol=2e-4, rtol=0.0, dtype=torch.float32, wrong=_embedding_wrong)
    return _run(ex, fn, cases, dev, quiet)


def check_ddim_step(fn: Callable, *, device: str | torch.device = "cpu", quiet: bool = False) -> Report:
    """Check ``fn(x_t, eps, t, t_prev, alpha_bar) -> x_prev``, one deterministic DDIM step.

    ``x_t``, ``eps``: (B, ...) float32 or float64 (2-D points (B, 2), images
    (B, C, H, W)); ``t``, ``t_prev``: (B,) int64, -1 <= t_prev < t <= T - 1, mixed within
    a batch; ``alpha_bar``: (T,), in the dtype of ``x_t``. With ab_t = alpha_bar[t] and
    ab_prev = alpha_bar[t_prev], 1 at t_prev = -1 (the end of the chain), expected:
    ``ddpm.ddim_step`` (eta = 0, no clamping), sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev) eps
    with x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), per sample, same shape, dtype
    and device as ``x_t``, to atol = rtol = 1e-4: loose enough for float32 arrangements
    of the formula other than the reference's, which lose digits dividing by a tiny
    sqrt(ab_t) near t = T - 1; the mistakes below are off by far more.

    Hints: ``t_prev_ignored`` (alpha_bar[t - 1] for ab_prev), ``end_not_handled``
    (alpha_bar[-1] or alpha_bar[0] at t_prev = -1 instead of 1), ``missing_sqrt``,
    ``swapped`` (ab_t and ab_prev exchanged), ``broadcast`` (alpha_bar[t] not reshaped
    per sample), ``tensor_condition`` (``if`` on the tensor t_prev).
    """
    dev = get_device(device)
    gen = torch.Generator().manual_seed(2)
    specs = [
        ("2-D points", (8, 2), ("linear", 1000), torch.float32,
         [999, 999, 500, 10, 1, 980, 250, 50], [949, -1, 450, -1, 0, 960, 200, 0]),
        ("images", (4, 3, 8, 8), ("cosine", 1000), torch.float32, [999, 600, 20, 0], [899, 400, -1, -1]),
        ("float64 2-D points", (5, 2), ("cosine", 100), torch.float64, [99, 50, 3, 1, 0], [79, 30, 2, -1, -1]),
        ("a batch of one image", (1, 1, 4, 4), ("cosine", 10), torch.float32, [9], [-1]),
    ]
    cases = []
    for what, shape, (name, T), dtype, ts, ps in specs:
        sched = DiscreteSchedule.from_name(name, T).to(dev)
        x_t = torch.randn(shape, generator=gen, dtype=dtype).to(dev)
        eps = torch.randn(shape, generator=gen, dtype=dtype).to(dev)
        t, t_prev = torch.tensor(ts).to(dev), torch.tensor(ps).to(dev)
        expected = ddpm.ddim_step(sched, x_t, eps, t, t_prev)[0]
        label = f"{what} {shape}, {name} schedule with T = {T}, t = {ts}, t_prev = {ps}"
        cases.append(_Case(label, (x_t, eps, t, t_prev, sched.alpha_bar.to(dtype)), expected, t))
    ex = _Exercise(
        "ddim_step", "ddim_step(x_t, eps, t, t_prev, alpha_bar)", "check_ddim_step",
        "2-D points and images in float32 and float64, a batch of one, t up to T - 1, t_prev down to -1",
        atol=1e-4, rtol=1e-4, dtype="input", wrong=_ddim_wrong, on_error=_per_sample_error)
    return _run(ex, fn, cases, dev, quiet)


def check_min_snr_weight(fn: Callable, *, device: str | torch.device = "cpu", quiet: bool = False) -> Report:
    """Check ``fn(log_snr, gamma, parameterisation) -> weights``, the min-SNR-gamma loss weight.

    ``log_snr``: (B,) float32 or float64, lambda = log SNR (SNR = exp(lambda)), from -15
    to 15 with lambda = log(gamma), the kink, included; then, for "eps" and "v", float16
    at lambda = 11, 12 and 15, where exp(lambda) overflows float16 (above
    log 65504 = 11.09) but the weights do not; ``gamma``: a positive float, 5.0 or 1.0;
    ``parameterisation``: "eps", "v" or "x". Expected: the weights of Hang et al. (2023),
    ``diffnb.continuous.min_snr_weight``: min(SNR, gamma) / SNR for the eps-MSE,
    min(SNR, gamma) / (SNR + 1) for the v-MSE, min(SNR, gamma) for the x-MSE; shape
    (B,), dtype and device of ``log_snr``, to atol = 1e-6, rtol = 1e-5: loose enough for
    SNR = exp(lambda) formed in float32 (about 3.3e6 at lambda = 15, still exact to 1e-7)
    and, in the float16 cases, whose weights are at most 8.4e-5, for a few float16
    roundings (6e-8 each there); the mistakes below are off by far more. The float16
    cases fail the formulas that build the SNR in float16: there gamma / SNR is 0 where
    the weight is gamma e^-lambda (3.1e-5 at lambda = 12), and SNR / (SNR + 1) is NaN.

    Hints: ``seed_rule`` (1 / (1 + min(SNR, gamma)), not the published weight),
    ``wrong_parameterisation`` (another parameterisation's formula), ``uncapped`` (the
    min left out), ``lambda_as_snr`` (lambda used as the SNR, without exp), ``max_for_min``
    (max(SNR, gamma)), ``tensor_condition`` (Python's min or ``if`` on a tensor),
    ``float16_overflow`` (0 or NaN in float16 where exp(lambda) overflows).
    """
    dev = get_device(device)
    gen = torch.Generator().manual_seed(3)

    def grid(gamma: float) -> Tensor:
        # every 2.5 from -15 to 15, and the kink lambda = log(gamma) exactly
        return torch.unique(torch.cat([torch.linspace(-15.0, 15.0, 13, dtype=torch.float64),
                                       torch.tensor([math.log(gamma)], dtype=torch.float64)]))

    specs = [(f"{dtype_name} lambda = -15, -12.5, ..., 15 and log(gamma)", grid(gamma), dtype, gamma, p)
             for dtype_name, dtype, gamma in (("float32", torch.float32, 5.0), ("float64", torch.float64, 5.0),
                                              ("float32", torch.float32, 1.0))
             for p in MIN_SNR_PARAMETERISATIONS]
    # uniform in [-15, 15), in no order, and the kink
    mixed = torch.cat([torch.rand(7, generator=gen, dtype=torch.float64) * 30 - 15,
                       torch.tensor([math.log(5.0)], dtype=torch.float64)])
    specs += [("float64 lambda in mixed order", mixed, torch.float64, 5.0, "v"),
              # one value below the kink, where no two of the wrong answers below agree (above it, uncapped and
              # max_for_min both give SNR)
              ("a batch of one, lambda = [1.0]", torch.tensor([1.0]), torch.float32, 5.0, "v")]
    # last, once the formulas are right: float16, where exp(lambda) is inf above 11.09 but the eps and v weights
    # are small and not 0. Not x: inf clamped at gamma is the right x weight. And lambda stays above 11: a float16
    # weight near 1 is rounded by up to 5e-4, far beyond the atol the other cases need.
    specs += [("float16 lambda = 11, 12 and 15", torch.tensor([11.0, 12.0, 15.0], dtype=torch.float64),
               torch.float16, 5.0, p) for p in ("eps", "v")]
    cases = []
    for what, log_snr, dtype, gamma, p in specs:
        log_snr = log_snr.to(dtype)
        # the reference in float64 from the very values the function gets, then in their dtype
        expected = min_snr_weight(log_snr.double(), gamma, p).to(dtype).to(dev)
        label = f"{what}, gamma = {gamma:g}, parameterisation = {p!r}"
        log_snr = log_snr.to(dev)
        cases.append(_Case(label, (log_snr, gamma, p), expected, log_snr, row="weight", t_name="lambda",
                           extra={"float16": dtype == torch.float16}))
    ex = _Exercise(
        "min_snr_weight", "min_snr_weight(log_snr, gamma, parameterisation)", "check_min_snr_weight",
        "eps, v and x, lambda from -15 to 15 with the kink at log(gamma), float32 and float64, gamma = 5 and 1, "
        "a batch of one, and eps and v in float16 where exp(lambda) overflows", atol=1e-6, rtol=1e-5,
        dtype="input", wrong=_min_snr_wrong, diagnose=_min_snr_overflow, on_error=_min_snr_error)
    return _run(ex, fn, cases, dev, quiet)


# --- running the cases -----------------------------------------------------------------


def _run(ex: _Exercise, fn, cases: list[_Case], device: torch.device, quiet: bool) -> Report:
    # the student's code may draw random numbers: keep the notebook's own stream intact
    cuda = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        report = _run_cases(ex, fn, cases)
    if not quiet:   # wrapped: notebooks and the book show long lines in a scroll box
        print(textwrap.fill(report.message, 78, break_long_words=False, break_on_hyphens=False))
    return report


def _run_cases(ex: _Exercise, fn, cases: list[_Case]) -> Report:
    if not callable(fn):
        return _fail(ex, f"{ex.checker} needs a function, {ex.signature}; it was given {_kind(fn)}.")
    # a function exercise goes by the student's own name for it where it has one (a chapter may keep a
    # naive version under the exercise's name); a schedule goes by the schedule's name ("linear schedule")
    name = getattr(fn, "__name__", "")
    name = name if name.isidentifier() and ex.name.isidentifier() else ex.name
    params = ex.signature[ex.signature.index("("):]                 # "(t, dim)"
    signature = name + params if name != ex.name else ex.signature   # "time_features(t, dim)"
    arity = _arity_problem(fn, cases[0].args)
    if arity:
        return _fail(ex, f"{name} must take the arguments {params}; {arity}.")
    n = len(cases)
    for i, case in enumerate(cases, 1):
        where = f"case {i} of {n} ({case.label})"
        call = lambda args=case.args: fn(*_fresh(args))  # noqa: E731
        try:
            out = call()
        except NotImplementedError:
            at = f" on {where}" if i > 1 else ""
            return _fail(ex, f"not implemented yet: {signature} still raises NotImplementedError{at}; "
                             f"write its body, then run {ex.checker} again.", where)
        except Exception as err:  # the student's bug, reported rather than raised
            hint = _error_hint(ex, case, err)
            text = f"{name} raised {type(err).__name__} on {where}{_raised_at(err)}: {_first_line(err)}"
            return _fail(ex, _with_hint(text, hint), where, hint)
        try:
            problem = _problem(out, case, ex)
        except Exception as err:  # an output too odd to compare (a sparse tensor, say) is still a failure
            problem = f"its output could not be compared ({type(err).__name__}: {_first_line(err)})"
        if problem is None:
            continue
        hint = _find_hint(ex, case, out, call)
        return _fail(ex, _with_hint(f"{name} fails {where}: {problem}.", hint), where, hint)
    tol = f"atol={ex.atol:g}" + (f", rtol={ex.rtol:g}" if ex.rtol else "")
    return Report(True, f"{name} is correct: it matches diffnb's reference on all {n} cases "
                        f"({ex.summary}), within {tol}.", ex.name)


def _fail(ex: _Exercise, message: str, case: str | None = None, hint: tuple[str, str] | None = None) -> Report:
    return Report(False, message, ex.name, case, hint[0] if hint else None)


def _with_hint(text: str, hint: tuple[str, str] | None) -> str:
    return f"{text} Hint: {hint[1]}" if hint else text


def _fresh(args: tuple) -> tuple:
    # a function that writes into its inputs must not change the next call's
    return tuple(a.clone() if isinstance(a, Tensor) else a for a in args)


def _arity_problem(fn, args: tuple) -> str | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some built-ins have none; calling them will tell
        return None
    try:
        sig.bind(*args)
    except TypeError:
        return f"yours is {getattr(fn, '__name__', 'the function')}{sig}"
    return None


def _kind(x) -> str:
    if isinstance(x, np.ndarray):
        return f"a NumPy array of shape {x.shape}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)}"
    if x is None:
        return "None"
    name = type(x).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else "(no message)"
    line = line if len(line) <= 200 else line[:197] + "..."
    return line if line.endswith((".", "?", "!")) else line + "."


def _raised_at(err: BaseException) -> str:
    """`` at `line of code` `` for the last frame outside torch and this module."""
    skip = (os.path.dirname(torch.__file__), os.path.abspath(__file__))
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if not os.path.abspath(frame.filename).startswith(skip) and frame.line:
            return f", at `{frame.line.strip()}`"
    return ""


def _problem(out, case: _Case, ex: _Exercise) -> str | None:
    """What is wrong with ``out`` (type, shape, dtype, device, values), or None."""
    want = case.expected
    if not isinstance(out, Tensor):
        return f"it returned {_kind(out)}, not a torch.Tensor of shape {tuple(want.shape)}"
    if out.shape != want.shape:
        return f"it returned shape {tuple(out.shape)}, expected {tuple(want.shape)}"
    if ex.dtype == "input" and out.dtype != want.dtype:
        return f"it returned dtype {out.dtype}, expected {want.dtype}, that of the inputs"
    if ex.dtype not in (None, "input") and out.dtype != ex.dtype:
        return f"it returned dtype {out.dtype}, expected {ex.dtype}"
    if not out.dtype.is_floating_point:
        return f"it returned dtype {out.dtype}, expected a floating-point dtype"
    if out.device != want.device:
        return f"it returned a tensor on {out.device}, expected one on {want.device}, where the inputs are"
    return _value_problem(out, case, ex.atol, ex.rtol)


def _value_problem(out: Tensor, case: _Case, atol: float, rtol: float) -> str | None:
    got = out.detach().to("cpu", torch.float64)
    want = case.expected.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(got) & torch.isfinite(want)
    if bad.any():
        idx = _unravel(int(bad.flatten().nonzero()[0]), got.shape)
        return f"it returned {got[idx].item()} at {_at(idx, case)}, where the reference is {want[idx].item():.4g}"
    if torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=True):
        return None
    diff = (got - want).abs().nan_to_num(0.0)
    idx = _unravel(int(diff.argmax()), got.shape)
    tol = f"atol={atol:g}" + (f", rtol={rtol:g}" if rtol else "")
    return (f"largest difference from the reference {diff[idx].item():.3g} at {_at(idx, case)} "
            f"(got {got[idx].item():.6g}, expected {want[idx].item():.6g}; allowed {tol})")


def _unravel(flat: int, shape: torch.Size) -> tuple[int, ...]:
    idx = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        idx.append(i)
    return tuple(reversed(idx))


def _at(idx: tuple[int, ...], case: _Case) -> str:
    where = f"index {idx[0]}" if len(idx) == 1 else f"index {idx}"
    if case.t is not None and idx:
        where += f", the {case.row} with {case.t_name} = {case.t[idx[0]].item():g}"
    return where


def _values(out) -> Tensor | None:
    """``out`` as a float64 CPU tensor, or None when it holds no readable values."""
    if not isinstance(out, Tensor):
        return None
    try:
        return out.detach().to("cpu", torch.float64)
    except Exception:  # e.g. a tensor on the meta device
        return None


def _close(out, wrong: Tensor, atol: float, rtol: float) -> bool:
    got = _values(out)
    if got is None or got.shape != wrong.shape:
        return False
    return torch.allclose(got, wrong.to("cpu", torch.float64), atol=atol, rtol=rtol, equal_nan=True)


def _find_hint(ex: _Exercise, case: _Case, out, call) -> tuple[str, str] | None:
    if ex.diagnose is not None:
        try:
            hint = ex.diagnose(case, out, call)
        except Exception:  # a diagnosis is a bonus; the failure is reported anyway
            hint = None
        if hint:
            return hint
    got = _values(out)
    if got is None:
        return None
    atol, rtol = ex.hint_tol or (ex.atol, ex.rtol)
    for key, text, make in ex.wrong(case):
        try:
            wrong = make()
        except Exception:  # this wrong answer is undefined here (e.g. t + 1 = T)
            continue
        # a wrong answer that happens to be right here (a 1000 / T scale at T = 1000) proves nothing
        if _close(got, wrong, atol, rtol) and not _close(case.expected, wrong, ex.atol, ex.rtol):
            return key, text
    return None


def _error_hint(ex: _Exercise, case: _Case, err: Exception) -> tuple[str, str] | None:
    # the exercise's own reading first: it knows what its tensors are called
    hint = ex.on_error(case, err) if ex.on_error is not None else None
    if hint is None and "Boolean value of Tensor with more than one" in str(err):
        hint = ("tensor_condition", "t is a tensor with one time step per sample, so `if` on it has no single "
                "answer; select per sample with tensor operations (indexing, torch.where).")
    return hint


# --- q_sample --------------------------------------------------------------------------

BROADCAST = ("a value indexed by t, such as alpha_bar[t], has shape (B,), one entry per sample; reshape it to "
             "(B, 1, ..., 1), with a 1 for each dimension of the data x (x0, x_t) after the batch, "
             "v.view(-1, *[1] * (x.ndim - 1)), so that it scales each sample whole.")


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def _per_sample_error(case: _Case, err: Exception) -> tuple[str, str] | None:
    msg = str(err)
    if "must match the size of tensor" in msg or "not broadcastable" in msg:
        return "broadcast", BROADCAST
    m = re.search(r"index (-?\d+) is out of bounds for dimension 0 with size (\d+)", msg)
    if isinstance(err, IndexError) and m and m.group(1) == m.group(2):
        return ("off_by_one", "an index ran one past the end at t = T - 1: t runs over 0 .. T - 1 and "
                "index t already holds step t's value, so do not add 1.")
    return None


def _q_sample_wrong(case: _Case) -> Iterator[Wrong]:
    x0, t, noise, alpha_bar = (a.cpu() for a in case.args)
    x0, noise, ab = x0.double(), noise.double(), alpha_bar.double()

    def closed(a: Tensor, x: Tensor = x0, n: Tensor = noise) -> Tensor:
        return a.sqrt() * x + (1 - a).sqrt() * n

    a = _per_sample(ab[t], x0)
    sqrt_text = ("the weights are standard deviations, sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), not the "
                 "variances alpha_bar_t and 1 - alpha_bar_t.")
    yield "missing_sqrt", f"the output equals alpha_bar_t x0 + (1 - alpha_bar_t) noise: {sqrt_text}", \
        lambda: a * x0 + (1 - a) * noise
    yield "missing_sqrt", f"the output equals sqrt(alpha_bar_t) x0 + (1 - alpha_bar_t) noise: {sqrt_text}", \
        lambda: a.sqrt() * x0 + (1 - a) * noise
    yield "missing_sqrt", f"the output equals alpha_bar_t x0 + sqrt(1 - alpha_bar_t) noise: {sqrt_text}", \
        lambda: a * x0 + (1 - a).sqrt() * noise
    # t - 1 = -1 wraps around to the last entry, as alpha_bar[t - 1] does in the student's code
    yield "off_by_one", ("the output equals the closed form at t - 1: alpha_bar[t] already is the value "
                         "for step t (t runs over 0 .. T - 1), no shift is needed."), \
        lambda: closed(_per_sample(ab[t - 1], x0))
    # t + 1 = T is out of range: as if the student had clamped it to T - 1
    yield "off_by_one", ("the output equals the closed form at t + 1: alpha_bar[t] already is the value "
                         "for step t (t runs over 0 .. T - 1), no shift is needed."), \
        lambda: closed(_per_sample(ab[(t + 1).clamp(max=len(ab) - 1)], x0))
    yield "swapped", ("x0 and noise are exchanged: the signal x0 is scaled by sqrt(alpha_bar_t) and the "
                      "noise by sqrt(1 - alpha_bar_t)."), lambda: closed(a, noise, x0)
    for shape in ((-1,), (-1, 1), (-1, 1, 1, 1)):
        yield "broadcast", BROADCAST, lambda shape=shape: closed(ab[t].reshape(shape))


def _q_sample_noise(case: _Case, out, call) -> tuple[str, str] | None:
    """Noise drawn inside the function (the output changes between calls), or ignored."""
    want = case.expected
    if not isinstance(out, Tensor) or out.shape != want.shape or out.device != want.device:
        return None
    try:
        again = call()
        x0, t, noise, alpha_bar = case.args
        other = call((x0, t, torch.randn(noise.shape, generator=torch.Generator().manual_seed(7)).to(noise),
                      alpha_bar))
    except Exception:
        return None
    if not _close(again, out, 1e-6, 1e-6):
        # the noise the output implies, where the noise term is large enough to read it back
        a = _per_sample(alpha_bar[t], x0).double()
        used = (out.detach().double() - a.sqrt() * x0.double()) / (1 - a).sqrt()
        used = used[(1 - a).expand_as(used) > 0.01]
        if used.numel() >= 8 and used.min() > -1e-3 and used.max() < 1 + 1e-3:
            return ("uniform_noise", "the output changes from call to call, and the noise in it lies in [0, 1]: "
                    "it draws uniform noise (torch.rand) of its own. The forward process adds Gaussian noise, "
                    "and it is given as the argument `noise`: use that.")
        return ("own_noise", "the output changes from call to call with the same inputs: it draws noise of its "
                "own. Use the argument `noise`; the caller passes it in so that it can reuse it (the training "
                "loss compares the model's prediction with exactly that noise).")
    if _close(other, out, 1e-6, 1e-6):
        return ("ignores_noise", "the output does not change when `noise` does: the term "
                "sqrt(1 - alpha_bar_t) * noise is missing, or uses other numbers than the argument `noise`.")
    return None


# --- beta schedules --------------------------------------------------------------------


# a float32 computation of a schedule is off by up to about 4e-5 relative (the cosine's large
# betas) or 1e-7 absolute (its tiny first betas); the mistakes the hints name, by more
BETAS_HINT_TOL = (1e-6, 1e-4)


def _betas_diagnose(case: _Case, out, call) -> tuple[str, str] | None:
    T, name = case.extra["T"], case.extra["name"]
    if _close(out, case.expected, *BETAS_HINT_TOL):
        return ("precision", "the values agree to about 1e-5 but not to 1e-6, as a float32 computation does; "
                "compute in float64 (dtype=torch.float64), as beta_schedule does.")
    if not isinstance(out, Tensor) or out.ndim != 1 or out.shape[0] not in (T + 1, T - 1):
        return None
    if name == "cosine":
        why = ("alpha_bar is evaluated on the T + 1 points t / T, t = 0 .. T, and the betas are the T ratios "
               "1 - alpha_bar[t + 1] / alpha_bar[t] between neighbours.")
    else:   # the points each schedule is evaluated at
        points = {"linear": "torch.linspace(beta_start, beta_end, T)", "sigmoid": "torch.linspace(-6, 6, T)",
                  "quadratic": "torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T)"}
        why = "there is one beta per step, T in all" + (f": {points[name]}." if name in points else ".")
    return "length", f"{out.shape[0]} values for T = {T}: {why}"


def _cosine(T: int, s: float = 0.008, max_beta: float | None = 0.999, dtype=torch.float64) -> Tensor:
    u = torch.arange(T + 1, dtype=dtype) / T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas if max_beta is None else betas.clamp(max=max_beta)


def _betas_wrong(case: _Case) -> Iterator[Wrong]:
    T, name = case.extra["T"], case.extra["name"]
    start, end = 1e-4, 0.02
    if name == "linear":
        scale = 1000 / T
        yield "rescaled", (f"the range is scaled by 1000 / T (here {scale:g}), as in the improved-DDPM code; "
                           "this book's linear schedule runs from beta_start = 1e-4 to beta_end = 0.02 for every "
                           "T."), lambda: torch.linspace(start * scale, end * scale, T, dtype=torch.float64)
        endpoint = ("the last beta must equal beta_end = 0.02: torch.linspace(beta_start, beta_end, T) "
                    "includes both ends.")
        steps = torch.arange(T, dtype=torch.float64)
        yield "endpoint", endpoint, lambda: start + (end - start) * steps / T
        yield "endpoint", endpoint, lambda: start + (end - start) * (steps + 1) / T
    if name == "cosine":
        yield "not_clipped", ("the last betas are not clipped: near t = T, alpha_bar falls to 0 and beta to 1; "
                              "clamp the betas at max_beta = 0.999."), lambda: _cosine(T, max_beta=None)
        yield "offset", ("the offset s = 0.008 is missing: alpha_bar(t) = cos^2(((t / T + s) / (1 + s)) "
                         "pi / 2) / alpha_bar(0), which keeps the first betas from being too small."), \
            lambda: _cosine(T, s=0.0)


# --- posterior mean --------------------------------------------------------------------


def _posterior_tuple(case: _Case, out, call) -> tuple[str, str] | None:
    if isinstance(out, tuple) and out and _close(out[0], case.expected, 1e-3, 1e-3):
        return ("tuple", "its first element is the right mean: return the mean alone (ddpm.posterior returns "
                "the mean and the variance, this exercise asks for the mean).")
    return None


def _posterior_wrong(case: _Case) -> Iterator[Wrong]:
    x0, xt, t, betas = (a.cpu() for a in case.args)
    x0, xt, b = x0.double(), xt.double(), betas.double()
    alphas = 1 - b
    ab = torch.cumprod(alphas, 0)
    ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])

    def mean(ab_t: Tensor, ab_p: Tensor, sqrt_alpha: Tensor | None = None, swap: bool = False,
             idx: Tensor = t) -> Tensor:
        sa = alphas[idx].sqrt() if sqrt_alpha is None else sqrt_alpha
        c0 = ab_p.sqrt() * b[idx] / (1 - ab_t)
        ct = sa * (1 - ab_p) / (1 - ab_t)
        c0, ct = _per_sample(c0, x0), _per_sample(ct, x0)
        return ct * x0 + c0 * xt if swap else c0 * x0 + ct * xt

    yield "swapped", ("the two weights are exchanged: sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) "
                      "multiplies x0, sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) multiplies x_t."), \
        lambda: mean(ab[t], ab_prev[t], swap=True)
    yield "off_by_one", ("alpha_bar_t stands where alpha_bar_{t-1} belongs: alpha_bar_{t-1} is the product of "
                         "alpha up to the step before, alpha_bar[t - 1], and 1 at t = 0."), \
        lambda: mean(ab[t], ab[t])
    yield "off_by_one", ("alpha_bar_{t-1} stands where alpha_bar_t belongs: the denominators are "
                         "1 - alpha_bar_t."), lambda: mean(ab_prev[t], ab_prev[t])
    # t - 1 = -1 wraps around to the last entry, as a student's betas[t - 1] does
    yield "off_by_one", ("the output equals the posterior of step t - 1: t already indexes step t's values "
                         "(t runs over 0 .. T - 1)."), lambda: mean(ab[t - 1], ab_prev[t - 1], idx=t - 1)
    t0 = ("at t = 0 there is no alpha_bar_{-1}: it is 1 (the empty product), but alpha_bar[t - 1] wraps "
          "around to alpha_bar[T - 1]; use a tensor alpha_bar_prev = [1, alpha_bar[0], ..., alpha_bar[T - 2]].")
    yield "t0_edge", t0, lambda: mean(ab[t], ab[t - 1])
    yield "t0_edge", t0.replace("wraps around to alpha_bar[T - 1]", "was taken as alpha_bar[0]"), \
        lambda: mean(ab[t], ab[(t - 1).clamp(min=0)])
    yield "alpha_bar_for_alpha", ("x_t's weight takes sqrt(alpha_t), one step's alpha = 1 - beta_t, "
                                  "not sqrt(alpha_bar_t)."), lambda: mean(ab[t], ab_prev[t], ab[t].sqrt())
    for shape in ((-1,), (-1, 1), (-1, 1, 1, 1)):
        yield "broadcast", BROADCAST, \
            lambda shape=shape: _posterior_unshaped(x0, xt, ab[t], ab_prev[t], b[t], shape)


def _posterior_unshaped(x0, xt, ab_t, ab_p, b_t, shape) -> Tensor:
    c0 = (ab_p.sqrt() * b_t / (1 - ab_t)).reshape(shape)
    ct = ((1 - b_t).sqrt() * (1 - ab_p) / (1 - ab_t)).reshape(shape)
    return c0 * x0 + ct * xt


# --- time embedding --------------------------------------------------------------------


def _embedding_wrong(case: _Case) -> Iterator[Wrong]:
    t, dim = case.args
    t = t.cpu().double()
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64)

    def angles(freqs: Tensor) -> Tensor:
        return t[:, None] * freqs[None, :]

    right = angles(10_000.0 ** (-k / half))
    yield "sin_cos_swapped", ("the cos half comes first: the first dim / 2 features are the sines, the last "
                              "dim / 2 the cosines."), lambda: torch.cat([right.cos(), right.sin()], 1)
    yield "interleaved", ("sin and cos alternate feature by feature: here the first dim / 2 features are "
                          "all the sines, the last dim / 2 all the cosines (torch.cat, not torch.stack)."), \
        lambda: torch.stack([right.sin(), right.cos()], -1).reshape(len(t), dim)
    yield "interleaved", ("cos and sin alternate feature by feature: here the first dim / 2 features are "
                          "all the sines, the last dim / 2 all the cosines (torch.cat, not torch.stack)."), \
        lambda: torch.stack([right.cos(), right.sin()], -1).reshape(len(t), dim)
    freq = "the frequencies are f_k = 10000 ** (-k / (dim / 2)), k = 0 .. dim / 2 - 1"
    variants = [
        ("dim / 2 - 1 in the exponent (the convention of some DDPM code)", lambda: 10_000.0 ** (-k / (half - 1))),
        ("dim in the exponent instead of dim / 2", lambda: 10_000.0 ** (-k / dim)),
        ("a positive exponent", lambda: 10_000.0 ** (k / half)),
        ("base 1000", lambda: 1_000.0 ** (-k / half)),
        ("base e, exp(-k / (dim / 2))", lambda: torch.exp(-k / half)),
    ]
    for what, freqs in variants:
        def make(freqs=freqs):
            a = angles(freqs())
            return torch.cat([a.sin(), a.cos()], 1)
        yield "frequency", f"{freq}; these use {what}.", make
    sin_cos = "the embedding has dim features: dim / 2 sines, then dim / 2 cosines of the same angles."
    yield "half_features", sin_cos, lambda: right.sin()
    yield "half_features", sin_cos, lambda: right.cos()


# --- DDIM step -------------------------------------------------------------------------

DDIM_WEIGHTS = ("sqrt(alpha_bar_t)", "sqrt(1 - alpha_bar_t)", "sqrt(alpha_bar_prev)", "sqrt(1 - alpha_bar_prev)")


def _ddim_wrong(case: _Case) -> Iterator[Wrong]:
    x_t, eps, t, t_prev, alpha_bar = (a.cpu() for a in case.args)
    x_t, eps, ab = x_t.double(), eps.double(), alpha_bar.double()
    ab_prev = torch.where(t_prev >= 0, ab[t_prev], 1.0)

    def step(a_t: Tensor, a_s: Tensor, bare: tuple[int, ...] = (), shape: tuple[int, ...] | None = None) -> Tensor:
        # the weights numbered as in DDIM_WEIGHTS; those in bare lose their square root
        a_t, a_s = (a.reshape(shape) if shape else _per_sample(a, x_t) for a in (a_t, a_s))
        w = [v if i in bare else v.sqrt() for i, v in enumerate((a_t, 1 - a_t, a_s, 1 - a_s))]
        return w[2] * (x_t - w[1] * eps) / w[0] + w[3] * eps

    yield "t_prev_ignored", ("the output equals the step to t - 1, alpha_bar[t - 1] in place of "
                             "alpha_bar[t_prev]: DDIM skips steps, so the previous time is t_prev, "
                             "given per sample."), lambda: step(ab[t], ab[t - 1])
    end = ("t_prev = -1 is the end of the chain, where alpha_bar_prev = 1 (the empty product), so that x_prev "
           "is the x0 estimate; ")
    yield "end_not_handled", end + ("alpha_bar[t_prev] wraps around to alpha_bar[T - 1] there: select 1 with "
                                    "torch.where(t_prev >= 0, ...)."), lambda: step(ab[t], ab[t_prev])
    yield "end_not_handled", end + "it was taken as alpha_bar[0].", \
        lambda: step(ab[t], ab[t_prev.clamp(min=0)])
    yield "swapped", ("alpha_bar_t and alpha_bar_prev are exchanged: x0 is estimated with alpha_bar_t, at the "
                      "time of x_t, and x_prev built with alpha_bar_prev."), lambda: step(ab_prev, ab[t])
    for n in range(1, 5):
        for bare in itertools.combinations(range(4), n):
            names = [DDIM_WEIGHTS[i] for i in bare]
            names = " and ".join([", ".join(names[:-1]), names[-1]] if n > 1 else names)
            yield "missing_sqrt", (f"{names} {'is' if n == 1 else 'are'} missing the square root: the weights "
                                   "of x0 and eps in x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps are "
                                   "square roots, at t and at t_prev alike."), \
                lambda bare=bare: step(ab[t], ab_prev, bare)
    for shape in ((-1,), (-1, 1), (-1, 1, 1, 1)):
        yield "broadcast", BROADCAST, lambda shape=shape: step(ab[t], ab_prev, shape=shape)


# --- min-SNR weight --------------------------------------------------------------------

MIN_SNR_PARAMETERISATIONS = ("eps", "v", "x")
MIN_SNR_FORMULA = {"eps": "min(SNR, gamma) / SNR", "v": "min(SNR, gamma) / (SNR + 1)", "x": "min(SNR, gamma)"}
MIN_SNR_WHY = {"eps": "the eps-MSE is SNR times the x-MSE", "v": "the v-MSE is SNR + 1 times the x-MSE",
               "x": "the weight Hang et al. put on the x-MSE"}
MIN_SNR_UNCAPPED = {"eps": "SNR / SNR = 1", "v": "SNR / (SNR + 1)", "x": "SNR"}


def _min_snr_formula(snr: Tensor, capped: Tensor, parameterisation: str) -> Tensor:
    """The weight of ``parameterisation`` with ``capped`` where min(SNR, gamma) belongs."""
    if parameterisation == "eps":
        return capped / snr
    if parameterisation == "v":
        return capped / (snr + 1)
    return capped


def _min_snr_wrong(case: _Case) -> Iterator[Wrong]:
    log_snr, gamma, p = case.args
    lam = log_snr.detach().to("cpu", torch.float64)
    snr = lam.exp()                  # at most exp(15) ~ 3.3e6 here: no overflow
    asked = f"parameterisation = {p!r} asks for {MIN_SNR_FORMULA[p]} ({MIN_SNR_WHY[p]})"
    yield "seed_rule", ("the output equals 1 / (1 + min(SNR, gamma)), a rule some tutorials apply; it is not "
                        "the published min-SNR-gamma weight (Hang et al., 2023), which caps the x-MSE weight "
                        f"SNR at gamma: {asked}."), lambda: 1 / (1 + snr.clamp(max=gamma))
    for other in MIN_SNR_PARAMETERISATIONS:
        if other != p:
            yield "wrong_parameterisation", (
                f"the output equals the {other}-MSE weight {MIN_SNR_FORMULA[other]}, but {asked}; choose the "
                "formula by the argument `parameterisation`."), \
                lambda other=other: _min_snr_formula(snr, snr.clamp(max=gamma), other)
    yield "uncapped", (f"the output equals {MIN_SNR_UNCAPPED[p]}, the weight without its cap: {asked}. The min "
                       "caps SNR at gamma so that the nearly clean steps (high SNR) do not dominate the loss; "
                       "use torch.clamp(snr, max=gamma), or in log space torch.clamp(log_snr, max=math.log(gamma))."), \
        lambda: _min_snr_formula(snr, snr, p)
    yield "lambda_as_snr", ("the output equals the weight with lambda itself in place of SNR: log_snr holds "
                            "lambda = log SNR, so SNR = exp(lambda), and gamma compares with lambda as log(gamma)."), \
        lambda: _min_snr_formula(lam, lam.clamp(max=gamma), p)
    yield "max_for_min", ("the output equals the weight with max(SNR, gamma) in place of min(SNR, gamma): the "
                          "weighting caps SNR at gamma from above, torch.clamp(snr, max=gamma) (or "
                          "torch.minimum; in log space, lambda at log(gamma)), rather than raising it to gamma."), \
        lambda: _min_snr_formula(snr, snr.clamp(min=gamma), p)


def _min_snr_overflow(case: _Case, out, call) -> tuple[str, str] | None:
    """The weights formed through SNR = exp(lambda), which is inf in float16 above log 65504."""
    got = _values(out)
    if not case.extra.get("float16") or got is None or got.shape != case.expected.shape:
        return None
    over = got[case.t.detach().to("cpu", torch.float64) > math.log(torch.finfo(torch.float16).max)]
    if (~torch.isfinite(over)).any():
        what = "SNR / (SNR + 1) is inf / inf, NaN"
    elif (over == 0).any():
        what = "gamma / SNR is 0 where the weight is gamma e^-lambda, small but not 0"
    else:
        return None
    return "float16_overflow", ("in float16, SNR = exp(lambda) overflows to inf above lambda = log 65504 = 11.09, "
                                f"so {what}; form the weights from lambda without building the SNR: "
                                "min(SNR, gamma) / SNR = exp(min(0, log(gamma) - lambda)), and "
                                "SNR / (SNR + 1) = sigmoid(lambda).")


def _min_snr_error(case: _Case, err: Exception) -> tuple[str, str] | None:
    if "Boolean value of Tensor with more than one" in str(err):
        return ("tensor_condition", "log_snr holds one lambda per sample, so `if` on it or on the SNR, or "
                "Python's min(snr, gamma), which compares the two with `<`, has no single answer; take the "
                "minimum per sample with torch.clamp(snr, max=gamma) (or torch.minimum).")
    return None
