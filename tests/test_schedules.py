"""Unit tests of diffnb.schedules: named beta schedules and DiscreteSchedule."""

import math

import pytest
import torch

from diffnb.schedules import SCHEDULE_NAMES, DiscreteSchedule, beta_schedule, check_betas


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


ALLOWED = [repr(n) for n in SCHEDULE_NAMES]


# --- beta_schedule -----------------------------------------------------------------


@pytest.mark.parametrize("T", [1000, 10, 1])
@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_every_schedule_has_shape_T_and_values_in_open_unit_interval(name, T):
    betas = beta_schedule(name, T)
    assert betas.shape == (T,)
    assert betas.dtype == torch.float64
    assert torch.isfinite(betas).all()
    assert (betas > 0).all() and (betas < 1).all()


@pytest.mark.parametrize("name", ["linear", "polynomial", "quadratic", "sigmoid"])
def test_fixed_range_schedules_increase(name):
    betas = beta_schedule(name, 1000)
    assert (betas[1:] > betas[:-1]).all()


def test_linear_endpoints_and_spacing():
    betas = beta_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    steps = betas.diff()
    torch.testing.assert_close(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-9, atol=0)


def test_linear_T10():
    betas = beta_schedule("linear", 10)
    expected = torch.tensor([1e-4 + i * (0.02 - 1e-4) / 9 for i in range(10)], dtype=torch.float64)
    torch.testing.assert_close(betas, expected, rtol=1e-12, atol=0)


def test_custom_range_is_used():
    betas = beta_schedule("linear", 5, beta_start=0.1, beta_end=0.5)
    torch.testing.assert_close(betas, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64))


def test_quadratic_endpoints_and_sqrt_linear():
    betas = beta_schedule("quadratic", 100)
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    root_steps = betas.sqrt().diff()
    torch.testing.assert_close(root_steps, torch.full_like(root_steps, root_steps.mean().item()), rtol=1e-9, atol=0)


def test_polynomial_takes_smaller_first_steps_than_linear():
    lin, poly = beta_schedule("linear", 1000), beta_schedule("polynomial", 1000)
    # same endpoints ...
    assert poly[0].item() == pytest.approx(lin[0].item(), rel=1e-12)
    assert poly[-1].item() == pytest.approx(lin[-1].item(), rel=1e-12)
    # ... but strictly smaller in between: u**2 < u on (0, 1)
    assert (poly[1:-1] < lin[1:-1]).all()
    # and much smaller early on: at u = 0.1 the excess over beta_start is 10x smaller
    k = 100  # u = 100 / 999
    u = k / 999
    assert (poly[k] - 1e-4).item() == pytest.approx(u * (lin[k] - 1e-4).item(), rel=1e-9)
    # so more signal is kept early on
    assert (torch.cumprod(1 - poly, 0)[1:] > torch.cumprod(1 - lin, 0)[1:]).all()


def test_polynomial_power_one_is_linear():
    torch.testing.assert_close(beta_schedule("polynomial", 50, power=1.0), beta_schedule("linear", 50))


def _cosine_f(t, T, s=0.008):
    return math.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2


@pytest.mark.parametrize("T", [1000, 10])
def test_cosine_alpha_bar_matches_nichol_dhariwal(T):
    betas = beta_schedule("cosine", T)
    alpha_bar = torch.cumprod(1 - betas, 0)
    f0 = _cosine_f(0, T)
    expected = torch.tensor([_cosine_f(t + 1, T) / f0 for t in range(T)], dtype=torch.float64)
    unclipped = betas < 0.999
    # only the very last beta is clipped ...
    assert unclipped[:-1].all()
    assert not unclipped[-1]
    # ... so alpha_bar follows the formula everywhere before it
    torch.testing.assert_close(alpha_bar[:-1], expected[:-1], rtol=1e-10, atol=1e-15)
    # the unclipped last beta would be 1 - f(T)/f(T-1), essentially 1
    assert 1 - _cosine_f(T, T) / _cosine_f(T - 1, T) > 0.999
    assert betas[-1].item() == pytest.approx(0.999, rel=1e-12)
    # ends near pure noise
    assert alpha_bar[-1].item() < 1e-4


def test_cosine_max_beta_is_respected():
    betas = beta_schedule("cosine", 10, max_beta=0.5)
    assert betas.max().item() == pytest.approx(0.5)
    assert (betas <= 0.5).all()


def test_cosine_ends_near_noise_for_any_T_unlike_linear():
    for T in (10, 50, 1000):
        ab_cos = torch.cumprod(1 - beta_schedule("cosine", T), 0)[-1].item()
        assert ab_cos < 1e-3
    ab_lin10 = torch.cumprod(1 - beta_schedule("linear", 10), 0)[-1].item()
    assert ab_lin10 > 0.9  # ten small linear steps leave most of the signal


@pytest.mark.parametrize("bad", ["linearr", "Linear", "cos", ""])
def test_unknown_schedule_name(bad):
    with pytest.raises(ValueError) as info:
        beta_schedule(bad, 10)
    msg = str(info.value)
    assert repr(bad) in msg
    for name in ALLOWED:
        assert name in msg


@pytest.mark.parametrize("bad_T", [0, -3, 2.5, True, "10", None, 10.0])
def test_bad_number_of_steps(bad_T):
    with pytest.raises(ValueError) as info:
        beta_schedule("linear", bad_T)
    assert repr(bad_T) in str(info.value)
    assert "positive integer" in str(info.value)


def test_range_reaching_one_is_rejected():
    with pytest.raises(ValueError, match=r"betas\[9\] = 1 "):
        beta_schedule("linear", 10, beta_end=1.0)


# --- check_betas / DiscreteSchedule validation ------------------------------------------


