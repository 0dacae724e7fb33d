"""Training example: a small GPT language model with tied input/output embeddings.

The language-model head shares the token embedding's weight (``lm_head.weight = tok_emb.weight``): wafercc
trains it as one weight, ``@tok_emb.weight``, whose one gradient is the sum of its two uses, as autograd's.
The loss is next-token cross-entropy over the sequence. Dropout is 0: wafercc refuses dropout with p > 0 in
training (it cannot reproduce eager PyTorch's random numbers).

    wafercc verify examples/train_gpt.py --train --steps 3 --optimizer adamw --lr 1e-3

Input: token ids (2, 16) int64 and the targets (the ids shifted by one), (2, 16) int64, in [0, 128).
Architecture: vocab 128, d_model 32, 2 heads, 2 pre-LN blocks (causal attention, GELU MLP), lm_head tied.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(0)

VOCAB, D_MODEL, N_HEADS, N_LAYERS, SEQ = 128, 32, 2, 2, 16


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_heads, self.d_head).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.fc1, self.fc2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPTLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB, D_MODEL)
        self.pos_emb = nn.Embedding(SEQ, D_MODEL)
        self.blocks = nn.ModuleList([Block(D_MODEL, N_HEADS) for _ in range(N_LAYERS)])
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one weight, one summed gradient

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.reshape(B * T, VOCAB), targets.reshape(B * T))


model = GPTLM().train()
_tokens = torch.randint(0, VOCAB, (2, SEQ + 1))
example_inputs = (_tokens[:, :-1].contiguous(), _tokens[:, 1:].contiguous())
