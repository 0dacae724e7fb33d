"""The training store against a torch training loop: gradient accumulation (loss / K, K backwards, one step),
global-norm clipping, bf16 weights with fp32 masters; chunking that changes nothing; checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import runtime.optim as optim
from runtime.optim import SGD, AdamW
from runtime.training_store import StepUpdate, TrainingStepError, TrainingStore, TrainingStoreError, clip_coefficient
from tests.training.driver import train
from tests.training.util import torch_sqrt
from wafercc.ir import WaferError


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5))


def batches(steps: int, k: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    return [[(torch.randn(8, 20, generator=g), torch.randn(8, 5, generator=g)) for _ in range(k)] for _ in range(steps)]


def torch_loop(data, make_opt, clip=None):
    """The user's loop: each micro-batch's mean loss divided by K, K backwards, clip, step."""
    model = mlp()
    opt = make_opt(model.parameters())
    norms = []
    for micro in data:
        opt.zero_grad()
        for x, y in micro:
            (torch.nn.functional.mse_loss(model(x), y) / len(micro)).backward()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)))
        opt.step()
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}, norms


def store_loop(path: Path, data, cfg, clip=None, weight_dtype="f32", chunk=1 << 18, piece=None):
    """The same training through the store: each micro-batch's gradient of its own mean loss (no 1/K),
    computed from the store's masters, fed in pieces."""
    model = mlp()
    init = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    ts = TrainingStore.create(path, init, cfg, weight_dtype=weight_dtype, chunk=chunk)
    norms = []
    for micro in data:
        st = ts.begin_step(micro_batches=len(micro), clip_norm=clip)
        for x, y in micro:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(torch.from_numpy(ts.master(n).copy()))
            model.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            for n, p in model.named_parameters():
                g = p.grad.numpy().reshape(-1)
                step = piece or g.size
                for a in range(0, g.size, step):
                    st.add_grad(n, g[a : a + step], a)
            st.end_micro_batch()
        norms.append(st.finish().total_norm)
    return ts, norms


SGD_KW = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
ADAM_KW = dict(lr=1e-2, amsgrad=True)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_accumulation_equals_torch_bit_for_bit_sgd(tmp_path, k):
    """K a power of two: dividing each micro-batch loss by K scales every gradient by exactly 1/K, so torch's
    sum of scaled gradients and our scaled sum are the same numbers."""
    data = batches(4, k)
    want, _ = torch_loop(data, lambda ps: torch.optim.SGD(ps, **SGD_KW))
    ts, _ = store_loop(tmp_path / "s", data, SGD(**SGD_KW))
    for n, w in want.items():
        assert np.array_equal(ts.master(n), w), n
    ts.close()


def test_accumulation_equals_torch_bit_for_bit_adamw_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    data = batches(3, 4)
    want, _ = torch_loop(data, lambda ps: torch.optim.AdamW(ps, **ADAM_KW))
    ts, _ = store_loop(tmp_path / "s", data, AdamW(**ADAM_KW), weight_dtype="bf16", piece=100, chunk=64)
    for n, w in want.items():
        assert np.array_equal(ts.master(n), w), n
        bf = torch.from_numpy(w).to(torch.bfloat16).view(torch.int16).numpy()
        assert ts.weight(n).dtype == ml_dtypes.bfloat16
        assert np.array_equal(ts.weight(n).view(np.int16), bf), n
    ts.close()


def test_accumulation_k3_is_torch_up_to_rounding(tmp_path):
    """K = 3: torch scales the loss by fl(1/3) before the backward, we divide the summed gradient by 3; the
    two differ in rounding only."""
    data = batches(4, 3)
    want, _ = torch_loop(data, lambda ps: torch.optim.SGD(ps, **SGD_KW))
    ts, _ = store_loop(tmp_path / "s", data, SGD(**SGD_KW))
    for n, w in want.items():
        np.testing.assert_allclose(ts.master(n), w, rtol=1e-5, atol=1e-7)
    ts.close()


