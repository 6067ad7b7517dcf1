"""Unit tests of the image helpers: diffnb.data (the cat, loading, range checks) and diffnb.viz."""

import hashlib
import math
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

from diffnb.data import (CAT_CREDIT, IMAGE_MODES, asset_path, check_image_range,  # noqa: E402
                         image_transform, load_cat, load_image, to_image)
from diffnb.viz import _display, animate_images, loss_curves, scatter_panels, show_images  # noqa: E402

CAT_SHA256 = "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"
BAD_SIZES = [0, -3, 2.5, True]


@pytest.fixture(autouse=True)
def _close_figures():
    """No figure outlives its test."""
    yield
    plt.close("all")


# --- the asset and load_cat ----------------------------------------------------------------


def test_cat_asset_is_the_shipped_photograph():
    path = asset_path("chelsea.png")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CAT_SHA256
    with Image.open(path) as image:
        assert (image.size, image.mode) == ((451, 300), "RGB")
    assert "CC0" in CAT_CREDIT and "Stefan van der Walt" in CAT_CREDIT
    assert IMAGE_MODES == ("RGB",)


@pytest.mark.parametrize("size", [16, 32, 64, 256])
def test_load_cat_shape_dtype_and_range(size):
    x = load_cat(size)
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.1  # a photograph, not a constant


def test_load_cat_is_load_image_of_the_asset_and_the_reference_pipeline():
    x = load_cat(48)
    assert torch.equal(x, load_image(asset_path("chelsea.png"), 48))
    reference = transforms.Compose([transforms.Resize(48, antialias=True), transforms.CenterCrop(48),
                                    transforms.ToTensor()])
    with Image.open(asset_path("chelsea.png")) as image:
        expected = 2 * reference(image) - 1
    torch.testing.assert_close(x, expected, atol=1e-6, rtol=0)
    assert load_cat().shape == (3, 128, 128)


def test_load_image_centre_crops_instead_of_squashing(tmp_path):
    # 20 wide, 60 tall: red top, green middle, blue bottom; the centre square is all green
    rgb = np.zeros((60, 20, 3), np.uint8)
    rgb[:15, :, 0] = rgb[15:45, :, 1] = rgb[45:, :, 2] = 255
    Image.fromarray(rgb).save(tmp_path / "stripes.png")
    x = load_image(tmp_path / "stripes.png", 10)
    green = torch.tensor([-1.0, 1.0, -1.0])[:, None, None].expand(3, 10, 10)
    torch.testing.assert_close(x, green, atol=1e-6, rtol=0)


# --- to_image ------------------------------------------------------------------------------


def test_to_image_round_trip():
    x = load_cat(64)
    image = to_image(x)
    assert isinstance(image, Image.Image)
    assert (image.size, image.mode) == ((64, 64), "RGB")
    back = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1
    assert (back - x).abs().max() <= 1 / 127.5 + 1e-6


def test_to_image_keeps_orientation_and_accepts_one_channel():
    x = torch.linspace(-1, 1, 35).reshape(1, 5, 7)
    image = to_image(x)
    assert (image.size, image.mode) == ((7, 5), "L")  # PIL sizes are (width, height)
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255
    assert (np.diff(pixels.ravel().astype(int)) >= 0).all()


def test_to_image_maps_the_ends_of_the_range_to_black_and_white():
    assert np.asarray(to_image(-torch.ones(3, 4, 4))).max() == 0
    assert np.asarray(to_image(torch.ones(3, 4, 4))).min() == 255


@pytest.mark.parametrize("shape", [(64, 64), (4, 8, 8), (1, 3, 8, 8)])
def test_to_image_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=re.escape(f"got {shape}")):
        to_image(torch.zeros(shape))


# --- check_image_range -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, -1.2])
@pytest.mark.parametrize("check", [check_image_range, to_image])
def test_values_outside_minus_one_one_are_rejected(check, bad):
    x = torch.zeros(3, 4, 4)
    x[1, 2, 3] = bad
    with pytest.raises(ValueError, match=re.escape("[-1, 1]")) as err:
        check(x)
    assert f"{bad:.4g}" in str(err.value)  # the offending range is shown


