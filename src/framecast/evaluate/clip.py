"""Score one clip against what it was meant to show."""

from __future__ import annotations

import numpy as np

from ..world.scene import PromptSpec, Scene
from .checks import CATEGORIES, CHECKS, Context, as_prompt_spec, assign, make_series
from .track import track


def evaluate_clip(frames: np.ndarray, fps: float, target: Scene | PromptSpec) -> dict:
    """Check (T, H, W, 3) uint8 frames, sampled at t = k / fps, against a scene or a prompt.

    Returns {"passed": {category: bool}, "failed": ["category: reason", ...]}; the categories
    are those of WORLD.md: alignment, motion, physics, permanence, stability.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    spec = as_prompt_spec(target)
    tracks = track(frames, fps)
    series = {c: make_series(ct, tracks) for c, ct in tracks.colors.items()}
    ctx = Context(spec, tracks, series, assign(spec, series))
    failed = [f"{cat}: {msg}" for cat in CATEGORIES for msg in CHECKS[cat](ctx)]
    passed = {cat: not any(f.startswith(cat + ":") for f in failed) for cat in CATEGORIES}
    return {"passed": passed, "failed": failed}
