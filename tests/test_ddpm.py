"""Unit tests of diffnb.ddpm: forward process, posterior, loss and ancestral sampling.

Index convention (see diffnb.schedules): step t in [0, T) holds the paper's
beta_{t+1}; alpha_bar[t] is the signal kept after t + 1 noising steps.
"""

import math

import pytest
import torch

from diffnb import ddpm
from diffnb.schedules import DiscreteSchedule, beta_schedule


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def linear():
    return DiscreteSchedule.from_name("linear", 1000)


@pytest.fixture(scope="module")
def cosine10():
    return DiscreteSchedule.from_name("cosine", 10)


def _ab64(name, T):
    """alpha_bar in float64, straight from the betas, with a Python loop."""
    out, acc = [], 1.0
    for b in beta_schedule(name, T).tolist():
        acc *= 1 - b
        out.append(acc)
    return out


# --- q_sample / q_step --------------------------------------------------------------


def test_q_sample_matches_closed_form(linear):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=g)
    noise = torch.randn(64, 2, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    t[:3] = torch.tensor([0, 999, 500])
    got = ddpm.q_sample(linear, x0, t, noise)
    ab = torch.tensor(_ab64("linear", 1000), dtype=torch.float64)[t][:, None]
    expected = ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double()
    assert got.shape == x0.shape and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_q_sample_broadcasts_per_sample_over_image_shaped_batches(cosine10):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 2, 4, 4, generator=g)
    noise = torch.randn(3, 2, 4, 4, generator=g)
    t = torch.tensor([0, 4, 9])
    got = ddpm.q_sample(cosine10, x0, t, noise)
    for i in range(3):
        ab = cosine10.alpha_bar[t[i]]
        torch.testing.assert_close(got[i], ab.sqrt() * x0[i] + (1 - ab).sqrt() * noise[i])


def test_q_sample_extremes(linear):
    x0 = torch.full((4, 2), 0.7)
    noise = torch.full((4, 2), -1.3)
    # first step: almost all signal; last: almost all noise
    x_first = ddpm.q_sample(linear, x0, torch.zeros(4, dtype=torch.long), noise)
    x_last = ddpm.q_sample(linear, x0, torch.full((4,), 999), noise)
    torch.testing.assert_close(x_first, torch.full((4, 2), math.sqrt(1 - 1e-4) * 0.7 - 0.01 * 1.3))
    assert (x_last - noise).abs().max() < 0.01


def test_q_step_is_one_gaussian_step(cosine10):
    x_prev = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    noise = torch.tensor([[0.3, 0.1], [-1.0, 2.0]])
    t = torch.tensor([2, 7])
    got = ddpm.q_step(cosine10, x_prev, t, noise)
    for i in range(2):
        b = cosine10.betas[t[i]]
        torch.testing.assert_close(got[i], (1 - b).sqrt() * x_prev[i] + b.sqrt() * noise[i])


@pytest.mark.parametrize("name, T", [("linear", 60), ("cosine", 30)])
def test_iterated_q_step_matches_closed_form_monte_carlo(name, T):
    """T single steps from one point x0 have the closed form's mean and variance at every t.

    Tolerance: with N independent copies, the sample mean of a coordinate has
    standard error sqrt(v_t / N) and the sample variance v_t * sqrt(2 / (N - 1))
    (Gaussian data). We allow 5 standard errors: a correct implementation fails
    one of the 4 T checks with probability below 4 T * 6e-7 < 1e-3 (and the seed
    is fixed, so the outcome never changes), while a wrong step size (e.g. beta
    instead of sqrt(beta) on the noise, or a missing sqrt on 1 - beta) is off by
    many standard errors already after a few steps.
    """
    N = 16_000  # (N, 2) stays below torch's parallel grain size: fast even on a busy 2-core machine
    sched = DiscreteSchedule.from_name(name, T)
    g = torch.Generator().manual_seed(1234)
    x0 = torch.tensor([0.8, -0.4])
    x = x0.repeat(N, 1)
    worst = 0.0
    for t in range(T):
        x = ddpm.q_step(sched, x, torch.full((N,), t), torch.randn(N, 2, generator=g))
        ab = sched.alpha_bar[t].double()
        mean, var = ab.sqrt() * x0.double(), 1 - ab
        se_mean = (var / N).sqrt()
        se_var = var * math.sqrt(2 / (N - 1))
        err_mean = (x.double().mean(0) - mean).abs().max()
        err_var = (x.double().var(0) - var).abs().max()
        assert err_mean < 5 * se_mean, (t, err_mean.item(), se_mean.item())
        assert err_var < 5 * se_var, (t, err_var.item(), se_var.item())
        worst = max(worst, (err_mean / se_mean).item(), (err_var / se_var).item())
    assert worst > 0.5  # the check is not vacuous: the errors really are of Monte Carlo size


