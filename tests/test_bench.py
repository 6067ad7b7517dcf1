"""diffnb.bench: medians of repeated timings, and the peak bytes of live tensors."""

from __future__ import annotations

import pytest
import torch

from diffnb.bench import peak_memory, timeit


def test_timeit_returns_the_median_after_warmup():
    calls, durations = [], iter([0.0, 0.03, 0.01, 0.02])   # the first call is the warm-up
    import time

    def fn():
        calls.append(1)
        time.sleep(next(durations))

    median = timeit(fn, repeat=3, warmup=1)
    assert len(calls) == 4
    assert 0.015 < median < 0.028     # the middle of 0.03, 0.01, 0.02


@pytest.mark.parametrize("kw", [dict(repeat=0), dict(warmup=-1)])
def test_timeit_rejects_bad_counts(kw):
    with pytest.raises(ValueError, match="repeat >= 1 and warmup >= 0"):
        timeit(lambda: None, **kw)


def test_peak_memory_counts_the_largest_set_alive_at_once():
    def two_at_once():
        a = torch.ones(1000)            # 4,000 bytes
        b = torch.ones(2000)            # 8,000 bytes, both alive: 12,000
        del a, b
        c = torch.ones(500)             # 2,000 bytes, after both were freed
        return c.sum()

    peak = peak_memory(two_at_once)
    assert 12_000 <= peak < 12_000 + 64   # + the scalar sum


def test_peak_memory_counts_views_once_and_grows_with_size():
    x = torch.randn(64, 64)

    def views():
        y = x * 2                    # 16 KiB
        return y.view(-1)[:10], y.t(), y[0]

    assert 64 * 64 * 4 <= peak_memory(views) < 64 * 64 * 4 + 64
    small = peak_memory(lambda: torch.randn(8, 8) @ torch.randn(8, 8))
    large = peak_memory(lambda: torch.randn(64, 64) @ torch.randn(64, 64))
    assert large == pytest.approx(64 * small, rel=0.01)


# --- the benchmark command: python -m diffnb.bench ---------------------------------------------

import itertools  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402

from torch import nn  # noqa: E402

from diffnb import bench  # noqa: E402
from diffnb.fast import FastPath  # noqa: E402
from diffnb.models import UNet  # noqa: E402


def test_count_flops_counts_two_per_multiply_add_and_the_backward_pass():
    model = nn.Linear(8, 4, bias=False)
    forward, both = bench.count_flops(model, lambda m, x: m(x).sum(), torch.randn(2, 8))
    assert forward == 2 * 2 * 8 * 4
    assert both == 2 * forward          # backward: the weight's gradient (the input needs none)
    assert model.weight.grad is None    # the count leaves no gradients behind
    _, both = bench.count_flops(model, lambda m, x: m(x).sum(), torch.randn(2, 8, requires_grad=True))
    assert both == 3 * forward          # and the input's too, when it asks for one


@pytest.mark.parametrize("name, bf16, peak", [
    ("NVIDIA H100 80GB HBM3", True, 989.4), ("NVIDIA H100 PCIe", True, 756.0),
    ("NVIDIA H100 PCIe", False, 51.2), ("NVIDIA A100-SXM4-40GB", True, 312.0),
    ("Tesla T4", True, None), ("Tesla T4", False, 8.1), ("CPU (AMD EPYC), 2 threads", False, None),
])
def test_device_peak(name, bf16, peak):
    assert bench.device_peak(name, bf16) == peak


