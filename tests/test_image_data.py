"""Image datasets, batches, DDIM, the classifier and the Frechet distance."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from diffnb import data, ddpm
from diffnb.metrics import frechet_distance
from diffnb.models import Classifier
from diffnb.schedules import DiscreteSchedule, beta_schedule


# --- offline datasets -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return data.load_image_data("digits")


def test_digits_split_and_range(digits):
    assert (len(digits.train), len(digits.test)) == (1000, 797)
    assert (digits.image_size, digits.channels) == (8, 1)
    train = digits.train[:]
    assert train["image"].shape == (1000, 1, 8, 8) and train["image"].dtype == torch.float32
    assert train["image"].min() == -1 and train["image"].max() == 1
    assert torch.bincount(train["label"]).tolist() == [100] * 10
    assert "scikit-learn" in digits.credit


def test_digits_match_scikit_learn(digits):
    """The pipeline's pixels are sklearn's 0..16 values mapped onto [-1, 1] (up to uint8 rounding)."""
    from sklearn.datasets import load_digits
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16 * 2 - 1
    ours = torch.cat([digits.train[:]["image"], digits.test[:]["image"]])[:, 0]
    # every image of ours is one of sklearn's; match by nearest neighbour
    dist = torch.cdist(ours.flatten(1), raw.flatten(1))
    assert dist.min(1).values.max() < 8 * 1 / 255 * 2
    assert len(set(dist.argmin(1).tolist())) == 1797      # each sklearn image exactly once


def test_splits_are_disjoint_and_seeded():
    a = data.load_image_data("digits", seed=0).train[:]["image"]
    b = data.load_image_data("digits", seed=0).train[:]["image"]
    c = data.load_image_data("digits", seed=1).train[:]["image"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # no image in both splits: checked on the index split (test_digits_match_scikit_learn
    # also finds every scikit-learn image exactly once across the two)
    tr, te = data._split_per_class(np.repeat(np.arange(10), 20), 5, seed=0)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 200 and len(tr) == 50


def test_mnist_subset():
    m = data.load_image_data("mnist")
    assert (len(m.train), len(m.test), m.image_size) == (4000, 1000, 28)
    assert m.train[0]["image"].shape == (1, 28, 28)
    assert torch.bincount(m.test[:]["label"]).tolist() == [100] * 10
    assert "MNIST" in m.credit and "CC BY-SA 3.0" in m.credit


def test_resize_and_rgb():
    d = data.load_image_data("digits", image_size=16, channels=3)
    x = d.train[:4]["image"]
    assert x.shape == (4, 3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 1])          # grey in RGB: equal channels


@pytest.mark.parametrize("name", ["digit", "MNIST", "", "fashion_mnist"])
def test_unknown_dataset_names_the_choices(name):
    with pytest.raises(ValueError, match=r"unknown dataset .*'digits', 'mnist'.*owner/name"):
        data.load_image_data(name)


def test_bad_channels_and_fallback():
    with pytest.raises(ValueError, match="channels must be 1"):
        data.load_image_data("digits", channels=2)
    with pytest.raises(ValueError, match="fallback must be an offline dataset"):
        data.load_image_data("owner/name", fallback="owner/other")
    for bad in (0, -8, 16.0):
        with pytest.raises(ValueError, match=f"image_size must be a positive integer or None .*got {bad!r}"):
            data.load_image_data("digits", image_size=bad)


def test_unreachable_hub_falls_back_with_one_sentence(monkeypatch, capsys):
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try the hub"))
    d = data.load_image_data("zalando-datasets/fashion_mnist", fallback="digits")
    assert d.name == "digits" and len(d.train) == 1000
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "cannot be reached" in out and "'digits'" in out
    # the stand-in comes at the size asked for, so a chapter's networks fit it unchanged
    sized = data.load_image_data("zalando-datasets/fashion_mnist", fallback="mnist", image_size=32)
    assert sized.name == "mnist" and sized.image_size == 32
    assert tuple(sized.train[0]["image"].shape) == (1, 32, 32)


def test_hub_offline_env_means_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert data.hub_reachable() is False


def test_hub_dataset_columns_are_found_and_resized(monkeypatch):
    """A hub dataset with other column names and mixed image sizes goes through the same pipeline."""
    imgs = [Image.new("RGB", (12 + i % 3, 10), (i * 20, 0, 0)) for i in range(12)]
    feats = datasets.Features({"img": datasets.Image(), "fine": datasets.ClassLabel(names=["a", "b"]),
                               "extra": datasets.Value("string")})
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"img": imgs, "fine": [i % 2 for i in range(12)], "extra": ["x"] * 12}, features=feats)})
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: dd)
    with pytest.raises(ValueError, match="give image_size"):
        data.load_image_data("someone/pictures")
    d = data.load_image_data("someone/pictures", image_size=8, channels=3)
    assert len(d.train) + len(d.test) == 12 and len(d.test) >= 1
    batch = d.train[:3]
    assert batch["image"].shape == (3, 3, 8, 8) and set(batch) == {"image", "label"}


def test_hub_dataset_without_images_is_refused(monkeypatch):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"]})})
    monkeypatch.setattr(data, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: dd)
    with pytest.raises(ValueError, match="has no image column; columns: \\['text'\\]"):
        data.load_image_data("someone/texts", image_size=8)


# --- image_dataset: mixed inputs are refused ---------------------------------------------------

def test_mixed_sizes_are_refused():
    ims = [Image.new("L", (8, 8)), Image.new("L", (8, 8)), Image.new("L", (9, 8))]
    with pytest.raises(ValueError, match=r"images\[0\] is 8x8 'L' but images\[2\] is 9x8 'L'"):
        data.image_dataset(ims)


def test_mixed_modes_are_refused():
    ims = [Image.new("L", (8, 8)), Image.new("RGB", (8, 8))]
    with pytest.raises(ValueError, match=r"images\[1\] is 8x8 'RGB'"):
        data.image_dataset(ims)


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8), np.float32), np.zeros((3, 8, 8, 2), np.uint8),
                                 np.zeros((8, 8), np.uint8)])
def test_bad_arrays_are_refused(bad):
    with pytest.raises(ValueError, match="images must be uint8 of shape"):
        data.image_dataset(bad)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="images is empty"):
        data.image_dataset([])
    with pytest.raises(TypeError, match=r"images\[1\] is a str"):
        data.image_dataset([Image.new("L", (2, 2)), "x.png"])
    with pytest.raises(ValueError, match="got 2 images but 3 labels"):
        data.image_dataset(np.zeros((2, 4, 4), np.uint8), labels=[0, 1, 2])


# --- batches ---------------------------------------------------------------------------------

def test_image_batches_cover_each_epoch_once(digits):
    stream = data.ImageBatches(digits.train, 100, seed=0, labels=True)
    labels = torch.cat([next(stream)[1] for _ in range(10)])
    assert torch.bincount(labels).tolist() == [100] * 10          # one epoch: every image once
    x, y = next(stream)
    assert x.shape == (100, 1, 8, 8) and y.shape == (100,) and stream.step == 11


def test_image_batches_start_anywhere(digits):
    a = data.ImageBatches(digits.train, 64, seed=3)
    first = [next(a).sum().item() for _ in range(40)]     # crosses two epochs (15 batches each)
    b = data.ImageBatches(digits.train, 64, seed=3)
    b.load_state_dict({"seed": 3, "batch_size": 64, "step": 22})
    assert [next(b).sum().item() for _ in range(18)] == first[22:]
    c = data.ImageBatches(digits.train, 64, seed=4)
    assert next(c).sum().item() != first[0]


def test_image_batches_refuse_bad_settings(digits):
    for bad in (0, 1001, 2.0, True):
        with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 1000\]"):
            data.ImageBatches(digits.train, bad)
    stream = data.ImageBatches(digits.train, 10, seed=1)
    with pytest.raises(ValueError, match="saved batch stream has seed 2 and batch size 10"):
        stream.load_state_dict({"seed": 2, "batch_size": 10, "step": 3})


def test_stack_images(digits):
    assert data.stack_images(digits.test, 5).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match=r"n must be in \[1, 797\]"):
        data.stack_images(digits.test, 798)


# --- DDIM ------------------------------------------------------------------------------------

def _toy_model(x, t):
    return 0.3 * x + 0.01 * t.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


def test_ddim_with_eta_one_and_all_steps_is_ancestral_sampling():
    sched = DiscreteSchedule(beta_schedule("cosine", 60))
    a = ddpm.sample(_toy_model, sched, (6, 2), generator=torch.Generator().manual_seed(0), variance="beta_tilde")
    b = ddpm.ddim_sample(_toy_model, sched, (6, 2), steps=60, eta=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_ddim_eta_zero_is_deterministic_given_x_T():
    sched = DiscreteSchedule(beta_schedule("linear", 100))
    outs = [ddpm.ddim_sample(_toy_model, sched, (4, 3), steps=10, generator=torch.Generator().manual_seed(1))
            for _ in range(2)]
    assert torch.equal(*outs)


def test_ddim_inverts_a_perfect_model():
    """With the true noise of a single point x0, every DDIM step lands exactly on x0's path."""
    sched = DiscreteSchedule(beta_schedule("cosine", 200))
    x0 = torch.tensor([[0.7, -0.4]])
    gen = torch.Generator().manual_seed(2)
    xT = torch.randn(1, 2, generator=gen)
    abar = sched.alpha_bar

    def oracle(x, t):       # the noise that would give x from x0 at time t
        a = abar[t].view(-1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()
    out = ddpm.ddim_sample(oracle, sched, (1, 2), steps=7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)
    assert not torch.allclose(xT, x0)


def test_ddim_trajectory_and_x0_estimates():
    sched = DiscreteSchedule(beta_schedule("cosine", 100))
    x, xs, x0s = ddpm.ddim_sample(_toy_model, sched, (3, 2), steps=20, keep_every=5,
                                  generator=torch.Generator().manual_seed(0))
    assert xs.shape == x0s.shape == (5, 3, 2)
    assert torch.equal(xs[-1], x) and torch.equal(x0s[-1], x)   # the last step returns its x0
    assert torch.equal(x0s[0], torch.zeros(3, 2))


def test_sample_returns_x0_estimates_too():
    sched = DiscreteSchedule(beta_schedule("cosine", 30))
    x, xs, x0s = ddpm.sample(_toy_model, sched, (2, 2), keep_every=10, generator=torch.Generator().manual_seed(0))
    assert xs.shape == x0s.shape == (4, 2, 2) and torch.equal(xs[-1], x)


def test_timesteps():
    assert ddpm.timesteps(1000, 1000).tolist() == list(range(1000))
    t = ddpm.timesteps(1000, 10)
    assert t[0] == 0 and t[-1] == 999 and len(set(t.tolist())) == 10
    assert ddpm.timesteps(50, 1).tolist() == [49]
    for bad in (0, 1001, 2.5, True):
        with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 1000\]"):
            ddpm.timesteps(1000, bad)


