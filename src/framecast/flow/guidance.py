"""Classifier-free guidance as a wrapper around a model function (never a model method)."""

from __future__ import annotations

from typing import Any

import torch

from .samplers import ModelFn


def cfg(model_fn: ModelFn, scale: float) -> ModelFn:
    """Guided velocity v_u + scale (v_c - v_u).

    The wrapped function takes cond = (positive, negative): the negative is the empty prompt
    or a negative prompt. Both passes run as one batch. scale 1 skips the negative pass.
    """

    def guided(x: torch.Tensor, t: torch.Tensor, cond: tuple[Any, Any]) -> torch.Tensor:
        pos, neg = cond
        if scale == 1.0:
            return model_fn(x, t, pos)
        v = model_fn(torch.cat([x, x]), torch.cat([t, t]), _cat(pos, neg))
        v_pos, v_neg = v.chunk(2)
        return v_neg + scale * (v_pos - v_neg)

    return guided


def _cat(a: Any, b: Any) -> Any:
    """Concatenate two conditionings along the batch: tensors, tuples of tensors, or None."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    return type(a)(_cat(x, y) for x, y in zip(a, b))
