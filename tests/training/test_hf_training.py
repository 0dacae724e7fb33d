"""HF transformers models train as their users call them (``model(input_ids=..., labels=...).loss``), built from
small configs with random weights (no download), dropout set to 0 (wafercc refuses p > 0: tested elsewhere):
two AdamW steps in the runtime match eager PyTorch with torch.optim under the training policy.

What each one exercised when it was added: GPT-2, tied embeddings and a tensor the forward makes from a constant
(lifted by AOTAutograd as a ``_tensor_constant`` attribute, which the import once failed on with a KeyError);
LLaMA, ``aten.empty_permuted`` in its backward and a buffer the step never touches
(``rotary_emb.original_inv_freq``); BERT, a classification head with integer labels."""

from __future__ import annotations

import pytest
import torch

from runtime.optim import AdamW
from wafercc.numerics.training import compare_training

transformers = pytest.importorskip("transformers")


class WithLabels(torch.nn.Module):
    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids, labels):
        return self.hf(input_ids=input_ids, labels=labels).loss


def _gpt2():
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    return transformers.GPT2LMHeadModel(cfg), None


def _llama():
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=32,
    )
    return transformers.LlamaForCausalLM(cfg), None


def _bert():
    cfg = transformers.BertConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=128,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(cfg), torch.tensor([0, 2])


@pytest.mark.parametrize("build", [_gpt2, _llama, _bert], ids=["gpt2", "llama", "bert"])
def test_hf_model_trains_like_eager(build):
    torch.manual_seed(0)
    hf, labels = build()
    ids = torch.randint(0, 128, (2, 16))
    model = WithLabels(hf).train()
    v = compare_training(model, (ids, ids.clone() if labels is None else labels), AdamW(lr=1e-3), steps=2)
    assert v.passed, v.failures()
    (a1, b1) = v.losses[0]
    assert abs(a1 - b1) <= 1e-6 * abs(b1)
    trained = {n for n, p in hf.named_parameters()}
    assert {c.name.removeprefix("hf.") for c in v.grads} == trained  # every parameter's gradient compared
