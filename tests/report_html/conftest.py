"""Compiled examples for the HTML report and the viz pictures, written once per session (no weights: report
and viz read only plan.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def plan_dirs(example_models, tmp_path_factory):
    """name -> output directory of a compiled example: mlp on mesh8 (stream), gpt on wse2 (stream, 15
    layers), gpt on mesh16 in pipeline mode, the transformer block on wse2."""
    import wafercc

    base = tmp_path_factory.mktemp("html_plans")
    jobs = {
        "mlp": ("mlp", "mesh8", "stream"),
        "gpt": ("gpt", "wse2", "stream"),
        "gpt_pipeline": ("gpt", "mesh16", "pipeline"),
        "block": ("transformer_block", "wse2", "stream"),
    }
    out = {}
    for key, (example, target, mode) in jobs.items():
        model, inputs = example_models[example]
        out[key] = base / key
        wafercc.compile(model, inputs, name=example, target=target, mode=mode, out_dir=out[key], with_weights=False)
    return out


@pytest.fixture(scope="session")
def training_dir(tmp_path_factory):
    """A real training plan (layers with a phase, training totals): examples/train_mlp.py with SGD."""
    source = ROOT / "examples" / "train_mlp.py"
    from runtime.optim import SGD
    from wafercc.driver import compile_training
    from wafercc.frontend import load_model_file

    model, inputs = load_model_file(source)
    out = tmp_path_factory.mktemp("html_train") / "train_mlp"
    compile_training(model, inputs, SGD(lr=0.1, momentum=0.9), name="train_mlp", out_dir=out)
    return out


@pytest.fixture(scope="session")
def hand_made_dir(plan_dirs, tmp_path_factory):
    """The compiled gpt plan by hand given what later plans may carry: a phase per layer (forward, backward,
    optimizer), training totals and a data-parallel scaling table."""
    plan = json.loads((plan_dirs["gpt"] / "plan.json").read_text())
    n = len(plan["layers"])
    for i, layer in enumerate(plan["layers"]):
        layer["phase"] = "forward" if i < n // 2 else "backward" if i < n - 2 else "optimizer"
    plan["totals"].update(  # a training plan's totals come all together (the typed plan refuses some of them)
        forward_seconds=0.004,
        backward_seconds=0.007,
        gradient_bytes_streamed=123_456,
        gradient_seconds=0.0008,
        activation_bytes_kept=4096,
        activation_bytes_spilled=0,
        activation_bytes_recomputed=0,
        spill_seconds=0.0,
        recompute_seconds=0.0,
        optimizer_seconds=0.0015,
        optimizer_exposed_seconds=0.0015,
        step_seconds=0.0125,
        batch=1,
        samples_per_s=80.0,
    )
    plan["scaling"] = [
        {"systems": s, "step_seconds": 0.0125 * (1 + 0.02 * s) / s, "efficiency": 1 / (1 + 0.02 * s)}
        for s in (1, 2, 16, 192)
    ]
    out = tmp_path_factory.mktemp("html_hand") / "gpt_phases"
    out.mkdir()
    (out / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True) + "\n")
    return out
