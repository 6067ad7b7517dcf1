"""Unit tests of continuous-time (log-SNR) diffusion: the schedules in diffnb.schedules and diffnb.continuous."""

import math

import pytest
import torch

import diffnb
from diffnb import continuous
from diffnb.continuous import (PARAMETERISATIONS, SAMPLERS, alpha_sigma, diffuse, min_snr_weight, posterior,
                               sample, target, to_x_eps)
from diffnb.models import UNet
from diffnb.schedules import (LOG_SNR_NAMES, DiscreteSchedule, cosine_log_snr, discrete_log_snr,
                              interpolated_cosine_log_snr, log_snr_schedule, shifted_cosine_log_snr)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


def reference_cosine(t, lambda_min=-15.0, lambda_max=15.0):
    """The published form, -2 log tan(t_min + t (t_max - t_min)), in float64."""
    t_min = math.atan(math.exp(-lambda_max / 2))
    t_max = math.atan(math.exp(-lambda_min / 2))
    return -2 * torch.log(torch.tan(t_min + t.double() * (t_max - t_min)))


# one example of each schedule: name, arguments, and the values it must take at t = 0 and t = 1
SHIFT_128, SHIFT_1024 = 2 * math.log(64 / 128), 2 * math.log(32 / 1024)
SCHEDULES = {
    "cosine": ("cosine", dict(), 15.0, -15.0),
    "cosine -20..10": ("cosine", dict(lambda_min=-20, lambda_max=10), 10.0, -20.0),
    "shifted 128/64": ("shifted_cosine", dict(resolution=128), 15.0 + SHIFT_128, -15.0 + SHIFT_128),
    "shifted 1024/32": ("shifted_cosine", dict(resolution=1024, base=32), 15.0 + SHIFT_1024, -15.0 + SHIFT_1024),
    "interpolated 512/(32, 256)": ("interpolated_cosine", dict(resolution=512, base=(32, 256)),
                                   15.0 + 2 * math.log(256 / 512), -15.0 + 2 * math.log(32 / 512)),
}


def schedule(key):
    name, kwargs, _, _ = SCHEDULES[key]
    return log_snr_schedule(name, **kwargs)


# --- log-SNR schedules ----------------------------------------------------------------


def test_cosine_matches_the_published_formula_in_float64():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for bounds in [(-15.0, 15.0), (-20.0, 10.0), (-5.0, 5.0)]:
        torch.testing.assert_close(cosine_log_snr(t, lambda_min=bounds[0], lambda_max=bounds[1]),
                                   reference_cosine(t, *bounds), rtol=0, atol=1e-10)


def test_cosine_in_float32_is_accurate_up_to_both_ends():
    # the published form in float32 is ~4e-4 off at t = 1, where a t + b is within 6e-4 of pi / 2
    t = torch.linspace(0, 1, 1001)
    err = (cosine_log_snr(t).double() - reference_cosine(t)).abs()
    assert err.max().item() < 1e-5, f"largest float32 error {err.max().item():.2e} at t = {t[err.argmax()]:.3f}"


@pytest.mark.parametrize("key", SCHEDULES)
def test_endpoints_are_the_clip_bounds(key):
    _, _, at_0, at_1 = SCHEDULES[key]
    fn = schedule(key)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
        ends = fn(torch.tensor([0.0, 1.0], dtype=dtype))
        assert ends.dtype == dtype
        assert ends[0].item() == pytest.approx(at_0, abs=tol)
        assert ends[1].item() == pytest.approx(at_1, abs=tol)