@pytest.mark.parametrize("clip", [0.05, 1e6])
def test_clipping_equals_torch(tmp_path, clip, monkeypatch):
    """clip_grad_norm_ over the accumulated gradients: the norm within float32 rounding of torch's (torch
    sums squares in float32, we in float64), so the clip coefficient and then AdamW's normalized update differ
    in the last bits: measured max |difference| ~1e-8 on parameters of size ~0.1."""
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    data = batches(4, 2)
    want, tnorms = torch_loop(data, lambda ps: torch.optim.AdamW(ps, **ADAM_KW), clip=clip)
    ts, norms = store_loop(tmp_path / "s", data, AdamW(**ADAM_KW), clip=clip, piece=77, chunk=128)
    np.testing.assert_allclose(norms, tnorms, rtol=2e-6)
    for n, w in want.items():
        np.testing.assert_allclose(ts.master(n), w, rtol=1e-5, atol=1e-6)
    ts.close()


def test_clip_coefficient_is_torchs_arithmetic():
    for norm in [0.0, 1e-8, 0.3, 1.0, 2.5, 1234.5678, 3e38]:
        for max_norm in [0.0, 0.05, 1.0, 7.0]:
            t = torch.tensor(norm, dtype=torch.float32)
            want = torch.clamp(max_norm / (t + 1e-6), max=1.0)
            got = clip_coefficient(norm, max_norm)[1]
            assert np.float32(want.item()) == got, (norm, max_norm)


def test_chunking_changes_nothing(tmp_path):
    """Updates on 512-element chunks from 400-element gradient pieces give the same bytes as whole tensors."""
    train(tmp_path / "a", steps=3, chunk=512, piece=400)
    train(tmp_path / "b", steps=3, chunk=1 << 20, piece=1 << 20)
    ta, tb = (json.loads((tmp_path / d / "checkpoint.json").read_text())["tensors"] for d in "ab")
    assert ta == tb


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path):
    train(tmp_path / "ref", steps=5, every=2)
    train(tmp_path / "r", steps=2, every=2)
    train(tmp_path / "r", steps=3, every=2)
    train(tmp_path / "r", steps=5, every=2)
    ref, got = (json.loads((tmp_path / d / "checkpoint.json").read_text()) for d in ("ref", "r"))
    assert got["step"] == 5 and got["tensors"] == ref["tensors"] and got["data"] == {"pos": 5}
    with TrainingStore(tmp_path / "r") as a, TrainingStore(tmp_path / "ref") as b:
        for n in a.params:
            assert np.array_equal(a.weight(n), b.weight(n)) and np.array_equal(a.master(n), b.master(n))


def test_files_are_safetensors_with_kinds(tmp_path):
    ts = train(tmp_path / "s", steps=3, optimizer=SGD(lr=0.1, momentum=0.9))
    doc = json.loads((tmp_path / "s" / "checkpoint.json").read_text())
    slot = tmp_path / "s" / f"slot{doc['slot']}"
    w = load_file(str(slot / "weights.safetensors"))
    assert w["a"].dtype == ml_dtypes.bfloat16 and w["b"].dtype == np.float32 and w["bn"].tolist() == [3.0] * 5
    m = load_file(str(slot / "masters.safetensors"))
    assert set(m) == {"a"} and np.array_equal(m["a"].astype(ml_dtypes.bfloat16).view(np.int16), w["a"].view(np.int16))
    o = load_file(str(slot / "optimizer.safetensors"))
    assert set(o) == {f"{n}/{k}" for n in "abc" for k in ("momentum_buffer", "step")}
    assert float(o["a/step"]) == 3.0
    kinds = {f: {n: e["kind"] for n, e in doc["tensors"][f].items()} for f in doc["tensors"]}
    assert kinds["weights"] == {"a": "parameter", "b": "parameter", "c": "parameter", "bn": "buffer"}
    assert set(kinds["masters"].values()) == {"master"} and set(kinds["optimizer"].values()) == {"optimizer"}
    assert doc["optimizer"] == {
        "type": "SGD",
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
        "maximize": False,
    }
    assert ts.step == 3


