"""Conditioning on given frames, as a wrapper around a model function (never a model method).

Given latent frames ride along clean: the DiT sees them at flow time 0 (as it was trained, see
train/losses.py `given_frames`), their values are the given clean latents at every step, and
their velocity is zero, so any sampler leaves them exactly as given. The samplers stay pure:
they pass one time per clip, and the wrapper turns it into one time per latent frame.
"""

from __future__ import annotations

from typing import Any

import torch

from .samplers import ModelFn


def _frame_mask(given: torch.Tensor) -> torch.Tensor:
    """(T',) bool -> (1, 1, T', 1, 1): broadcasts against latents (B, C, T', H, W)."""
    return given.view(1, 1, -1, 1, 1)


def apply_given(x: torch.Tensor, given: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """x (B, C, T', H, W) with its given frames (given: (T',) bool) replaced by clean's."""
    return torch.where(_frame_mask(given.to(x.device)), clean.to(x), x)


def condition(model_fn: ModelFn, given: torch.Tensor, clean: torch.Tensor) -> ModelFn:
    """model_fn with the frames marked in `given` (T',) bool held at `clean` (1 or B, C, T', H, W).

    The sampler's times t (B,) become (B, T') with 0 on given frames; the returned velocity is 0
    there. Start the sampler from apply_given(x, given, clean) and the given frames come out
    bit for bit as given.
    """
    if given.dim() != 1 or given.dtype != torch.bool:
        raise ValueError(f"given must be a (frames,) bool mask, got {tuple(given.shape)} {given.dtype}")

    def conditioned(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        if x.shape[2] != given.shape[0]:
            raise ValueError(f"latents have {x.shape[2]} frames but the mask names {given.shape[0]}")
        mask = given.to(x.device)
        t_frames = t.view(-1, 1).expand(-1, mask.shape[0]).masked_fill(mask, 0.0)  # (B, T')
        v = model_fn(apply_given(x, mask, clean), t_frames, cond)
        return v.masked_fill(_frame_mask(mask), 0.0)

    return conditioned
