"""Pre-LN transformer block whose feed-forward is a top-2-of-4 mixture of experts, with static shapes.

Input: (batch=2, seq=16, d_model=64) float32.
    h   = x + Attn(LN1(x))           # 4-head self-attention, hand-written (Linear + softmax)
    out = h + MoE(LN2(h))
MoE (4 experts, top-2, each expert Linear(64, 128) -> GELU -> Linear(128, 64)):
    probs     = softmax(router(t))                          # (B, T, E), router a Linear(64, 4)
    top_idx   = topk(probs, k=2).indices                    # (B, T, 2)
    mask      = (top_idx[..., None] == arange(E)).any(-2)   # (B, T, E) one-hot of the chosen experts
    gates     = probs * mask / sum(probs * mask)            # renormalized over the chosen two
    y         = sum_e gates[..., e] * expert_e(t)
Every expert runs densely on every token and the unchosen ones are masked out, so the graph has no
data-dependent shapes (no gather / scatter of tokens to experts): numerically the same as sparse
routing. Output: (2, 16, 64).

Exercises: topk, an integer arange compared against indices (one-hot), bool reductions, casts,
renormalized gating, stacking expert outputs, weighted sum over the expert dim.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)

D_MODEL = 64
N_HEADS = 4
N_EXPERTS = 4
TOP_K = 2
D_EXPERT = 128


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        v = v.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(y)


class Expert(nn.Module):
    def __init__(self, d_model: int, d_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MoE(nn.Module):
    def __init__(self, d_model: int, d_hidden: int, n_experts: int, top_k: int):
        super().__init__()
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList([Expert(d_model, d_hidden) for _ in range(n_experts)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.router(x), dim=-1)  # (B, T, E)
        top_idx = torch.topk(probs, self.top_k, dim=-1).indices  # (B, T, K)
        experts = torch.arange(self.n_experts, device=x.device)  # (E,)
        chosen = (top_idx.unsqueeze(-1) == experts).any(dim=-2)  # (B, T, E) bool
        gates = probs * chosen.to(probs.dtype)
        gates = gates / gates.sum(dim=-1, keepdim=True)  # renormalize over the top k
        outs = torch.stack([e(x) for e in self.experts], dim=-1)  # (B, T, C, E), dense
        return (outs * gates.unsqueeze(-2)).sum(dim=-1)  # (B, T, C)


class MoEBlock(nn.Module):
    def __init__(
        self,
        d_model: int = D_MODEL,
        n_heads: int = N_HEADS,
        d_expert: int = D_EXPERT,
        n_experts: int = N_EXPERTS,
        top_k: int = TOP_K,
    ):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.moe = MoE(d_model, d_expert, n_experts, top_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.moe(self.ln2(x))
        return x


model = MoEBlock().eval()
example_inputs = (torch.randn(2, 16, D_MODEL),)
