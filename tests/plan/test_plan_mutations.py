"""Every field of every layer of real plans, mutated one at a time: each mutant is refused (exit 2, naming
the layer and the rule) or runs to the original's numbers; none runs to wrong numbers.

The plans: mlp, cnn and transformer_block on an 8x8 mesh (weight streaming), and mlp on mesh16 in pipeline
mode. The mutants (tests/plan/mutate.py): every integer changed by -1 and +1, every float, bool, string and
dtype changed, every key and list entry (a route, a memory-map buffer, a weight) removed.

``python -m tests.plan.test_plan_mutations [--full]`` prints the counts (``--full`` adds 0, -1 and 2v for
integers and 0, -1 for floats).
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import wafercc
from runtime import Interpreter, Store
from tests.plan.mutate import classify, mutants

PLANS = [
    ("mlp", "mesh:8x8", "stream"),
    ("cnn", "mesh:8x8", "stream"),
    ("transformer_block", "mesh:8x8", "stream"),
    ("mlp", "mesh16", "pipeline"),
]
ROOT = Path(__file__).resolve().parents[2]


def compiled(model, inputs, name: str, target: str, mode: str, out_dir: Path):
    r = wafercc.compile(model, inputs, name=name, target=target, mode=mode, out_dir=out_dir)
    store = Store(out_dir)
    xs = [x.numpy() for x in inputs]
    ref = Interpreter(r.module, store).run(xs).outputs[0]
    return r.module, store, xs, ref


def count(module, store, xs, ref, full: bool = False) -> tuple[collections.Counter, list]:
    counts: collections.Counter = collections.Counter()
    wrong = []
    for layer, path, what, new in mutants(module, full):
        outcome, detail = classify(module, store, xs, ref, layer, path, new)
        counts[outcome] += 1
        if outcome == "wrong":
            wrong.append(f"@{layer} {'.'.join(map(str, path))} {what}: {detail}")
    return counts, wrong


@pytest.mark.parametrize("name, target, mode", PLANS)
def test_every_mutant_is_refused_or_runs_to_the_same_numbers(example_models, tmp_path, name, target, mode):
    model, inputs = example_models[name]
    module, store, xs, ref = compiled(model, inputs, name, target, mode, tmp_path / "out")
    counts, wrong = count(module, store, xs, ref)
    print(
        f"{name} on {target} ({mode}): {counts['refused']} refused, {counts['same']} same numbers, "
        f"{counts['wrong']} wrong"
    )
    assert not wrong, "\n".join(wrong[:20])
    assert counts["refused"] > counts["same"] > 0


def test_the_original_plans_pass(example_models, tmp_path):
    model, inputs = example_models["mlp"]
    module, store, xs, ref = compiled(model, inputs, "mlp", "mesh:8x8", "stream", tmp_path / "out")
    assert np.allclose(ref, model(*inputs).detach().numpy(), rtol=1e-5, atol=1e-5)


# -- the same refusals through the command line: exit 2, "error: layer @...: field: ... [rule]" ----------------


def _edit_wir(out_dir: Path, old: str, new: str) -> None:
    path = out_dir / "model.wir"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _wafercc(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wafercc.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture(scope="module")
def mlp_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "mlp"
    res = _wafercc("compile", "examples/mlp.py", "--target", "mesh:8x8", "-o", str(out), "-q")
    assert res.returncode == 0, res.stderr
    return out


def test_run_refuses_a_k_tile_that_drops_part_of_k(mlp_out, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    for f in mlp_out.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    text = (out / "model.wir").read_text()
    tile = text.split('K = {axis = "x", parts = ', 1)[1].split("}", 1)[0]  # "16, tile = 49"
    parts, kt = (int(v) for v in tile.replace("tile = ", "").split(", "))
    _edit_wir(
        out,
        f'K = {{axis = "x", parts = {parts}, tile = {kt}}}',
        f'K = {{axis = "x", parts = {parts}, tile = {kt - 1}}}',
    )
    res = _wafercc("run", str(out), "--seed", "0")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("error: layer @L0_fc1: tiling.K: ") and "[plan-cover]" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_opt_refuses_a_plan_without_its_reduce_routes(mlp_out, tmp_path):
    text = (mlp_out / "model.wir").read_text()
    lines = [ln for ln in text.splitlines(keepends=True) if 'flow = "reduce"' not in ln]
    src = tmp_path / "model.wir"
    src.write_text("".join(lines).replace("},\n    ],", "}\n    ],"))
    res = _wafercc("opt", str(src), "--passes", "dce", "-o", str(tmp_path / "out.wir"))
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "error: layer @L0_fc1: routes: no reduce route" in res.stderr and "[plan-route]" in res.stderr, res.stderr


def test_report_refuses_a_plan_json_with_zero_passes(mlp_out, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    for f in mlp_out.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    plan = (out / "plan.json").read_text()
    assert '"passes": 1,' in plan
    (out / "plan.json").write_text(plan.replace('"passes": 1,', '"passes": 0,', 1))
    for cmd in (("report", str(out)), ("viz", str(out), "-o", str(tmp_path / "mesh.png"))):
        res = _wafercc(*cmd)
        assert res.returncode == 2, (cmd, res.stdout, res.stderr)
        assert "tiling.passes: expected a positive integer, got 0 [plan-format]" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr


def main() -> int:
    from tests.conftest import ROOT as root
    from wafercc.frontend import load_model_file

    full = "--full" in sys.argv
    import tempfile

    wrong_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, target, mode in PLANS:
            model, inputs = load_model_file(root / "examples" / f"{name}.py")
            out = Path(tmp) / f"{name}-{mode}"
            module, store, xs, ref = compiled(model, inputs, name, target, mode, out)
            counts, wrong = count(module, store, xs, ref, full)
            wrong_total += len(wrong)
            print(
                f"{name:<18} {target:<9} {mode:<8} {sum(counts.values()):>6} mutants: {counts['refused']:>6} "
                f"refused, {counts['same']:>5} same numbers, {counts['wrong']} wrong",
                flush=True,
            )
            for w in wrong[:10]:
                print("   ", w)
    return 1 if wrong_total else 0


if __name__ == "__main__":
    sys.exit(main())