def test_check_image_range_names_the_tensor_and_accepts_the_ends():
    with pytest.raises(ValueError, match=r"x0 must lie in \[-1, 1\], got values in \[0, 2\]"):
        check_image_range(torch.tensor([0.0, 2.0]), "x0")
    check_image_range(torch.tensor([-1.0, 0.0, 1.0]))
    to_image(torch.tensor([-1.0, 1.0]).reshape(1, 1, 2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_check_image_range_rejects_nan_and_inf(bad):
    # NaN compares False with -1 and 1: a plain range check lets it through
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_image_range(torch.tensor([0.0, bad]))


def test_check_image_range_rejects_an_empty_tensor():
    with pytest.raises(ValueError, match=r"empty \(shape \(0,\)\)"):
        check_image_range(torch.empty(0))


def test_asset_path_stays_in_the_assets_folder():
    with pytest.raises(FileNotFoundError, match="chelsea.png"):
        asset_path("../data.py")


# --- bad input to the loaders ----------------------------------------------------------------


@pytest.mark.parametrize("size", BAD_SIZES)
@pytest.mark.parametrize("make", [image_transform, load_cat])
def test_sizes_must_be_positive_integers(make, size):
    with pytest.raises(ValueError, match=re.escape(f"got {size!r}")):
        make(size)


def test_load_image_missing_file(tmp_path):
    path = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(path)))):
        load_image(path, 32)


def test_load_image_rejects_a_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    with pytest.raises(ValueError, match=re.escape(repr(str(path)))):
        load_image(path, 32)


@pytest.mark.parametrize("mode, fmt", [("L", "png"), ("RGBA", "png"), ("P", "png"), ("CMYK", "jpg")])
def test_load_image_rejects_other_modes(tmp_path, mode, fmt):
    path = tmp_path / f"image.{fmt}"
    Image.new(mode, (12, 8)).save(path)
    with Image.open(path) as image:
        assert image.mode == mode  # the file really has that mode
    with pytest.raises(ValueError, match=f"mode '{mode}'; allowed: 'RGB'"):
        load_image(path, 8)


def test_asset_path_lists_the_shipped_assets():
    assert asset_path("chelsea.png").is_file()
    with pytest.raises(FileNotFoundError, match=r"'nope\.png'.*chelsea\.png"):
        asset_path("nope.png")


# --- viz --------------------------------------------------------------------------------------


def test_display_clips_and_maps_to_unit_interval():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5]).reshape(1, 1, 5)
    out = _display(x)
    assert isinstance(out, np.ndarray)   # imshow wants NumPy, not a tensor
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]])
    rgb = torch.stack([torch.full((2, 3), v) for v in (-1.0, 0.0, 1.0)])
    out = _display(rgb)
    assert out.shape == (2, 3, 3)  # (H, W, C) for imshow
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match=re.escape("got (4, 8, 8)")):
        _display(torch.zeros(4, 8, 8))


@pytest.mark.parametrize("n, ncols", [(1, None), (4, None), (5, 2), (6, 3), (7, 3)])
def test_show_images_grid(n, ncols):
    images = [torch.rand(3, 6, 6) * 2 - 1 for _ in range(n)]
    fig = show_images(images, [f"t{i}" for i in range(n)], ncols=ncols)
    assert isinstance(fig, Figure)
    nrows, cols = math.ceil(n / (ncols or n)), ncols or n
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (nrows, cols)
    with_image = [ax for ax in fig.axes if len(ax.images) == 1]
    assert len(with_image) == n and len(fig.axes) == nrows * cols
    assert [ax.get_title() for ax in with_image] == [f"t{i}" for i in range(n)]


def test_show_images_clips_what_it_draws():
    fig = show_images([torch.full((3, 4, 4), 3.0), torch.full((1, 4, 4), -2.0)])
    bright, dark = (np.asarray(ax.images[0].get_array()) for ax in fig.axes)
    assert np.all(bright == 1.0) and np.all(dark == 0.0)


