"""Datasets of the book, all available offline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from sklearn.datasets import make_moons
from torchvision import transforms

SCALINGS = ("minmax", "standard")


def moons_pool(n: int = 100_000, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A large pool of two-moons points in raw coordinates, shape (n, 2), float32.

    ``make_moons`` spaces its points evenly along the arcs, so two calls give
    nearly the same points; draw training and evaluation sets at random from
    this pool (``draw``) to get independent samples.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n!r}")
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return torch.as_tensor(x, dtype=torch.float32)


def draw(pool: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` rows of ``pool`` drawn at random (with replacement), shape (n, ...).

    ``generator``, if given, must live on ``pool``'s device.
    """
    idx = torch.randint(0, pool.shape[0], (n,), generator=generator, device=pool.device)
    return pool[idx]


@dataclass(frozen=True)
class Scaling:
    """An affine map x -> (x - shift) / scale, per coordinate, and its inverse."""

    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, method: str = "minmax") -> "Scaling":
        """``"minmax"`` maps each coordinate's range onto [-1, 1]; ``"standard"`` to mean 0, std 1."""
        if method not in SCALINGS:
            raise ValueError(f"unknown scaling {method!r}; allowed: {', '.join(map(repr, SCALINGS))}")
        if x.ndim != 2:
            raise ValueError(f"x must have shape (N, D), got {tuple(x.shape)}")
        if method == "minmax":
            lo, hi = x.min(0).values, x.max(0).values
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            shift, scale = x.mean(0), x.std(0)
        if not (scale > 0).all():
            i = int((~(scale > 0)).nonzero()[0])
            raise ValueError(f"coordinate {i} of x is constant ({x[0, i].item():.6g}); cannot scale it")
        return cls(shift=shift, scale=scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift.to(x.device)) / self.scale.to(x.device)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale.to(y.device) + self.shift.to(y.device)


# --- images -------------------------------------------------------------------------------

CAT_CREDIT = ('"Chelsea the cat", photograph by Stefan van der Walt, CC0 '
              "(the image scikit-image ships as skimage.data.chelsea)")
IMAGE_MODES = ("RGB",)


def asset_path(name: str) -> Path:
    """Path of a file shipped in ``diffnb/assets``."""
    folder = Path(__file__).with_name("assets")
    path = folder / name
    if Path(name).name != name or not path.is_file():
        known = sorted(p.name for p in folder.iterdir() if p.name != "README.md")
        raise FileNotFoundError(f"no asset named {name!r}; shipped: {', '.join(known)}")
    return path


def image_transform(size: int) -> transforms.Compose:
    """PIL image -> tensor (3, size, size) in [-1, 1]: resize the short side, centre-crop."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return transforms.Compose([
        transforms.Resize(size, antialias=True),
        transforms.CenterCrop(size),
        transforms.ToTensor(),                  # [0, 1]
        transforms.Normalize([0.5] * 3, [0.5] * 3),   # (x - 0.5) / 0.5: [-1, 1]
    ])


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """An RGB image file as a tensor (3, size, size) in [-1, 1] (see ``image_transform``)."""
    path = Path(path)
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"no image file at {str(path)!r}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {str(path)!r} as an image: {err}") from None
    if image.mode not in IMAGE_MODES:
        raise ValueError(f"{str(path)!r} has image mode {image.mode!r}; allowed: "
                         f"{', '.join(map(repr, IMAGE_MODES))} (convert it with image.convert('RGB'))")
    return image_transform(size)(image)


def load_cat(size: int = 128) -> torch.Tensor:
    """The book's cat (see ``CAT_CREDIT``) as a tensor (3, size, size) in [-1, 1]."""
    return load_image(asset_path("chelsea.png"), size)


def check_image_range(x: torch.Tensor, name: str = "x") -> None:
    """Raise unless ``x`` is non-empty and every value lies in [-1, 1]."""
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must lie in [-1, 1], but it holds NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < -1 or hi > 1:
        raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}] "
                         "(clamp it first, for example x.clamp(-1, 1))")


def to_image(x: torch.Tensor) -> Image.Image:
    """A tensor (3, H, W) or (1, H, W) in [-1, 1] back to a PIL image."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"x must have shape (3, H, W) or (1, H, W), got {tuple(x.shape)}")
    check_image_range(x)
    return transforms.functional.to_pil_image(((x.detach().cpu() + 1) / 2))