def test_ddim_rejects_bad_eta_and_clip():
    sched = DiscreteSchedule(beta_schedule("cosine", 10))
    with pytest.raises(ValueError, match="eta must be non-negative"):
        ddpm.ddim_sample(_toy_model, sched, (1, 2), steps=5, eta=-0.5)
    with pytest.raises(ValueError, match="clip_x0 must be None or a positive number"):
        ddpm.ddim_sample(_toy_model, sched, (1, 2), steps=5, clip_x0=False)


def test_ddim_clip_bounds_the_final_sample():
    sched = DiscreteSchedule(beta_schedule("cosine", 50))
    wild = lambda x, t: -5 * x  # noqa: E731
    out = ddpm.ddim_sample(wild, sched, (16, 2), steps=10, clip_x0=1.0, generator=torch.Generator().manual_seed(0))
    assert out.abs().max() <= 1.0 + 1e-6


# --- losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ddpm.LOSSES)
def test_eps_loss_kinds(kind):
    sched = DiscreteSchedule(beta_schedule("cosine", 100))
    x0 = torch.randn(64, 2)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731  residual = the noise itself
    g = torch.Generator().manual_seed(0)
    loss = ddpm.eps_loss(zero, sched, x0, g, kind=kind).item()
    g = torch.Generator().manual_seed(0)
    torch.randint(0, 100, (64,), generator=g)
    noise = torch.randn(64, 2, generator=g)
    expected = {"mse": noise.pow(2).mean(), "l1": noise.abs().mean(),
                "huber": torch.where(noise.abs() < 1, 0.5 * noise ** 2, noise.abs() - 0.5).mean()}[kind]
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_eps_loss_unknown_kind():
    sched = DiscreteSchedule(beta_schedule("cosine", 10))
    with pytest.raises(ValueError, match="unknown loss 'l2'; allowed: 'mse', 'l1', 'huber'"):
        ddpm.eps_loss(_toy_model, sched, torch.zeros(2, 2), kind="l2")


