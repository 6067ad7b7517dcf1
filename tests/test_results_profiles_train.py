"""Unit tests of diffnb.results (record / read_results), diffnb.profiles and diffnb.train."""

import math

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from diffnb import results
from diffnb.profiles import PROFILE_NAMES, PROFILES, settings
from diffnb.results import _plain, read_results, record
from diffnb.train import _lr_factor, progress, train


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, whatever ran before it."""
    torch.manual_seed(0)


PREFIX = "application/papermill.record/"


# --- results: reading a notebook ------------------------------------------------------


def _glue_output(name, text, prefix=PREFIX):
    """An output as myst_nb.glue(name, value, display=prefix == "") writes it."""
    return nbformat.v4.new_output(
        "display_data",
        data={prefix + "text/plain": text},
        metadata={"scrapbook": {"name": name, "mime_prefix": prefix}},
    )


def _write_notebook(path, outputs_per_cell):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# a chapter"))
    for outputs in outputs_per_cell:
        cell = nbformat.v4.new_code_cell("record(...)")
        cell.outputs = outputs
        nb.cells.append(cell)
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    return path


def test_read_results_single_float(tmp_path):
    path = _write_notebook(tmp_path / "nb.ipynb", [[_glue_output("x", "0.5")]])
    assert read_results(path) == {"x": 0.5}
    assert read_results(str(path)) == {"x": 0.5}  # a str path works too


def test_read_results_types_round_trip(tmp_path):
    outputs = [
        _glue_output("f", "0.30000000000000004"),
        _glue_output("neg", "-1.5e-05"),
        _glue_output("i", "3"),
        _glue_output("big", "100000"),
        _glue_output("s", "'hello world'"),
        _glue_output("b", "True"),
    ]
    got = read_results(_write_notebook(tmp_path / "nb.ipynb", [outputs[:3], outputs[3:]]))
    assert got == {"f": 0.1 + 0.2, "neg": -1.5e-05, "i": 3, "big": 100_000, "s": "hello world", "b": True}
    assert type(got["i"]) is int and type(got["f"]) is float and type(got["b"]) is bool


def test_read_results_ignores_other_outputs(tmp_path):
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="loss 0.1\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"}, metadata={}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "7"}, execution_count=1),
        _glue_output("kept", "1.25"),
    ]
    assert read_results(_write_notebook(tmp_path / "nb.ipynb", [outputs, []])) == {"kept": 1.25}


def test_read_results_glue_with_display(tmp_path):
    # glue(..., display=True) has an empty prefix and a plain text/plain entry
    path = _write_notebook(tmp_path / "nb.ipynb", [[_glue_output("shown", "42", prefix="")]])
    assert read_results(path) == {"shown": 42}


def test_read_results_joins_multiline_text(tmp_path):
    path = _write_notebook(tmp_path / "nb.ipynb", [[_glue_output("x", ["0.", "25"])]])
    assert read_results(path) == {"x": 0.25}


def test_read_results_keeps_non_literal_text(tmp_path):
    path = _write_notebook(tmp_path / "nb.ipynb", [[_glue_output("t", "tensor(0.5000)")]])
    assert read_results(path) == {"t": "tensor(0.5000)"}


def test_read_results_empty_notebook(tmp_path):
    assert read_results(_write_notebook(tmp_path / "nb.ipynb", [])) == {}


def test_read_results_later_value_wins(tmp_path):
    path = _write_notebook(tmp_path / "nb.ipynb", [[_glue_output("x", "1")], [_glue_output("x", "2")]])
    assert read_results(path) == {"x": 2}


def test_read_results_missing_file(tmp_path):
    missing = tmp_path / "nowhere" / "chapter.ipynb"
    with pytest.raises(FileNotFoundError) as info:
        read_results(missing)
    assert repr(str(missing)) in str(info.value)


def test_read_results_directory_is_not_a_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="no executed notebook"):
        read_results(tmp_path)


# --- results: record() through the real myst_nb.glue --------------------------------------


@pytest.fixture
def captured_glue(monkeypatch):
    """Run record() -> myst_nb.glue without a kernel; return the outputs glue would display."""
    import IPython.core.formatters
    import myst_nb.ext.glue as glue_mod
    from IPython.core.formatters import DisplayFormatter

    outputs = []
    monkeypatch.setattr(IPython.core.formatters, "format_display_data",
                        lambda obj, include=None, exclude=None: DisplayFormatter().format(obj, include, exclude))

    def fake_display(data, raw=False, metadata=None):
        assert raw is True
        outputs.append(nbformat.v4.new_output("display_data", data=data, metadata=metadata))

    monkeypatch.setattr(glue_mod, "ipy_display", fake_display)
    return outputs


def test_record_then_read_results(tmp_path, captured_glue):
    values = {
        "loss": 0.125,
        "ratio": 1 / 3,
        "steps": 800,
        "name": "cosine, T=1000",
        "flag": False,
        "from_tensor": torch.tensor(0.75),
        "from_int_tensor": torch.tensor(12),
        "from_numpy": np.float64(2.5),
        "from_numpy_int": np.int64(-4),
        "one_element": torch.tensor([[9.0]]),
    }
    for name, value in values.items():
        record(name, value)
    assert len(captured_glue) == len(values)
    for out, name in zip(captured_glue, values):
        assert out.metadata["scrapbook"] == {"name": name, "mime_prefix": PREFIX}
        assert set(out.data) == {PREFIX + "text/plain"}  # recorded, not displayed
    got = read_results(_write_notebook(tmp_path / "nb.ipynb", [captured_glue]))
    assert got == {
        "loss": 0.125, "ratio": 1 / 3, "steps": 800, "name": "cosine, T=1000", "flag": False,
        "from_tensor": 0.75, "from_int_tensor": 12, "from_numpy": 2.5, "from_numpy_int": -4, "one_element": 9.0,
    }
    assert type(got["from_int_tensor"]) is int and type(got["from_numpy"]) is float


def test_record_prints_the_value_outside_the_books_build(captured_glue, capsys, monkeypatch):
    """In Colab the text shows {glue:text}`name` as typed: the number is printed instead,
    once explained; the book's build, which shows it in the text, prints nothing."""
    import diffnb.results

    monkeypatch.setattr(diffnb.results, "_explained", False)
    monkeypatch.delenv(diffnb.results.BOOK_BUILD, raising=False)
    record("loss", 1 / 3)
    record("steps", 800)
    record("schedule", "cosine")
    lines = capsys.readouterr().out.splitlines()
    assert "{glue:text}`name`" in lines[0]
    assert lines[1:] == ["loss = 0.333333", "steps = 800", "schedule = cosine"]
    monkeypatch.setenv(diffnb.results.BOOK_BUILD, "1")
    record("loss", 0.25)
    assert capsys.readouterr().out == ""
    assert len(captured_glue) == 4      # recorded all the same


