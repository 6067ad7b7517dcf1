"""python -m diffnb.train: the command line, its checkpoints and summary, resume, bad arguments,
and training in several processes (DistributedDataParallel on the CPU, gloo)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from diffnb import continuous
from diffnb.models import UNet
from diffnb.train import load_checkpoint, main, train

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--data", "digits", "--image-size", "16", "--schedule", "shifted_cosine", "--base-resolution", "8",
        "--parameterisation", "v", "--weighting", "min_snr", "--batch-size", "8", "--lr", "4e-3",
        "--ema-decay", "0.9", "--unet-base", "8", "--mults", "1,2", "--quiet",
        "--device", "cpu"]   # CPU facts are asserted (bit-exact resume, its default fast path)


class Interrupt(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(path: Path, steps: int, every: int, *extra: str) -> list[str]:
    return TINY + ["--steps", str(steps), "--checkpoint", str(path), "--checkpoint-every", str(every), *extra]


def _summary(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


def _interrupt_at(monkeypatch, call: int) -> None:
    """Make the loss raise during its ``call``-th evaluation (step ``call`` of the run)."""
    real, calls = continuous.loss, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise Interrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(continuous, "loss", loss)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_main_trains_and_writes_a_checkpoint_and_a_summary(tmp_path, capsys):
    path = tmp_path / "runs" / "tiny.pt"
    assert main(_args(path, 3, 2)) == 0
    state = load_checkpoint(path)                 # weights_only=True
    assert state["step"] == state["steps"] == 3 and len(state["losses"]) == 3
    torch.manual_seed(0)
    fresh = UNet(1, base=8, mults=(1, 2)).state_dict()
    assert state["model"].keys() == fresh.keys() and not _same(state["model"], fresh)
    assert state["ema"]["updates"] == 3
    assert state["batches"] == {"seed": 0, "batch_size": 8, "world_size": 1, "step": 3}
    s = _summary(path)
    assert {k: s["settings"][k] for k in ("data", "image_size", "schedule", "base_resolution",
                                          "parameterisation", "weighting", "mults", "unet_base")} == {
        "data": "digits", "image_size": 16, "schedule": "shifted_cosine", "base_resolution": [8],
        "parameterisation": "v", "weighting": "min_snr", "mults": [1, 2], "unet_base": 8}
    assert (s["steps"], s["world_size"], s["device"], s["torch"]) == (3, 1, "cpu", torch.__version__)
    assert s["final_loss"] == pytest.approx(sum(state["losses"]) / 3) and math.isfinite(s["final_loss"])
    assert s["images_per_second"] > 0 and s["seconds"] > 0 and s["image_size"] == 16
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("diffnb.train: 3 steps in ") and str(path) in out[-1]
    assert not list(path.parent.glob("*.tmp"))


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    assert main(_args(tmp_path / "whole.pt", 6, 3)) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 5)                       # dies during step 5; last checkpoint at step 3
        with pytest.raises(Interrupt):
            main(_args(tmp_path / "cut.pt", 6, 3))
    assert load_checkpoint(tmp_path / "cut.pt")["step"] == 3
    assert not (tmp_path / "cut.pt.json").exists()
    assert main(_args(tmp_path / "cut.pt", 6, 3, "--resume")) == 0
    whole, resumed = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(tmp_path / "cut.pt")
    assert resumed["step"] == 6 and _summary(tmp_path / "cut.pt")["resumed_from"] == 3
    assert _same(resumed["model"], whole["model"])          # bit for bit on the CPU
    assert _same(resumed["ema"]["module"], whole["ema"]["module"])
    assert resumed["losses"] == whole["losses"]


@pytest.mark.parametrize("bad, named, allowed", [
    (["--schedule", "squiggle"], "squiggle", "shifted_cosine"),      # argparse quotes these or not,
    (["--parameterisation", "omega"], "omega", "eps"),               # by Python version
    (["--weighting", "max_snr"], "max_snr", "min_snr"),
    (["--data", "cifar"], "cifar", "digits"),
    (["--image-size", "4"], "--image-size 4", "8 or more"),
    (["--steps", "0"], "'0'", "positive integer"),
    (["--steps", "-3"], "'-3'", "positive integer"),
    (["--image-size", "17"], "--image-size 17", "multiples of 2"),
    (["--image-size", "20", "--patch", "4"], "--patch 4", "multiples of 8"),
    (["--patch", "0"], "'0'", "positive integer"),
    (["--schedule", "interpolated_cosine"], "--base-resolution 8", "LOW,HIGH"),
    (["--ema-decay", "1"], "--ema-decay 1.0", "[0, 1)"),
])
def test_bad_arguments_exit_with_code_2_and_name_the_value(tmp_path, capsys, bad, named, allowed):
    path = tmp_path / "never.pt"
    with pytest.raises(SystemExit) as exit_:
        main(_args(path, 3, 2) + bad)             # the last occurrence of an option wins
    assert exit_.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("python -m diffnb.train: error:")
    assert named in message and allowed in message
    assert not path.exists()


# --- several processes ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_continue_a_checkpoint_that_one_process_resumes(tmp_path, monkeypatch):
    path = tmp_path / "ddp.pt"
    with monkeypatch.context() as m:              # one process: steps 1-2 of 4, then stopped
        _interrupt_at(m, 3)
        with pytest.raises(Interrupt):
            main(_args(path, 4, 2))
    before = load_checkpoint(path)
    assert before["step"] == 2
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "diffnb.train", *_args(path, 4, 2, "--resume")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("diffnb.train: 4 steps") == 1          # the summary from rank 0 only
    state = load_checkpoint(path)
    assert state["step"] == 4 and len(state["losses"]) == 4 and state["losses"][:2] == before["losses"]
    assert state["model"].keys() == before["model"].keys()          # no "module." prefix
    assert not _same(state["model"], before["model"])
    assert state["ema"]["updates"] == 4
    assert state["batches"]["world_size"] == 2 and state["batches"]["step"] == 4
    s = _summary(path)
    assert (s["world_size"], s["resumed_from"], s["settings"]["batch_per_process"]) == (2, 2, 4)
    # and back in one process: the two-process checkpoint loads into the plain model
    assert main(_args(path, 4, 2, "--resume")) == 0
    assert (_summary(path)["world_size"], _summary(path)["resumed_from"]) == (1, 4)
    assert _same(load_checkpoint(path)["model"], state["model"])


def test_accelerate_launch_runs_the_command_in_two_processes(tmp_path):
    """The README's multi-GPU command line, `accelerate launch --multi_gpu`, with the CPU
    standing in for the GPUs: accelerate starts the processes through torch.distributed.run."""
    pytest.importorskip("accelerate")
    path = tmp_path / "acc.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", HF_HOME=str(tmp_path / "hf"))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "diffnb.train", *_args(path, 4, 2)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("diffnb.train: 4 steps") == 1          # the summary from rank 0 only
    state = load_checkpoint(path)
    assert state["step"] == 4 and state["batches"]["world_size"] == 2
    assert _summary(path)["world_size"] == 2


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _tiny_run(tmp_path, name, *, wrap=False, stop_at=None, resume=False, is_main=True):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.SiLU(),
                          nn.Conv2d(8, 1, 3, padding=1))
    module = model
    if wrap:
        model = nn.parallel.DistributedDataParallel(model)
    calls = [0]

    def loss(m, x):
        calls[0] += 1
        if calls[0] == stop_at:
            raise Interrupt
        return ((m(x + torch.randn_like(x)) - x) ** 2).mean()

    result = train(model, loss, lambda: torch.randn(4, 1, 8, 8), steps=6, lr=1e-2, ema_decay=0.9,
                   checkpoint=tmp_path / name, checkpoint_every=3, resume=resume, show_progress=False,
                   is_main=is_main)
    return module, result


def test_train_checkpoints_the_module_inside_ddp_both_ways(tmp_path, one_process_group):
    ref, ref_result = _tiny_run(tmp_path, "ref.pt")
    for first, then, name in ((True, False, "ddp_then_plain.pt"), (False, True, "plain_then_ddp.pt")):
        with pytest.raises(Interrupt):
            _tiny_run(tmp_path, name, wrap=first, stop_at=5)
        saved = load_checkpoint(tmp_path / name)
        assert saved["step"] == 3 and saved["model"].keys() == ref.state_dict().keys()
        assert saved["ema"]["module"].keys() == ref.state_dict().keys()
        model, result = _tiny_run(tmp_path, name, wrap=then, resume=True)
        assert result.resumed_from == 3
        assert _same(model.state_dict(), ref.state_dict()) and result.losses == ref_result.losses
        assert _same(result.ema.state_dict(), ref_result.ema.state_dict())
        assert not isinstance(result.ema, nn.parallel.DistributedDataParallel)


def test_a_non_main_process_resumes_but_never_writes(tmp_path):
    _tiny_run(tmp_path, "ck.pt")
    before = (tmp_path / "ck.pt").read_bytes()
    _, again = _tiny_run(tmp_path, "ck.pt", resume=True, is_main=False)
    assert again.resumed_from == 6 and (tmp_path / "ck.pt").read_bytes() == before
    _, fresh = _tiny_run(tmp_path, "other.pt", is_main=False)
    assert fresh.steps == 6 and not (tmp_path / "other.pt").exists()


def test_fast_path_switches_and_loader_workers_reach_the_run(tmp_path):
    plain, fast = tmp_path / "plain.pt", tmp_path / "fast.pt"
    assert main(_args(plain, 2, 2)) == 0
    assert main(_args(fast, 2, 2, "--channels-last", "--no-amp", "--no-fused-adamw", "--cudnn-autotune",
                      "--workers", "1")) == 0
    s_plain, s_fast = _summary(plain)["settings"], _summary(fast)["settings"]
    assert s_plain["fast_path"] == {"bf16": False, "channels_last": False, "sdpa": True, "compile": False,
                                    "cuda_graphs": False, "cudnn_autotune": False, "pinned": False,
                                    "fused_adamw": True, "max_batch": 256}   # FastPath.auto("cpu")
    assert s_plain["workers"] == 0
    assert s_fast["fast_path"]["channels_last"] and s_fast["workers"] == 1
    assert not s_fast["fast_path"]["fused_adamw"] and s_fast["fast_path"]["cudnn_autotune"]
    # a worker process loads the same batches, and the checkpoint holds the plain UNet's weights
    a, b = load_checkpoint(plain), load_checkpoint(fast)
    assert a["model"].keys() == b["model"].keys()
    assert a["losses"][0] == pytest.approx(b["losses"][0], rel=1e-5)


def test_cuda_graphs_are_refused_with_several_processes(tmp_path, capsys, monkeypatch):
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        main(_args(tmp_path / "x.pt", 2, 2, "--cuda-graphs"))
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--cuda-graphs with 2 processes: allowed with one process only" in err
    assert not (tmp_path / "x.pt").exists()


def test_negative_workers_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(_args(tmp_path / "x.pt", 2, 2, "--workers", "-1"))
    assert exit_.value.code == 2 and "--workers -1: allowed values are 0 or more" in capsys.readouterr().err