def test_the_command_writes_json_and_prints_the_table(tmp_path, capsys, one_thread):
    out = tmp_path / "cpu.json"
    args = ["--device", "cpu", "--sizes", "32", "--batch-size", "2", "--steps", "1", "--sample-steps", "1",
            "--repeat", "1", "--warmup", "0", "--workers", "0",
            "--variants", "fp32 eager", "+ fused AdamW", "+ bf16 autocast", "--profile", "--out", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["versions"]["torch"] == torch.__version__
    assert result["command"] == "python -m diffnb.bench " + shlex.join(args)    # pastes back as it ran
    assert "'fp32 eager'" in result["command"]
    assert [r["variant"] for r in result["rows"]] == ["fp32 eager", "+ fused AdamW", "+ bf16 autocast"]
    fp32, fused, bf16 = result["rows"]
    assert fp32["losses_read_every_step"] and not fused["losses_read_every_step"]
    assert not fp32["fast_path"]["sdpa"] and not fp32["fast_path"]["fused_adamw"]
    assert fused["fast_path"]["sdpa"] and fused["fast_path"]["fused_adamw"] and bf16["fast_path"]["bf16"]
    assert not any(r["fast_path"]["pinned"] for r in result["rows"])     # no pinning without CUDA
    for r in result["rows"]:
        assert r["train_images_per_second"] > 0 and r["sample_ms_per_image_step"] > 0
        assert r["peak_memory_mb"] > 0 and r["train_tflops"] > 0 and r["peak_fraction"] is None
        assert r["ddim20_ms_per_image"] == pytest.approx(20 * r["sample_ms_per_image_step"])
        assert r["ddim20_ms_one_image"] > 0
    # the profile: no GPU, so operators only; without the fused update AdamW loops over the weights
    profiles = [r["profile"] for r in result["rows"]]
    assert all(p["steps"] == 1 and "gpu_busy" not in p for p in profiles)
    assert profiles[0]["operators_per_step"] > profiles[1]["operators_per_step"] + 500 > 1000
    assert "aten::convolution_backward" in [op["name"] for op in profiles[1]["host_top"]]
    # the CPU's vector instructions: AVX2 or AVX512 decide whether bfloat16 runs at speed
    assert f", {torch.backends.cpu.get_cpu_capability()}), " in result["device_name"]
    model = result["models"]["32"]
    assert model["parameters"] == sum(p.numel() for p in UNet(**bench.BENCH_MODELS[32][1]).parameters())
    assert 2 < model["gflop_per_image_train"] / model["gflop_per_image_forward"] < 4
    assert result["loader"][0]["workers"] == 0 and result["loader"][0]["images_per_second"] > 0
    assert [t["threads"] for t in result["threads"]] == list(range(1, len(result["threads"]) + 1))
    printed = capsys.readouterr().out
    assert "| 32 | fp32 eager |" in printed and "| 1.00x |" in printed and str(out) in printed
    assert "of peak" not in printed          # no data-sheet peak for a CPU: no empty column
    assert "| size | variant | operators/step |\n" in printed and "| 32 | + fused AdamW | " in printed
    page = bench.results_markdown([result])
    assert f"### {result['device_name']}: 32 pixels, profiled\n" in page and "No GPU has run the benchmark" in page
    assert "- 32 pixels: the default path (row \"+ fused AdamW\") trains" in page


def test_a_profile_counts_operators_launches_kernels_and_the_gpus_busy_time():
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    ids = itertools.count()

    def event(name, start, end, parent=None, **kw):
        e = FunctionEvent(id=next(ids), name=name, thread=0, start_us=start, end_us=end, **kw)
        if parent is not None:
            e.set_cpu_parent(parent)
            parent.append_cpu_child(e)
        return e

    gpu = dict(device_type=DeviceType.CUDA)
    conv = event("aten::conv2d", 0, 10)
    inner = event("aten::convolution", 1, 9, conv)
    add = event("aten::add", 10, 12)
    region = event("Torch-Compiled Region: 0/0", 12, 20)      # record_function: not an operator
    events = [conv, inner, event("cudaLaunchKernel", 2, 3, inner), add, event("cudaLaunchKernel", 10.5, 11, add),
              region, event("aten::mm", 13, 15, region), event("cudaGraphLaunch", 16, 17, region),
              event("conv_kernel", 3, 8, **gpu), event("norm_kernel", 6, 9, **gpu),     # overlapping kernels
              event("add_kernel", 11, 12, **gpu), event("Memcpy HtoD (Pinned -> Device)", 0, 1, **gpu),
              event("Torch-Compiled Region: 0/0", 3, 20, is_user_annotation=True, **gpu)]
    summary = bench.summarise_profile(events, steps=1)
    assert summary["operators_per_step"] == 3           # conv2d (convolution inside it), add, mm
    assert summary["launches_per_step"] == 3
    assert summary["launch_calls_per_step"] == {"cudaGraphLaunch": 1, "cudaLaunchKernel": 2}
    assert summary["kernels_per_step"] == 3
    assert summary["gpu_busy"] == pytest.approx(7 / 20)      # 3..9 and 11..12 of 0..20
    assert summary["gpu_ms_per_step"] == pytest.approx(0.009)
    assert [k["name"] for k in summary["gpu_top"]] == ["conv_kernel", "norm_kernel", "add_kernel"]
    top = summary["host_top"][0]      # its own time: 1..9 less the launch within it
    assert top["name"] == "aten::convolution" and top["ms_per_step"] == pytest.approx(0.007)
    halved = bench.summarise_profile(events, steps=2)
    assert halved["kernels_per_step"] == 1.5 and halved["gpu_busy"] == summary["gpu_busy"]
    assert "gpu_busy" not in bench.summarise_profile(events[:8], steps=1)     # no kernels: a CPU run


@pytest.mark.parametrize("args, message", [
    (["--sizes", "48"], "'48': allowed sizes are 32, 64, 128"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--variants", "turbo"], "invalid choice: 'turbo'"),
    (["--repeat", "0"], "'0': expected an integer of at least 1"),
])
def test_bad_arguments_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_device_the_machine_lacks_is_named(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda"])
    assert "--device cuda: device 'cuda' was asked for but is not available" in capsys.readouterr().err


def test_the_page_says_what_is_unmeasured_without_results():
    page = bench.results_markdown([])
    assert "No benchmark result has been recorded yet." in page and "No GPU has run the benchmark" in page


def _result(device, name, sizes=(64,)):
    rows = []
    for size in sizes:
        for variant, fields, sync in (v for v in bench.VARIANTS if v[0] in ("fp32 eager", "+ bf16 autocast")):
            path = FastPath(**fields).as_dict()
            fast = variant != "fp32 eager"
            rows.append({"size": size, "variant": variant, "fast_path": path, "losses_read_every_step": sync,
                         "batch": 128, "train_images_per_second": 4000.0 if fast else 1000.0,
                         "peak_memory_mb": 100.0, "sample_ms_per_image_step": 0.5 if fast else 1.0,
                         "ddim20_ms_per_image": 10.0 if fast else 20.0,
                         "ddim20_ms_one_image": 30.0 if fast else 70.0, "train_tflops": 100.0 if fast else 25.0,
                         "peak_fraction": (0.1 if fast else 0.4) if device == "cuda" else None})
    auto = FastPath(bf16=True, pinned=True, fused_adamw=True) if device == "cuda" \
        else FastPath(fused_adamw=True, max_batch=256)
    return {"device": device, "device_name": name, "auto_fast_path": auto.as_dict(), "date": "2026-11-22",
            "versions": {"torch": torch.__version__, "cuda": "13.0", "python": "3.11"}, "command": "x",
            "settings": {"threads": 2, "repeat": 5, "warmup": 2, "steps": 10, "sample_steps": 10},
            "rows": rows, "loader": [], "threads": []}


def test_the_page_puts_gpus_first_and_reads_their_speed_up():
    cpu, gpu = _result("cpu", "CPU (x), 2 threads"), _result("cuda", "NVIDIA H100 80GB HBM3")
    page = bench.results_markdown([cpu, gpu])
    assert page.index("### NVIDIA H100 80GB HBM3") < page.index("### CPU (x)")
    assert "No GPU has run the benchmark" not in page
    assert "| of peak |" in page and "| 10.0% |" in page
    assert "- 64 pixels: the default path (row \"+ bf16 autocast\") trains 4.00x as fast as fp32 eager" in page
    assert "20 DDIM steps take 10.0 ms per image in batches of 128, and 30.0 ms for one image alone." in page
    assert "| 30.0 |" in page and "| 70.0 |" in page        # the one-image column
    assert ("the fastest row trains 4.00x as fast as fp32 eager, where the aim is at least 3x (**met**); "
            "20 DDIM steps make one image in 30.0 ms on the row \"+ bf16 autocast\", where the aim is under 50 ms "
            "on an H100-class GPU (**met**).") in page
    assert page.count("Against the aims") == 1      # a CPU run is not held to the GPU's aims
    assert "operators/step" not in page             # no row was profiled
    gpu["rows"][1]["profile"] = {"steps": 10, "operators_per_step": 1234.0, "launches_per_step": 20.0,
                                 "kernels_per_step": 900.0, "gpu_busy": 0.87, "gpu_ms_per_step": 21.5}
    table = bench.format_table(gpu)
    assert ("| size | variant | operators/step | kernel launches/step | kernels/step | GPU busy "
            "| GPU kernels ms/step |") in table
    assert "| 64 | + bf16 autocast | 1,234 | 20 | 900 | 87% | 21.50 |" in table
    gpu["rows"][0]["profile"] = {"error": "CUPTI could not start"}     # a failed profile: no row
    assert bench.format_table(gpu).count("| 64 | fp32 eager |") == 1
    assert "No GPU run has been profiled yet" in page
    assert "No GPU run has been profiled yet" not in bench.results_markdown([cpu, gpu])


def test_the_aims_can_be_missed():
    gpu = _result("cuda", "NVIDIA H100 80GB HBM3")
    for row in gpu["rows"]:
        if row["variant"] != "fp32 eager":
            row["train_images_per_second"], row["ddim20_ms_one_image"] = 2500.0, 60.0
    lines = bench.aim_lines(gpu)
    assert "trains 2.50x as fast as fp32 eager, where the aim is at least 3x (**not met**)" in lines[0]
    assert "make one image in 60.0 ms on the row \"+ bf16 autocast\", where the aim is under 50 ms" in lines[0]
    assert lines[0].endswith("(**not met**).")
    for row in gpu["rows"]:     # a file from before one image was timed: judged by the batch's share
        del row["ddim20_ms_one_image"]
    line = bench.aim_lines(gpu)[0]
    assert "20 DDIM steps take 10.0 ms per image in batches of 128 on the default path" in line
    assert line.endswith("(**met**).") and "| – |" in bench.format_table(gpu)
    assert bench.aim_lines(_result("cuda", "NVIDIA H100 80GB HBM3", sizes=(32,))) == []


def test_the_page_reads_the_default_path_as_the_book_chooses_it_now():
    gpu = _result("cuda", "NVIDIA H100 80GB HBM3")
    # a file from when FastPath.auto still turned channels-last on for CUDA
    gpu["auto_fast_path"] = FastPath(bf16=True, channels_last=True, pinned=True, fused_adamw=True).as_dict()
    old = next(v for v in bench.VARIANTS if v[0] == "+ channels-last")
    gpu["rows"].append({**gpu["rows"][1], "variant": old[0], "fast_path": FastPath(**old[1]).as_dict(),
                        "train_images_per_second": 2000.0})
    assert "the default path (row \"+ bf16 autocast\") trains 4.00x" in "\n".join(bench.summary_lines(gpu))
    for row in gpu["rows"]:         # a file from before cudnn_autotune existed: it was off
        del row["fast_path"]["cudnn_autotune"]
    assert "the default path (row \"+ bf16 autocast\") trains 4.00x" in "\n".join(bench.summary_lines(gpu))
    gpu["auto_fast_path"]["bf16"] = False       # a GPU without bfloat16: no row runs its default
    assert "the default path" not in "\n".join(bench.summary_lines(gpu))


def test_the_sampling_aim_is_judged_by_the_row_quickest_to_one_image():
    gpu = _result("cuda", "NVIDIA H100 80GB HBM3")
    graphs = next(v for v in bench.VARIANTS if v[0] == "CUDA graphs, no channels-last")
    gpu["rows"].append({**gpu["rows"][1], "variant": graphs[0], "fast_path": FastPath(**graphs[1]).as_dict(),
                        "train_images_per_second": 3500.0, "ddim20_ms_one_image": 20.0})
    gpu["rows"][1]["ddim20_ms_one_image"] = 400.0       # the default path, host-bound for one image
    line = bench.aim_lines(gpu)[0]
    assert "the fastest row trains 4.00x" in line       # training: still the fastest trainer
    assert ("20 DDIM steps make one image in 20.0 ms on the row \"CUDA graphs, no channels-last\" "
            "(400.0 ms on the default path), where the aim is under 50 ms") in line
    assert line.endswith("(**met**).")


def test_a_files_notes_follow_its_measurement_line():
    gpu = _result("cuda", "NVIDIA H100 80GB HBM3")
    gpu["notes"] = ["First note.", "Second note."]
    page = bench.results_markdown([gpu])
    assert "untimed ones; each run is 10 training steps or 10 DDIM steps. First note. Second note.\n" in page


def test_each_compiled_row_starts_from_a_fresh_compiler(monkeypatch, one_thread):
    # TorchDynamo's recompile limit counts across the process: without a reset, each compiled
    # row would inherit the graphs of the rows before it and fall back to eager sooner
    resets = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)      # no compiler on this CPU
    kw = dict(device=torch.device("cpu"), batch=2, steps=1, sample_steps=1, repeat=1, warmup=0)
    for name in ("+ fused AdamW", "+ torch.compile"):
        bench.bench_variant(32, next(v for v in bench.VARIANTS if v[0] == name), **kw)
        assert len(resets) == (name == "+ torch.compile")


def test_runs_of_one_device_appear_by_size():
    runs = [_result("cuda", "NVIDIA H100 80GB HBM3", sizes=(n,)) for n in (128, 64, 32)]
    page = bench.results_markdown(runs)
    assert page.index(": 32 pixels") < page.index(": 64 pixels") < page.index(": 128 pixels")


def test_an_interrupted_run_keeps_the_rows_it_finished(tmp_path, monkeypatch, one_thread):
    out = tmp_path / "cpu.json"
    real = bench.bench_variant

    def stop_at_64_sync(size, variant, *args, **kw):
        # a long compile cut short by a time limit, in the middle of a size
        if size == 64 and variant[0] == "+ no per-step sync":
            raise KeyboardInterrupt
        return real(size, variant, *args, **kw)

    monkeypatch.setattr(bench, "bench_variant", stop_at_64_sync)
    args = ["--device", "cpu", "--sizes", "32", "64", "--batch-size", "2", "--steps", "1",
            "--sample-steps", "1", "--repeat", "1", "--warmup", "0", "--workers", "0",
            "--variants", "fp32 eager", "+ no per-step sync", "--out", str(out)]
    with pytest.raises(KeyboardInterrupt):
        bench.main(args)
    result = json.loads(out.read_text())
    assert result["incomplete"] is True and result["command"] == "python -m diffnb.bench " + shlex.join(args)
    assert [(r["size"], r["variant"]) for r in result["rows"]] == [
        (32, "fp32 eager"), (32, "+ no per-step sync"), (64, "fp32 eager")]
    assert list(result["models"]) == ["32", "64"] and not list(tmp_path.glob("*.tmp"))
    monkeypatch.setattr(bench, "bench_variant", real)
    assert bench.main(args) == 0 and "incomplete" not in json.loads(out.read_text())


def test_the_page_names_the_gpu_sizes_still_unmeasured():
    def result(device, sizes):
        rows = [{"size": n, "variant": "fp32 eager", "fast_path": {"compile": False, "bf16": False},
                 "losses_read_every_step": True, "batch": 2, "train_images_per_second": 10.0,
                 "peak_memory_mb": 1.0, "sample_ms_per_image_step": 1.0, "ddim20_ms_per_image": 20.0,
                 "train_tflops": 0.1, "peak_fraction": None} for n in sizes]
        return {"device": device, "device_name": device, "auto_fast_path": {"bf16": False}, "rows": rows,
                "loader": [], "threads": [], "date": "2026-11-22", "command": "python -m diffnb.bench",
                "incomplete": True,
                "versions": {"torch": "2", "cuda": "13", "python": "3"},
                "settings": {"repeat": 5, "warmup": 2, "steps": 10, "sample_steps": 10, "threads": 16}}
    page = bench.results_markdown([result("cuda", [32])])
    assert "No GPU run has reached the 64-pixel UNet yet" in page and "No GPU has run" not in page
    assert "The run was cut short: it holds only the rows shown." in page
    page = bench.results_markdown([result("cuda", [32, 64])])
    assert "64-pixel UNet yet" not in page and "No GPU has run" not in page


@pytest.mark.parametrize("command, shown", [
    ("python -m diffnb.bench --sizes 64 --out /root/out/bench_64.json", "python -m diffnb.bench --sizes 64"),
    ("python -m diffnb.bench --out=/tmp/b.json --variants 'fp32 eager' '+ CUDA graphs'",
     "python -m diffnb.bench --variants 'fp32 eager' '+ CUDA graphs'"),
    ("python -m diffnb.bench --device cpu --repeat 5", "python -m diffnb.bench --device cpu --repeat 5"),
])
def test_the_page_shows_each_command_without_the_file_it_wrote(command, shown):
    assert bench._shown_command(command) == shown
