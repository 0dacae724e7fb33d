"""Small Vision Transformer (ViT) image classifier.

Input: (2, 3, 32, 32) float32 images.
Architecture (patch 8, d_model 64, 4 heads, 2 layers, MLP 128):
  patches = Conv2d(3->64, kernel = stride = 8)(x)        # (2, 64, 4, 4)
  tokens  = patches.flatten(2).transpose(1, 2)            # (2, 16, 64)
  x = cat([cls_token.expand(B, 1, 64), tokens], dim=1)    # (2, 17, 64), cls_token an nn.Parameter
  x = x + pos_emb                                         # learned (1, 17, 64) nn.Parameter
  2 x pre-LN encoder blocks:
      x = x + Attn(LN(x))    # fused qkv Linear, F.scaled_dot_product_attention, out Linear
      x = x + MLP(LN(x))     # Linear(64, 128) -> GELU -> Linear(128, 64)
  logits = head(LN_f(x)[:, 0])                            # class token only
Output: (2, 10) class logits.

Exercises: patch embedding as a strided convolution, flatten/transpose to tokens, a parameter
concatenated to the sequence (expand + cat), a learned position-embedding parameter,
scaled_dot_product_attention (decomposed by capture), GELU, selecting the class token.
"""

import torch
from torch import nn
import torch.nn.functional as F

torch.manual_seed(0)

IMAGE_SIZE = 32
PATCH = 8
D_MODEL = 64
N_HEADS = 4
N_LAYERS = 2
D_MLP = 128


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> (3, B, H, T, Dh)
        qkv = self.qkv(x).reshape(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y)


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=1e-6)
        self.attn = Attention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class ViT(nn.Module):
    def __init__(
        self,
        image_size: int = IMAGE_SIZE,
        patch: int = PATCH,
        d_model: int = D_MODEL,
        n_heads: int = N_HEADS,
        n_layers: int = N_LAYERS,
        d_mlp: int = D_MLP,
        num_classes: int = 10,
    ):
        super().__init__()
        n_patches = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(3, d_model, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(1, n_patches + 1, d_model) * 0.02)
        self.blocks = nn.ModuleList([EncoderBlock(d_model, n_heads, d_mlp) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.patch_embed(x)  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.pos_emb
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return self.head(x[:, 0])


model = ViT().eval()
example_inputs = (torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE),)