def test_record_rejects_bad_values_before_gluing(captured_glue):
    with pytest.raises(ValueError):
        record("v", torch.zeros(3))
    with pytest.raises(TypeError):
        record("v", [1, 2])
    assert captured_glue == []


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_record_non_finite_float_reads_back_as_float(tmp_path, captured_glue, value):
    record("x", value)
    got = read_results(_write_notebook(tmp_path / "nb.ipynb", [captured_glue]))["x"]
    assert isinstance(got, float), repr(got)
    assert got == value or (math.isnan(got) and math.isnan(value))


# --- results: _plain ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected, kind",
    [
        (torch.tensor(0.5), 0.5, float),
        (torch.tensor(0.5, dtype=torch.float64), 0.5, float),
        (torch.tensor(3), 3, int),
        (torch.tensor([2.0]), 2.0, float),
        (torch.tensor(True), True, bool),
        (np.float32(0.25), 0.25, float),
        (np.float64(0.1), 0.1, float),
        (np.int64(7), 7, int),
        (np.int32(-2), -2, int),
        (5, 5, int),
        (1.5, 1.5, float),
        (True, True, bool),
        ("text", "text", str),
    ],
)
def test_plain_converts_scalars(value, expected, kind):
    got = _plain(value)
    assert got == expected
    assert type(got) is kind


def test_plain_rejects_multi_element_tensor():
    with pytest.raises(ValueError) as info:
        _plain(torch.zeros(2, 3))
    msg = str(info.value)
    assert "single number" in msg and "(2, 3)" in msg
    with pytest.raises(ValueError, match=r"\(0,\)"):
        _plain(torch.zeros(0))


