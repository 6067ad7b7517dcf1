"""The fast path (diffnb.fast): the switches, the wrapper's outputs and checkpoints, CPU threads."""

from __future__ import annotations

import pytest
import torch

from diffnb import fast
from diffnb.fast import FastModel, FastPath, set_sdpa
from diffnb.models import UNet
from diffnb.train import load_checkpoint, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _unet(seed=0, **kw):
    torch.manual_seed(seed)
    return UNet(1, base=8, mults=(1, 2), attention=("none", "full"), **kw)


def _inputs(batch=3, size=8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 1, size, size, generator=g), torch.rand(batch, generator=g) * 10


def test_auto_is_the_plain_path_with_fused_attention_off_cuda():
    assert FastPath.auto("cpu") == FastPath(fused_adamw=True, max_batch=fast.CPU_MAX_BATCH)
    assert fast.CPU_MAX_BATCH == 256 and FastPath().sdpa and not FastPath().fused_adamw
    assert FastPath.auto(torch.device("mps")) == FastPath() == FastPath(sdpa=True, max_batch=None)
    assert FastPath.off() == FastPath(sdpa=False)
    assert not any(v for k, v in FastPath.auto("cpu").as_dict().items()
                   if k not in ("sdpa", "fused_adamw", "max_batch"))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "256"])
def test_max_batch_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=rf"max_batch must be a positive integer or None, got {bad!r}"):
        FastPath(max_batch=bad)


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, factor):
        assert len(x) <= 4
        return x * factor


def test_a_large_batch_without_gradients_is_run_in_slices_with_the_same_outputs():
    net = _unet()
    calls = []
    net.register_forward_hook(lambda m, args, out: calls.append((len(args[0]), args[1].shape)))
    x, t = _inputs(batch=10)
    sliced = FastModel(net, FastPath(max_batch=4))
    with torch.no_grad():
        expected = net(x, t)
        calls.clear()
        out = sliced(x, t)
        assert calls == [(4, (4,)), (4, (4,)), (2, (2,))]   # t is sliced with x
        scaled = FastModel(_Scale(), FastPath(max_batch=4))     # an argument shared by all images
        assert torch.equal(scaled(x, 3.0), 3.0 * x) and torch.equal(scaled(x, torch.tensor(2.0)), 2.0 * x)
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-6)
    calls.clear()
    sliced(x, t).sum().backward()       # with gradients: one call, as training needs
    assert [n for n, _ in calls] == [10]


