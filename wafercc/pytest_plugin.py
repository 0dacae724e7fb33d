"""wafercc's pytest plugin: golden tests of your own models, in a few lines (registered as the ``pytest11``
entry point ``wafercc``, so installing wafercc enables it).

    def test_my_model(wafer_golden):
        wafer_golden.check(model, example_inputs, name="my_model")   # records on the first run, checks after

    @pytest.mark.wafer(target="wse3", mode="pipeline")                 # options for every check in the test
    def test_on_wse3(wafer_golden): ...

Options: ``--wafer-update-goldens`` re-records every golden the run checks; ``--wafer-no-record`` makes a
missing golden a failure instead of recording it (for CI); ``--wafer-golden-dir DIR`` (or the ini option
``wafer_golden_dir``), relative to the rootdir, holds the goldens instead of ``goldens/`` next to each test file.

Nothing here imports torch (nor numpy) when pytest starts: every pytest run in the environment loads this
module, most of them never touch a golden. wafercc.golden is imported when a test first calls ``check``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

_RECORDED = pytest.StashKey[list]()
DEFAULTS = {"target": "wse2", "mode": "stream", "precision": "fp32"}


class WaferGoldenWarning(UserWarning):
    """A golden passed but its plan changed (the WIR or plan.json hash), or a training golden's final weights
    changed in their last bits within the tolerance: worth a look in review."""


def pytest_addoption(parser) -> None:
    group = parser.getgroup("wafercc", "wafercc goldens (the wafer_golden fixture)")
    group.addoption(
        "--wafer-update-goldens", action="store_true", help="re-record every golden the tests check, from eager PyTorch"
    )
    group.addoption(
        "--wafer-no-record",
        action="store_true",
        help="a missing golden fails its test instead of being recorded (use in CI)",
    )
    group.addoption(
        "--wafer-golden-dir",
        metavar="DIR",
        help="the goldens' directory, relative to the rootdir (default: goldens/ next to each test file)",
    )
    parser.addini("wafer_golden_dir", "as --wafer-golden-dir", default="")


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "wafer(target=None, mode=None, precision=None, seed=None, rtol=None, atol=None): options of "
        "every wafer_golden.check in the test (the check's own arguments win)",
    )
    config.stash[_RECORDED] = []


def pytest_terminal_summary(terminalreporter, config) -> None:
    recorded = config.stash.get(_RECORDED, [])
    if recorded:
        terminalreporter.write_sep("-", f"wafercc: recorded {len(recorded)} golden(s) from eager PyTorch")
        for path in recorded:
            terminalreporter.write_line(f"  {path}")


@pytest.fixture
def wafer_golden(request) -> WaferGolden:
    """``wafer_golden.check(model, example_inputs, name=...)``: record the model's golden on the first run,
    check the compiler against it on every later one."""
    return WaferGolden(request)


class WaferGolden:
    def __init__(self, request):
        self.request = request
        self.config = request.config
        marker = request.node.get_closest_marker("wafer")
        self.marked = dict(marker.kwargs) if marker else {}

    def directory(self) -> Path:
        configured = self.config.getoption("wafer_golden_dir") or self.config.getini("wafer_golden_dir")
        if configured:
            return Path(self.config.rootpath) / configured  # an absolute DIR stays absolute
        return Path(self.request.path).parent / "goldens"

    def check(
        self,
        model,
        example_inputs,
        name: str | None = None,
        *,
        target: str | None = None,
        mode: str | None = None,
        precision: str | None = None,
        seed: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        bisect: bool = True,
        train: bool = False,
        optimizer=None,
        steps: int = 3,
        grad_accum: int = 1,
        clip_grad_norm: float | None = None,
    ):
        """Record (first run, or --wafer-update-goldens) or check the golden ``name`` (default: the test's
        name; a non-default target, mode or precision is appended, so parametrized tests get one golden
        each). Fails the test with a one-screen report when the numbers drifted or the model fails to
        compile; warns (WaferGoldenWarning) when only the plan changed. Returns the GoldenResult.

        ``train=True``: a training golden (the model's forward returns a scalar loss): ``steps`` steps of
        ``optimizer`` (a runtime.optim SGD or AdamW; default SGD(lr=1e-3), as compile --train), ``grad_accum``
        micro-batches per step, clipping to ``clip_grad_norm``; its loss curve and final weights are checked."""
        from wafercc import golden

        if train:
            return self._check_training(
                model, example_inputs, name, target, optimizer, steps, grad_accum, clip_grad_norm
            )
        given = {"target": target, "mode": mode, "precision": precision, "seed": seed, "rtol": rtol, "atol": atol}
        opts = {
            **DEFAULTS,
            **{k: v for k, v in self.marked.items() if v is not None},
            **{k: v for k, v in given.items() if v is not None},
        }
        options = golden.Options(**opts)
        gname = golden.sanitize(
            "-".join([name or self.request.node.name] + [opts[k] for k in DEFAULTS if opts[k] != DEFAULTS[k]])
        )
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        subject = golden.Subject(gname, model, tuple(inputs), self.request.node.nodeid, root=Path(self.config.rootpath))
        where = self.directory() / gname
        if self.config.getoption("wafer_update_goldens") or not (where / "golden.json").is_file():
            return self._record(subject, where, options)
        try:
            self._same_options(where, options)
            r = golden.check(
                subject, where, target=options.target, mode=options.mode, precision=options.precision, run_bisect=bisect
            )
        except golden.WaferError as e:  # a damaged or foreign golden: its message says what to do
            pytest.fail(str(e), pytrace=False)
        if not r.ok:
            pytest.fail(golden.format_result(r), pytrace=False)
        if r.status is golden.Status.PLAN_CHANGED:
            warnings.warn(WaferGoldenWarning(f"{gname}: {r.message}"), stacklevel=2)
        return r

    def _check_training(self, model, example_inputs, name, target, optimizer, steps, grad_accum, clip_grad_norm):
        from runtime.optim import SGD
        from wafercc import golden
        from wafercc.golden.files import read_golden_json
        from wafercc.golden.train import train_options_of

        target = target or self.marked.get("target") or DEFAULTS["target"]
        opts = golden.TrainOptions(optimizer or SGD(lr=1e-3), steps, grad_accum, clip_grad_norm, target)
        suffix = [target] if target != DEFAULTS["target"] else []
        gname = golden.sanitize("-".join([name or self.request.node.name] + suffix))
        inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        subject = golden.Subject(gname, model, tuple(inputs), self.request.node.nodeid, root=Path(self.config.rootpath))
        where = self.directory() / gname
        if self.config.getoption("wafer_update_goldens") or not (where / "golden.json").is_file():
            return self._record(subject, where, opts, record=golden.record_training)
        try:
            data = read_golden_json(where)
            recorded = train_options_of(data) if "train" in data else None
            if recorded != opts:
                pytest.fail(
                    f"the golden {where} was recorded with {recorded or 'no training'}, the test asks for {opts}: "
                    "re-record it with --wafer-update-goldens",
                    pytrace=False,
                )
            r = golden.check(subject, where, target=target)
        except golden.WaferError as e:  # a damaged or foreign golden: its message says what to do
            pytest.fail(str(e), pytrace=False)
        if not r.ok:
            pytest.fail(golden.format_result(r), pytrace=False)
        if r.status in (golden.Status.PLAN_CHANGED, golden.Status.WEIGHTS_CHANGED):
            warnings.warn(WaferGoldenWarning(f"{gname}: {r.message}"), stacklevel=3)
        return r

    def _record(self, subject, where: Path, options, record=None):
        from wafercc import golden

        if not where.joinpath("golden.json").is_file() and self.config.getoption("wafer_no_record"):
            pytest.fail(
                f"no golden '{subject.name}' in {where.parent} (--wafer-no-record): record it by running "
                "the test once without --wafer-no-record, and commit it",
                pytrace=False,
            )
        r = (record or golden.record)(subject, where, options)
        if r.status is not golden.Status.RECORDED:
            pytest.fail(golden.format_result(r), pytrace=False)
        self.config.stash[_RECORDED].append(str(where))
        return r

    def _same_options(self, where: Path, options) -> None:
        """A test that asks for other options than its golden was recorded with must re-record on purpose."""
        from wafercc.golden.files import read_golden_json
        from wafercc.golden.record import options_of

        recorded = options_of(read_golden_json(where))
        if recorded != options:
            pytest.fail(
                f"the golden {where} was recorded with {recorded}, the test asks for {options}: "
                "re-record it with --wafer-update-goldens",
                pytrace=False,
            )