@pytest.mark.parametrize("value, type_name", [([1, 2], "list"), ((1.0,), "tuple"), (None, "NoneType"),
                                              ({"a": 1}, "dict"), (np.zeros(2), "ndarray"), (1 + 2j, "complex")])
def test_plain_rejects_non_numbers(value, type_name):
    with pytest.raises(TypeError) as info:
        _plain(value)
    msg = str(info.value)
    assert "number or a string" in msg and f"got {type_name}" in msg


def test_plain_accepts_numpy_bool():
    assert _plain(np.True_) is True
    assert _plain(np.array([1, 2]).all()) is True


def test_results_module_exports():
    assert results.record is record and results.read_results is read_results


# --- profiles -------------------------------------------------------------------------------


def test_quick_and_full_have_the_same_keys():
    for chapter in PROFILES:
        quick, full = settings(chapter, "quick"), settings(chapter, "full")
        assert set(vars(quick)) == set(vars(full))
        assert set(PROFILES[chapter]) == set(PROFILE_NAMES)
        assert quick.profile == "quick" and full.profile == "full"


def test_two_moons_quick_is_smaller():
    quick, full = settings("two_moons", "quick"), settings("two_moons", "full")
    assert quick.train_steps < full.train_steps
    for key, value in vars(quick).items():
        if isinstance(value, int) and not isinstance(value, bool):
            assert 0 < value <= getattr(full, key), key
    assert quick.lr == full.lr


def test_two_moons_values():
    s = settings("two_moons", "quick")
    assert s.train_steps == PROFILES["two_moons"]["quick"]["train_steps"]
    assert {"train_steps", "batch_size", "lr", "n_eval", "n_draws", "n_refs", "n_floor_draws", "mc_copies"} <= set(vars(s))


def test_images_large_changes_only_the_networks_and_the_judge():
    for profile in PROFILE_NAMES:
        small, large = vars(settings("images", profile)), vars(settings("images_large", profile))
        changed = {k for k in small if small[k] != large[k]}
        assert changed <= {"unet", "classifier_downsamples", "classifier_steps"}
        assert len(large["unet"]["mults"]) == 3 and large["classifier_downsamples"] == 3
        assert small["classifier_downsamples"] == 2 and large["classifier_steps"] >= small["classifier_steps"]


def test_settings_returns_a_copy():
    s = settings("two_moons", "quick")
    s.train_steps = 1
    assert settings("two_moons", "quick").train_steps != 1


@pytest.mark.parametrize("bad", ["three_moons", "", "Two_Moons", None])
def test_unknown_chapter(bad):
    with pytest.raises(ValueError) as info:
        settings(bad, "quick")
    msg = str(info.value)
    assert f"unknown chapter {bad!r}" in msg and "'two_moons'" in msg


@pytest.mark.parametrize("bad", ["fast", "", "Quick", "ci"])
def test_unknown_profile(bad):
    with pytest.raises(ValueError) as info:
        settings("two_moons", bad)
    msg = str(info.value)
    assert f"unknown profile {bad!r}" in msg and "'quick'" in msg and "'full'" in msg


# --- train -------------------------------------------------------------------------------------


def _regression(seed=0, steps=120, **kw):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    w_true = torch.tensor([[1.5], [-2.0], [0.5]])
    X = torch.randn(512, 3, generator=g)
    y = X @ w_true + 0.01 * torch.randn(512, 1, generator=g)
    data = torch.cat([X, y], 1)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.0), nn.Linear(16, 1))

    def batches():
        return data[torch.randint(0, 512, (64,), generator=g)]

    def loss_fn(m, batch):
        return ((m(batch[:, :3]) - batch[:, 3:]) ** 2).mean()

    result = train(model, loss_fn, batches, steps=steps, lr=kw.pop("lr", 1e-2), show_progress=False, **kw)
    return model, result.losses


def test_train_reduces_the_loss_and_returns_every_step():
    model, losses = _regression()
    assert len(losses) == 120
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < first
    assert last < 0.2 * first


def test_train_leaves_model_in_eval_mode():
    model, _ = _regression(steps=5)
    assert model.training is False
    assert all(not m.training for m in model.modules())


def test_train_is_reproducible():
    _, a = _regression(seed=3, steps=50)
    _, b = _regression(seed=3, steps=50)
    _, c = _regression(seed=4, steps=50)
    assert a == b
    assert a != c


