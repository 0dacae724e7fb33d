"""Shared fixtures: each example and zoo model is captured and imported once per test session."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# pytester drives the pytest plugin's tests (tests/golden); pytest takes this only in the top-level conftest.
pytest_plugins = ["pytester"]

EXAMPLES = ["mlp", "cnn", "transformer_block", "gpt"]
ZOO = ["gpt2", "bert", "llama", "vit", "resnet"]


@pytest.fixture(scope="session")
def example_models():
    """name -> (nn.Module, example_inputs) for every file in examples/ that we compile."""
    from wafercc.frontend import load_model_file

    return {name: load_model_file(ROOT / "examples" / f"{name}.py") for name in EXAMPLES}


@pytest.fixture(scope="session")
def zoo_models():
    """name -> (nn.Module, example_inputs) for the HF transformers models, tiny random configs."""
    from tests import zoo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: zoo.ALL[name]() for name in ZOO}


@pytest.fixture(scope="session")
def graph_modules(example_models, zoo_models):
    """name -> ImportResult of the graph-level WIR (no passes), shared by every test that reads it."""
    from wafercc.frontend import capture, import_graph

    out = {}
    for name, (model, inputs) in {**example_models, **zoo_models}.items():
        source = f"examples/{name}.py" if name in example_models else None
        out[name] = import_graph(capture(model, inputs), name=name, source=source, cwd=str(ROOT))
    return out


@pytest.fixture(scope="session")
def compiled(example_models, zoo_models):
    """name -> CompileResult after the default pipeline (in memory; no files)."""
    import wafercc

    out = {}
    for name, (model, inputs) in {**example_models, **zoo_models}.items():
        out[name] = wafercc.compile(model, inputs, name=name)
    return out