@pytest.mark.parametrize("key", SCHEDULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_schedules_decrease_strictly_and_stay_finite(key, dtype):
    t = torch.linspace(0, 1, 10_001, dtype=dtype)
    lam = schedule(key)(t)
    assert lam.shape == t.shape and lam.dtype == dtype
    assert torch.isfinite(lam).all()
    assert (lam.diff() < 0).all()


@pytest.mark.parametrize("resolution,base", [(128, 64), (512, 32), (64, 64), (1000, 7.5)])
def test_shifted_is_cosine_plus_the_shift_everywhere(resolution, base):
    shift = 2 * math.log(base / resolution)
    for dtype in (torch.float32, torch.float64):
        t = torch.cat([torch.linspace(0, 1, 2001, dtype=dtype), torch.tensor([0.0, 1.0], dtype=dtype)])
        shifted = shifted_cosine_log_snr(t, resolution=resolution, base=base)
        torch.testing.assert_close(shifted, cosine_log_snr(t) + shift, rtol=0, atol=1e-6)
        # so the clipping bounds move with the shift
        assert shifted[-2].item() == pytest.approx(15 + shift, abs=1e-5)
        assert shifted[-1].item() == pytest.approx(-15 + shift, abs=1e-5)


def test_interpolated_blends_the_low_base_with_weight_t():
    t = torch.linspace(0, 1, 501, dtype=torch.float64)
    low = shifted_cosine_log_snr(t, resolution=512, base=32)
    high = shifted_cosine_log_snr(t, resolution=512, base=256)
    lam = interpolated_cosine_log_snr(t, resolution=512, base=(32, 256))
    torch.testing.assert_close(lam, t * low + (1 - t) * high, rtol=0, atol=1e-12)
    assert lam[0].item() == pytest.approx(high[0].item(), abs=1e-12)    # detailed end: the high base
    assert lam[-1].item() == pytest.approx(low[-1].item(), abs=1e-12)   # noisy end: the low base
    assert ((lam <= high + 1e-12) & (lam >= low - 1e-12)).all()
    # equal bases: nothing to blend
    same = interpolated_cosine_log_snr(t, resolution=512, base=(64, 64))
    torch.testing.assert_close(same, shifted_cosine_log_snr(t, resolution=512, base=64), rtol=0, atol=1e-12)


def test_named_schedules_are_the_functions():
    t = torch.rand(64)
    torch.testing.assert_close(log_snr_schedule("cosine")(t), cosine_log_snr(t))
    torch.testing.assert_close(log_snr_schedule("shifted_cosine", resolution=256, base=32)(t),
                               shifted_cosine_log_snr(t, resolution=256, base=32))
    torch.testing.assert_close(log_snr_schedule("interpolated_cosine", resolution=256, base=(32, 128))(t),
                               interpolated_cosine_log_snr(t, resolution=256, base=(32, 128)))
    assert diffnb.log_snr_schedule is log_snr_schedule
    assert set(LOG_SNR_NAMES) == {"cosine", "shifted_cosine", "interpolated_cosine"}


def test_unknown_schedule_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown log-SNR schedule 'linear'") as err:
        log_snr_schedule("linear")
    for name in LOG_SNR_NAMES:
        assert repr(name) in str(err.value)


@pytest.mark.parametrize("name,base", [("shifted_cosine", 64), ("interpolated_cosine", (64, 256))])
def test_resolution_below_the_base_names_both(name, base):
    with pytest.raises(ValueError, match=r"resolution 32 is below the reference resolution base = 64"):
        log_snr_schedule(name, resolution=32, base=base)
    with pytest.raises(ValueError, match="resolution 32 is below"):
        shifted_cosine_log_snr(torch.rand(3), resolution=32, base=64)


@pytest.mark.parametrize("name", LOG_SNR_NAMES)
@pytest.mark.parametrize("lo,hi", [(5, 5), (10, -10)])
def test_lambda_min_not_below_lambda_max_names_both(name, lo, hi):
    kwargs = {} if name == "cosine" else {"resolution": 128, "base": 64 if name == "shifted_cosine" else (32, 64)}
    with pytest.raises(ValueError, match=rf"lambda_min = {lo} >= lambda_max = {hi}"):
        log_snr_schedule(name, lambda_min=lo, lambda_max=hi, **kwargs)
    with pytest.raises(ValueError, match="lambda_min must be below lambda_max"):
        cosine_log_snr(torch.rand(3), lambda_min=lo, lambda_max=hi)


@pytest.mark.parametrize("name", ["shifted_cosine", "interpolated_cosine"])
def test_shifted_schedules_need_a_resolution(name):
    with pytest.raises(ValueError, match=rf"the '{name}' schedule needs the image resolution"):
        log_snr_schedule(name)


def test_other_bad_schedule_arguments():
    with pytest.raises(ValueError, match="takes no resolution"):
        log_snr_schedule("cosine", resolution=128)
    with pytest.raises(ValueError, match=r"base = \(low, high\)"):
        log_snr_schedule("interpolated_cosine", resolution=512)            # base left at 64
    with pytest.raises(ValueError, match="low = 256 > high = 32"):
        log_snr_schedule("interpolated_cosine", resolution=512, base=(256, 32))
    with pytest.raises(ValueError, match="a pair is for 'interpolated_cosine'"):
        log_snr_schedule("shifted_cosine", resolution=512, base=(32, 256))
    with pytest.raises(ValueError, match="resolution must be positive"):
        log_snr_schedule("shifted_cosine", resolution=-128)
    with pytest.raises(ValueError, match="lambda_max must be a finite number"):
        log_snr_schedule("cosine", lambda_max=math.inf)
    with pytest.raises(TypeError, match="t must be a float tensor"):
        cosine_log_snr(torch.arange(10))                                   # DDPM's integer steps


def test_discrete_schedule_on_the_log_snr_axes():
    sched = DiscreteSchedule.from_name("linear", 1000)
    t, lam = discrete_log_snr(sched)
    assert t.shape == lam.shape == (1000,)
    torch.testing.assert_close(t, (torch.arange(1000) + 1) / 1000.0)
    assert t[-1].item() == 1.0
    alpha_bar = torch.cumprod(1 - diffnb.beta_schedule("linear", 1000), 0)     # float64
    torch.testing.assert_close(lam.double(), torch.log(alpha_bar / (1 - alpha_bar)), rtol=0, atol=1e-5)
    assert (lam.diff() < 0).all()
    # from alpha_bar itself
    t2, lam2 = discrete_log_snr(alpha_bar)
    torch.testing.assert_close(lam2, torch.log(alpha_bar / (1 - alpha_bar)), rtol=0, atol=1e-12)
    torch.testing.assert_close(t2, t.double())
    with pytest.raises(ValueError, match=r"open interval \(0, 1\); alpha_bar\[0\] = 1.0"):
        discrete_log_snr(torch.tensor([1.0, 0.5]))
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        discrete_log_snr([0.9, 0.5])


# --- alpha, sigma, diffuse ---------------------------------------------------------------


def test_alpha_sigma_define_the_log_snr():
    lam = torch.linspace(-15, 15, 301, dtype=torch.float64)
    alpha, sigma = alpha_sigma(lam)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(lam), rtol=0, atol=1e-14)
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), lam, rtol=0, atol=1e-10)
    a32, s32 = alpha_sigma(torch.tensor([-30.0, -15.0, 0.0, 15.0, 30.0]))
    assert (a32 > 0).all() and (s32 > 0).all() and torch.isfinite(a32 / s32).all()
    assert a32[1].item() == pytest.approx(math.sqrt(1 / (1 + math.exp(15))), rel=1e-5)