@pytest.mark.parametrize(
    "values, index, shown",
    [
        ([0.1, 0.0, 0.2], 1, "0"),
        ([0.1, 0.2, 1.0], 2, "1"),
        ([-0.5, 0.2, 0.3], 0, "-0.5"),
        ([0.1, 0.2, 0.3, 1.5], 3, "1.5"),
        ([0.1, float("nan")], 1, "nan"),
    ],
)
def test_discrete_schedule_rejects_out_of_range_betas(values, index, shown):
    with pytest.raises(ValueError) as info:
        DiscreteSchedule(torch.tensor(values, dtype=torch.float64))
    msg = str(info.value)
    assert f"betas[{index}] = {shown} " in msg, msg
    assert "(0, 1)" in msg


def test_reports_first_bad_index_and_count():
    with pytest.raises(ValueError) as info:
        DiscreteSchedule(torch.tensor([0.1, 2.0, 0.3, -1.0, 0.0]))
    msg = str(info.value)
    assert "betas[1] = 2 " in msg
    assert "3 of 5 out of range" in msg


@pytest.mark.parametrize("bad, shape", [(torch.full((2, 3), 0.1), "(2, 3)"),
                                        (torch.empty(0), "(0,)"),
                                        (torch.tensor(0.1), "()")])
def test_discrete_schedule_rejects_bad_shapes(bad, shape):
    with pytest.raises(ValueError) as info:
        DiscreteSchedule(bad)
    msg = str(info.value)
    assert "1-D" in msg
    assert shape in msg


def test_check_betas_rejects_non_tensor():
    with pytest.raises(ValueError, match="got list"):
        check_betas([0.1, 0.2])


def test_discrete_schedule_accepts_list():
    sched = DiscreteSchedule([0.1, 0.2, 0.3])
    assert sched.T == 3
    torch.testing.assert_close(sched.betas, torch.tensor([0.1, 0.2, 0.3]))


# --- DiscreteSchedule derived quantities ----------------------------------------------


@pytest.fixture(scope="module")
def small():
    betas = torch.tensor([0.1, 0.2, 0.3, 0.5], dtype=torch.float64)
    return betas, DiscreteSchedule(betas)


def test_derived_quantities_by_hand(small):
    betas, sched = small
    assert sched.T == 4
    # by hand: alpha = 0.9, 0.8, 0.7, 0.5
    ab = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7, 0.9 * 0.8 * 0.7 * 0.5]
    ab_prev = [1.0] + ab[:-1]
    b = betas.tolist()
    expected = {
        "betas": b,
        "alphas": [0.9, 0.8, 0.7, 0.5],
        "alpha_bar": ab,
        "alpha_bar_prev": ab_prev,
        "posterior_variance": [b[i] * (1 - ab_prev[i]) / (1 - ab[i]) for i in range(4)],
        "snr": [a / (1 - a) for a in ab],
    }
    for key, values in expected.items():
        got = getattr(sched, key)
        assert got.dtype == torch.float32, key
        assert got.shape == (4,), key
        torch.testing.assert_close(got, torch.tensor(values, dtype=torch.float32), rtol=1e-6, atol=0, msg=key)
    assert sched.alpha_bar_prev[0].item() == 1.0
    assert sched.posterior_variance[0].item() == 0.0


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_derived_quantities_linear_1000(name):
    betas = beta_schedule(name, 1000)
    sched = DiscreteSchedule(betas)
    ab = torch.cumprod(1 - betas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    torch.testing.assert_close(sched.alpha_bar, ab.float())
    torch.testing.assert_close(sched.alpha_bar_prev, ab_prev.float())
    assert sched.alpha_bar_prev[0].item() == 1.0
    torch.testing.assert_close(sched.alpha_bar_prev[1:], sched.alpha_bar[:-1])
    torch.testing.assert_close(sched.posterior_variance, (betas * (1 - ab_prev) / (1 - ab)).float())
    torch.testing.assert_close(sched.snr, (ab / (1 - ab)).float())
    # beta-tilde never exceeds beta, and the SNR falls monotonically
    assert (sched.posterior_variance <= sched.betas).all()
    assert (sched.snr[1:] < sched.snr[:-1]).all()
    assert (sched.alpha_bar[1:] < sched.alpha_bar[:-1]).all()


def test_to_cpu_keeps_values_and_is_a_copy(small):
    _, sched = small
    moved = sched.to("cpu")
    assert moved is not sched
    assert isinstance(moved, DiscreteSchedule)
    assert moved.T == sched.T
    for key in ("betas", "alphas", "alpha_bar", "alpha_bar_prev", "posterior_variance", "snr"):
        assert torch.equal(getattr(moved, key), getattr(sched, key)), key
        assert getattr(moved, key).device == torch.device("cpu")
    moved2 = sched.to(torch.device("cpu"))
    assert torch.equal(moved2.alpha_bar, sched.alpha_bar)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("T", [1000, 10])
def test_from_name_equals_constructor(name, T):
    a = DiscreteSchedule.from_name(name, T)
    b = DiscreteSchedule(beta_schedule(name, T))
    assert a.T == b.T == T
    for key in ("betas", "alphas", "alpha_bar", "alpha_bar_prev", "posterior_variance", "snr"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key


def test_from_name_passes_keyword_arguments():
    a = DiscreteSchedule.from_name("linear", 5, beta_start=0.1, beta_end=0.5)
    torch.testing.assert_close(a.betas, torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))


def test_from_name_rejects_bad_T():
    with pytest.raises(ValueError, match="got 0"):
        DiscreteSchedule.from_name("cosine", 0)


def test_repr_mentions_T_and_range():
    text = repr(DiscreteSchedule.from_name("linear", 1000))
    assert text.startswith("DiscreteSchedule(T=1000")
    assert "0.0001" in text and "0.02" in text
