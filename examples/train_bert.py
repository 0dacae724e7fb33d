"""Training example: a BERT-style encoder classifier (post-LN blocks, a [CLS] pooler, a padding mask).

    wafercc verify examples/train_bert.py --train --steps 3 --optimizer adamw --lr 1e-3 --weight-decay 0.01

Input: token ids (4, 16) int64 in [0, 100), an attention mask (4, 16) float32 (1 = token, 0 = padding: the
last 4 positions of the last two sequences) and labels (4,) int64 in [0, 3).
Architecture: token + position + segment embeddings -> LayerNorm; 2 post-LN encoder blocks (4 heads, d 32,
GELU MLP of 64); the [CLS] vector through Linear + tanh (the pooler); a Linear(32, 3) classifier;
cross-entropy loss. Dropout is 0 (wafercc refuses dropout with p > 0 in training).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(0)

VOCAB, D, HEADS, LAYERS, SEQ, CLASSES = 100, 32, 4, 2, 16, 3


class EncoderBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = (t.view(B, T, HEADS, D // HEADS).transpose(1, 2) for t in self.qkv(x).split(D, dim=2))
        att = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // HEADS) + bias, dim=-1)
        x = self.ln1(x + self.out((att @ v).transpose(1, 2).reshape(B, T, D)))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class BertClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Embedding(SEQ, D)
        self.seg = nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D)
        self.blocks = nn.ModuleList([EncoderBlock() for _ in range(LAYERS)])
        self.pooler = nn.Linear(D, D)
        self.classifier = nn.Linear(D, CLASSES)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(T)) + self.seg(torch.zeros_like(ids))
        x = self.ln(x)
        bias = (1.0 - mask)[:, None, None, :] * -1e4  # padding gets no attention
        for block in self.blocks:
            x = block(x, bias)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return F.cross_entropy(self.classifier(pooled), labels)


model = BertClassifier().train()
_mask = torch.ones(4, SEQ)
_mask[2:, -4:] = 0.0
example_inputs = (torch.randint(0, VOCAB, (4, SEQ)), _mask, torch.randint(0, CLASSES, (4,)))