def test_diffuse_broadcasts_a_per_sample_log_snr():
    x, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    lam = torch.tensor([-5.0, 0.0, 7.0])
    z = diffuse(x, lam, noise)
    for i in range(3):
        a, s = math.sqrt(1 / (1 + math.exp(-lam[i].item()))), math.sqrt(1 / (1 + math.exp(lam[i].item())))
        torch.testing.assert_close(z[i], a * x[i] + s * noise[i])
    torch.testing.assert_close(diffuse(x[:, 0, 0, 0], lam, noise[:, 0, 0, 0]), z[:, 0, 0, 0])   # (B,) data too
    with pytest.raises(ValueError, match=r"log_snr must have shape \(3,\)"):
        diffuse(x, torch.zeros(3, 1), noise)
    with pytest.raises(ValueError, match="noise must have the shape"):
        diffuse(x, lam, noise[:, :1])
    with pytest.raises(TypeError, match="log_snr must be a float tensor"):
        diffuse(x, torch.zeros(3, dtype=torch.long), noise)


# --- parameterisations -------------------------------------------------------------------


def _round_trip(parameterisation, lam, dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(lam.numel(), 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)
    noise = torch.randn(lam.numel(), 3, 4, 4, generator=g, dtype=torch.float64).to(dtype)
    lam = lam.to(dtype)
    z = diffuse(x, lam, noise)
    x_hat, eps_hat = to_x_eps(target(x, noise, lam, parameterisation), z, lam, parameterisation)
    return (x_hat - x).abs().max().item(), (eps_hat - noise).abs().max().item()


@pytest.mark.parametrize("parameterisation", PARAMETERISATIONS)
def test_conversions_invert_in_float64(parameterisation):
    ex, ee = _round_trip(parameterisation, torch.linspace(-15, 15, 121), torch.float64)
    assert ex < 1e-10 and ee < 1e-10


# float32: eps divides by alpha (small at low SNR), x by sigma (small at high SNR); v by neither
@pytest.mark.parametrize("parameterisation,lo,hi", [("eps", -8, 15), ("x", -15, 8), ("v", -15, 15)])
def test_conversions_invert_in_float32_where_well_conditioned(parameterisation, lo, hi):
    ex, ee = _round_trip(parameterisation, torch.linspace(lo, hi, 121), torch.float32)
    assert ex < 1e-5 and ee < 1e-5, (ex, ee)


def test_v_is_alpha_eps_minus_sigma_x():
    x, noise, lam = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([-3.0, -1.0, 2.0, 9.0])
    alpha, sigma = alpha_sigma(lam[:, None])
    torch.testing.assert_close(target(x, noise, lam, "v"), alpha * noise - sigma * x)
    torch.testing.assert_close(target(x, noise, lam, "eps"), noise)
    torch.testing.assert_close(target(x, noise, lam, "x"), x)


def test_unknown_parameterisation_lists_the_allowed_ones():
    x, lam = torch.randn(2, 3), torch.zeros(2)
    calls = [lambda: target(x, x, lam, "score"), lambda: to_x_eps(x, x, lam, "score"),
             lambda: min_snr_weight(lam, parameterisation="score"),
             lambda: continuous.loss(lambda z, l: z, x, log_snr_schedule("cosine"), parameterisation="score"),
             lambda: sample(lambda z, l: z, log_snr_schedule("cosine"), (2, 3), 2, parameterisation="score")]
    for call in calls:
        with pytest.raises(ValueError, match="unknown parameterisation 'score'") as err:
            call()
        assert all(repr(p) in str(err.value) for p in PARAMETERISATIONS)


# --- min-SNR-gamma ------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_min_snr_weights_are_the_published_ones(gamma):
    lam = torch.linspace(-15, 15, 601, dtype=torch.float64)
    snr = torch.exp(lam)
    clipped = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64))
    published = {"eps": clipped / snr, "v": clipped / (snr + 1), "x": clipped}
    for p, expected in published.items():
        diff = (min_snr_weight(lam, gamma, p) - expected).abs().max().item()
        assert diff <= 1e-6, (p, diff)
        # float32 at the ends: finite and still right (to float32's relative precision)
        w32 = min_snr_weight(lam.float(), gamma, p).double()
        assert torch.isfinite(w32).all()
        torch.testing.assert_close(w32, expected, rtol=1e-5, atol=0)


