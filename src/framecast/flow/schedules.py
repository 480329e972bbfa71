"""Pure functions of flow time. t = 0 is data, t = 1 is noise: x_t = (1 - t) x0 + t noise."""

from __future__ import annotations

import math

import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Warp t toward noise by `shift` (SD3 / Flux): t' = s t / (1 + (s - 1) t); shift 1 is identity."""
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(tokens: int, base_shift: float = 1.0, base_tokens: int = 256, max_tokens: int = 4096,
                     growth: float = 3.0) -> float:
    """Timestep shift that grows with the token count: base_shift at base_tokens, growth times
    that at max_tokens, log-linear in between and beyond (as Flux).

    More tokens (bigger or longer videos) keep more signal at a given t, so they need more
    time spent near noise. base_shift is the model's own (ModelMeta.time_shift): the training
    times and the sampler's must agree.
    """
    a = math.log(growth) / (math.log(max_tokens) - math.log(base_tokens))
    return base_shift * math.exp(a * (math.log(max(tokens, 1)) - math.log(base_tokens)))


def sampling_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 decreasing times from 1 (noise) to 0 (data), shifted: (steps + 1,) float64."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def start_at(times: torch.Tensor, t0: float) -> torch.Tensor:
    """A schedule begun part way, at flow time t0 (SDEdit): t0, then the times below it.

    t0 >= 1 is the whole schedule; t0 = 0 is no step at all.
    """
    if not 0.0 <= t0:
        raise ValueError(f"the start time must be at least 0, got {t0}")
    if t0 >= 1.0:
        return times
    return torch.cat([torch.tensor([t0], dtype=times.dtype), times[times < t0]])
