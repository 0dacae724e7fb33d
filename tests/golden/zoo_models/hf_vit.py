"""The tiny HF transformers vit of tests/zoo.py as a model file: the model of the golden goldens/hf_vit/."""

import importlib.util
from pathlib import Path

# tests/ is not a package on the path of `wafercc golden`: load tests/zoo.py by its file.
_spec = importlib.util.spec_from_file_location("wafercc_tests_zoo", Path(__file__).resolve().parents[2] / "zoo.py")
_zoo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_zoo)

model, example_inputs = _zoo.vit()
