"""The UNet noise predictor of the image chapters, and the parts it is built from.

Shapes: images are (B, C, H, W); time steps ``t`` are (B,) (integers or
floats); a time embedding is (B, time_dim). Every block maps (B, C_in, H, W)
to (B, C_out, H, W) unless its name says it changes the resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .embeddings import sinusoidal_embedding

BLOCKS = ("resnet", "convnext")
TIME_MODES = ("scale_shift", "add")
ATTENTIONS = ("none", "linear", "full")


class TimeEmbedding(nn.Module):
    """t (B,) -> (B, 4 * dim): sinusoidal features of t, then a small MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, 4 * dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))


class ResnetBlock(nn.Module):
    """Two (conv 3x3, GroupNorm, SiLU) layers and a residual connection.

    The time embedding enters after the first GroupNorm, either added
    (``time_mode="add"``, as in DDPM) or as a per-channel scale and shift,
    h * (1 + scale) + shift (``"scale_shift"``, as in improved DDPM).
    """

    def __init__(self, dim: int, dim_out: int, time_dim: int | None = None, *, groups: int = 8,
                 time_mode: str = "scale_shift"):
        super().__init__()
        if time_mode not in TIME_MODES:
            raise ValueError(f"unknown time_mode {time_mode!r}; allowed: {', '.join(map(repr, TIME_MODES))}")
        self.time_mode = time_mode
        n_time = 2 * dim_out if time_mode == "scale_shift" else dim_out
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, n_time)) if time_dim else None
        self.conv1 = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, dim_out)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, dim_out)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(self.conv1(x))
        if self.time_mlp is not None and time_emb is not None:
            cond = rearrange(self.time_mlp(time_emb), "b c -> b c 1 1")
            if self.time_mode == "scale_shift":
                scale, shift = cond.chunk(2, dim=1)
                h = h * (1 + scale) + shift
            else:
                h = h + cond
        h = F.silu(h)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.res_conv(x)


class ConvNextBlock(nn.Module):
    """A ConvNeXt-style block after Liu et al. (2022), with the time embedding *added* to its features.

    Depthwise 7x7 conv, + time, then GroupNorm(1), conv 3x3 to ``mult * dim_out``,
    GELU, GroupNorm, conv 3x3 back, plus a residual connection.
    """

    def __init__(self, dim: int, dim_out: int, time_dim: int | None = None, *, mult: int = 2):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.GELU(), nn.Linear(time_dim, dim)) if time_dim else None
        self.ds_conv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim),
            nn.Conv2d(dim, dim_out * mult, 3, padding=1),
            nn.GELU(),
            nn.GroupNorm(1, dim_out * mult),
            nn.Conv2d(dim_out * mult, dim_out, 3, padding=1),
        )
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ds_conv(x)
        if self.time_mlp is not None and time_emb is not None:
            # h + time: writing h = time here, a slip seen in published code, throws the image away
            h = h + rearrange(self.time_mlp(time_emb), "b c -> b c 1 1")
        return self.net(h) + self.res_conv(x)


