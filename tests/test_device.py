"""Unit tests of diffnb.device: the device switch and seeding."""

import random

import numpy as np
import pytest
import torch

from diffnb.device import DEVICE_NAMES, available_devices, get_device, seed_everything

ALLOWED = ("'auto'", "'cpu'", "'cuda'", "'mps'")


@pytest.fixture
def no_accelerator(monkeypatch):
    """A machine with neither CUDA nor MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def cuda_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def mps_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


@pytest.fixture
def cuda_and_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


# --- get_device ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "CPU", "Cpu", torch.device("cpu")])
def test_cpu_gives_cpu_device(name):
    dev = get_device(name)
    assert isinstance(dev, torch.device)
    assert dev == torch.device("cpu")


def test_auto_is_first_available_on_this_machine():
    found = available_devices()
    assert found[-1] == "cpu"
    assert len(found) == len(set(found))
    assert set(found) <= set(DEVICE_NAMES) - {"auto"}
    assert get_device("auto") == torch.device(found[0])
    assert get_device() == get_device("auto")  # "auto" is the default


def test_auto_without_accelerator_is_cpu(no_accelerator):
    assert available_devices() == ["cpu"]
    assert get_device("auto") == torch.device("cpu")
    assert get_device("AUTO") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(cuda_and_mps):
    assert available_devices() == ["cuda", "mps", "cpu"]
    assert get_device("auto") == torch.device("cuda")


def test_auto_takes_mps_when_no_cuda(mps_only):
    assert available_devices() == ["mps", "cpu"]
    assert get_device("auto") == torch.device("mps")


def test_cuda_when_available(cuda_only):
    assert get_device("cuda") == torch.device("cuda")
    # a torch.device with an index resolves by its type; another GPU's index is refused, not dropped
    assert get_device(torch.device("cuda", 0)) == torch.device("cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:1'.*CUDA_VISIBLE_DEVICES=1"):
        get_device(torch.device("cuda", 1))


def test_samplers_default_to_the_models_device():
    from diffnb.device import default_device
    assert default_device(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert default_device(torch.nn.Linear(2, 2, device="meta"), "cpu") == torch.device("cpu")
    assert default_device(lambda x, t: x) == torch.device("cpu")
    assert default_device(torch.nn.ReLU()) == torch.device("cpu")


def test_mps_when_available(mps_only):
    assert get_device("mps") == torch.device("mps")


@pytest.mark.parametrize("bad", ["tpu", 3, None, "gpu", "", 1.5])
def test_unknown_device_name_raises_value_error(bad):
    with pytest.raises(ValueError) as info:
        get_device(bad)
    msg = str(info.value)
    assert repr(bad) in msg, msg
    for name in ALLOWED:
        assert name in msg, msg


def test_missing_cuda_is_an_error_not_a_fallback(no_accelerator):
    assert torch.cuda.is_available() is False
    with pytest.raises(RuntimeError) as info:
        get_device("cuda")
    msg = str(info.value)
    assert "'cuda'" in msg
    assert "available: 'cpu'" in msg
    assert "'auto'" in msg  # tells the user the way out


def test_missing_cuda_lists_mps_when_present(mps_only):
    with pytest.raises(RuntimeError, match=r"available: 'mps', 'cpu'"):
        get_device("cuda")


def test_missing_mps_is_an_error(cuda_only):
    with pytest.raises(RuntimeError) as info:
        get_device("mps")
    msg = str(info.value)
    assert "'mps'" in msg
    assert "available: 'cuda', 'cpu'" in msg


def test_missing_cuda_given_as_torch_device(no_accelerator):
    with pytest.raises(RuntimeError, match="'cuda'"):
        get_device(torch.device("cuda"))


# --- seed_everything -------------------------------------------------------------


def _draws(seed):
    gen = seed_everything(seed)
    return (
        torch.randn(5),
        torch.rand(3, generator=gen),
        np.random.rand(4),
        random.random(),
    )


def test_same_seed_same_numbers():
    a, b = _draws(123), _draws(123)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert a[3] == b[3]


def test_different_seed_different_numbers():
    a, b = _draws(1), _draws(2)
    assert not torch.equal(a[0], b[0])
    assert not torch.equal(a[1], b[1])
    assert not np.array_equal(a[2], b[2])
    assert a[3] != b[3]


def test_seed_everything_returns_seeded_cpu_generator():
    gen = seed_everything(7)
    assert isinstance(gen, torch.Generator)
    assert gen.device == torch.device("cpu")
    assert gen.initial_seed() == 7
    # the returned generator is seeded like the global one
    expected = torch.Generator().manual_seed(7)
    assert torch.equal(torch.randn(4, generator=gen), torch.randn(4, generator=expected))
    seed_everything(7)
    assert torch.equal(torch.randn(4), torch.randn(4, generator=torch.Generator().manual_seed(7)))


def test_synchronize_is_a_no_op_on_cpu():
    from diffnb import synchronize
    assert synchronize(None) is None
    assert synchronize("cpu") is None
    assert synchronize(torch.device("cpu")) is None