def test_parameter_without_gradient_is_left_alone(tmp_path):
    """As torch skips a parameter whose .grad is None: no update, no step counted, no weight decay."""
    cfg = AdamW(lr=0.1, weight_decay=0.5)
    ts = TrainingStore.create(tmp_path / "s", {"x": np.ones(10, np.float32), "y": np.ones(3, np.float32)}, cfg)
    st = ts.begin_step()
    st.add_grad("x", np.ones(10, np.float32))
    st.end_micro_batch()
    assert st.finish().updated == ["x"]
    assert np.array_equal(ts.master("y"), np.ones(3, np.float32)) and float(ts.state("y")["step"]) == 0.0
    assert float(ts.state("x")["step"]) == 1.0 and not np.array_equal(ts.master("x"), np.ones(10, np.float32))
    ts.commit()
    ts.close()
    with TrainingStore(tmp_path / "s") as ts:  # reopens (checksums verified) at step 1
        assert ts.step == 1 and float(ts.state("x")["step"]) == 1.0


def test_misuse_is_refused_clearly(tmp_path):
    ts = TrainingStore.create(tmp_path / "s", {"x": np.zeros(10, np.float32)}, SGD(lr=0.1))
    st = ts.begin_step(micro_batches=2)
    cases = [
        (lambda: st.add_grad("nope", np.zeros(3, np.float32)), "'nope' is not a trainable parameter"),
        (lambda: st.add_grad("x", np.zeros(3, np.float64)), "MemoryX takes f32, bf16 or f16"),
        (lambda: st.add_grad("x", np.zeros(3, np.float32), 8), "[8, 11) of 'x' is outside its 10 elements"),
        (lambda: st.finish(), "has seen 0 of its 2 micro-batches"),
        (lambda: ts.commit(), "call finish() before commit"),
        (lambda: ts.begin_step(), "has begun and not finished"),
    ]
    for fn, words in cases:
        with pytest.raises(TrainingStepError) as e:
            fn()
        assert words in str(e.value) and isinstance(e.value, WaferError)
    st.add_grad("x", np.zeros(6, np.float32))
    with pytest.raises(TrainingStepError, match=r"\[3, 5\) of 'x' overlaps"):
        st.add_grad("x", np.zeros(2, np.float32), 3)
    with pytest.raises(TrainingStepError, match="delivered 6 of the 10 gradient elements of 'x'"):
        st.end_micro_batch()
    for bad in (0, 1.5, True):
        with pytest.raises(TrainingStepError, match="micro_batches must be an integer >= 1"):
            StepUpdate(ts, bad, None)
    with pytest.raises(TrainingStepError, match="clip_norm must be a finite number >= 0"):
        StepUpdate(ts, 1, -1.0)
    ts.close()


def test_store_errors(tmp_path):
    ts = train(tmp_path / "s", steps=2)
    with pytest.raises(TrainingStoreError, match="exists and is not an empty directory"):
        TrainingStore.create(tmp_path / "s", {"x": np.zeros(1, np.float32)}, SGD(lr=1))
    with TrainingStore(tmp_path / "s"):
        with pytest.raises(TrainingStoreError, match="open in another process"):
            TrainingStore(tmp_path / "s")
    with pytest.raises(TrainingStoreError, match="has no checkpoint.json"):
        TrainingStore(tmp_path)
    slot = json.loads((tmp_path / "s" / "checkpoint.json").read_text())["slot"]
    f = tmp_path / "s" / f"slot{slot}" / "optimizer.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0x40
    f.write_bytes(bytes(raw))
    with pytest.raises(TrainingStoreError, match="does not match its sha256 in checkpoint.json"):
        TrainingStore(tmp_path / "s")
    (tmp_path / "s" / "checkpoint.json").write_text('{"format": "something else"}')
    with pytest.raises(TrainingStoreError, match="is not a wafercc-memoryx-train/1 checkpoint record") as e:
        TrainingStore(tmp_path / "s")
    assert not str(e.value).startswith("error") and ts.step == 2
    with pytest.raises(TrainingStoreError, match="weight dtype must be one of f32, bf16, f16"):
        TrainingStore.create(tmp_path / "t", {"x": np.zeros(1, np.float32)}, SGD(lr=1), weight_dtype="i8")
    assert not (tmp_path / "t").exists()