def test_q_sample_rejects_noise_of_wrong_shape(linear):
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError) as info:
        ddpm.q_sample(linear, x0, torch.zeros(4, dtype=torch.long), torch.zeros(4, 3))
    msg = str(info.value)
    assert "noise" in msg and "(4, 2)" in msg and "(4, 3)" in msg


def test_q_step_rejects_noise_of_wrong_shape(linear):
    with pytest.raises(ValueError, match=r"noise must have the shape of x_prev, \(4, 2\); got \(2, 4\)"):
        ddpm.q_step(linear, torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.zeros(2, 4))


@pytest.mark.parametrize("t, shown", [(torch.zeros(5, dtype=torch.long), "(5,)"),
                                      (torch.zeros(4, 1, dtype=torch.long), "(4, 1)"),
                                      (torch.tensor(3), "()")])
def test_q_sample_rejects_t_of_wrong_shape(linear, t, shown):
    with pytest.raises(ValueError) as info:
        ddpm.q_sample(linear, torch.zeros(4, 2), t, torch.zeros(4, 2))
    msg = str(info.value)
    assert "(4,)" in msg and shown in msg


@pytest.mark.parametrize("t", [torch.full((4,), 3.0), torch.zeros(4, dtype=torch.bool), [0, 1, 2, 3]])
def test_q_sample_rejects_non_integer_t(linear, t):
    with pytest.raises(TypeError) as info:
        ddpm.q_sample(linear, torch.zeros(4, 2), t, torch.zeros(4, 2))
    msg = str(info.value)
    assert "integer tensor" in msg and "(4,)" in msg
    assert repr(t)[:10] in msg  # names the value it got


@pytest.mark.parametrize("bad", [-1, 1000, 5000])
def test_q_sample_rejects_t_out_of_range(linear, bad):
    t = torch.tensor([0, 5, bad, 7])
    with pytest.raises(ValueError) as info:
        ddpm.q_sample(linear, torch.zeros(4, 2), t, torch.zeros(4, 2))
    msg = str(info.value)
    assert f"t = {bad} " in msg and "[0, 1000)" in msg


def test_q_step_rejects_t_out_of_range(cosine10):
    with pytest.raises(ValueError, match=r"t = 10 is outside \[0, 10\)"):
        ddpm.q_step(cosine10, torch.zeros(2, 2), torch.tensor([3, 10]), torch.zeros(2, 2))


def test_empty_batch_is_fine(cosine10):
    out = ddpm.q_sample(cosine10, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, 2))
    assert out.shape == (0, 2)


# --- posterior ----------------------------------------------------------------------


def test_posterior_variance_is_beta_tilde(linear):
    t = torch.tensor([0, 1, 10, 500, 999])
    xt, x0 = torch.randn(5, 2), torch.randn(5, 2)
    mean, var = ddpm.posterior(linear, x0, xt, t)
    assert mean.shape == (5, 2)
    assert var.shape == (5, 1)
    torch.testing.assert_close(var[:, 0], linear.posterior_variance[t])
    b, ab, ab_prev = linear.betas[t], linear.alpha_bar[t], linear.alpha_bar_prev[t]
    torch.testing.assert_close(var[:, 0], b * (1 - ab_prev) / (1 - ab), rtol=1e-3, atol=0)
    assert var[0, 0].item() == 0.0  # x_{-1} is x0 itself: no uncertainty left


