"""The training loop's EMA, checkpoints and resume (diffnb.train)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffnb import data
from diffnb.fast import FastModel, FastPath
from diffnb.train import CHECKPOINT_FORMAT, EMA, load_checkpoint, train


class Interrupt(Exception):
    pass


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.GroupNorm(4, 16), nn.SiLU(), nn.Dropout(0.1), nn.Linear(16, 2))


def _loss(m, x):
    # global-RNG noise, as the DDPM loss draws it: resume must restore the RNG state too
    noise = torch.randn_like(x)
    return ((m(x + noise) - noise) ** 2).mean()


def _batches(stop_at=None):
    """Batches drawn with the global RNG (restored on resume); raises at draw ``stop_at``."""
    calls = [0]

    def draw():
        calls[0] += 1
        if stop_at is not None and calls[0] == stop_at:
            raise Interrupt
        return torch.randn(32, 2)
    return draw


def _run(tmp_path, *, stop_at=None, resume=False, steps=25, ema_decay=0.9, name="ck.pt", model=None,
         batches=None, **kw):
    torch.manual_seed(123)
    model = model or _model()
    return model, train(model, _loss, batches or _batches(stop_at), steps=steps, lr=1e-2,
                        ema_decay=ema_decay, checkpoint=tmp_path / name, checkpoint_every=10,
                        resume=resume, show_progress=False, **kw)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    ref_model, ref = _run(tmp_path, name="ref.pt")
    with pytest.raises(Interrupt):
        _run(tmp_path, stop_at=17)                 # dies during step 17; last checkpoint at 10
    assert load_checkpoint(tmp_path / "ck.pt")["step"] == 10
    model, res = _run(tmp_path, resume=True, model=_model(seed=99))   # fresh weights: all from file
    assert res.resumed_from == 10
    assert _same_weights(model, ref_model)
    assert _same_weights(res.ema, ref.ema)
    assert res.losses == ref.losses and len(res.losses) == 25
    assert not _same_weights(model, _model(seed=99))


def test_a_resumed_run_keeps_the_adamw_of_its_checkpoint(tmp_path):
    def wrapped(fused, seed=0):
        return FastModel(_model(seed), FastPath(fused_adamw=fused))

    for fused in (False, True):     # the run began with one AdamW and resumes under the other path
        ref_model, _ = _run(tmp_path, name=f"ref{fused}.pt", model=wrapped(fused))
        with pytest.raises(Interrupt):
            _run(tmp_path, stop_at=17, name=f"ck{fused}.pt", model=wrapped(fused))
        model, res = _run(tmp_path, resume=True, name=f"ck{fused}.pt", model=wrapped(not fused, seed=99))
        assert res.resumed_from == 10 and _same_weights(model, ref_model)
        assert bool(load_checkpoint(tmp_path / f"ck{fused}.pt")["optimizer"]["param_groups"][0]["fused"]) is fused


def test_resume_with_image_batches_follows_the_same_stream(tmp_path):
    ds = data.image_dataset(torch.randint(0, 256, (40, 4, 4), dtype=torch.uint8).numpy())
    ds = ds.with_transform(data._tensor_transform(4, 1))

    def run(stop_at=None, resume=False, name="img.pt"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Unflatten(1, (1, 4, 4)))
        stream = data.ImageBatches(ds, 8, seed=5)
        seen = []

        def loss(m, x):
            seen.append(x.sum().item())
            if stop_at is not None and len(seen) == stop_at:
                raise Interrupt
            return ((m(x + torch.randn_like(x)) - x) ** 2).mean()   # draws from the global RNG
        train(model, loss, stream, steps=23, lr=1e-2, checkpoint=tmp_path / name, checkpoint_every=10,
              resume=resume, show_progress=False)
        return model, seen

    ref_model, ref_seen = run(name="ref.pt")
    with pytest.raises(Interrupt):
        run(stop_at=15)
    model, seen = run(resume=True)
    assert seen == ref_seen[10:]      # batches 10..22, exactly as the uninterrupted run saw them
    assert _same_weights(model, ref_model)


def test_completed_run_resumes_to_nothing(tmp_path):
    _, first = _run(tmp_path)
    model, again = _run(tmp_path, resume=True, batches=lambda: pytest.fail("no batch should be drawn"))
    assert again.resumed_from == 25 and again.losses == first.losses
    assert again.seconds == pytest.approx(first.seconds, abs=0.5)


def test_resume_without_a_file_starts_fresh(tmp_path):
    _, res = _run(tmp_path, resume=True, name="new.pt")
    assert res.resumed_from == 0 and (tmp_path / "new.pt").exists()


def test_checkpoint_loads_with_weights_only(tmp_path):
    _run(tmp_path)
    state = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 25 and state["steps"] == 25
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_checkpoint_is_refused_and_kept(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read checkpoint .*damaged"):
        _run(tmp_path, resume=True)
    assert path.read_bytes() == b"not a checkpoint at all"


def test_truncated_checkpoint_is_refused_and_kept(tmp_path):
    _run(tmp_path)
    path = tmp_path / "ck.pt"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        _run(tmp_path, resume=True)
    assert path.read_bytes() == good[: len(good) // 2]


def test_foreign_torch_file_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "ck.pt")
    with pytest.raises(ValueError, match="not a diffnb training checkpoint"):
        _run(tmp_path, resume=True)


def test_mismatched_model_is_refused_before_anything_is_written(tmp_path):
    _run(tmp_path)
    before = (tmp_path / "ck.pt").read_bytes()
    other = nn.Sequential(nn.Linear(2, 8), nn.GroupNorm(4, 8), nn.SiLU(), nn.Dropout(0.1), nn.Linear(8, 2))
    untouched = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit this model .*'0.weight' has shape \(16, 2\) there "
                                         r"and \(8, 2\) here"):
        _run(tmp_path, resume=True, model=other)
    assert (tmp_path / "ck.pt").read_bytes() == before
    assert all(torch.equal(v, untouched[k]) for k, v in other.state_dict().items())


def test_mismatched_steps_and_ema_are_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(ValueError, match="run of 25 steps, not 30"):
        _run(tmp_path, resume=True, steps=30)
    with pytest.raises(ValueError, match="has EMA weights, but ema_decay is None"):
        _run(tmp_path, resume=True, ema_decay=None)


def test_resume_needs_a_path():
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        train(_model(), _loss, _batches(), steps=2, resume=True, show_progress=False)


@pytest.mark.parametrize("every", [0, -5, 2.5, True])
def test_checkpoint_every_must_be_a_positive_integer(tmp_path, every):
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        train(_model(), _loss, _batches(), steps=2, checkpoint=tmp_path / "c.pt", checkpoint_every=every,
              show_progress=False)


def test_no_checkpoint_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(_model(), _loss, _batches(), steps=3, show_progress=False)
    assert list(tmp_path.iterdir()) == []


# --- EMA ------------------------------------------------------------------------------------

def test_ema_is_the_exponential_average_with_warm_up():
    live = nn.Linear(1, 1, bias=False)
    ema = EMA(live, decay=0.5)
    values, expected = [1.0, 3.0, -2.0, 4.0], live.weight.item()
    for k, v in enumerate(values):
        live.weight.data.fill_(v)
        ema.update(live)
        d = min(0.5, (1 + k) / (10 + k))
        expected = d * expected + (1 - d) * v
        assert ema.module.weight.item() == pytest.approx(expected)
    assert not ema.module.weight.requires_grad and not ema.module.training


def test_ema_decay_zero_copies_and_rejects_bad_decay():
    live = nn.Linear(2, 2)
    ema = EMA(live, decay=0.0)
    live.weight.data.add_(1.0)
    ema.update(live)
    assert torch.equal(ema.module.weight, live.weight)
    for bad in (1.0, -0.1, 2):
        with pytest.raises(ValueError, match="decay must be in"):
            EMA(live, decay=bad)


def test_train_returns_ema_that_lags_the_model(tmp_path):
    model, res = _run(tmp_path)
    assert res.ema is not model and not _same_weights(res.ema, model)
    _, plain = _run(tmp_path, ema_decay=None, name="plain.pt")
    assert plain.ema is None


def test_amp_runs_under_bfloat16_autocast_on_cpu():
    seen = []

    def loss(m, x):
        y = m[0](x)
        seen.append(y.dtype)
        return (y.float() ** 2).mean()
    model = nn.Sequential(nn.Linear(2, 4))
    res = train(model, loss, lambda: torch.randn(8, 2), steps=3, amp=True, show_progress=False)
    assert seen == [torch.bfloat16] * 3
    assert model[0].weight.dtype == torch.float32 and all(map(torch.isfinite, map(torch.tensor, res.losses)))
    seen.clear()
    train(model, loss, lambda: torch.randn(8, 2), steps=1, show_progress=False)   # default: off on CPU
    assert seen == [torch.float32]