def test_show_images_rejects_mismatched_titles():
    with pytest.raises(ValueError, match="2 images.*3 titles"):
        show_images([torch.zeros(3, 4, 4)] * 2, ["a", "b", "c"])


def test_show_images_rejects_an_empty_list_and_bad_ncols():
    with pytest.raises(ValueError, match="empty"):
        show_images([])
    with pytest.raises(ValueError, match="ncols must be positive, got -1"):
        show_images([torch.zeros(3, 4, 4)], ncols=-1)


def test_loss_curves_and_scatter_panels_name_bad_arguments():
    with pytest.raises(ValueError, match="curve 'short' has 50 losses, fewer than window = 100"):
        loss_curves({"short": [1.0] * 50})
    with pytest.raises(ValueError, match="window must be a positive integer, got 0"):
        loss_curves({"a": [1.0] * 50}, window=0)
    plt.close(loss_curves({"short": [1.0] * 50}, window=10))
    with pytest.raises(ValueError, match="got 2 point sets and 1 titles"):
        scatter_panels([torch.zeros(5, 2)] * 2, ["one"])
    with pytest.raises(ValueError, match="got 0 point sets"):
        scatter_panels([], [])


def test_show_images_rejects_titles_with_col_titles():
    with pytest.raises(ValueError, match="not both"):
        show_images([torch.zeros(3, 4, 4)] * 2, ["a", "b"], col_titles=["x", "y"])


def test_show_images_row_labels_and_col_titles():
    fig = show_images([torch.zeros(3, 4, 4)] * 6, ncols=3, row_labels=["r0", "r1"],
                      col_titles=["c0", "c1", "c2"], suptitle="grid")
    assert [ax.get_title() for ax in fig.axes[:3]] == ["c0", "c1", "c2"]
    assert [[t.get_text() for t in ax.texts] for ax in fig.axes[::3]] == [["r0"], ["r1"]]
    assert fig.get_suptitle() == "grid"
    with pytest.raises(ValueError, match=r"1 row_labels \(expected 2\)"):
        show_images([torch.zeros(3, 4, 4)] * 6, ncols=3, row_labels=["r0"])
    with pytest.raises(ValueError, match=r"2 col_titles \(expected 3\)"):
        show_images([torch.zeros(3, 4, 4)] * 6, ncols=3, col_titles=["c0", "c1"])


def test_animate_images_frames_and_offline_html():
    frames = [torch.full((3, 4, 6), v) for v in (-1.0, 0.0, 1.0, 0.5)]
    anim = animate_images(frames, [f"step {i}" for i in range(4)], interval=50)
    assert isinstance(anim, FuncAnimation)
    assert len(list(anim.new_frame_seq())) == 4
    html = anim.to_jshtml()
    assert isinstance(html, str) and "<script" in html
    assert not re.search(r"<script[^>]*src=", html)  # all script inline: the book works offline
    embedded = re.findall(r'frames\[\d+\] = "(data:image/png;base64,[^"]*)"', html)
    assert len(embedded) == 4 and len(set(embedded)) == 4  # every frame drawn, each different


def test_animate_images_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        animate_images([])
    with pytest.raises(ValueError, match="3 frames but 1 titles"):
        animate_images([torch.zeros(3, 4, 4)] * 3, ["a"])


def test_loss_curves_plots_running_means_against_the_step():
    from diffnb.viz import loss_curves

    fig = loss_curves({"a": [1.0] * 50 + [3.0] * 50, "b": list(range(1, 101))}, window=10)
    (ax,) = fig.axes
    a, b = ax.lines
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert a.get_xdata()[0] == 10 and a.get_xdata()[-1] == 100   # the step each mean ends at
    assert a.get_ydata()[0] == 1.0 and a.get_ydata()[-1] == 3.0
    assert b.get_ydata()[0] == 5.5                               # mean of 1 .. 10
    assert ax.get_yscale() == "log"