def _conditioning(ab_prev, alpha, x0, xt):
    """q(x_{t-1} | x_t, x0) in 1-D by Gaussian conditioning of the joint of (x_{t-1}, x_t) given x0.

    x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) e1,  x_t = sqrt(alpha) x_{t-1} + sqrt(1 - alpha) e2.
    """
    m1, v1 = math.sqrt(ab_prev) * x0, 1 - ab_prev
    m2, v2 = math.sqrt(alpha) * m1, alpha * v1 + (1 - alpha)
    c12 = math.sqrt(alpha) * v1
    return m1 + c12 / v2 * (xt - m2), v1 - c12**2 / v2


def _bayes_on_grid(ab_prev, alpha, x0, xt, n=400_001):
    """The same posterior by brute force: prior q(x_{t-1}|x0) times likelihood q(x_t|x_{t-1}) on a grid."""
    grid = torch.linspace(-8, 8, n, dtype=torch.float64)
    log_prior = -0.5 * (grid - math.sqrt(ab_prev) * x0) ** 2 / (1 - ab_prev)
    log_lik = -0.5 * (xt - math.sqrt(alpha) * grid) ** 2 / (1 - alpha)
    w = torch.softmax(log_prior + log_lik, 0)
    mean = (w * grid).sum()
    return mean.item(), (w * (grid - mean) ** 2).sum().item()


@pytest.mark.parametrize("t", [1, 3, 5, 8, 9])
def test_posterior_matches_bayes_1d_cosine10(cosine10, t):
    ab = _ab64("cosine", 10)
    ab_prev, alpha = ab[t - 1], ab[t] / ab[t - 1]
    x0, xt = 0.6, -0.9
    mean_c, var_c = _conditioning(ab_prev, alpha, x0, xt)
    mean_g, var_g = _bayes_on_grid(ab_prev, alpha, x0, xt)
    # the two reference computations agree with each other ...
    assert mean_g == pytest.approx(mean_c, abs=1e-7)
    assert var_g == pytest.approx(var_c, rel=1e-5)
    # ... and with diffnb
    mean, var = ddpm.posterior(cosine10, torch.tensor([[x0]]), torch.tensor([[xt]]), torch.tensor([t]))
    assert mean.item() == pytest.approx(mean_c, rel=1e-5, abs=1e-6)
    assert var.item() == pytest.approx(var_c, rel=1e-5)


@pytest.mark.parametrize("t", [1, 10, 100, 500, 999])
def test_posterior_matches_gaussian_conditioning_linear1000(linear, t):
    ab = _ab64("linear", 1000)
    ab_prev, alpha = ab[t - 1], ab[t] / ab[t - 1]
    x0 = torch.tensor([[0.6], [-1.0], [2.0]], dtype=torch.float64)
    xt = torch.tensor([[-0.9], [0.3], [1.5]], dtype=torch.float64)
    mean, var = ddpm.posterior(linear, x0, xt, torch.full((3,), t))
    for i in range(3):
        m, v = _conditioning(ab_prev, alpha, x0[i].item(), xt[i].item())
        # alpha_bar is stored in float32; near t = 0, 1 - alpha_bar ~ 1e-4 keeps ~1e-4 relative precision
        assert mean[i].item() == pytest.approx(m, rel=1e-3, abs=1e-4)
        assert var[i].item() == pytest.approx(v, rel=1e-5)


def test_posterior_at_t0_returns_x0(linear, cosine10):
    x0, xt = torch.tensor([[0.5, -1.0]]), torch.tensor([[3.0, 2.0]])
    for sched in (linear, cosine10):
        mean, var = ddpm.posterior(sched, x0, xt, torch.tensor([0]))
        torch.testing.assert_close(mean, x0, rtol=0, atol=1e-6 * x0.abs().max().item())
        assert var.item() == 0.0


def test_posterior_shape_checks(cosine10):
    with pytest.raises(ValueError, match=r"x0 must have the shape of xt, \(2, 2\); got \(2, 3\)"):
        ddpm.posterior(cosine10, torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="t = 10 "):
        ddpm.posterior(cosine10, torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([1, 10]))


