"""Every message the training path gives a user (capture, the WIR roles, compile_training, the step, verify
--train): one clear message each, a WaferError (exit 2 from the command line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from runtime.optim import AdamW, SGD
from runtime.training import TrainingRunError, TrainStep, _Weights
from wafercc.driver import compile_training
from wafercc.errors import CaptureError, UsageError
from wafercc.frontend import load_model_file
from wafercc.frontend.training import capture_training
from wafercc.ir import VerifyError, parse
from wafercc.ir.training import check_training
from wafercc.numerics.training import compare_training

ROOT = Path(__file__).resolve().parents[2]


class Loss(nn.Module):
    def __init__(self, *mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)

    def forward(self, x):
        for m in self.mods:
            x = m(x)
        return x.sum()


def test_capture_refusals():
    with pytest.raises(CaptureError, match="expected an nn.Module to train, got function"):
        capture_training(lambda x: x, (torch.randn(2),))
    with pytest.raises(CaptureError, match="example input #0 is a int; wafercc trains functions of tensors"):
        capture_training(Loss(nn.Linear(2, 2)), (3,))
    frozen = Loss(nn.Linear(2, 2))
    frozen.mods[0].bias.requires_grad_(False)
    with pytest.raises(CaptureError, match=r"the training model has 1 parameter\(s\) with requires_grad=False"):
        capture_training(frozen, (torch.randn(2, 2),))
    with pytest.raises(CaptureError, match="the training model has no trainable parameters"):
        capture_training(Loss(nn.ReLU()), (torch.randn(2, 2),))
    with pytest.raises(CaptureError, match="the training model has dropout with p=0.5 at 'mods.1'"):
        capture_training(Loss(nn.Linear(2, 2), nn.Dropout(0.5)), (torch.randn(2, 2),))
    with pytest.raises(CaptureError, match=r"a training model's forward must return one scalar loss that depends"):
        capture_training(nn.Linear(2, 2), (torch.randn(2, 2),))


def test_a_parameter_the_loss_does_not_use_is_refused():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x).sum()

    with pytest.raises(CaptureError, match="is not used by the loss: it would get no gradient"):
        from wafercc.frontend.training import import_training

        import_training(Unused(), (torch.randn(2, 2),))


def test_random_numbers_in_the_graph_are_refused():
    class Noise(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return (self.fc(x) + torch.rand(2, 2)).sum()

    with pytest.raises(CaptureError, match="the training graph draws random numbers"):
        capture_training(Noise(), (torch.randn(2, 2),))


WIR = """module @m {{
  weight @w : tensor<2xf32> {{kind = "parameter"}}
  func @forward(%x: tensor<2xf32>) -> (tensor<f32>, tensor<2xf32>) attributes {{{attrs}}} {{
    %w = weight.get @w : tensor<2xf32>
    %0 = mul %x, %w : tensor<2xf32>
    %1 = sum %0 {{dim = [0], keepdim = false}} : tensor<f32>
    return %1, %x
  }}
}}
"""


@pytest.mark.parametrize(
    "attrs,message",
    [
        ('train.roles = ["loss", "grad"], train.targets = [none, @w]', None),
        ('train.roles = ["loss", "grad"], train.targets = [none]', "must be lists of one entry per result"),
        ('train.roles = ["loss"], train.targets = [none]', "1 training roles for 2 results"),
        ('train.roles = ["grad", "loss"], train.targets = [@w, none]', "the first result is the loss, then"),
        ('train.roles = ["loss", "grad"], train.targets = [none, 3]', "result 1 (grad) has target 3"),
        ('train.roles = ["loss", "grad"], train.targets = [@w, @w]', "result 0 (loss) has target"),
    ],
)
def test_training_roles_are_checked(attrs, message):
    m = parse(WIR.format(attrs=attrs))
    if message is None:
        check_training(m)
        return
    with pytest.raises(VerifyError, match=None) as e:
        check_training(m)
    assert message in str(e.value)


def test_a_target_must_be_a_declared_weight():
    text = WIR.format(attrs='train.roles = ["loss", "grad"], train.targets = [none, @w]')
    m = parse(text)
    m.func().attrs["train.targets"][1] = type(m.func().attrs["train.targets"][1])("nope")
    with pytest.raises(VerifyError, match="is for @nope, not a declared weight"):
        check_training(m)


def test_compile_training_settings():
    model, inputs = Loss(nn.Linear(2, 2)), (torch.randn(2, 2),)
    with pytest.raises(UsageError, match="training is planned in stream mode"):
        compile_training(model, inputs, SGD(lr=0.1), mode="pipeline")
    with pytest.raises(UsageError, match="--grad-accum must be at least 1, got 0"):
        compile_training(model, inputs, SGD(lr=0.1), micro_batches=0)
    with pytest.raises(UsageError, match="--clip-grad-norm must be a number > 0, got -1"):
        compile_training(model, inputs, SGD(lr=0.1), clip_norm=-1)


def test_train_step_refusals(compiled_training, tmp_path):
    inference = tmp_path / "inference"
    (inference / "store").mkdir(parents=True)
    (inference / "model.wir").write_text(WIR.format(attrs="").replace(" attributes {}", ""))
    with pytest.raises(TrainingRunError, match=r"is an inference module \(compile it with --train\)"):
        TrainStep(inference)
    with pytest.raises(TrainingRunError, match="the training store has no weight 'b' the module reads"):
        _Weights(SimpleNamespace(params=["a"], buffers=[])).check([SimpleNamespace(name="b")])
    d = tmp_path / "k2"
    shutil.copytree(compiled_training("train_mlp", "sgd"), d)
    (d / "training.json").write_text(json.dumps({"micro_batches": 2, "clip_norm": None}))
    _, (x, y) = load_model_file(ROOT / "examples" / "train_mlp.py")
    with TrainStep(d) as step:
        with pytest.raises(TrainingRunError, match="this model accumulates gradients over 2 micro-batches"):
            step.run([x.numpy(), y.numpy()])


def test_verify_refuses_a_directory_compiled_for_another_optimizer(compiled_training):
    model, inputs = load_model_file(ROOT / "examples" / "train_mlp.py")
    with pytest.raises(UsageError, match="was compiled for SGD"):
        compare_training(model, inputs, AdamW(lr=1e-3), steps=1, compiled=compiled_training("train_mlp", "sgd"))
