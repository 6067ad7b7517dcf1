"""Unit tests of diffnb.models: the sinusoidal embedding and ToyMLP."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffnb.models import ToyMLP, sinusoidal_embedding
from diffnb.models.mlp import TIME_EMBEDDINGS


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


# --- sinusoidal_embedding ---------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 8, 64])
def test_embedding_shape_and_dtype(dim):
    t = torch.arange(5)
    emb = sinusoidal_embedding(t, dim)
    assert emb.shape == (5, dim)
    assert emb.dtype == torch.float32


def test_embedding_at_zero_is_zeros_then_ones():
    emb = sinusoidal_embedding(torch.zeros(3, dtype=torch.long), 16)
    expected = torch.cat([torch.zeros(8), torch.ones(8)])
    assert torch.equal(emb, expected.expand(3, 16))


def test_embedding_values_by_formula():
    dim, P = 8, 10_000.0
    t = torch.tensor([0.0, 1.0, 2.5, 17.0, 999.0])
    emb = sinusoidal_embedding(t, dim)
    for i, ti in enumerate(t.tolist()):
        for k in range(dim // 2):
            f = P ** (-k / (dim // 2))
            assert emb[i, k].item() == pytest.approx(math.sin(ti * f), abs=5e-4)
            assert emb[i, k + dim // 2].item() == pytest.approx(math.cos(ti * f), abs=5e-4)
    # the first frequency is 1, so the first feature is sin(t)
    torch.testing.assert_close(emb[:, 0], t.sin())


def test_embedding_max_period():
    t = torch.tensor([3.0])
    emb = sinusoidal_embedding(t, 4, max_period=100.0)
    # frequencies 1 and 100 ** (-1/2) = 0.1
    expected = torch.tensor([[math.sin(3.0), math.sin(0.3), math.cos(3.0), math.cos(0.3)]])
    torch.testing.assert_close(emb, expected)


def test_embedding_features_lie_on_unit_circles():
    emb = sinusoidal_embedding(torch.arange(0, 1000, 7), 32)
    torch.testing.assert_close(emb[:, :16] ** 2 + emb[:, 16:] ** 2, torch.ones(len(emb), 16))


def test_embedding_distinguishes_times():
    emb = sinusoidal_embedding(torch.arange(1000), 64)
    d = torch.cdist(emb, emb)
    d.fill_diagonal_(float("inf"))
    assert d.min().item() > 1e-3


@pytest.mark.parametrize("dim", [3, 7, 0, -2])
def test_embedding_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match=f"got {dim}"):
        sinusoidal_embedding(torch.arange(4), dim)


@pytest.mark.parametrize("t, shown", [(torch.zeros(4, 1), r"\(4, 1\)"), (torch.tensor(3.0), r"\(\)")])
def test_embedding_rejects_non_1d_t(t, shown):
    with pytest.raises(ValueError, match=r"t must have shape \(B,\), got " + shown):
        sinusoidal_embedding(t, 8)


# --- ToyMLP --------------------------------------------------------------------------------


def _model(T=20, emb="sinusoidal", **kw):
    torch.manual_seed(0)
    kw = {"hidden": 32, "depth": 3, "emb_dim": 16, **kw}
    return ToyMLP(T, emb, **kw)


@pytest.mark.parametrize("emb", TIME_EMBEDDINGS)
def test_output_shape(emb):
    model = _model(emb=emb)
    x = torch.randn(9, 2)
    t = torch.randint(0, 20, (9,))
    out = model(x, t)
    assert out.shape == (9, 2)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_output_shape_other_data_dim():
    model = _model(data_dim=5)
    assert model(torch.randn(4, 5), torch.arange(4)).shape == (4, 5)


@pytest.mark.parametrize("emb", TIME_EMBEDDINGS)
def test_output_depends_on_t(emb):
    model = _model(emb=emb)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    out0 = model(x, torch.zeros(6, dtype=torch.long))
    out5 = model(x, torch.full((6,), 5))
    out19 = model(x, torch.full((6,), 19))
    assert (out0 - out5).abs().max() > 1e-4
    assert (out5 - out19).abs().max() > 1e-4
    # ... and the t of each row only affects that row
    t_mixed = torch.tensor([0, 5, 0, 5, 0, 5])
    out_mixed = model(x, t_mixed)
    torch.testing.assert_close(out_mixed[0::2], out0[0::2])
    torch.testing.assert_close(out_mixed[1::2], out5[1::2])


@pytest.mark.parametrize("emb", TIME_EMBEDDINGS)
def test_output_depends_on_x(emb):
    model = _model(emb=emb)
    t = torch.full((3,), 4)
    a = model(torch.zeros(3, 2), t)
    b = model(torch.ones(3, 2), t)
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("emb", TIME_EMBEDDINGS)
def test_every_parameter_gets_a_gradient(emb):
    T = 8
    model = _model(T=T, emb=emb)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(2))
    t = torch.arange(32) % T  # every one-hot row is used
    loss = (model(x, t) ** 2).mean()
    loss.backward()
    names = [name for name, _ in model.named_parameters()]
    assert len(names) >= 4
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_onehot_gradient_only_reaches_used_rows():
    model = _model(T=10, emb="onehot")
    t = torch.tensor([1, 3, 3])
    model(torch.randn(3, 2), t).sum().backward()
    used = model.t_in.weight.grad.abs().sum(1) > 0
    assert used.tolist() == [i in (1, 3) for i in range(10)]


def test_onehot_time_features_equal_one_hot_matmul():
    T = 50
    model = _model(T=T, emb="onehot")
    t = torch.tensor([0, 17, 49, 17])
    expected = F.one_hot(t, T).float() @ model.t_in.weight
    feats = model.time_features(t)
    assert feats.shape == (4, 32)
    torch.testing.assert_close(feats, expected)


def test_sinusoidal_time_features_scale_t_to_1000():
    """The sinusoidal code of step t under T equals that of step t * 1000 / T under T = 1000."""
    small, big = _model(T=10), _model(T=1000)
    big.t_in.load_state_dict(small.t_in.state_dict())
    t = torch.arange(10)
    torch.testing.assert_close(small.time_features(t), big.time_features(t * 100))
    expected = small.t_in(sinusoidal_embedding(t * 100.0, 16))
    torch.testing.assert_close(small.time_features(t), expected)


def test_first_layer_is_split_concatenation():
    """W [x; e] = W_x x + W_e e: the model equals an MLP on the concatenation [x, one_hot(t)]."""
    T = 6
    model = _model(T=T, emb="onehot")
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 1, 2, 5, 5])
    W = torch.cat([model.x_in.weight, model.t_in.weight.T], dim=1)  # (hidden, 2 + T)
    h = torch.cat([x, F.one_hot(t, T).float()], dim=1) @ W.T + model.x_in.bias
    torch.testing.assert_close(model(x, t), model.net(h))


def test_depth_and_width():
    model = ToyMLP(10, "sinusoidal", hidden=24, depth=4, emb_dim=8)
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4  # depth - 1 hidden layers and the output layer
    assert all(m.in_features == 24 for m in linears)
    assert linears[-1].out_features == 2
    assert model.t_in.weight.shape == (24, 8)
    assert ToyMLP(10, "onehot", hidden=24).t_in.weight.shape == (10, 24)


@pytest.mark.parametrize("bad", ["learned", "one-hot", "", "Sinusoidal"])
def test_unknown_time_embedding(bad):
    with pytest.raises(ValueError) as info:
        ToyMLP(10, bad)
    msg = str(info.value)
    assert repr(bad) in msg and "'onehot'" in msg and "'sinusoidal'" in msg


@pytest.mark.parametrize("shape", [(4,), (4, 3), (4, 2, 1), (2, 4)])
def test_wrong_x_shape(shape):
    model = _model()
    with pytest.raises(ValueError) as info:
        model(torch.zeros(shape), torch.zeros(4, dtype=torch.long))
    msg = str(info.value)
    assert "(B, 2)" in msg and str(tuple(shape)) in msg


def test_wrong_t_shape():
    model = _model()
    with pytest.raises(ValueError, match=r"t must have shape \(4,\), got \(4, 1\)"):
        model(torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\), got \(3,\)"):
        model(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))


def test_same_seed_same_model():
    a, b = _model(), _model()
    x, t = torch.randn(3, 2), torch.arange(3)
    assert torch.equal(a(x, t), b(x, t))
