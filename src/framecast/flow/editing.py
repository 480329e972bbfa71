"""Editing a clip with its prompt: FlowEdit, a pure function beside the samplers.

FlowEdit (Kulikov et al., 2024, "Inversion-free text-based editing using pre-trained flow
models") walks straight from the source's latents to the edit's, with no inversion and no
noised copy of the source to start from. At each time t of the schedule it noises the source
afresh, x_t = (1 - t) x_src + t n, moves that point by the edit made so far, and steps the
edit by the *difference* of the two velocities: the edit prompt's at the moved point minus the
source's at the noised source. Wherever the prompts agree (the layout, the motion, the
background) the two velocities cancel, so what the prompt does not change stays; SDEdit
instead regenerates everything below its start time from a noised copy and, for small objects
whose colour and position are settled at the same noise level, keeps both or loses both.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .samplers import ModelFn, _times


def flow_edit(model_fn: ModelFn, source_fn: ModelFn, source: torch.Tensor, timesteps: torch.Tensor,
              cond: Any, source_cond: Any, noise: Callable[[], torch.Tensor], callback=None) -> torch.Tensor:
    """The edit of clean latents `source` (B, C, T', H, W) along `timesteps` (t0 down to 0), in
    Euler steps (each step draws its own noise, so a higher-order step would not be consistent).

    model_fn(x, t, cond) is the edit's velocity (guided by its prompt); source_fn(x, t,
    source_cond) the source's. noise() draws a fresh standard normal of source's shape for each
    step. Returns the edited clean latents; with identical velocity functions the source comes
    back unchanged.
    """
    z = source.clone()
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        tt = float(t)
        x_src = (1 - tt) * source + tt * noise().to(source)
        x_edit = x_src + (z - source)  # the noised source, moved by the edit so far
        times = _times(t, z)
        z = z + (t_next - t).item() * (model_fn(x_edit, times, cond) - source_fn(x_src, times, source_cond))
        if callback:
            callback(i, n, z)
    return z
