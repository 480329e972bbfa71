"""Pixel fidelity between two videos or images of 8-bit values, and how seamless a loop is."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays of 0-255 values (inf when equal).

    where: an optional bool mask over the leading dimensions (e.g. (T, H, W) object pixels of
    (T, H, W, 3) frames): the error is averaged over those elements only.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr of arrays of different shapes: {a.shape} and {b.shape}")
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = float(err[where].mean() if where is not None else err.mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


LOOP_SEAM = 2.0  # a seamless loop's last-to-first step is at most this many ordinary steps (issue 5)


def seam_ratio(frames: np.ndarray) -> float:
    """Mean |last - first| over the mean |f[k+1] - f[k]| of (T, H, W, C) frames: 1 is a seam
    like any other step of the clip played in a loop."""
    f = np.asarray(frames, dtype=np.float64)
    steps = np.abs(np.diff(f, axis=0)).mean()
    return float(np.abs(f[-1] - f[0]).mean() / max(steps, 1e-9))
