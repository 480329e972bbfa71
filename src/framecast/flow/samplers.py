"""Samplers: pure functions with one signature, sample(model_fn, x, timesteps, cond, callback=None).

model_fn(x, t, cond) returns the velocity at x for times t (B,); timesteps runs from 1
(noise) to 0 (data). callback(i, n, x) is called after each step (progress bars).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def _times(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)


def euler(model_fn: ModelFn, x: torch.Tensor, timesteps: torch.Tensor, cond: Any, callback=None) -> torch.Tensor:
    """First order: x <- x + (t_next - t) v(x, t)."""
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        x = x + (t_next - t).item() * model_fn(x, _times(t, x), cond)
        if callback:
            callback(i, n, x)
    return x


def heun(model_fn: ModelFn, x: torch.Tensor, timesteps: torch.Tensor, cond: Any, callback=None) -> torch.Tensor:
    """Second order (Heun's method); the last step to t = 0 is an Euler step, as in EDM."""
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        dt = (t_next - t).item()
        v = model_fn(x, _times(t, x), cond)
        x_pred = x + dt * v
        if float(t_next) > 0:
            v2 = model_fn(x_pred, _times(t_next, x), cond)
            x = x + dt * 0.5 * (v + v2)
        else:
            x = x_pred
        if callback:
            callback(i, n, x)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"euler": euler, "heun": heun}
