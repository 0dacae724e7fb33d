"""A GPT-NeoX-20B-class language model for training, built on the meta device: no parameter memory is allocated.

The shape of EleutherAI's GPT-NeoX-20B: 44 blocks, d_model 6,144, 64 heads (head dim 96), d_ff 4 x d_model,
vocabulary 50,432, context 2,048, rotary position embeddings on the first 25% of each head's dimensions, the
attention and the MLP side by side on the same input (NeoX's parallel residual), untied input and output
embeddings: 20.6 B parameters. A 20B model of this class is the 2022 record of training on a single CS-2 (wse2).
Its forward returns the next-token cross-entropy given the targets, so it is a training model file
(docs/models.md); it is only planned, never run:

    wafercc compile examples/gpt_neox_20b.py --train --no-weights --target wse2 -o build/gpt_neox_20b

Environment variables: ``NEOX_CONFIG=small`` builds a 2-block, d_model 512 model of the same structure (the
tests use it); ``NEOX_LAYERS=N`` overrides the depth; ``NEOX_BATCH=B`` the batch (default 1 sequence).
"""

import os

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, CONTEXT, ROTARY_PCT, ROTARY_BASE = 50432, 2048, 0.25, 10000.0


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, context: int):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.rot = int(self.head_dim * ROTARY_PCT)
        self.qkv = nn.Linear(d, 3 * d)
        self.dense = nn.Linear(d, d)
        inv_freq = 1.0 / ROTARY_BASE ** (torch.arange(0, self.rot, 2, dtype=torch.float32) / self.rot)
        angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # (context, rot)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rope(self, x, t: int):
        xr, xp = x[..., : self.rot], x[..., self.rot :]
        xr = xr * self.cos[:t] + rotate_half(xr) * self.sin[:t]
        return torch.cat((xr, xp), dim=-1)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, self.head_dim).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(self.rope(q, t), self.rope(k, t), v, is_causal=True)
        return self.dense(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    """NeoX's parallel residual: x + attention(ln1(x)) + mlp(ln2(x))."""

    def __init__(self, d: int, heads: int, context: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, context)
        self.fc_in = nn.Linear(d, 4 * d)
        self.fc_out = nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.attn(self.ln1(x)) + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class GPTNeoX(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, vocab: int = VOCAB, context: int = CONTEXT):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, context) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)  # untied, as in GPT-NeoX-20B

    def forward(self, idx, targets):
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


CONFIGS = {"20b": (44, 6144, 64), "small": (2, 512, 8)}  # blocks, d_model, heads


def get_model():
    layers, d, heads = CONFIGS[os.environ.get("NEOX_CONFIG", "20b")]
    layers = int(os.environ.get("NEOX_LAYERS", layers))
    with torch.device("meta"):
        return GPTNeoX(layers, d, heads).train()


def get_example_inputs():
    batch = int(os.environ.get("NEOX_BATCH", 1))
    ids = torch.zeros(batch, CONTEXT, dtype=torch.long, device="meta")
    return (ids, torch.zeros(batch, CONTEXT, dtype=torch.long, device="meta"))
