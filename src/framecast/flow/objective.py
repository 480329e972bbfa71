"""Rectified flow matching: time sampling, interpolation, velocity target and loss."""

from __future__ import annotations

import torch

from .schedules import shift_time


def sample_times(batch: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0,
                 shift: float = 1.0, uniform: float = 0.0) -> torch.Tensor:
    """Logit-normal flow times (SD3), shifted toward noise for large inputs: (B,) in (0, 1).

    A share `uniform` of them is drawn uniformly instead (unshifted), so both ends of the
    schedule, t near 1 above all (where the sampler lays out the whole clip from pure noise),
    are trained too.
    """
    t = shift_time(torch.sigmoid(torch.randn(batch, generator=generator) * std + mean), shift)
    if uniform > 0:
        pick = torch.rand(batch, generator=generator) < uniform
        t = torch.where(pick, torch.rand(batch, generator=generator).clamp(1e-5, 1 - 1e-5), t)
    return t


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise, with t (B,) or any shape that broadcasts against x0."""
    if t.dim() == 1:
        t = t.view(-1, *([1] * (x0.dim() - 1)))
    t = t.to(x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """d x_t / d t = noise - x0."""
    return noise - x0


def flow_loss(pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weight: torch.Tensor | None = None,
              total_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error; weight (same shape as x0, or broadcastable) masks elements out.

    total_weight divides instead of weight's own sum: a data-parallel rank passes the sum over
    all ranks, so that the ranks' losses add up to the loss of the whole batch.
    """
    err = (pred.float() - velocity_target(x0, noise).float()).pow(2)
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err).float()
    return (err * weight).sum() / (weight.sum() if total_weight is None else total_weight).clamp_min(1.0)