def test_seed_notebooks_weight_is_not_min_snr():
    lam = torch.linspace(-15, 15, 601, dtype=torch.float64)
    snr, gamma = torch.exp(lam), 5.0
    seed = 1 / (1 + torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64)))
    published = min_snr_weight(lam, gamma, "eps")
    # both near 1 at low SNR ...
    low = lam <= -10
    assert (seed[low] - published[low]).abs().max().item() < 1e-4
    # ... but at high SNR the published weight falls as gamma / SNR, the seed's stays at 1 / (1 + gamma)
    high = lam >= 5
    assert (seed[high] - published[high]).abs().min().item() > 0.1
    assert published[-1].item() == pytest.approx(gamma * math.exp(-15), rel=1e-9)
    assert seed[-1].item() == pytest.approx(1 / (1 + gamma), rel=1e-9)


def test_min_snr_rejects_a_bad_gamma():
    for gamma in (0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="gamma must be a positive number"):
            min_snr_weight(torch.zeros(2), gamma)


# --- loss ---------------------------------------------------------------------------------


class Linear(torch.nn.Module):
    """A tiny model that uses both of its inputs: out = w z + b tanh(lambda / 10)."""

    def __init__(self):
        super().__init__()
        self.w, self.b = torch.nn.Parameter(torch.tensor(0.3)), torch.nn.Parameter(torch.tensor(0.2))

    def forward(self, z, log_snr):
        return self.w * z + self.b * torch.tanh(log_snr / 10).reshape(-1, *[1] * (z.ndim - 1))


@pytest.mark.parametrize("parameterisation", PARAMETERISATIONS)
@pytest.mark.parametrize("weighting", [None, "min_snr"])
def test_loss_is_the_weighted_mse_on_the_target(parameterisation, weighting):
    model, fn = Linear(), log_snr_schedule("shifted_cosine", resolution=32, base=16)
    x = torch.rand(16, 1, 4, 4) * 2 - 1
    value = continuous.loss(model, x, fn, parameterisation, weighting, gamma=3.0,
                            generator=torch.Generator().manual_seed(5))
    # by hand, with the same draws: t first, then the noise
    g = torch.Generator().manual_seed(5)
    t, noise = torch.rand(16, generator=g), torch.randn(x.shape, generator=g)
    lam = fn(t)
    err = (model(diffuse(x, lam, noise), lam) - target(x, noise, lam, parameterisation)).pow(2).mean((1, 2, 3))
    w = min_snr_weight(lam, 3.0, parameterisation) if weighting else torch.ones(16)
    assert value.shape == ()
    torch.testing.assert_close(value, (w * err).mean())
    value.backward()
    assert model.w.grad is not None and model.w.grad.abs() > 0


