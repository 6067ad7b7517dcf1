"""Unit tests of diffnb.models.unet: the UNet, its parts, and BasicUNet (tiny sizes, CPU)."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffnb.models import (Attention, BasicUNet, ConvNextBlock, Downsample, LinearAttention, PreNorm,
                           Residual, ResnetBlock, TimeEmbedding, UNet, Upsample)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


def _unet(**kw):
    torch.manual_seed(0)
    return UNet(**{"base": 8, "mults": (1, 2), **kw})


def _differ(a, b, tol=1e-5):
    return (a - b).abs().max().item() > tol


# --- UNet: shapes and what the output depends on ---------------------------------------------

CONFIGS = [  # (UNet keyword arguments, input shape)
    (dict(in_channels=1), (2, 1, 8, 8)),
    (dict(in_channels=3, out_channels=2, mults=(1,), attention=("full",)), (2, 3, 8, 8)),
    (dict(in_channels=1, mults=(1, 2, 2), block="convnext", attention=("none", "linear", "full")),
     (2, 1, 8, 16)),
    (dict(in_channels=3, base=16, time_mode="add", attention=("linear", "none")), (3, 3, 16, 8)),
    (dict(in_channels=1, out_channels=3, mults=(1, 2, 2), time_mode="add",
          attention=("full", "linear", "none")), (2, 1, 8, 8)),
]


@pytest.mark.parametrize("kw, shape", CONFIGS)
def test_unet_output_shape(kw, shape):
    model = _unet(**kw)
    out = model(torch.randn(shape), torch.randint(0, 1000, (shape[0],)))
    assert out.shape == (shape[0], kw.get("out_channels", kw["in_channels"]), *shape[2:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kw", [dict(), dict(block="convnext"), dict(time_mode="add")])
def test_unet_depends_on_t_and_x(kw):
    model = _unet(**kw)
    x = torch.randn(2, 1, 8, 8)
    out = model(x, torch.tensor([0, 0]))
    for i in range(2):  # every sample responds to its t, and to its x
        assert _differ(out[i], model(x, torch.tensor([500, 500]))[i])
        assert _differ(out[i], model(torch.randn(2, 1, 8, 8), torch.tensor([0, 0]))[i])


def test_unet_accepts_float_t():
    """A fractional t is used as it is, not truncated to an integer."""
    model = _unet()
    x = torch.randn(2, 1, 8, 8)
    out = model(x, torch.tensor([0.5, 0.5]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert _differ(out, model(x, torch.tensor([0, 0])))


@pytest.mark.parametrize("kw", [dict(), dict(block="convnext"), dict(time_mode="add")])
def test_unet_every_parameter_gets_a_gradient(kw):
    model = _unet(mults=(1, 2, 2), attention=("full", "linear", "none"), **kw)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    ((model(x, t) - x) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_unet_batch_independence():
    """GroupNorm normalizes each sample alone: sample 0 ignores the rest of the batch."""
    model = _unet(mults=(1, 2, 2), attention=("full", "linear", "none")).eval()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([5, 1, 2, 3])
    with torch.no_grad():
        a = model(x, t)
        b = model(torch.cat([x[:1], 10 * torch.randn(3, 1, 8, 8)]), torch.tensor([5, 900, 0, 42]))
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)
    assert _differ(a[1:], b[1:])


# --- UNet: bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("mults, size, multiple", [((1, 2, 4), (10, 12), 4), ((1, 2, 4), (6, 8), 4),
                                                   ((1, 2), (7, 8), 2), ((1, 2), (8, 5), 2)])
def test_unet_rejects_size_it_cannot_halve(mults, size, multiple):
    """With 3 levels H and W are halved twice, so they must be multiples of 4 (12x12 is fine)."""
    model = _unet(mults=mults)
    assert model(torch.zeros(2, 1, 12, 12), torch.zeros(2)).shape == (2, 1, 12, 12)
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}.*multiples of {multiple}"):
        model(torch.zeros(2, 1, *size), torch.zeros(2))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 8, 8), (2, 1, 1, 8, 8), (2, 8, 8, 1)])
def test_unet_rejects_wrong_x_shape(shape):
    with pytest.raises(ValueError, match=re.escape(f"(B, 1, H, W), got {shape}")):
        _unet()(torch.zeros(shape), torch.zeros(shape[0]))


@pytest.mark.parametrize("t, shown", [(torch.zeros(2, 1), r"\(2, 1\)"), (torch.tensor(3.0), r"\(\)"),
                                      (torch.zeros(3), r"\(3,\)")])
def test_unet_rejects_wrong_t_shape(t, shown):
    with pytest.raises(ValueError, match=r"t must have shape \(2,\), got " + shown):
        _unet()(torch.zeros(2, 1, 8, 8), t)


@pytest.mark.parametrize("bad", ["unet", "ResNet", ""])
def test_unet_unknown_block(bad):
    with pytest.raises(ValueError, match=f"unknown block {bad!r}; allowed: 'resnet', 'convnext'"):
        _unet(block=bad)


@pytest.mark.parametrize("block", ["resnet", "convnext"])
@pytest.mark.parametrize("bad", ["shift", "concat"])
def test_unet_unknown_time_mode(block, bad):
    with pytest.raises(ValueError, match=f"unknown time_mode {bad!r}; allowed: 'scale_shift', 'add'"):
        _unet(block=block, time_mode=bad)


@pytest.mark.parametrize("kw", [dict(mults=(True, 2)), dict(in_channels=0), dict(out_channels=0),
                                dict(out_channels=-1), dict(groups=0)])
def test_unet_rejects_bad_sizes(kw):
    with pytest.raises(ValueError, match="must be|mults"):
        UNet(**{"in_channels": 1, **kw})


@pytest.mark.parametrize("kw, message", [
    (dict(base=12), r"base \* mult, must be a multiple of groups = 8 .* base = 12, mults = \(1, 2, 4\)"),
    (dict(base=16, groups=5), "multiple of groups = 5"),
    (dict(base=15, block="convnext"), "base must be a positive even integer .* got 15"),
    (dict(base=0), "base must be a positive even integer"),
])
def test_unet_names_a_width_its_blocks_cannot_take(kw, message):
    with pytest.raises(ValueError, match=message):
        UNet(1, **kw)
    UNet(1, base=12, block="convnext")     # GroupNorm(1, c) there: any even width


@pytest.mark.parametrize("attention", [("none", "linar"), ("none",), ("none", "full", "full"),
                                       ("Full", "none")])
def test_unet_bad_attention(attention):
    with pytest.raises(ValueError) as info:
        _unet(attention=attention)
    msg = str(info.value)
    assert repr(attention) in msg and "2 levels" in msg
    assert all(repr(a) in msg for a in ("none", "linear", "full"))


@pytest.mark.parametrize("mults", [(), (1, 0), (1, -2), (1, 2.0)])
def test_unet_bad_mults(mults):
    with pytest.raises(ValueError, match="positive integers.*got " + re.escape(repr(mults))):
        _unet(mults=mults)


# --- parts ------------------------------------------------------------------------------------


def test_time_embedding_shape():
    emb = TimeEmbedding(8)(torch.tensor([0, 1, 999]))
    assert emb.shape == (3, 32)
    assert _differ(emb[0], emb[1]) and _differ(emb[1], emb[2])


@pytest.mark.parametrize("time_mode", ["scale_shift", "add"])
def test_resnet_block_uses_time(time_mode):
    block = ResnetBlock(8, 16, time_dim=32, time_mode=time_mode)
    x, e1, e2 = torch.randn(2, 8, 4, 4), torch.randn(2, 32), torch.randn(2, 32)
    assert block(x, e1).shape == (2, 16, 4, 4)
    assert _differ(block(x, e1), block(x, e2))
    out = block(x, None)  # no time embedding: the plain residual block
    assert out.shape == (2, 16, 4, 4) and _differ(out, block(x, e1))
    assert ResnetBlock(8, 8)(x).shape == (2, 8, 4, 4)


def test_convnext_block_uses_x_and_time():
    block = ConvNextBlock(8, 16, time_dim=32)
    x1, x2, e = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4), torch.randn(2, 32)
    assert block(x1, e).shape == (2, 16, 4, 4)
    assert _differ(block(x1, e), block(x1, torch.randn(2, 32)))
    # the non-residual path must see x too (h = time instead of h + time would throw x away)
    assert _differ(block(x1, e) - block.res_conv(x1), block(x2, e) - block.res_conv(x2))
    assert block(x1).shape == (2, 16, 4, 4)


def test_attention_sdpa_equals_plain_softmax():
    attn = Attention(8, heads=2, dim_head=8)
    x = torch.randn(2, 8, 4, 4)
    attn.use_sdpa = True
    fused = attn(x)
    attn.use_sdpa = False
    torch.testing.assert_close(fused, attn(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [Attention, LinearAttention])
def test_attention_is_permutation_equivariant(cls):
    """They see positions only through token order: permuting pixels permutes the output alike."""
    attn = cls(8, heads=2, dim_head=8)
    x, perm = torch.randn(2, 8, 4, 6), torch.randperm(24)
    out = attn(x)
    assert out.shape == x.shape
    out_p = attn(x.flatten(2)[..., perm].reshape(x.shape))
    torch.testing.assert_close(out_p.flatten(2), out.flatten(2)[..., perm], atol=1e-5, rtol=1e-5)


def test_prenorm_and_residual():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    x = 5 * torch.randn(2, 8, 4, 4) + 3
    torch.testing.assert_close(PreNorm(8, conv)(x), conv(F.group_norm(x, 1)))
    torch.testing.assert_close(Residual(conv)(x), x + conv(x))


def test_downsample_and_upsample():
    x = torch.randn(2, 8, 8, 12)
    assert Downsample(8)(x).shape == (2, 8, 4, 6)
    assert Downsample(8, 16)(x).shape == (2, 16, 4, 6)
    assert Upsample(8)(x).shape == (2, 8, 16, 24)
    assert Upsample(8, 4)(x).shape == (2, 4, 16, 24)


# --- BasicUNet --------------------------------------------------------------------------------


def test_basic_unet_shape():
    assert BasicUNet()(torch.randn(2, 1, 8, 12)).shape == (2, 1, 8, 12)
    assert BasicUNet(3, 1)(torch.randn(2, 3, 8, 8)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("size", [(10, 12), (8, 6)])
def test_basic_unet_rejects_bad_size(size):
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}.*multiples of 4"):
        BasicUNet()(torch.zeros(2, 1, *size))


def test_basic_unet_ignores_t_and_ends_with_silu():
    model = BasicUNet()
    x = 3 * torch.randn(4, 1, 16, 16)
    out = model(x)
    assert torch.equal(out, model(x, torch.zeros(4))) and torch.equal(out, model(x, torch.full((4,), 999)))
    assert out.min().item() >= -0.2785  # min of SiLU is about -0.27846


# --- parameter counts -------------------------------------------------------------------------


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    n16 = _n_params(UNet(in_channels=1))
    assert 500_000 <= n16 <= 1_200_000
    assert _n_params(UNet(in_channels=1, base=32)) > n16


def test_patch_folds_pixels_into_channels():
    """patch=4 at 32x32 costs about what 8x8 does: the levels work at 8x8 and 4x4."""
    torch.manual_seed(0)
    net = UNet(1, base=8, mults=(1, 2), patch=4)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([1.5, -3.0])
    seen = []
    net.init_conv.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = net(x, t)
    assert out.shape == x.shape and seen == [(2, 16, 8, 8)]
    assert net.multiple == 8
    # the same weights as an unpatched UNet except the first and last convolution
    plain = UNet(1, base=8, mults=(1, 2))
    differ = {k for k, v in net.state_dict().items() if v.shape != plain.state_dict()[k].shape}
    assert differ == {"init_conv.weight", "final_conv.weight", "final_conv.bias"}


def test_patch_one_is_the_plain_unet():
    torch.manual_seed(0)
    plain = UNet(1, base=8, mults=(1, 2))
    torch.manual_seed(0)
    same = UNet(1, base=8, mults=(1, 2), patch=1)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    assert torch.equal(plain(x, t), same(x, t))


@pytest.mark.parametrize("patch", [0, -2, 1.5, True])
def test_patch_must_be_a_positive_integer(patch):
    with pytest.raises(ValueError, match="patch must be a positive integer"):
        UNet(1, patch=patch)


def test_patch_size_error_names_the_patch():
    with pytest.raises(ValueError, match=r"30x30 cannot be halved 1 times after 4x4 patches.*multiples of 8"):
        UNet(1, base=8, mults=(1, 2), patch=4)(torch.randn(1, 1, 30, 30), torch.tensor([0.0]))
