"""Seamless loops, as a wrapper around a model function (never a model method).

A loop's latent frames after the first (the lone first frame, dropped from the output; see
windows.py) form a cycle: the last leads into the first as any frame leads into the next. The
DiT sees a window with two ends, so each call shows it the cycle rolled by another shift (the
last-first seam sits inside the window on every call but one in `period`): every neighbouring
pair, the seam included, is made to agree on nearly every step. A cycle longer than the window
is run a window at a time, the cuts moving with the roll. This is the latent rolling of looping
video samplers (e.g. "free loops" with AnimateDiff), for a flow sampler.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch

from .samplers import ModelFn


def _stride(period: int) -> int:
    """The shift from one call to the next: coprime with the period (every shift comes before
    one repeats) and near its golden section (consecutive calls' seams lie far apart)."""
    s = max(1, round(period * 0.618))
    while math.gcd(s, period) != 1:
        s += 1
    return s % period or 1


def cyclic(model_fn: ModelFn, first: int = 1, window: int | None = None) -> ModelFn:
    """model_fn over latents (B, C, T', H, W) whose frames first .. T'-1 form a cycle.

    Call j rolls the cycle by j * stride frames (mod its period), runs model_fn and rolls the
    velocity back; frames before `first` stay in place. Times may be (B,) or (B, T').

    A cycle longer than a window (at most `window` frames a call, the first ones included) is
    cut, after the roll, into near-equal chunks, each run with the frames before the cycle in
    front (their velocity: the chunks' mean). The cuts move with the roll, so every neighbouring
    pair is inside one chunk on most calls; time grows linearly with the cycle, memory stays flat.
    """
    if window is not None and window <= first:
        raise ValueError(f"a window of {window} frames holds none of the cycle after {first} given ones")
    calls = itertools.count()

    def rolled(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        period = x.shape[2] - first
        if period < 2:
            return model_fn(x, t, cond)
        shift = next(calls) * _stride(period) % period
        order = torch.cat([torch.arange(first), first + (torch.arange(period) + shift) % period]).to(x.device)
        x, t = x[:, :, order], (t[:, order] if t.dim() == 2 else t)
        n = 1 if window is None else -(-period // (window - first))  # chunks of at most a window
        cuts = [first + period * i // n for i in range(n + 1)]
        lead = torch.arange(first, device=x.device)
        v = torch.empty_like(x)
        v[:, :, :first] = 0
        for a, b in zip(cuts, cuts[1:]):
            idx = torch.cat([lead, torch.arange(a, b, device=x.device)])
            vc = model_fn(x[:, :, idx], t[:, idx] if t.dim() == 2 else t, cond)
            v[:, :, a:b] = vc[:, :, first:]
            v[:, :, :first] += vc[:, :, :first] / n
        return torch.empty_like(v).index_copy_(2, order, v)

    return rolled