# --- predict_x0 ------------------------------------------------------------------------


def test_predict_x0_inverts_q_sample_float64(linear):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(200, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(200, 2, generator=g, dtype=torch.float64)
    t = torch.arange(0, 1000, 5)
    xt = ddpm.q_sample(linear, x0, t, noise)
    torch.testing.assert_close(ddpm.predict_x0(linear, xt, t, noise), x0, rtol=0, atol=1e-10)


def test_predict_x0_inverts_q_sample_float32(cosine10):
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(100, 2, generator=g)
    noise = torch.randn(100, 2, generator=g)
    t = torch.arange(100) % 9  # the last step of the cosine schedule keeps ~1e-6 of the signal
    xt = ddpm.q_sample(cosine10, x0, t, noise)
    torch.testing.assert_close(ddpm.predict_x0(cosine10, xt, t, noise), x0, rtol=0, atol=1e-4)


# --- eps_loss ---------------------------------------------------------------------------


def _zeros_model(x, t):
    return torch.zeros_like(x)


def _oracle(sched, x_star):
    """The exact noise predictor for data that is the single point x_star."""

    def model(xt, t):
        ab = sched.alpha_bar[t].to(xt.dtype).reshape(-1, *([1] * (xt.ndim - 1)))
        return (xt - ab.sqrt() * x_star) / (1 - ab).sqrt()

    return model


def test_eps_loss_of_zero_predictor_is_about_one(linear):
    # mean of 2 * 20000 squared standard normals: standard error sqrt(2 / 40000) ~ 0.007
    x0 = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(5))
    loss = ddpm.eps_loss(_zeros_model, linear, x0, generator=torch.Generator().manual_seed(6))
    assert loss.ndim == 0
    assert abs(loss.item() - 1) < 0.035


def test_eps_loss_of_oracle_is_zero(linear):
    x_star = torch.tensor([0.3, -0.7])
    x0 = x_star.repeat(512, 1)
    loss = ddpm.eps_loss(_oracle(linear, x_star), linear, x0, generator=torch.Generator().manual_seed(0))
    assert loss.item() < 1e-6