# --- classifier and Frechet distance ---------------------------------------------------------

def test_classifier_shapes_and_any_size():
    clf = Classifier(1, n_classes=10, width=16)
    for size in (8, 28):
        x = torch.randn(5, 1, size, size)
        assert clf(x).shape == (5, 10) and clf.features(x).shape == (5, 32)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\), got \(5, 3, 8, 8\)"):
        clf(torch.randn(5, 3, 8, 8))


def test_classifier_downsamples_widen_what_a_feature_sees():
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 28, 28, requires_grad=True)
    for downsamples, seen in ((2, 9), (3, 17)):
        clf = Classifier(1, downsamples=downsamples).eval()
        x.grad = None
        # the centre feature of the last map, before pooling: which input pixels reach it
        # through the convolutions (a group norm's statistics reach everywhere)
        maps = x
        for conv in (m for m in clf.body if isinstance(m, torch.nn.Conv2d)):
            maps = conv(maps)
        maps[0, :, maps.shape[2] // 2, maps.shape[3] // 2].sum().backward()
        rows = (x.grad[0, 0].abs().sum(1) > 0).sum().item()
        assert rows == seen and clf.features(x).shape == (1, 64)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"downsamples must be a positive integer, got {bad!r}"):
            Classifier(1, downsamples=bad)