@pytest.mark.parametrize("capability, bf16", [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_auto_on_cuda_uses_bf16_only_where_the_gpu_has_it(monkeypatch, capability, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    path = FastPath.auto("cuda")
    assert path == FastPath(bf16=bf16, channels_last=False, sdpa=True, compile=False, pinned=True, fused_adamw=True)


def test_the_environment_can_force_bf16_on_or_off(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setenv("DIFFNB_BF16", "1")
    assert FastPath.auto("cpu") == FastPath(bf16=True, fused_adamw=True, max_batch=256)
    assert FastPath.auto("cuda").bf16
    monkeypatch.setenv("DIFFNB_BF16", "0")
    assert FastPath.auto("cuda") == FastPath(pinned=True, fused_adamw=True)
    monkeypatch.setenv("DIFFNB_BF16", "yes")
    with pytest.raises(ValueError, match=r"DIFFNB_BF16='yes': allowed values are 1 .*, 0 .* or unset"):
        FastPath.auto("cpu")


def test_a_plain_fast_model_gives_the_models_outputs_exactly():
    net = _unet()
    x, t = _inputs()
    expected = net(x, t)
    out = FastModel(net, FastPath())(x, t)
    assert out.dtype == torch.float32 and torch.equal(out, expected)


@pytest.mark.parametrize("fields, tol", [
    (dict(sdpa=False), 1e-5),                 # the written-out softmax
    (dict(channels_last=True), 1e-5),         # NHWC convolutions
    (dict(bf16=True), 0.1),                   # bfloat16 keeps 8 bits of mantissa
])
def test_each_switch_keeps_the_outputs(fields, tol):
    x, t = _inputs()
    expected = _unet()(x, t)
    model = FastModel(_unet(), FastPath(**fields))
    out = model(x, t)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    err = (out - expected).abs().max().item()
    assert err < tol * expected.abs().max().item(), err
    if fields.get("channels_last"):
        assert model.module.init_conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_really_runs_the_convolutions_in_bfloat16():
    seen = []
    model = FastModel(_unet(), FastPath(bf16=True))
    model.module.init_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    model(*_inputs())
    assert seen == [torch.bfloat16]


def test_set_sdpa_switches_every_attention_layer():
    net = _unet()
    layers = [m for m in net.modules() if hasattr(m, "use_sdpa")]
    assert layers and all(m.use_sdpa for m in layers)
    set_sdpa(net, False)
    assert not any(m.use_sdpa for m in layers)
    FastModel(net, FastPath(sdpa=True))
    assert all(m.use_sdpa for m in layers)


def test_the_wrapper_shows_the_models_attributes_and_weights_once():
    net = _unet()
    model = FastModel(net, FastPath(compile=False))
    assert model.in_channels == 1 and model.multiple == 2 and model.module is net
    assert list(model.state_dict()) == [f"module.{k}" for k in net.state_dict()]
    with pytest.raises(AttributeError, match="no_such_thing"):
        model.no_such_thing


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="already a FastModel"):
        FastModel(FastModel(_unet()))
    with pytest.raises(TypeError, match="must be a FastPath, got dict"):
        FastModel(_unet(), {"bf16": True})


def _loss(m, x):
    noise = torch.randn_like(x)
    t = torch.rand(x.shape[0], device=x.device) * 10
    return ((m(x + noise, t) - noise) ** 2).mean()


def _run(tmp_path, model, steps=6, **kw):
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(2)
    return train(model, _loss, lambda: torch.randn(4, 1, 8, 8, generator=g), steps=steps, lr=1e-2,
                 ema_decay=0.9, checkpoint=tmp_path / "ck.pt", checkpoint_every=3, show_progress=False, **kw)


def test_training_a_fast_model_equals_training_the_model(tmp_path):
    plain, wrapped = _unet(), FastModel(_unet(), FastPath.auto("cpu"))     # the plain model's default
    res_plain = _run(tmp_path / "a", plain)
    res_fast = _run(tmp_path / "b", wrapped)
    assert res_fast.losses == res_plain.losses
    saved = load_checkpoint(tmp_path / "b" / "ck.pt")["model"]
    assert list(saved) == list(plain.state_dict())          # the plain weights: no "module." prefix
    assert all(torch.equal(saved[k], v) for k, v in plain.state_dict().items())
    assert type(res_fast.ema) is UNet


def test_adamw_is_fused_as_the_fast_path_says_which_changes_only_rounding(tmp_path):
    losses = {}
    for fused in (False, True):
        losses[fused] = _run(tmp_path / str(fused), FastModel(_unet(), FastPath(fused_adamw=fused)), steps=3).losses
        group = load_checkpoint(tmp_path / str(fused) / "ck.pt")["optimizer"]["param_groups"][0]
        assert bool(group["fused"]) is fused
    assert losses[True][0] == losses[False][0]          # the same weights and batch before any update
    assert losses[True][1] == pytest.approx(losses[False][1], rel=1e-5)     # after one update
    _run(tmp_path / "plain", _unet(), steps=1)     # a model outside a FastModel follows FastPath.auto
    assert load_checkpoint(tmp_path / "plain" / "ck.pt")["optimizer"]["param_groups"][0]["fused"]


def test_a_channels_last_checkpoint_loads_into_a_plain_model_and_resumes(tmp_path):
    wrapped = FastModel(_unet(), FastPath(channels_last=True))
    res = _run(tmp_path, wrapped)
    fresh = _unet(seed=9)
    fresh.load_state_dict(load_checkpoint(tmp_path / "ck.pt")["model"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), wrapped.module.state_dict().values()))
    # a longer run resumes from it, in channels-last again
    longer = FastModel(_unet(seed=9), FastPath(channels_last=True))
    with pytest.raises(ValueError, match="belongs to a run of 6 steps, not 8"):
        _run(tmp_path, longer, steps=8, resume=True)
    assert res.losses[0] == pytest.approx(_run(tmp_path / "p", _unet()).losses[0], rel=1e-5)


def test_log_every_sets_how_often_losses_are_read_back(tmp_path, monkeypatch):
    reads = []
    tolist = torch.Tensor.tolist     # each read-back is one tolist() of the losses still on the device
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(t.numel()) or tolist(t))
    g = torch.Generator().manual_seed(0)
    res = train(_unet(), _loss, lambda: torch.randn(2, 1, 8, 8, generator=g), steps=7, log_every=3,
                show_progress=False)
    assert reads == [3, 3, 1] and len(res.losses) == 7
    with pytest.raises(ValueError, match="log_every must be a positive integer, got 0"):
        train(_unet(), _loss, lambda: None, steps=1, log_every=0)


def test_compiled_model_matches_the_eager_one():
    pytest.importorskip("torch._inductor")
    x, t = _inputs()
    expected = _unet()(x, t)
    out = FastModel(_unet(), FastPath(compile=True))(x, t)
    assert torch.allclose(out, expected, atol=1e-4)


@pytest.fixture
def cudnn_benchmark():
    """torch.backends.cudnn.benchmark as a test found it, put back afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cudnn.benchmark = before


def test_cudnn_autotune_holds_for_the_networks_call_and_the_whole_training_loop(tmp_path, cudnn_benchmark):
    """PyTorch's setting is global and the backward pass reads it outside the network's call:
    it must be on through both, and as it was once a call or the loop is over."""
    seen = []

    def loss(m, x):
        seen.append(("forward", torch.backends.cudnn.benchmark))
        out = _loss(m, x)
        out.register_hook(lambda g: seen.append(("backward", torch.backends.cudnn.benchmark)))
        return out

    g = torch.Generator().manual_seed(2)
    model = FastModel(_unet(), FastPath(cudnn_autotune=True))
    train(model, loss, lambda: torch.randn(4, 1, 8, 8, generator=g), steps=2, show_progress=False)
    assert seen == [("forward", True), ("backward", True)] * 2
    assert torch.backends.cudnn.benchmark is False
    with torch.no_grad():       # sampling calls the network alone
        model.module.register_forward_hook(lambda *_: seen.append(("sample", torch.backends.cudnn.benchmark)))
        model(*_inputs())
    assert seen[-1] == ("sample", True) and torch.backends.cudnn.benchmark is False

    def fails(m, x):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        train(model, fails, lambda: torch.randn(4, 1, 8, 8), steps=1, show_progress=False)
    assert torch.backends.cudnn.benchmark is False      # put back on the way out too
    # off, the path leaves a choice made elsewhere alone
    torch.backends.cudnn.benchmark = True
    seen.clear()
    train(FastModel(_unet(), FastPath()), loss, lambda: torch.randn(4, 1, 8, 8, generator=g), steps=1,
          show_progress=False)
    assert seen == [("forward", True), ("backward", True)]
    assert not FastPath.auto("cpu").cudnn_autotune


def test_cuda_graphs_need_compile():
    with pytest.raises(ValueError, match=r"cuda_graphs=True needs compile=True"):
        FastPath(cuda_graphs=True)
    assert FastPath(compile=True, cuda_graphs=True).as_dict()["cuda_graphs"]
    assert not FastPath.auto("cpu").cuda_graphs


def test_cuda_graphs_compile_in_reduce_overhead_mode_and_hand_out_copies(monkeypatch):
    # a graph's replay writes every output into the same memory; stand in for one
    modes = []

    class Replay(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.buffer = model, None

        def forward(self, x, t):
            out = self.model(x, t)
            if self.buffer is None:
                self.buffer = torch.empty_like(out)
            return self.buffer.copy_(out)

    def fake_compile(model, mode="default"):
        modes.append(mode)
        return Replay(model)

    monkeypatch.setattr(torch, "compile", fake_compile)
    x, t = _inputs()
    x2, t2 = x.flip(0), t.flip(0)
    eager = _unet()
    with torch.no_grad():
        FastModel(_unet(), FastPath(compile=True))                    # the default mode
        model = FastModel(_unet(), FastPath(compile=True, cuda_graphs=True))
        a = model(x, t)
        b = model(x2, t2)        # a replay must not change what the last call returned
        assert torch.equal(a, eager(x, t)) and torch.equal(b, eager(x2, t2))
    assert modes == ["default", "reduce-overhead"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphs_on_a_gpu_train_and_keep_each_output():
    pytest.importorskip("torch._inductor")
    x, t = (a.cuda() for a in _inputs(batch=4))
    eager = _unet().cuda()
    model = FastModel(_unet().cuda(), FastPath(compile=True, cuda_graphs=True))
    # full float32: by default both would run their convolutions as TF32, each with its own
    # kernels, and differ by about the tolerance
    with torch.no_grad(), fast.ieee_float32():
        outs = [model(x * k, t) for k in (1.0, 0.5, 1.0, 0.5)]    # later calls replay the graph
        for k, out in zip((1.0, 0.5, 1.0, 0.5), outs):
            assert torch.allclose(out, eager(x * k, t), atol=1e-3)

    res = train(model, _loss, lambda: torch.randn(4, 1, 8, 8, device="cuda"), steps=5, show_progress=False)
    assert len(res.losses) == 5 and all(torch.isfinite(torch.tensor(res.losses)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cudnn_autotune_on_cuda_gives_the_same_outputs_and_training(cudnn_benchmark):
    x, t = (a.cuda() for a in _inputs(batch=4, size=16))
    plain = FastModel(_unet().cuda(), FastPath(channels_last=True))
    tuned = FastModel(_unet().cuda(), FastPath(channels_last=True, cudnn_autotune=True))
    with torch.no_grad(), fast.ieee_float32():       # each may pick other kernels: compare in float32
        assert torch.allclose(tuned(x, t), plain(x, t), atol=1e-4)

    def run(model):
        torch.manual_seed(3)
        g = torch.Generator(device="cuda").manual_seed(2)
        with fast.ieee_float32():
            return train(model, _loss, lambda: torch.randn(4, 1, 16, 16, device="cuda", generator=g),
                         steps=3, lr=1e-3, show_progress=False).losses

    assert run(tuned) == pytest.approx(run(plain), rel=1e-3)
    assert torch.backends.cudnn.benchmark is False


def test_cpu_threads_reads_the_container_quota(tmp_path, monkeypatch):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert fast._cgroup_quota(str(v2)) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert fast._cgroup_quota(str(v2)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert fast._cgroup_quota(str(v1)) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    assert fast._cgroup_quota(str(v1)) == 2.5
    assert fast._cgroup_quota(str(tmp_path / "none")) is None
    monkeypatch.setattr(fast, "_cgroup_quota", lambda: 1.5)
    assert fast.cpu_threads() == 1                # rounded down: a second thread would be throttled


def test_set_cpu_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(fast, "cpu_threads", lambda: 1)
        assert fast.set_cpu_threads() == 1 == torch.get_num_threads()
        monkeypatch.setattr(fast, "cpu_threads", lambda: 5)
        assert fast.set_cpu_threads(processes=2) == 2       # 5 CPUs for 2 processes: 2 each
        assert fast.set_cpu_threads(processes=8) == 1       # never none
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(2)
        assert fast.set_cpu_threads() == 2        # the environment's choice is kept
        for bad in (0, 1.5, True):
            with pytest.raises(ValueError, match=f"n must be a positive integer, got {bad!r}"):
                fast.set_cpu_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_ieee_float32_turns_tf32_off_inside_the_block_only():
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    with pytest.raises(RuntimeError, match="inside"):
        with fast.ieee_float32():
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
            raise RuntimeError("inside")
    assert (conv.fp32_precision, matmul.fp32_precision) == before


def test_ieee_float32_uses_the_older_flags_where_torch_has_no_fp32_precision(monkeypatch):
    class Flags:        # torch before 2.9: allow_tf32 only
        allow_tf32 = True

    cudnn, matmul = Flags(), Flags()
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    with fast.ieee_float32():
        assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
    assert cudnn.allow_tf32 is True and matmul.allow_tf32 is True
