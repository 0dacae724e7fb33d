"""Tiny HuggingFace `transformers` models with random weights, for tests.

Every builder returns ``(module, example_inputs)`` where ``module`` is an
``nn.Module`` in eval mode whose ``forward`` takes only tensors and returns a
single tensor, and ``example_inputs`` is a tuple of tensors. Nothing is
downloaded: models are built from small local configs and seeded with
``torch.manual_seed(0)``.

All of them export with ``torch.export.export(module, example_inputs)``
(non-strict, i.e. the default strict=False; strict=True is not needed and was
not used) followed by ``.run_decompositions()`` -- checked with torch 2.13 /
transformers 5.x. The transformer models use ``attn_implementation="eager"``
so attention shows up as explicit matmul/softmax ops. "sdpa" also works for
bert/llama/vit, but NOT for gpt2: export succeeds, then run_decompositions()
fails with "Cannot view a tensor with shape torch.Size([2, 16, 64]) and
strides (64, 128, 1) as a tensor with shape (32, 64)!" (GPT-2's Conv1D does
x.view(-1, C) on the transposed SDPA output). So eager is used everywhere.
The decoders use ``use_cache=False`` so no KV-cache objects enter the graph.

    from tests.zoo import ALL
    for name, build in ALL.items():
        m, inputs = build()
        out = m(*inputs)
"""

from __future__ import annotations

import torch
from torch import nn

import transformers


SEQ_LEN = 16
BATCH = 2
VOCAB = 256


def _ids(vocab: int = VOCAB, batch: int = BATCH, seq: int = SEQ_LEN) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), dtype=torch.long)


class _LogitsWrapper(nn.Module):
    """forward(input_ids) -> logits for a causal LM."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=True).logits


class _BertWrapper(nn.Module):
    """forward(input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          return_dict=True).last_hidden_state


class _ImageLogitsWrapper(nn.Module):
    """forward(pixel_values) -> logits for an image classifier."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.model = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


def gpt2():
    """GPT-2: 2 layers, d=64, 4 heads, vocab 256, context 64; input ids (2, 16)."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0,  # default 50256 is outside the tiny vocab
        attn_implementation="eager",
    )
    m = _LogitsWrapper(transformers.GPT2LMHeadModel(config)).eval()
    return m, (_ids(),)


def bert():
    """BERT encoder: 2 layers, d=64, 4 heads, ffn 128, vocab 256.

    Inputs: input_ids (2, 16) int64 and attention_mask (2, 16) int64, where the
    second sequence has its last 4 positions padded out.
    """
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    m = _BertWrapper(transformers.BertModel(config, add_pooling_layer=False)).eval()
    ids = _ids()
    mask = torch.ones(BATCH, SEQ_LEN, dtype=torch.long)
    mask[1, -4:] = 0
    return m, (ids, mask)


def llama():
    """Llama: 2 layers, d=64, 4 heads (2 KV heads, GQA), ffn 128, RMSNorm, RoPE,
    SwiGLU, vocab 256; input ids (2, 16) -> logits (2, 16, 256)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, tie_word_embeddings=False,
        attn_implementation="eager",
    )
    m = _LogitsWrapper(transformers.LlamaForCausalLM(config)).eval()
    return m, (_ids(),)


def vit():
    """ViT classifier: 32x32 RGB image, patch 8 (16 patches + CLS), 2 layers,
    d=64, 4 heads, ffn 128, 10 classes; input (2, 3, 32, 32) -> logits (2, 10)."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=10,
        attn_implementation="eager",
    )
    m = _ImageLogitsWrapper(transformers.ViTForImageClassification(config)).eval()
    return m, (torch.randn(BATCH, 3, 32, 32),)


def resnet():
    """ResNet (basic blocks): embedding 16, stages [16, 32] with depths [1, 1],
    10 classes; input (2, 3, 32, 32) -> logits (2, 10). BatchNorm in eval mode."""
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
        layer_type="basic", hidden_act="relu", num_labels=10,
    )
    hf = transformers.ResNetForImageClassification(config)
    # Give BatchNorm non-trivial running statistics so it is not an identity.
    with torch.no_grad():
        for mod in hf.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 1.5)
    m = _ImageLogitsWrapper(hf).eval()
    return m, (torch.randn(BATCH, 3, 32, 32),)


ALL = {
    "gpt2": gpt2,
    "bert": bert,
    "llama": llama,
    "vit": vit,
    "resnet": resnet,
}