def test_train_options_run():
    _, losses = _regression(steps=60, warmup=10, weight_decay=0.01, grad_clip=None)
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])


@pytest.mark.parametrize("steps", [0, -1])
def test_train_rejects_non_positive_steps(steps):
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match=f"steps must be a positive integer, got {steps}"):
        train(model, lambda m, b: m(b).sum(), lambda: torch.ones(1, 1), steps=steps, show_progress=False)


@pytest.mark.parametrize("bad", [0, -1.0, True])
def test_train_rejects_a_grad_clip_that_would_freeze_or_reverse_the_steps(bad):
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match=f"grad_clip must be None or a positive number, got {bad!r}"):
        train(model, lambda m, b: m(b).sum(), lambda: torch.ones(1, 1), steps=1, grad_clip=bad,
              show_progress=False)


def test_train_says_when_a_finite_batch_list_runs_out():
    model = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="batches ran out after 3 of 5 steps"):
        train(model, lambda m, b: m(b).sum(), [torch.ones(1, 1)] * 3, steps=5, show_progress=False)


def test_train_learning_rate_schedule_end_to_end():
    """With loss = p, Adam moves p by (almost exactly) the current learning rate every step,
    so the recorded losses reveal the schedule: warm-up, then a cosine to zero."""
    steps, warmup, lr = 40, 5, 0.1
    p = nn.Parameter(torch.tensor(0.0, dtype=torch.float64))
    model = nn.Module()
    model.p = p
    losses = train(model, lambda m, _: m.p * 1.0, lambda: None, steps=steps, lr=lr, warmup=warmup,
                   grad_clip=None, show_progress=False).losses
    moves = -np.diff(losses)  # moves[i] = lr * factor(i)
    expected = np.array([lr * _lr_factor(i, steps, warmup) for i in range(steps - 1)])
    np.testing.assert_allclose(moves, expected, rtol=1e-6, atol=1e-12)


def test_lr_factor_shape():
    assert _lr_factor(0, 100, 0) == 1.0
    assert _lr_factor(50, 100, 0) == pytest.approx(0.5)
    assert _lr_factor(99, 100, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    factors = [_lr_factor(i, 100, 0) for i in range(100)]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    # linear warm-up to 1, then the cosine starts from 1
    assert [_lr_factor(i, 100, 4) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert _lr_factor(52, 100, 4) == pytest.approx(0.5)


def test_train_clips_the_gradient_norm(monkeypatch):
    """The optimizer sees the gradient clipped to norm ``grad_clip``, or the raw one with None."""
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    model = nn.Module()
    model.p = p
    seen = []
    orig_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(p.grad.norm().item())
        return orig_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    loss = lambda m, _: 100 * (m.p**2).sum()  # noqa: E731  gradient 200 p, norm ~1000
    train(model, loss, lambda: None, steps=3, grad_clip=1.0, show_progress=False)
    assert seen == pytest.approx([1.0] * 3, rel=1e-5)
    seen.clear()
    train(model, loss, lambda: None, steps=1, grad_clip=None, show_progress=False)
    assert seen[0] > 100


def test_train_progress_bar(capsys):
    _regression(steps=3, desc="my-run")  # show_progress=False
    assert "my-run" not in capsys.readouterr().out
    model = nn.Linear(1, 1)
    train(model, lambda m, b: (m(b) ** 2).mean(), lambda: torch.ones(4, 1), steps=3, desc="my-run")
    assert "my-run" in capsys.readouterr().out


def test_progress_wraps_an_iterable(capsys):
    assert list(progress(range(4), desc="progress-check")) == [0, 1, 2, 3]
    out = capsys.readouterr().out
    assert "progress-check" in out and "4/4" in out
    # as wide as the book's code blocks (tests/test_conventions.py), so no scroll bar
    assert max(len(line) for line in out.replace("\r", "\n").splitlines()) <= 78


def test_write_json_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    import json

    from diffnb.results import write_json

    path = tmp_path / "deep" / "run.json"
    assert write_json(path, {"b": 1, "a": [2]}) == path
    write_json(path, {"b": 2, "a": 1}, indent=1, sort_keys=True)
    assert path.read_text() == '{\n "a": 1,\n "b": 2\n}\n' and json.loads(path.read_text())["b"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]
