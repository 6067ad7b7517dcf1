"""Unit tests of diffnb.data (two moons, scalings) and diffnb.metrics (energy distance)."""

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from diffnb.data import SCALINGS, Scaling, draw, moons_pool
from diffnb.metrics import energy_distance


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


# --- moons_pool ------------------------------------------------------------------------


def test_moons_pool_shape_and_dtype():
    pool = moons_pool(1000)
    assert isinstance(pool, torch.Tensor)
    assert pool.shape == (1000, 2)
    assert pool.dtype == torch.float32
    assert torch.isfinite(pool).all()


def test_moons_pool_default_size():
    assert moons_pool().shape == (100_000, 2)


def test_moons_pool_is_reproducible_and_seeded():
    a, b, c = moons_pool(500, seed=3), moons_pool(500, seed=3), moons_pool(500, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_moons_without_noise_lie_on_the_two_arcs():
    # make_moons: the upper arc is the unit half circle about (0, 0), the lower one about (1, 0.5)
    pool = moons_pool(400, noise=0.0).double()
    r_upper = pool.norm(dim=1)
    r_lower = (pool - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1)
    on_upper = (r_upper - 1).abs() < 1e-6
    on_lower = (r_lower - 1).abs() < 1e-6
    assert (on_upper | on_lower).all()
    assert on_upper.sum().item() == 200 and on_lower.sum().item() == 200
    assert (pool[on_upper, 1] >= -1e-6).all()  # upper half circle
    assert (pool[on_lower, 1] <= 0.5 + 1e-6).all()  # lower half circle


def test_moons_noise_spreads_points_off_the_arcs():
    pool = moons_pool(2000, noise=0.1, seed=0).double()
    lower_centre = torch.tensor([1.0, 0.5], dtype=torch.float64)
    dist = torch.minimum((pool.norm(dim=1) - 1).abs(), ((pool - lower_centre).norm(dim=1) - 1).abs())
    assert 0.03 < dist.mean().item() < 0.15


@pytest.mark.parametrize("n", [0, -5])
def test_moons_pool_rejects_non_positive_n(n):
    with pytest.raises(ValueError, match=f"got {n}"):
        moons_pool(n)


# --- draw ------------------------------------------------------------------------------


def _rows_in(rows, pool):
    return (rows[:, None, :] == pool[None, :, :]).all(-1).any(1)


def test_draw_returns_rows_of_the_pool():
    pool = moons_pool(300, seed=1)
    assert len(torch.unique(pool, dim=0)) == 300
    out = draw(pool, 50, torch.Generator().manual_seed(0))
    assert out.shape == (50, 2) and out.dtype == pool.dtype
    assert _rows_in(out, pool).all()


def test_draw_is_with_replacement():
    pool = torch.arange(10.0).reshape(5, 2)
    out = draw(pool, 200, torch.Generator().manual_seed(0))
    assert out.shape == (200, 2)
    assert _rows_in(out, pool).all()
    assert len(torch.unique(out, dim=0)) == 5  # every row is drawn, many of them twice


def test_draw_is_reproducible_with_a_generator():
    pool = moons_pool(1000)
    a = draw(pool, 64, torch.Generator().manual_seed(5))
    b = draw(pool, 64, torch.Generator().manual_seed(5))
    c = draw(pool, 64, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_draw_without_generator_uses_global_seed():
    pool = moons_pool(1000)
    torch.manual_seed(0)
    a = draw(pool, 32)
    torch.manual_seed(0)
    b = draw(pool, 32)
    assert torch.equal(a, b)


def test_draw_keeps_trailing_dimensions():
    pool = torch.randn(20, 3, 4, 4)
    assert draw(pool, 7, torch.Generator().manual_seed(0)).shape == (7, 3, 4, 4)


def test_draw_is_roughly_uniform():
    pool = torch.arange(4.0)[:, None]
    out = draw(pool, 40_000, torch.Generator().manual_seed(0))
    counts = torch.bincount(out[:, 0].long(), minlength=4).double()
    # each count is Binomial(40000, 1/4): sd ~ 87; allow 5 sd
    assert (counts - 10_000).abs().max().item() < 5 * 87


# --- Scaling ----------------------------------------------------------------------------


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1000, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([5.0, -3.0, 0.0])


def test_minmax_maps_each_coordinate_onto_minus_one_one():
    x = _data()
    s = Scaling.fit(x, "minmax")
    y = s(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.min(0).values, -torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(y.max(0).values, torch.ones(3), rtol=0, atol=1e-6)
    # an affine map per coordinate: order is kept
    assert torch.equal(y.argsort(0), x.argsort(0))


def test_minmax_exact_on_dyadic_data():
    x = torch.tensor([[0.0, 4.0], [2.0, 8.0], [1.0, 6.0], [0.5, 5.0]])
    s = Scaling.fit(x)  # minmax is the default
    assert torch.equal(s.shift, torch.tensor([1.0, 6.0]))
    assert torch.equal(s.scale, torch.tensor([1.0, 2.0]))
    assert torch.equal(s(x), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [-0.5, -0.5]]))


@pytest.mark.parametrize("method", SCALINGS)
def test_inverse_round_trips(method):
    x = _data()
    s = Scaling.fit(x, method)
    torch.testing.assert_close(s.inverse(s(x)), x, rtol=1e-6, atol=1e-5)
    y = torch.randn(10, 3)
    torch.testing.assert_close(s(s.inverse(y)), y, rtol=1e-5, atol=1e-5)


def test_standard_gives_mean_zero_std_one():
    x = _data()
    s = Scaling.fit(x, "standard")
    y = s(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(y.std(0), torch.ones(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(s.shift, x.mean(0))
    torch.testing.assert_close(s.scale, x.std(0))


def test_scaling_fitted_on_one_set_applies_to_another():
    s = Scaling.fit(torch.tensor([[0.0], [4.0]]))
    torch.testing.assert_close(s(torch.tensor([[2.0], [6.0], [-2.0]])), torch.tensor([[0.0], [2.0], [-2.0]]))


def test_scaling_is_frozen():
    s = Scaling.fit(_data())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.shift = torch.zeros(3)


@pytest.mark.parametrize("bad", ["zscore", "MinMax", "", "std"])
def test_unknown_scaling(bad):
    with pytest.raises(ValueError) as info:
        Scaling.fit(_data(), bad)
    msg = str(info.value)
    assert repr(bad) in msg and "'minmax'" in msg and "'standard'" in msg


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4)])
def test_scaling_rejects_non_2d(shape):
    with pytest.raises(ValueError, match=r"\(N, D\), got " + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        Scaling.fit(torch.randn(shape))


@pytest.mark.parametrize("method", SCALINGS)
def test_constant_coordinate_is_rejected_or_finite(method):
    x = torch.tensor([[0.0, 3.0], [1.0, 3.0], [2.0, 3.0]])
    try:
        s = Scaling.fit(x, method)
    except ValueError:
        return
    assert torch.isfinite(s(x)).all()


# --- energy_distance ---------------------------------------------------------------------


def _two(seed, n=200, m=150, d=2, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g) + shift


def _energy_loop(x, y):
    """Energy distance with plain numpy double loops (V-statistic, diagonal included)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def mean_dist(a, b):
        return sum(np.linalg.norm(p - q) for p, q in itertools.product(a, b)) / (len(a) * len(b))

    return 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def test_energy_distance_matches_double_loop():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]])
    y = torch.tensor([[0.5, 0.5], [2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    got = energy_distance(x, y)
    assert isinstance(got, float)
    assert got == pytest.approx(_energy_loop(x, y), rel=1e-12, abs=1e-12)


def test_energy_distance_matches_double_loop_random_3d():
    x, y = _two(7, n=12, m=9, d=3, shift=0.3)
    assert energy_distance(x, y) == pytest.approx(_energy_loop(x, y), rel=1e-9, abs=1e-12)


def test_energy_distance_by_hand():
    # one point each, distance 1: 2 * 1 - 0 - 0
    assert energy_distance(torch.tensor([[0.0]]), torch.tensor([[1.0]])) == pytest.approx(2.0)
    # x = {0, 1}, y = {3}: E|X-Y| = 2.5, E|X-X'| = 0.5, E|Y-Y'| = 0 -> 4.5
    assert energy_distance(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])) == pytest.approx(4.5)
    # 3-4-5 triangle in 2-D
    assert energy_distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])) == pytest.approx(10.0)


def test_energy_distance_zero_for_identical_sets():
    x, _ = _two(0)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert energy_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-12)
    # the order of the points does not matter
    assert energy_distance(x, x.flip(0)) == pytest.approx(0.0, abs=1e-10)


def test_energy_distance_symmetric():
    x, y = _two(1, shift=0.5)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_energy_distance_nonnegative(seed):
    x, y = _two(seed, n=5 + seed, m=40)
    assert energy_distance(x, y) >= 0
    x, y = _two(seed, n=300, m=300)
    assert energy_distance(x, y) >= 0


def test_energy_distance_larger_for_shifted_distribution():
    x, y_same = _two(2, n=500, m=500)
    _, y_shift = _two(3, n=500, m=500, shift=0.5)
    floor = energy_distance(x, y_same)
    shifted = energy_distance(x, y_shift)
    assert shifted > 5 * floor
    # and grows with the shift
    _, y_far = _two(3, n=500, m=500, shift=2.0)
    assert energy_distance(x, y_far) > shifted


def test_energy_distance_same_distribution_floor_shrinks_with_n():
    # about 2 E|X - X'| / N for two independent samples of one distribution
    small = np.mean([energy_distance(*_two(s, n=50, m=50)) for s in range(4)])
    large = np.mean([energy_distance(*_two(s, n=400, m=400)) for s in range(4)])
    assert large < small / 3  # 8 times more points: about 8 times smaller


def test_energy_distance_translation_invariant_and_scales_linearly():
    x, y = _two(4, n=60, m=70, shift=0.7)
    e = energy_distance(x, y)
    v = torch.tensor([3.0, -2.0])
    assert energy_distance(x + v, y + v) == pytest.approx(e, rel=1e-5)
    assert energy_distance(3 * x, 3 * y) == pytest.approx(3 * e, rel=1e-5)


def test_energy_distance_computed_in_float64():
    x = torch.tensor([[0.0], [1e-4]], dtype=torch.float32)
    y = torch.tensor([[1.0]], dtype=torch.float32)
    assert energy_distance(x, y) == pytest.approx(_energy_loop(x, y), rel=1e-9)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.zeros(5), torch.zeros(5, 2), r"x must have shape \(N, D\) with N > 0, got \(5,\)"),
        (torch.zeros(5, 2), torch.zeros(4), r"y must have shape \(N, D\) with N > 0, got \(4,\)"),
        (torch.zeros(5, 2, 1), torch.zeros(5, 2), r"got \(5, 2, 1\)"),
        (torch.zeros(0, 2), torch.zeros(5, 2), r"x must have shape \(N, D\) with N > 0, got \(0, 2\)"),
        (torch.zeros(5, 2), torch.zeros(5, 3), "same dimension D, got 2 and 3"),
    ],
)
def test_energy_distance_shape_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        energy_distance(x, y)
