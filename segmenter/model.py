"""The reference float Segmenter, shaped the way I-Segmenter uses it.

ViT encoder (conv patch embedding, learned position embedding, pre-LN blocks of multi-head
self-attention and a GELU MLP) and a mask-transformer decoder (learned class embeddings joined to
the patch tokens, masks = patch features . class features / sqrt(dim), LayerNorm over classes).
Following I-Segmenter, the masks are NOT L2-normalised and are upsampled with nearest-neighbour
interpolation. The input is the raw image, float32 NCHW in 0..255; the model normalises it itself.
Only standard torch ops are used so exporters keep them recognisable.
"""
import dataclasses
import json

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import UserError
from common.paths import MODEL_DIR

WEIGHTS_PATH = MODEL_DIR / "segmenter.pt"
RECIPE_PATH = MODEL_DIR / "segmenter.json"
# Per-channel statistics of the training images, in 0..1 (fixed, part of the model definition).
PIXEL_MEAN = (0.41, 0.35, 0.33)
PIXEL_STD = (0.21, 0.20, 0.21)


@dataclasses.dataclass(frozen=True)
class SegmenterConfig:
    """Architecture hyper-parameters."""
    num_classes: int = 6
    image_size: int = 64
    patch_size: int = 4
    dim: int = 64
    depth: int = 3
    heads: int = 2
    mlp_ratio: int = 2
    decoder_depth: int = 1

    @property
    def grid(self):
        return self.image_size // self.patch_size


def sincos_position_embedding(grid, dim):
    """2-D sine-cosine position code [1, grid*grid, dim] (MAE style): the start value of the learned embedding."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                                indexing="ij")
    angles = [axis.reshape(-1, 1) * omega for axis in (rows, cols)]
    return torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=1)[None]


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(head_dim)) v."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x)) with a GELU MLP."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Segmenter(nn.Module):
    """Raw image float32 [B,3,H,W] (0..255) -> class logits float32 [B,num_classes,H,W]."""

    def __init__(self, config=SegmenterConfig()):
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).reshape(1, 3, 1, 1))
        self.patch_embed = nn.Conv2d(3, c.dim, c.patch_size, stride=c.patch_size)
        self.pos_embed = nn.Parameter(sincos_position_embedding(c.grid, c.dim))
        self.encoder = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.encoder_norm = nn.LayerNorm(c.dim)
        # Mask-transformer decoder.
        self.class_embed = nn.Parameter(torch.randn(1, c.num_classes, c.dim) * 0.02)
        self.decoder = nn.ModuleList(Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.decoder_depth))
        self.decoder_norm = nn.LayerNorm(c.dim)
        self.patch_proj = nn.Linear(c.dim, c.dim, bias=False)
        self.class_proj = nn.Linear(c.dim, c.dim, bias=False)
        self.mask_norm = nn.LayerNorm(c.num_classes)
        self.mask_scale = c.dim ** -0.5

    def forward(self, image):
        c = self.config
        x = (image / 255.0 - self.pixel_mean) / self.pixel_std
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.encoder:
            x = block(x)
        x = self.encoder_norm(x)
        x = torch.cat([x, self.class_embed.expand(x.shape[0], -1, -1)], dim=1)
        for block in self.decoder:
            x = block(x)
        x = self.decoder_norm(x)
        patches = self.patch_proj(x[:, : c.grid * c.grid])
        classes = self.class_proj(x[:, c.grid * c.grid:])
        masks = self.mask_norm(torch.matmul(patches, classes.transpose(1, 2)) * self.mask_scale)
        masks = masks.transpose(1, 2).reshape(x.shape[0], c.num_classes, c.grid, c.grid)
        return F.interpolate(masks, size=(c.image_size, c.image_size), mode="nearest")


def count_macs(model):
    """Multiply-accumulates of one forward pass on a 1x3xHxW image (matmul/conv ops, via torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.config.image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


def load_reference(weights=WEIGHTS_PATH, recipe=RECIPE_PATH):
    """The trained reference Segmenter from assets/model, in eval mode."""
    if not weights.is_file() or not recipe.is_file():
        raise UserError(f"{weights} or {recipe} is missing; train it with `python -m segmenter.train`")
    config = SegmenterConfig(**json.loads(recipe.read_text())["config"])
    model = Segmenter(config)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