def test_chunks_in_any_order(tmp_path):
    """Gradient pieces delivered back to front: the same numbers (the update is elementwise); the checksums,
    which could not be taken as the chunks were written, are taken at commit (and verified on reopening)."""
    train(tmp_path / "a", steps=3)
    train(tmp_path / "b", steps=3, reverse=True)
    ta, tb = (json.loads((tmp_path / d / "checkpoint.json").read_text())["tensors"] for d in "ab")
    assert ta == tb
    TrainingStore(tmp_path / "b").close()


def test_rollback_forgets_a_failed_step(tmp_path):
    train(tmp_path / "ref", steps=3)
    train(tmp_path / "s", steps=2)
    with TrainingStore(tmp_path / "s") as ts:
        st = ts.begin_step(micro_batches=2, clip_norm=None)
        st.add_grad("a", np.ones(100, np.float32))
        with pytest.raises(TrainingStepError, match="delivered 100 of the 1517"):
            st.end_micro_batch()
        ts.rollback()
        assert ts.step == 2 and ts.current == ts.committed
        with pytest.raises(TrainingStepError, match="step 3 is over"):
            st.add_grad("b", np.ones(3, np.float32))
    train(tmp_path / "s", steps=3)
    ref, got = (json.loads((tmp_path / d / "checkpoint.json").read_text())["tensors"] for d in ("ref", "s"))
    assert got == ref