class Attention(nn.Module):
    """Multi-head self-attention over the H * W positions: cost O((HW)^2)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv2d(heads * dim_head, dim, 1)
        self.use_sdpa = True   # torch's fused kernel; False: the plain softmax(q k^T) v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        q, k, v = (rearrange(z, "b (h d) x y -> b h (x y) d", h=self.heads)
                   for z in self.to_qkv(x).chunk(3, dim=1))
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)   # (b, h, n, n)
            out = attn @ v
        out = rearrange(out, "b h (x y) d -> b (h d) x y", x=height, y=width)
        return self.to_out(out)


class LinearAttention(nn.Module):
    """Linear attention (Shen et al., 2021): softmax over features for q and over
    positions for k, so k^T v (d x d per head) is formed first: cost O(HW)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(heads * dim_head, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        q, k, v = (rearrange(z, "b (h d) x y -> b h d (x y)", h=self.heads)
                   for z in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("b h d n, b h e n -> b h d e", k, v)
        out = torch.einsum("b h d e, b h d n -> b h e n", context, q)
        out = rearrange(out, "b h e (x y) -> b (h e) x y", x=height, y=width)
        return self.to_out(out)


class PreNorm(nn.Module):
    """GroupNorm(1, dim) before ``fn``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.GroupNorm(1, dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Residual(nn.Module):
    """x + fn(x)."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


def Downsample(dim: int, dim_out: int | None = None) -> nn.Module:  # noqa: N802 (a layer)
    """Halve H and W: a 4x4 convolution with stride 2."""
    return nn.Conv2d(dim, dim_out or dim, 4, stride=2, padding=1)


def Upsample(dim: int, dim_out: int | None = None) -> nn.Module:  # noqa: N802 (a layer)
    """Double H and W: nearest-neighbour upsampling, then a 3x3 convolution."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(dim, dim_out or dim, 3, padding=1))


def _attention(kind: str, dim: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    layer = LinearAttention(dim) if kind == "linear" else Attention(dim)
    return Residual(PreNorm(dim, layer))


class UNet(nn.Module):
    """The time-conditioned UNet: eps_theta(x_t, t), shape (B, C, H, W) -> (B, C_out, H, W).

    ``mults`` sets the levels: level i works at resolution H / 2**i with
    ``base * mults[i]`` channels, so H and W must be multiples of
    2 ** (len(mults) - 1). Each level has two blocks (``block``: "resnet" or
    "convnext") and then ``attention[i]`` ("none", "linear" or "full"); the
    middle, at the lowest resolution, always has full attention. Skip
    connections carry each level's output to the matching level on the way up.

    ``patch`` > 1 first folds each patch x patch block of pixels into channels
    (``pixel_unshuffle``) and unfolds the output the same way at the end, so every
    level works at 1/patch of the input's resolution: the cheap way to take
    high-resolution inputs that simple diffusion recommends. H and W must then be
    multiples of patch * 2 ** (len(mults) - 1).
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, *, base: int = 16,
                 mults: tuple[int, ...] = (1, 2, 4), block: str = "resnet",
                 attention: tuple[str, ...] | None = None, time_mode: str = "scale_shift",
                 groups: int = 8, patch: int = 1):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; allowed: {', '.join(map(repr, BLOCKS))}")
        if time_mode not in TIME_MODES:
            raise ValueError(f"unknown time_mode {time_mode!r}; allowed: {', '.join(map(repr, TIME_MODES))}")
        if not mults or any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in mults):
            raise ValueError(f"mults must be positive integers, one per level, got {mults!r}")
        attention = tuple(attention) if attention is not None else ("none",) + ("linear",) * (len(mults) - 1)
        if len(attention) != len(mults) or any(a not in ATTENTIONS for a in attention):
            raise ValueError(f"attention must give one of {ATTENTIONS} per level ({len(mults)} levels), "
                             f"got {attention!r}")
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("patch", patch),
                            ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(base, bool) or not isinstance(base, int) or base <= 0 or base % 2:
            raise ValueError(f"base must be a positive even integer (the time features come in sin-cos pairs), "
                             f"got {base!r}")
        if block == "resnet" and any(base * m % groups for m in mults):
            raise ValueError(f"every level's width, base * mult, must be a multiple of groups = {groups} for the "
                             f"GroupNorm of the ResNet blocks; got base = {base}, mults = {tuple(mults)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.base, self.mults, self.block, self.attention = base, tuple(mults), block, attention
        self.patch = patch
        self.multiple = patch * 2 ** (len(mults) - 1)
        time_dim = 4 * base

        def make_block(dim, dim_out):
            if block == "resnet":
                return ResnetBlock(dim, dim_out, time_dim, groups=groups, time_mode=time_mode)
            return ConvNextBlock(dim, dim_out, time_dim)

        self.time_embedding = TimeEmbedding(base)
        self.init_conv = nn.Conv2d(in_channels * patch**2, base, 3, padding=1)
        chans = [base * m for m in mults]
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        ch = base
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            self.downs.append(nn.ModuleList([
                make_block(ch, c), make_block(c, c), _attention(attention[i], c),
                nn.Identity() if last else Downsample(c)]))
            ch = c
        self.mid1, self.mid_attn, self.mid2 = make_block(ch, ch), _attention("full", ch), make_block(ch, ch)
        for i in reversed(range(len(chans))):
            c = chans[i]
            self.ups.append(nn.ModuleList([
                make_block(ch + c, c), make_block(c, c), _attention(attention[i], c),
                nn.Identity() if i == 0 else Upsample(c)]))
            ch = c
        self.final_block = make_block(ch + base, base)
        self.final_conv = nn.Conv2d(base, self.out_channels * patch**2, 1)

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.multiple or width % self.multiple:
            patched = f" after {self.patch}x{self.patch} patches" if self.patch > 1 else ""
            raise ValueError(
                f"image size {height}x{width} cannot be halved {len(self.mults) - 1} times{patched}: "
                f"H and W must be multiples of {self.multiple} for a UNet with {len(self.mults)} levels")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        temb = self.time_embedding(t)
        x = self.init_conv(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        first = x
        skips = []
        for block1, block2, attn, down in self.downs:
            x = attn(block2(block1(x, temb), temb))
            skips.append(x)
            x = down(x)
        x = self.mid2(self.mid_attn(self.mid1(x, temb)), temb)
        for block1, block2, attn, up in self.ups:
            x = torch.cat([x, skips.pop()], dim=1)
            x = attn(block2(block1(x, temb), temb))
            x = up(x)
        x = self.final_conv(self.final_block(torch.cat([x, first], dim=1), temb))
        return F.pixel_shuffle(x, self.patch) if self.patch > 1 else x


class BasicUNet(nn.Module):
    """A minimal UNet as introductory courses write it: three 5x5 convolutions
    down (with 2x max-pooling), three up (with 2x upsampling), skip connections
    added, SiLU after every layer, and no time input. H and W must be multiples of 4.

    The last layer is followed by SiLU too, as in that common form, so the output is
    at least -0.28: fine for predicting images in [0, 1], its usual task.
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels = in_channels
        self.down_layers = nn.ModuleList([
            nn.Conv2d(in_channels, 32, 5, padding=2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.Conv2d(64, 64, 5, padding=2)])
        self.up_layers = nn.ModuleList([
            nn.Conv2d(64, 64, 5, padding=2),
            nn.Conv2d(64, 32, 5, padding=2),
            nn.Conv2d(32, out_channels, 5, padding=2)])

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``t`` is accepted and ignored, so the two UNets are called alike."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"image size {x.shape[-2]}x{x.shape[-1]} cannot be halved twice: "
                             "H and W must be multiples of 4")
        skips = []
        for i, layer in enumerate(self.down_layers):
            x = F.silu(layer(x))
            if i < 2:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for i, layer in enumerate(self.up_layers):
            if i > 0:
                x = F.interpolate(x, scale_factor=2) + skips.pop()
            x = F.silu(layer(x))
        return x
