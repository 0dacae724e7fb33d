"""Load a model file that follows wafercc's convention.

A model file defines the model as a module-level ``model`` (an nn.Module) or a ``get_model()``
function, and its example inputs as ``example_inputs`` (a tuple of tensors) or
``get_example_inputs()``. ``--entry MODEL[:INPUTS]`` names other attributes.

A file can also hold the training form of its model (forward returning a scalar loss): ``train_model`` (or
``get_train_model()``) and ``train_example_inputs`` (or ``get_train_example_inputs()``), used instead of the
defaults by ``--train`` when the file defines them.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
import uuid
from pathlib import Path

import torch

from wafercc.errors import ModelFileError

DEFAULT_MODEL = ("model", "get_model")
DEFAULT_INPUTS = ("example_inputs", "get_example_inputs")
TRAIN_MODEL = ("train_model", "get_train_model")
TRAIN_INPUTS = ("train_example_inputs", "get_train_example_inputs")


def load_model_file(path: str | Path, entry: str | None = None, train: bool = False) -> tuple[torch.nn.Module, tuple]:
    """Import ``path`` and return (model, example_inputs); with ``train``, its training form when it defines
    one (``train_model``/``get_train_model()`` and ``train_example_inputs``/``get_train_example_inputs()``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"model file '{p}' does not exist")
    if p.suffix != ".py":
        raise ModelFileError(f"model file '{p}' is not a Python file (.py)")
    ns = _execute(p)
    model_names, input_names = DEFAULT_MODEL, DEFAULT_INPUTS
    if train and any(n in ns for n in TRAIN_MODEL) and any(n in ns for n in TRAIN_INPUTS):
        model_names, input_names = TRAIN_MODEL, TRAIN_INPUTS
    if entry:
        m, _, i = entry.partition(":")
        model_names = (m,) if m else DEFAULT_MODEL
        input_names = (i,) if i else DEFAULT_INPUTS
    model = _resolve(p, ns, model_names, "the model")
    inputs = _resolve(p, ns, input_names, "the example inputs")
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"{p}: '{_found_name(ns, model_names)}' is a {type(model).__name__}, not an nn.Module")
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if isinstance(inputs, list):
        inputs = tuple(inputs)
    if not isinstance(inputs, tuple) or not all(isinstance(x, torch.Tensor) for x in inputs):
        raise ModelFileError(
            f"{p}: '{_found_name(ns, input_names)}' must be a tuple of tensors, got {type(inputs).__name__}"
        )
    return model, inputs


def _execute(p: Path) -> dict:
    name = f"wafercc_model_{uuid.uuid5(uuid.NAMESPACE_URL, str(p.resolve())).hex[:12]}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ModelFileError(f"{e.filename}:{e.lineno}: syntax error in the model file: {e.msg}") from None
    except SystemExit as e:  # a model file that exits is a failure to load, never a silent success
        raise ModelFileError(
            f"{_last_frame_in(e, p) or p}: {exit_text(e)} while loading the model file: it "
            "must define the model, not exit"
        ) from None
    except Exception as e:
        frame = _last_frame_in(e, p)
        raise ModelFileError(f"{frame or p}: loading the model file raised {type(e).__name__}: {e}") from None
    return vars(module)


def _resolve(p: Path, ns: dict, names: tuple[str, ...], what: str):
    for n in names:
        if n in ns:
            obj = ns[n]
            if callable(obj) and not isinstance(obj, torch.nn.Module):
                try:
                    return obj()
                except SystemExit as e:
                    raise ModelFileError(
                        f"{_last_frame_in(e, p) or p}: {n}() {exit_text(e)}: it must return {what}, not exit"
                    ) from None
                except Exception as e:
                    frame = _last_frame_in(e, p)
                    raise ModelFileError(f"{frame or p}: {n}() raised {type(e).__name__}: {e}") from None
            return obj
    listed = " or ".join(f"'{n}()'" if n.startswith("get_") else f"'{n}'" for n in names)
    raise ModelFileError(
        f"{p} defines no {listed} for {what}; a model file defines `model` (or `get_model()`) and "
        "`example_inputs` (or `get_example_inputs()`), or pass --entry MODEL:INPUTS"
    )


def exit_text(e: SystemExit) -> str:
    """How a model's code exited: "called sys.exit(0)"."""
    return f"called sys.exit({e.code!r})" if e.code is not None else "called sys.exit()"


def _found_name(ns: dict, names: tuple[str, ...]) -> str:
    return next((n for n in names if n in ns), names[0])


def _last_frame_in(e: BaseException, p: Path) -> str | None:
    target = str(p.resolve())
    found = None
    for fs in traceback.extract_tb(e.__traceback__):
        try:
            if str(Path(fs.filename).resolve()) == target:
                found = f"{p}:{fs.lineno}"
        except OSError:
            continue
    return found