def _scipy_fd(a, b):
    a, b = a.double().numpy(), b.double().numpy()
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_frechet_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 12, generator=g)
    b = torch.randn(300, 12, generator=g) @ torch.randn(12, 12, generator=g) * 0.3 + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-9


def test_frechet_distance_of_known_gaussians():
    """N(0, I) against N(m, 4I) in D dims: |m|^2 + D (1 + 4 - 2 * 2) = |m|^2 + D."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(200_000, 3, generator=g)
    b = 2 * torch.randn(200_000, 3, generator=g) + torch.tensor([1.0, 0.0, 2.0])
    assert frechet_distance(a, b) == pytest.approx(5 + 3, rel=0.01)


def test_frechet_distance_bias_falls_with_sample_size():
    g = torch.Generator().manual_seed(2)
    small = np.mean([frechet_distance(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g))
                     for _ in range(5)])
    large = np.mean([frechet_distance(torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g))
                     for _ in range(5)])
    assert large < small / 5


def test_frechet_distance_bad_input():
    with pytest.raises(ValueError, match="same dimension D, got 3 and 4"):
        frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"a must have shape \(N, D\) with N >= 2, got \(1, 3\)"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="b holds NaN"):
        frechet_distance(torch.zeros(5, 3), torch.full((5, 3), float("nan")))