def test_loss_unknown_weighting_and_wrong_output_shape():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"unknown weighting 'snr'; allowed: None, 'min_snr'"):
        continuous.loss(Linear(), x, log_snr_schedule("cosine"), weighting="snr")
    with pytest.raises(ValueError, match="model's output must have the shape"):
        continuous.loss(lambda z, lam: z[:, :1], x, log_snr_schedule("cosine"))


def test_unet_takes_the_log_snr_as_its_time_input():
    net = UNet(in_channels=1, base=8, mults=(1, 2))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    value = continuous.loss(net, x, log_snr_schedule("cosine"), "v", "min_snr")
    value.backward()
    assert torch.isfinite(value)
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():   # the noise level reaches the output: the time input is not ignored
        z = torch.randn(2, 1, 8, 8)
        assert not torch.allclose(net(z, torch.tensor([-10.0, -10.0])), net(z, torch.tensor([10.0, 10.0])))


# --- posterior and samplers -----------------------------------------------------------------


def test_posterior_matches_the_textbook_form_in_float64():
    g = torch.Generator().manual_seed(2)
    lt = torch.rand(50, generator=g, dtype=torch.float64) * 30 - 15
    ls = lt + torch.rand(50, generator=g, dtype=torch.float64) * 5 + 1e-3     # earlier time: higher SNR
    z, x = torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randn(50, 3, generator=g, dtype=torch.float64)
    mean, var = posterior(z, x, lt, ls)
    a_t2, s_t2, a_s2, s_s2 = (torch.sigmoid(v)[:, None] for v in (lt, -lt, ls, -ls))
    a_ts = (a_t2 / a_s2).sqrt()
    s_ts2 = s_t2 - a_ts**2 * s_s2
    torch.testing.assert_close(mean, a_ts * s_s2 / s_t2 * z + a_s2.sqrt() * s_ts2 / s_t2 * x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, s_ts2 * s_s2 / s_t2, rtol=1e-10, atol=1e-14)
    # no step: nothing moves; a step to infinite SNR: onto x
    mean, var = posterior(z, x, lt, lt)
    torch.testing.assert_close(mean, z, rtol=1e-12, atol=1e-12)
    assert (var == 0).all()
    mean, var = posterior(z, x, lt, torch.full_like(lt, math.inf))
    torch.testing.assert_close(mean, x, rtol=0, atol=0)
    assert (var == 0).all()


def point_oracle(x_star, parameterisation):
    """A model of data that is the single point x_star: x_hat = x_star whatever z is."""
    def model(z, log_snr):
        alpha, sigma = alpha_sigma(log_snr.reshape(-1, *[1] * (z.ndim - 1)))
        x = x_star.expand_as(z)
        return target(x, (z - alpha * x) / sigma, log_snr, parameterisation)
    return model


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("parameterisation", PARAMETERISATIONS)
def test_samplers_return_the_only_data_point(sampler, parameterisation):
    x_star = torch.tensor([[0.25, -0.5, 0.9]])
    fn = log_snr_schedule("cosine")
    out = sample(point_oracle(x_star, parameterisation), fn, (64, 3), 10, sampler=sampler,
                 parameterisation=parameterisation, generator=torch.Generator().manual_seed(0))
    assert out.shape == (64, 3)
    if parameterisation == "x":
        assert torch.equal(out, x_star.expand(64, 3))
    else:
        torch.testing.assert_close(out, x_star.expand(64, 3), rtol=0, atol=1e-5)


def test_clip_x_clamps_the_estimate():
    fn, x_star = log_snr_schedule("cosine"), torch.tensor([[3.0, -0.5]])
    for sampler in SAMPLERS:
        kwargs = dict(sampler=sampler, parameterisation="x")
        assert torch.equal(sample(point_oracle(x_star, "x"), fn, (8, 2), 5, **kwargs), torch.tensor([[1.0, -0.5]] * 8))
        assert torch.equal(sample(point_oracle(x_star, "x"), fn, (8, 2), 5, clip_x=False, **kwargs),
                           x_star.expand(8, 2))