def test_eps_loss_is_reproducible_with_a_generator(cosine10):
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    model = lambda x, t: 0.5 * x + t[:, None].float() / 10  # noqa: E731
    a = ddpm.eps_loss(model, cosine10, x0, generator=torch.Generator().manual_seed(9))
    b = ddpm.eps_loss(model, cosine10, x0, generator=torch.Generator().manual_seed(9))
    c = ddpm.eps_loss(model, cosine10, x0, generator=torch.Generator().manual_seed(10))
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_eps_loss_reproduces_by_hand(cosine10):
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    model = lambda x, t: 0.5 * x  # noqa: E731
    g = torch.Generator().manual_seed(11)
    t = torch.randint(0, 10, (32,), generator=g)
    noise = torch.randn(32, 2, generator=g)
    ab = cosine10.alpha_bar[t][:, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    expected = ((0.5 * xt - noise) ** 2).mean()
    got = ddpm.eps_loss(model, cosine10, x0, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(got, expected)


def test_eps_loss_has_gradient():
    sched = DiscreteSchedule.from_name("cosine", 10)
    w = torch.tensor(0.5, requires_grad=True)
    loss = ddpm.eps_loss(lambda x, t: w * x, sched, torch.randn(16, 2), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert w.grad is not None and w.grad.abs().item() > 0


# --- p_step -----------------------------------------------------------------------------


def _affine_model(x, t):
    return 0.3 * x - 0.1


def test_p_step_at_t0_adds_no_noise(cosine10):
    xt = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    huge = torch.full_like(xt, 1e6)
    a, x0a = ddpm.p_step(_affine_model, cosine10, xt, 0, huge)
    b, x0b = ddpm.p_step(_affine_model, cosine10, xt, 0, None)
    c, _ = ddpm.p_step(_affine_model, cosine10, xt, 0, huge, variance="beta_tilde")
    assert torch.equal(a, b) and torch.equal(a, c)
    assert a.abs().max() < 100
    # at t = 0 the posterior mean is the x0 estimate itself
    torch.testing.assert_close(a, x0a, rtol=1e-3, atol=1e-3)
    assert torch.equal(x0a, x0b)


@pytest.mark.parametrize("t", [1, 5, 9])
def test_p_step_is_posterior_mean_plus_scaled_noise(cosine10, t):
    g = torch.Generator().manual_seed(t)
    xt, z = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    tt = torch.full((6,), t)
    x0_hat = ddpm.predict_x0(cosine10, xt, tt, _affine_model(xt, tt))
    mean, _ = ddpm.posterior(cosine10, x0_hat, xt, tt)
    for variance, var in (("beta", cosine10.betas[t]), ("beta_tilde", cosine10.posterior_variance[t])):
        out, x0 = ddpm.p_step(_affine_model, cosine10, xt, t, z, variance=variance)
        torch.testing.assert_close(x0, x0_hat)
        torch.testing.assert_close(out, mean + var.sqrt() * z)
    # the default is beta
    torch.testing.assert_close(ddpm.p_step(_affine_model, cosine10, xt, t, z)[0], mean + cosine10.betas[t].sqrt() * z)


def test_p_step_clip_x0(cosine10):
    xt = torch.tensor([[5.0, -5.0], [0.1, 0.2]])
    z = torch.zeros(2, 2)
    _, x0 = ddpm.p_step(_zeros_model, cosine10, xt, 3, z, clip_x0=1.0)
    assert x0.abs().max().item() <= 1.0
    _, x0_free = ddpm.p_step(_zeros_model, cosine10, xt, 3, z)
    assert x0_free.abs().max().item() > 1.0
    torch.testing.assert_close(x0, x0_free.clamp(-1, 1))


@pytest.mark.parametrize("bad", [False, True, 0, -1.0, float("nan")])
def test_p_step_rejects_bad_clip_x0(cosine10, bad):
    with pytest.raises(ValueError, match=f"clip_x0 must be None or a positive number, got {bad!r}"):
        ddpm.p_step(_zeros_model, cosine10, torch.zeros(2, 2), 3, torch.zeros(2, 2), clip_x0=bad)


@pytest.mark.parametrize("bad", ["sigma", "Beta", "", "tilde"])
def test_p_step_unknown_variance(cosine10, bad):
    with pytest.raises(ValueError) as info:
        ddpm.p_step(_zeros_model, cosine10, torch.zeros(2, 2), 3, torch.zeros(2, 2), variance=bad)
    msg = str(info.value)
    assert repr(bad) in msg and "'beta_tilde'" in msg and "'beta'" in msg


def test_sample_unknown_variance(cosine10):
    with pytest.raises(ValueError, match="'beta_tilde', 'beta'"):
        ddpm.sample(_zeros_model, cosine10, (2, 2), variance="sigma")


# --- sample -----------------------------------------------------------------------------


def test_sample_shape_and_dtype(cosine10):
    out = ddpm.sample(_affine_model, cosine10, (7, 2), generator=torch.Generator().manual_seed(0))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (7, 2) and out.dtype == torch.float32
    assert out.device == torch.device("cpu")
    assert torch.isfinite(out).all()


def test_sample_image_shaped(cosine10):
    out = ddpm.sample(_affine_model, cosine10, (2, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 3, 3)


def test_sample_same_seed_same_samples(cosine10):
    a = ddpm.sample(_affine_model, cosine10, (16, 2), generator=torch.Generator().manual_seed(42))
    b = ddpm.sample(_affine_model, cosine10, (16, 2), generator=torch.Generator().manual_seed(42))
    c = ddpm.sample(_affine_model, cosine10, (16, 2), generator=torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("keep_every, n_kept", [(1, 11), (3, 5), (5, 3), (10, 2), (20, 2)])
def test_sample_trajectory(cosine10, keep_every, n_kept):
    shape = (5, 2)
    out, traj, x0s = ddpm.sample(_affine_model, cosine10, shape, generator=torch.Generator().manual_seed(0),
                                 keep_every=keep_every)
    assert x0s.shape == traj.shape and torch.equal(x0s[-1], out)   # the last step returns its x0
    assert traj.shape == (n_kept, *shape)
    # the first frame is x_T, the first draw of the generator
    assert torch.equal(traj[0], torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    # the last frame is the sample, and the samples do not depend on keep_every
    assert torch.equal(traj[-1], out)
    assert torch.equal(out, ddpm.sample(_affine_model, cosine10, shape, generator=torch.Generator().manual_seed(0)))


def test_sample_trajectory_frames_follow_p_step(cosine10):
    shape = (4, 2)
    _, traj, _ = ddpm.sample(_affine_model, cosine10, shape, generator=torch.Generator().manual_seed(0),
                             keep_every=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    for i, t in enumerate(reversed(range(10))):
        noise = torch.randn(shape, generator=g) if t > 0 else None
        x, _ = ddpm.p_step(_affine_model, cosine10, x, t, noise)
        torch.testing.assert_close(traj[i + 1], x)


def test_oracle_sampling_ends_at_the_single_data_point(linear):
    x_star = torch.tensor([0.8, -0.4])
    out = ddpm.sample(_oracle(linear, x_star), linear, (64, 2), generator=torch.Generator().manual_seed(0))
    assert (out - x_star).abs().max().item() < 1e-3


def test_oracle_sampling_with_beta_tilde_has_the_forward_marginals():
    """With the exact x0 and variance beta-tilde, every step draws from q(x_{t-1} | x_t, x*),
    so x_t ~ q(x_t | x*) = N(sqrt(ab_t) x*, 1 - ab_t) at every t. (The start, N(0, I) instead of
    q(x_{T-1} | x*), differs by ~1e-3 in the mean for this schedule, far below the tolerance.)
    Tolerance: 5 standard errors of the sample mean / variance of N = 16000 copies.
    """
    T, N = 40, 16_000
    sched = DiscreteSchedule.from_name("cosine", T)
    x_star = torch.tensor([0.8, -0.4])
    out, traj, _ = ddpm.sample(_oracle(sched, x_star), sched, (N, 2), generator=torch.Generator().manual_seed(0),
                               variance="beta_tilde", keep_every=1)
    assert (out - x_star).abs().max().item() < 1e-3
    for k in range(1, T):  # frame k is the state at index T - 1 - k
        ab = sched.alpha_bar[T - 1 - k]
        var = (1 - ab).item()
        x = traj[k].double()
        assert (x.mean(0) - ab.sqrt() * x_star).abs().max().item() < 5 * math.sqrt(var / N), k
        assert (x.var(0) - var).abs().max().item() < 5 * var * math.sqrt(2 / N), k


def test_p_step_rejects_t_outside_the_schedule(cosine10):
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.zeros(3, 2)
    for bad in (10, -1):
        with pytest.raises(ValueError, match=f"t = {bad} is outside"):
            ddpm.p_step(model, cosine10, x, bad, torch.zeros_like(x))


def test_p_step_needs_noise_of_the_shape_of_x_t_except_at_the_last_step(cosine10):
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"noise is None; it must be a tensor of the shape of x_t, \(3, 2\)"):
        ddpm.p_step(model, cosine10, x, 5, None)
    with pytest.raises(ValueError, match=r"noise must have the shape of x_t, \(3, 2\); got \(2,\)"):
        ddpm.p_step(model, cosine10, x, 5, torch.zeros(2))      # would broadcast: one noise for all
    ddpm.p_step(model, cosine10, x, 0, None)                    # the last step adds none
    t, t_prev = torch.full((3,), 5), torch.full((3,), 2)
    with pytest.raises(ValueError, match=r"noise must have the shape of x_t"):
        ddpm.ddim_step(cosine10, x, torch.zeros_like(x), t, t_prev, eta=1.0, noise=torch.zeros(2))


def test_eps_loss_refuses_a_model_output_that_would_broadcast(cosine10):
    with pytest.raises(ValueError, match=r"the model's output must have the shape of x0, \(4, 2\); got \(4, 1\)"):
        ddpm.eps_loss(lambda x, t: x[:, :1], cosine10, torch.zeros(4, 2))
