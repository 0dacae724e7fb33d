"""Small BERT-style transformer encoder with a padding attention mask.

Inputs: input_ids (2, 16) int64 in [0, 1000), and attention_mask (2, 16) int64, 1 for real tokens and
0 for padding (the second sequence has 5 padding positions at the end, holding the pad id 0).
Architecture (vocab 1000, d_model 64, 4 heads, 2 layers, FFN 256, max 64 positions, 2 token types):
  x = LN(word_emb(ids) + pos_emb(arange(T)) + type_emb(token_type_ids))   # token types default to 0,
                                                                          # from a buffer, as in BERT
  key mask:  keep = (attention_mask != 0)[:, None, None, :]                # (B, 1, 1, T) bool
  2 x post-LN layers (as in BERT):
      x = LN(x + Attn(x))    # separate q/k/v Linears; scores.masked_fill(~keep, finfo.min); softmax
      x = LN(x + FFN(x))     # Linear(64, 256) -> GELU -> Linear(256, 64)
Output: (2, 16, 64) final hidden states (padding positions included, as BERT returns them).

Exercises: two integer inputs, three embedding lookups incl. a buffer sliced and expanded, post-LN
residuals with BERT's eps 1e-12, an attention mask built from an input tensor (ne, unsqueeze,
bitwise not, masked_fill -> where) broadcast over heads and queries.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)

VOCAB_SIZE = 1000
D_MODEL = 64
N_HEADS = 4
N_LAYERS = 2
D_FF = 256
MAX_POS = 64
TYPE_VOCAB = 2
LN_EPS = 1e-12


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(VOCAB_SIZE, D_MODEL, padding_idx=0)
        self.position = nn.Embedding(MAX_POS, D_MODEL)
        self.token_type = nn.Embedding(TYPE_VOCAB, D_MODEL)
        self.ln = nn.LayerNorm(D_MODEL, eps=LN_EPS)
        self.register_buffer("position_ids", torch.arange(MAX_POS).unsqueeze(0), persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, MAX_POS, dtype=torch.long), persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        B, T = input_ids.shape
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :T].expand(B, T)
        pos = self.position_ids[:, :T]
        x = self.word(input_ids) + self.position(pos) + self.token_type(token_type_ids)
        return self.ln(x)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.d_head).transpose(1, 2)  # (B, H, T, Dh)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)  # padded keys get ~zero weight
        probs = torch.softmax(scores, dim=-1)
        y = (probs @ v).transpose(1, 2).reshape(B, T, C)
        return self.out(y)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads)
        self.ln1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.ln2 = nn.LayerNorm(d_model, eps=LN_EPS)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x, keep))  # post-LN, as in BERT
        x = self.ln2(x + self.fc2(F.gelu(self.fc1(x))))
        return x


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.layers = nn.ModuleList([EncoderLayer(D_MODEL, N_HEADS, D_FF) for _ in range(N_LAYERS)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = (attention_mask != 0)[:, None, None, :]  # (B, 1, 1, T): which keys may be attended to
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, keep)
        return x


def _example_inputs() -> tuple:
    B, T, n_pad = 2, 16, 5
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[1, T - n_pad :] = 0
    input_ids = torch.randint(1, VOCAB_SIZE, (B, T), dtype=torch.long) * attention_mask  # pad id 0
    return input_ids, attention_mask


model = BertEncoder().eval()
example_inputs = _example_inputs()