def test_learning_rate_schedule_equals_torch(tmp_path):
    """set_optimizer between steps, as a scheduler sets param_groups' lr: bit for bit with torch."""
    from dataclasses import replace

    data = batches(5, 1)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.3)
    for micro in data:
        opt.zero_grad()
        for x, y in micro:
            torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
    init = {n: p.detach().numpy().copy() for n, p in mlp().named_parameters()}
    ts = TrainingStore.create(tmp_path / "s", init, SGD(lr=0.1, momentum=0.9))
    twin = mlp()
    for i, micro in enumerate(data):
        ts.set_optimizer(replace(ts.optimizer, lr=0.1 * 0.3 ** (i // 2)))
        st = ts.begin_step()
        with torch.no_grad():
            for n, p in twin.named_parameters():
                p.copy_(torch.from_numpy(ts.master(n).copy()))
        twin.zero_grad()
        torch.nn.functional.mse_loss(twin(micro[0][0]), micro[0][1]).backward()
        for n, p in twin.named_parameters():
            st.add_grad(n, p.grad.numpy())
        st.end_micro_batch()
        st.finish()
    for n, p in model.named_parameters():
        assert np.array_equal(ts.master(n), p.detach().numpy()), n
    ts.commit()
    ts.close()
    with TrainingStore(tmp_path / "s") as ts:
        assert ts.optimizer.lr == 0.1 * 0.3**2  # the schedule's value is part of the checkpoint
        with pytest.raises(optim.OptimizerConfigError, match="has SGD state"):
            ts.set_optimizer(AdamW())


def test_killed_creation_leaves_nothing_behind(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".s.wafercc-tmp-{dead}-abc"
    stale.mkdir()
    (stale / "x").write_text("half")
    TrainingStore.create(tmp_path / "s", {"x": np.zeros(3, np.float32)}, SGD(lr=1)).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_parameter_groups_equal_torch(tmp_path, monkeypatch):
    """torch's parameter groups (weight decay on weights, none on biases, a different lr) as overrides."""
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    data = batches(3, 2)
    model = mlp()
    names = [n for n, _ in model.named_parameters()]
    biases = [n for n in names if n.endswith("bias")]
    params = dict(model.named_parameters())
    topt = torch.optim.AdamW(
        [
            {"params": [params[n] for n in names if n not in biases]},
            {"params": [params[n] for n in biases], "weight_decay": 0.0, "lr": 3e-2},
        ],
        lr=1e-2,
        weight_decay=0.1,
    )
    for micro in data:
        topt.zero_grad()
        for x, y in micro:
            (torch.nn.functional.mse_loss(model(x), y) / len(micro)).backward()
        topt.step()
    override = {n: AdamW(lr=3e-2, weight_decay=0.0) for n in biases}
    ts = TrainingStore.create(
        tmp_path / "s",
        {n: p.detach().numpy().copy() for n, p in mlp().named_parameters()},
        AdamW(lr=1e-2, weight_decay=0.1),
        overrides=override,
    )
    twin = mlp()
    for micro in data:
        st = ts.begin_step(micro_batches=len(micro))
        for x, y in micro:
            with torch.no_grad():
                for n, p in twin.named_parameters():
                    p.copy_(torch.from_numpy(ts.master(n).copy()))
            twin.zero_grad()
            torch.nn.functional.mse_loss(twin(x), y).backward()
            for n, p in twin.named_parameters():
                st.add_grad(n, p.grad.numpy())
            st.end_micro_batch()
        st.finish()
    for n, p in model.named_parameters():
        assert np.array_equal(ts.master(n), p.detach().numpy()), n
    ts.commit()
    ts.close()
    with TrainingStore(tmp_path / "s") as ts:
        assert ts.optimizer_for("0.bias") == AdamW(lr=3e-2, weight_decay=0.0)
        assert ts.optimizer_for("0.weight") == AdamW(lr=1e-2, weight_decay=0.1)
        with pytest.raises(optim.OptimizerConfigError, match="'0.bias' has SGD settings but the optimizer is AdamW"):
            ts.set_optimizer(AdamW(), {"0.bias": SGD(lr=1)})
        with pytest.raises(optim.OptimizerConfigError, match="parameter '0.bias' has AdamW state"):
            ts.set_optimizer(AdamW(), {"0.bias": AdamW(amsgrad=True)})
        with pytest.raises(optim.OptimizerConfigError, match="'nope', which is not a parameter"):
            ts.set_optimizer(AdamW(), {"nope": AdamW()})


def test_full_disk_shows_at_creation(tmp_path, monkeypatch):
    """Blocks are allocated when the files are made: a full disk is an error then, not a SIGBUS mid-step."""
    import errno
    import os

    def full(fd, offset, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(TrainingStoreError, match="not enough disk space for .*slot1/weights.safetensors"):
        TrainingStore.create(tmp_path / "s", {"x": np.zeros(1000, np.float32)}, SGD(lr=1))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_continue_a_torch_run(tmp_path, monkeypatch, kind):
    """Parameters and torch's optimizer.state after 2 steps become a store, which takes steps 3-4: the result
    is torch's after 4 steps, bit for bit (the state's layout and the step count carry over)."""
    monkeypatch.setattr(optim, "_sqrt", torch_sqrt)
    make = (
        (lambda ps: torch.optim.SGD(ps, **SGD_KW)) if kind == "sgd" else (lambda ps: torch.optim.AdamW(ps, **ADAM_KW))
    )
    cfg = SGD(**SGD_KW) if kind == "sgd" else AdamW(**ADAM_KW)
    data = batches(4, 1)
    want, _ = torch_loop(data, make)
    model = mlp()
    topt = make(model.parameters())
    for ((x, y),) in data[:2]:
        topt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        topt.step()
    params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    state = {
        n: {k: (v.numpy().copy() if isinstance(v, torch.Tensor) else v) for k, v in topt.state[p].items()}
        for n, p in model.named_parameters()
    }
    ts = TrainingStore.create(tmp_path / "s", params, cfg, state=state)
    for ((x, y),) in data[2:]:
        st = ts.begin_step()
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(torch.from_numpy(ts.master(n).copy()))
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        for n, p in model.named_parameters():
            st.add_grad(n, p.grad.numpy())
        st.end_micro_batch()
        st.finish()
    for n, w in want.items():
        assert np.array_equal(ts.master(n), w), n
    ts.close()


def test_bad_initial_state(tmp_path):
    x = {"x": np.zeros(4, np.float32)}
    for state, words in [
        ({"y": {}}, "given for 'y', which is not a parameter"),
        ({"x": {"exp_avg": np.zeros(4)}}, "has exp_avg, which SGD does not keep"),
        ({"x": {"momentum_buffer": np.zeros(3)}}, "'momentum_buffer' of 'x' is [3]"),
        ({"x": {"step": -1}}, "whole number >= 0"),
    ]:
        with pytest.raises(TrainingStoreError, match=words.replace("[", r"\[").replace("]", r"\]")):
            TrainingStore.create(tmp_path / "s", x, SGD(lr=1, momentum=0.9), state=state)
        assert not (tmp_path / "s").exists()
