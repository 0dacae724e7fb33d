"""A ~1-trillion-parameter GPT-style decoder, built on the meta device: no parameter memory is allocated.

128 blocks, d_model 25,600, 160 heads, d_ff 4 x d_model, vocabulary 51,200, context 2,048: 1.01 T parameters
(4 TB of fp32 weights that never exist on this machine). The model is only planned, never run:

    wafercc compile examples/gpt_1t.py --target wse3 -o build/gpt_1t

Weight streaming is what makes this size trainable on one system: a layer's weights stream in from
MemoryX while activations stay on the wafer, so the wafer bounds a layer's activations, not the model.
The file also holds the training form (``get_train_model``: the same GPT returning next-token cross-entropy
given the targets), which ``--train`` picks up; planned for training, again without weights:

    wafercc compile examples/gpt_1t.py --train --no-weights --target wse3 -o build/gpt_1t_train

Environment variables: ``GPT_CONFIG=175b`` builds GPT-3 175B instead (96 blocks, d_model 12,288, 96 heads;
the benchmarks use it); ``GPT_CONFIG=small`` a 2-block, d_model 512 one (the tests); ``GPT_LAYERS=N`` overrides
the depth for quick experiments.
"""

import os

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, vocab: int, context: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


class GPTLoss(GPT):
    """The training form: next-token cross-entropy of the logits against ``targets`` (the ids shifted by one)."""

    def forward(self, idx, targets):
        logits = super().forward(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


CONFIGS = {"1t": (128, 25600, 160), "175b": (96, 12288, 96), "small": (2, 512, 8)}  # blocks, d_model, heads


def _config() -> tuple[int, int, int]:
    layers, d, heads = CONFIGS[os.environ.get("GPT_CONFIG", "1t")]
    return int(os.environ.get("GPT_LAYERS", layers)), d, heads


def get_model():
    with torch.device("meta"):
        return GPT(*_config(), 51200, 2048).eval()


def get_example_inputs():
    return (torch.zeros(1, 2048, dtype=torch.long, device="meta"),)


def get_train_model():
    with torch.device("meta"):
        return GPTLoss(*_config(), 51200, 2048).train()


def get_train_example_inputs():
    return (
        torch.zeros(1, 2048, dtype=torch.long, device="meta"),
        torch.zeros(1, 2048, dtype=torch.long, device="meta"),
    )
