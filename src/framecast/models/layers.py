"""Building blocks shared by the models: norms, 3-axis rotary embeddings, attention, timestep embedding.

Norms, RoPE and modulation run in fp32 whatever the autocast dtype (DESIGN.md convention 6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMS norm over the last dimension, computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        return F.rms_norm(x.float(), x.shape[-1:], weight, self.eps).to(x.dtype)  # one fused kernel


def rope_frequencies(dims: tuple[int, int, int], theta: float = 10000.0) -> list[torch.Tensor]:
    """Per-axis inverse frequencies; dims[i] (even) channels of each head rotate with axis i."""
    return [1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d) for d in dims]


def rope_angles(grid: tuple[int, int, int], dims: tuple[int, int, int], theta: float = 10000.0,
                device: torch.device | None = None) -> torch.Tensor:
    """Rotation angles for every token of a (T, H, W) grid, flattened t-major: (T*H*W, sum(dims)/2).

    Positions are integer grid indices, so any duration, size and aspect ratio works with the
    same weights: a bigger grid simply uses more positions.
    """
    t, h, w = grid
    pos = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    pos = pos.reshape(-1, 3).double()  # (N, 3)
    angles = [pos[:, i:i + 1] * f[None] for i, f in enumerate(rope_frequencies(dims, theta))]
    return torch.cat(angles, -1).float().to(device)  # (N, sum(dims)/2)


def rope_rotations(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex rotations e^(i angle) (N, D/2) complex64: computed once per forward, used by
    every attention layer."""
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (B, heads, N, D) by rope (N, D/2), the rope_rotations of the
    tokens' angles; channels past 2 * rope.shape[-1] stay as they are."""
    r = rope.shape[-1] * 2
    pairs = torch.view_as_complex(x[..., :r].float().unflatten(-1, (-1, 2)))  # (B, h, N, D/2)
    rotated = torch.view_as_real(pairs * rope).flatten(-2).to(x.dtype)
    return rotated if r == x.shape[-1] else torch.cat([rotated, x[..., r:]], -1)


class Attention(nn.Module):
    """Multi-head attention (self or cross) through torch SDPA, with QK RMS norm and optional RoPE."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        assert dim % heads == 0, "dim must divide into heads"
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        head_dim = dim // heads
        self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, rope: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D); context (B, M, Dc) for cross-attention; mask (B, M) True = attend."""
        b, n, _ = x.shape
        ctx = x if context is None else context
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(ctx).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 2 x (B, h, M, d)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, M)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(o.transpose(1, 2).reshape(b, n, -1))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow times t in [0, 1] (scaled by 1000, as DiT does): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))
