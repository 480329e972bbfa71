"""Causal video VAE: the video compression network.

Video (B, 3, T, H, W) in [-1, 1] <-> latent (B, C, T', H/f, W/f), f = 2 ** (levels - 1) (4 in the
default preset), with T = 1 + 4 (T' - 1). Every temporal operation is causal and every norm
works within one frame, so the first frame is encoded alone (an image is a 1-frame video) and
encoding or decoding can run chunk by chunk with a small cache: the result equals the
whole-clip pass, and memory stays flat however long the clip is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VAEConfig

Cache = dict  # per-module state while streaming: {module: tensor} plus {"first": bool}


class CausalConv3d(nn.Module):
    """3D convolution padded on the past side in time only (zeros before the first frame)."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3)):
        super().__init__()
        self.kt = kernel[0]
        self.conv = nn.Conv3d(cin, cout, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.kt == 1:
            return self.conv(x)
        b, c, _, h, w = x.shape
        past = cache.get(self) if cache is not None else None
        if past is None:
            past = x.new_zeros(b, c, self.kt - 1, h, w)
        x = torch.cat([past, x], 2)  # (B, C, kt-1+T, H, W)
        if cache is not None:
            cache[self] = x[:, :, -(self.kt - 1):].detach()
        return self.conv(x)


class ChannelNorm(nn.Module):
    """RMS norm over the channels of each position (as Wan's VAE): no statistic crosses time or
    space, so a window of a frame is normalised as the whole frame is (the VAE trains on crops)
    and a flat frame keeps its absolute colour, which a spatial GroupNorm would normalise away."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        rms = x.float().pow(2).mean(1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * rms).to(x.dtype) * self.weight.view(1, -1, 1, 1, 1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kt: int = 3):
        super().__init__()
        self.norm1, self.conv1 = ChannelNorm(cin), CausalConv3d(cin, cout, (kt, 3, 3))
        self.norm2, self.conv2 = ChannelNorm(cout), CausalConv3d(cout, cout, (kt, 3, 3))
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return self.skip(x) + h


class Downsample(nn.Module):
    """2x spatial (strided conv per frame); optionally 2x temporal, keeping the first frame alone."""

    def __init__(self, c: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.spatial = nn.Conv2d(c, c, 3, stride=2)
        self.time = nn.Conv3d(c, c, (2, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.pad(x.transpose(1, 2).reshape(b * t, c, h, w), (0, 1, 0, 1))
        y = self.spatial(y)
        x = y.reshape(b, t, c, *y.shape[-2:]).transpose(1, 2)  # (B, C, T, H/2, W/2)
        if not self.temporal:
            return x
        first = cache["first"] if cache is not None else True
        head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (None, x)
        if rest.shape[2] % 2:
            raise ValueError("a causal video needs 1 + 4k frames (after the first, pairs of frames)")
        out = [self.time(head.repeat(1, 1, 2, 1, 1))] if head is not None else []  # the first frame as a static pair
        if rest.shape[2]:
            out.append(self.time(rest))
        return torch.cat(out, 2)


class Upsample(nn.Module):
    """Optionally 2x temporal (each frame after the first becomes two), then 2x spatial."""

    def __init__(self, c: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.time = nn.Conv3d(c, 2 * c, 1) if temporal else None
        self.spatial = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.temporal:
            first = cache["first"] if cache is not None else True
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
            b, c, t, h, w = rest.shape
            if t:
                rest = self.time(rest).reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)
                x = torch.cat([head, rest], 2)  # (B, C, first + 2 * rest, H, W)
            else:
                x = head
        b, c, t, h, w = x.shape
        y = F.interpolate(x.transpose(1, 2).reshape(b * t, c, h, w), scale_factor=2.0, mode="nearest")
        y = self.spatial(y)
        return y.reshape(b, t, c, 2 * h, 2 * w).transpose(1, 2)


def _time_kernels(cfg: VAEConfig) -> tuple[list[int], int]:
    """Time kernels of the ResBlocks, from full resolution to the middle block (last), and of the
    latent-rate convolutions next to the latent: 3 (sees two steps back) or 1 (one frame)."""
    n = len(cfg.channel_mults) * cfg.num_res_blocks + 1
    if cfg.time_blocks is None:
        return [3] * n, 3
    return [3 if i >= n - cfg.time_blocks else 1 for i in range(n)], 1


def _run(layers: nn.ModuleList, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
    for layer in layers:
        x = layer(x, cache)
    return x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mults]
        kts, kt_latent = _time_kernels(cfg)
        self.conv_in = CausalConv3d(cfg.in_channels, chans[0])
        layers: list[nn.Module] = []
        for i, c in enumerate(chans):
            cin = chans[max(i - 1, 0)]
            layers += [ResBlock(cin if j == 0 else c, c, kts.pop(0)) for j in range(cfg.num_res_blocks)]
            if i < len(chans) - 1:
                layers.append(Downsample(c, cfg.temporal_down[i]))
        layers += [ResBlock(chans[-1], chans[-1], kts.pop(0))]
        self.layers = nn.ModuleList(layers)
        self.norm_out = ChannelNorm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], 2 * cfg.latent_channels, (kt_latent, 3, 3))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = _run(self.layers, self.conv_in(x, cache), cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 2C, T', H', W')


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans = [cfg.base_channels * m for m in cfg.channel_mults][::-1]
        ups = list(cfg.temporal_down)[::-1]
        kts, kt_latent = _time_kernels(cfg)
        kts = kts[::-1]  # the middle block first
        self.conv_in = CausalConv3d(cfg.latent_channels, chans[0], (kt_latent, 3, 3))
        layers: list[nn.Module] = [ResBlock(chans[0], chans[0], kts.pop(0))]
        for i, c in enumerate(chans):
            cin = chans[max(i - 1, 0)]
            layers += [ResBlock(cin if j == 0 else c, c, kts.pop(0)) for j in range(cfg.num_res_blocks)]
            if i < len(chans) - 1:
                layers.append(Upsample(c, ups[i]))
        self.layers = nn.ModuleList(layers)
        self.norm_out = ChannelNorm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], cfg.in_channels)

    def forward(self, z: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = _run(self.layers, self.conv_in(z, cache), cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)  # (B, 3, T, H, W)


@dataclass
class Posterior:
    """Diagonal Gaussian over latents: mean and log-variance (B, C, T', H', W')."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device="cpu").to(self.mean)
        return self.mean + torch.exp(0.5 * self.logvar) * noise

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), mean over elements."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()


class VideoVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.cfg.temporal_down)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.cfg.channel_mults) - 1)

    def latent_frames(self, frames: int) -> int:
        if (frames - 1) % self.temporal_factor:
            raise ValueError(f"the video VAE needs 1 + {self.temporal_factor}k frames, got {frames}")
        return 1 + (frames - 1) // self.temporal_factor

    def encode(self, video: torch.Tensor, chunk: int | None = None) -> Posterior:
        """video (B, 3, T, H, W) -> posterior over (B, C, T', H/f, W/f).

        chunk: encode this many latent frames at a time (streaming, exact); None = all at once.
        """
        self.latent_frames(video.shape[2])
        if chunk is None:
            h = self.encoder(video)
        else:
            cache: Cache = {"first": True}
            parts = [self.encoder(video[:, :, :1], cache)]
            cache["first"] = False
            step = chunk * self.temporal_factor
            for s in range(1, video.shape[2], step):
                parts.append(self.encoder(video[:, :, s:s + step], cache))
            h = torch.cat(parts, 2)
        mean, logvar = h.chunk(2, dim=1)
        return Posterior(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """latent (B, C, T', H', W') -> video (B, 3, 1 + f (T'-1), H' s, W' s), streaming by chunk."""
        if chunk is None:
            return self.decoder(z)
        cache: Cache = {"first": True}
        parts = [self.decoder(z[:, :, :1], cache)]
        cache["first"] = False
        for s in range(1, z.shape[2], chunk):
            parts.append(self.decoder(z[:, :, s:s + chunk], cache))
        return torch.cat(parts, 2)

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None):
        post = self.encode(video)
        return self.decode(post.sample(generator)), post
