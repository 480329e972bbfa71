"""Spacetime diffusion transformer: predicts flow-matching velocity for a latent video.

Latents (B, C, T, H, W) are cut into (pt, ph, pw) patches, one token each, with 3-axis RoPE
over the (t, h, w) patch grid, so any duration, size and aspect ratio uses the same weights.
Each block: adaLN-zero modulated full self-attention over all spacetime tokens, cross-attention
to the text tokens, and an MLP. An optional convolutional head (`head_channels`) then refines
the velocity cell by cell from the noisy latents around it (ConvHead).

The flow time may differ per latent frame (t of shape (B, T')): given frames ride along clean at
t = 0 while the rest are denoised, which is how one set of weights does image-to-video,
extension, looping and connecting clips (as Wan and LTX-Video condition on frames).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ..config import DiTConfig
from .layers import MLP, Attention, RMSNorm, rope_angles, rope_rotations, timestep_embedding


def patchify(x: torch.Tensor, p: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, C*pt*ph*pw) tokens, t-major over the patch grid."""
    return rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=p[0], ph=p[1], pw=p[2])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, N, D) tokens, t-major; shift, scale (B, F, D) per frame group of N/F tokens (F = 1: all)."""
    b, n, d = x.shape
    f = shift.shape[1]
    h = torch.addcmul(shift[:, :, None], x.float().view(b, f, n // f, d), 1 + scale[:, :, None])  # (B, F, N/F, D)
    return h.view(b, n, d).to(x.dtype)


def gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x (B, N, D) scaled by a per-frame-group gate g (B, F, D)."""
    b, n, d = x.shape
    f = g.shape[1]
    return (x.float().view(b, f, n // f, d) * g[:, :, None]).view(b, n, d).to(x.dtype)


def unpatchify(x: torch.Tensor, p: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """(B, N, C*pt*ph*pw) -> (B, C, T, H, W) for a (T/pt, H/ph, W/pw) patch grid."""
    t, h, w = grid
    return rearrange(x, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=p[0], ph=p[1], pw=p[2])


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, cfg.heads)
        self.norm_cross = nn.LayerNorm(d, eps=1e-6)
        self.cross = Attention(d, cfg.heads, context_dim=d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(d, int(d * cfg.mlp_ratio))
        self.modulation = nn.Linear(d, 6 * d)  # shift, scale, gate for attention and MLP
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None,
                rope: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) tokens; c (B, F, D) timestep conditioning per frame group; text (B, M, D)."""
        mod = self.modulation(nn.functional.silu(c)).float()  # (B, F, 6D), fp32
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate(self.attn(modulate(self.norm1(x), shift1, scale1), rope=rope), gate1)
        x = x + self.cross(self.norm_cross(x), context=text, mask=text_mask)
        return x + gate(self.mlp(modulate(self.norm2(x), shift2, scale2)), gate2)


class ConvHead(nn.Module):
    """A residual on the velocity at latent resolution, from 3x3x3 convolutions over the
    transformer's velocity, the noisy latents and the flow time of each cell.

    A token decodes its whole patch (4x4 latent cells in the default preset) through one linear
    map, and the noisy latents reach the output only through that patch's token. The head gives
    each cell its neighbourhood at full resolution, as a U-Net's outermost skip does. Its last
    convolution starts at zero, so a DiT given a head starts as the DiT without one.
    """

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(2 * channels + 1, hidden, 3, padding=1), nn.SiLU(),
                                 nn.Conv3d(hidden, hidden, 3, padding=1), nn.SiLU(),
                                 nn.Conv3d(hidden, channels, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, v: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v, x (B, C, T, H, W); t (B, T) per latent frame -> v refined, (B, C, T, H, W)."""
        b, _, frames, h, w = x.shape
        tmap = t.to(v.dtype)[:, None, :, None, None].expand(b, 1, frames, h, w)
        return v + self.net(torch.cat([v, x.to(v.dtype), tmap], 1)).to(v.dtype)


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        patch_dim = cfg.latent_channels * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.patch_in = nn.Linear(patch_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_in = nn.Sequential(RMSNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(d, 2 * d)
        self.patch_out = nn.Linear(d, patch_dim)
        for layer in (self.out_modulation, self.patch_out):  # start as a zero velocity
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.head = ConvHead(cfg.latent_channels, cfg.head_channels) if cfg.head_channels else None

    def grid(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Patch grid (T/pt, H/ph, W/pw) of a latent shape (..., T, H, W)."""
        t, h, w = shape[-3:]
        pt, ph, pw = self.cfg.patch_size
        if t % pt or h % ph or w % pw:
            raise ValueError(f"latent size {t}x{h}x{w} is not a multiple of the patch size {pt}x{ph}x{pw}")
        return t // pt, h // ph, w // pw

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity for latents x (B, C, T, H, W) at flow times t, given text tokens (B, M, text_dim).

        t is (B,), one time per clip, or (B, T), one per latent frame (frames in one temporal
        patch must share it).
        """
        grid = self.grid(x.shape)
        times = t
        rope = rope_rotations(rope_angles(grid, self.cfg.rope_dims, self.cfg.rope_theta, device=x.device))  # (N, D_head/2) complex
        tokens = self.patch_in(patchify(x, self.cfg.patch_size))  # (B, N, D)
        t = self.frame_times(t, x.shape[0], x.shape[2])  # (B, F), F = 1 or T/pt
        c = self.time_mlp(timestep_embedding(t.flatten(), self.cfg.dim).to(tokens.dtype)).view(*t.shape, -1)  # (B, F, D)
        ctx = self.text_in(text.to(tokens.dtype))  # (B, M, D)
        for block in self.blocks:
            tokens = block(tokens, c, ctx, text_mask, rope)
        shift, scale = self.out_modulation(nn.functional.silu(c)).float().chunk(2, dim=-1)  # (B, F, D) each
        tokens = modulate(self.norm_out(tokens), shift, scale)
        v = unpatchify(self.patch_out(tokens), self.cfg.patch_size, grid)
        if self.head is None:
            return v
        if times.dim() == 1:
            times = times[:, None].expand(x.shape[0], x.shape[2])
        return self.head(v, x, times)

    def frame_times(self, t: torch.Tensor, batch: int, frames: int) -> torch.Tensor:
        """Flow times as (B, 1) for a whole clip or (B, T/pt) per temporal patch."""
        if t.dim() == 1:
            return t.view(batch, 1)
        if t.shape != (batch, frames):
            raise ValueError(f"per-frame times must be (batch, latent frames) = {(batch, frames)}, got {tuple(t.shape)}")
        return t[:, ::self.cfg.patch_size[0]]