def gaussian_oracle(s):
    """The exact posterior mean for data ~ N(0, s^2 I): x_hat = alpha s^2 / (alpha^2 s^2 + sigma^2) z."""
    def model(z, log_snr):
        alpha, sigma = alpha_sigma(log_snr[:, None])
        return alpha * s**2 / (alpha**2 * s**2 + sigma**2) * z
    return model


def chain_std(s, steps, sampler):
    """The std the sampler must produce with the Gaussian oracle, by propagating the variance
    exactly (float64) through the linear steps, written from the textbook form."""
    lam = reference_cosine(torch.linspace(1, 0, steps + 1, dtype=torch.float64)).tolist()
    var = 1.0
    for i in range(steps):
        a_t2, s_t2 = 1 / (1 + math.exp(-lam[i])), 1 / (1 + math.exp(lam[i]))
        m = math.sqrt(a_t2) * s**2 / (a_t2 * s**2 + s_t2)      # x_hat = m z
        if i == steps - 1:
            return math.sqrt(m * m * var)
        a_s2, s_s2 = 1 / (1 + math.exp(-lam[i + 1])), 1 / (1 + math.exp(lam[i + 1]))
        if sampler == "ddim":       # z_s = alpha_s x_hat + sigma_s (z - alpha_t x_hat) / sigma_t
            k, added = math.sqrt(a_s2) * m + math.sqrt(s_s2 / s_t2) * (1 - math.sqrt(a_t2) * m), 0.0
        else:
            a_ts2 = a_t2 / a_s2
            s_ts2 = s_t2 - a_ts2 * s_s2
            k = math.sqrt(a_ts2) * s_s2 / s_t2 + math.sqrt(a_s2) * s_ts2 / s_t2 * m
            added = s_ts2 * s_s2 / s_t2
        var = k * k * var + added


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_gaussian_data_std_follows_the_exact_chain(sampler):
    # The posterior-mean denoiser leaves out Var(x | z_t) from each step, so with 50 steps the
    # ancestral std is ~0.468 for s = 0.5, not 0.5 (it tends to s as the steps grow, below);
    # the exact chain std is the sharp check: a wrong variance (sigma_{t|s}^2) would give ~0.508.
    s, n, steps = 0.5, 20_000, 50
    out = sample(gaussian_oracle(s), log_snr_schedule("cosine"), (n, 2), steps, sampler=sampler,
                 parameterisation="x", clip_x=False, generator=torch.Generator().manual_seed(3))
    std, se = out.double().pow(2).mean().sqrt().item(), s / math.sqrt(2 * 2 * n)
    expected = chain_std(s, steps, sampler)
    assert abs(std - expected) < 4 * se, (std, expected, se)
    assert abs(out.double().mean().item()) < 4 * s / math.sqrt(2 * n)
    assert abs(std - s) < 0.04


def test_ancestral_std_reaches_s_with_many_steps():
    # exact chain: 0.4980 at 1000 steps, 0.5 SE below s here; at 50 steps it would be 9 SE below
    s, n, steps = 0.5, 5_000, 1000
    out = sample(gaussian_oracle(s), log_snr_schedule("cosine"), (n, 2), steps, parameterisation="x",
                 clip_x=False, generator=torch.Generator().manual_seed(4))
    std, se = out.double().pow(2).mean().sqrt().item(), s / math.sqrt(2 * 2 * n)
    assert abs(std - s) < 4 * se, (std, se)


def test_sampler_runs_a_unet_seeded_and_rejects_bad_arguments():
    net = UNet(in_channels=1, base=8, mults=(1, 2)).eval()
    fn = log_snr_schedule("cosine")
    a = sample(net, fn, (2, 1, 8, 8), 3, generator=torch.Generator().manual_seed(7))
    b = sample(net, fn, (2, 1, 8, 8), 3, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 1, 8, 8) and torch.equal(a, b)
    assert a.abs().max() <= 1
    with pytest.raises(ValueError, match=r"unknown sampler 'euler'; allowed: 'ancestral', 'ddim'"):
        sample(net, fn, (2, 1, 8, 8), 3, sampler="euler")
    for steps in (0, 2.0, True):
        with pytest.raises(ValueError, match="steps must be a positive integer"):
            sample(net, fn, (2, 1, 8, 8), steps)
