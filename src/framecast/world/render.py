"""Anti-aliased rendering of world frames at any resolution, aspect ratio and frame rate.

Each shape's coverage of a pixel comes from its signed distance at the pixel centre
(a one-pixel box filter), so edges are smooth and interiors hold the exact palette colour.
"""

from __future__ import annotations

import math

import numpy as np

from . import spec
from .physics import Trajectory
from .scene import Layout, circumradius, local_vertices


def _coverage(d: np.ndarray, px: float) -> np.ndarray:
    """Signed distance (frame heights, negative inside) -> pixel coverage in [0, 1]."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _signed_distance(shape: str, side: float, cx: float, cy: float, angle: float,
                     xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "ball":
        return np.hypot(dx, dy) - side / 2
    c, s = math.cos(angle), math.sin(angle)
    verts = [(c * x - s * y, s * x + c * y) for x, y in local_vertices(shape, side)]
    d = None
    for (x0, y0), (x1, y1) in zip(verts, verts[1:] + verts[:1]):
        ex, ey = x1 - x0, y1 - y0
        n = math.hypot(ex, ey)
        # outward normal of a clockwise-on-screen polygon (y down)
        nx, ny = ey / n, -ex / n
        e = (dx - x0) * nx + (dy - y0) * ny
        d = e if d is None else np.maximum(d, e)
    return d


def render_background(bg: str, gravity: bool, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 background with the floor band in gravity scenes."""
    img = np.empty((height, width, 3), np.float32)
    img[:] = spec.BACKGROUNDS[bg]
    if gravity:
        ys = (np.arange(height) + 0.5) / height
        a = _coverage(spec.GROUND_Y - ys, 1.0 / height)[:, None, None]
        img += (np.asarray(spec.FLOOR_RGB, np.float32) - img) * a
    return img


def render_frames(layout: Layout, centres: np.ndarray, angles: np.ndarray, width: int, height: int) -> np.ndarray:
    """Render frames from object centres (T, N, 2) and angles (T, N): (T, H, W, 3) uint8."""
    scene = layout.scene
    px = 1.0 / height
    base = render_background(scene.bg, scene.gravity, width, height)
    out = np.empty((len(centres), height, width, 3), np.uint8)
    for t in range(len(centres)):
        img = base.copy()
        for i, o in enumerate(scene.objects):
            cx, cy = centres[t, i]
            r = circumradius(o.shape, o.side) + px
            c0, c1 = max(int((cx - r) / px), 0), min(int(math.ceil((cx + r) / px)), width)
            r0, r1 = max(int((cy - r) / px), 0), min(int(math.ceil((cy + r) / px)), height)
            if c0 >= c1 or r0 >= r1:
                continue
            xs = ((np.arange(c0, c1) + 0.5) * px)[None, :]
            ys = ((np.arange(r0, r1) + 0.5) * px)[:, None]
            a = _coverage(_signed_distance(o.shape, o.side, cx, cy, angles[t, i], xs, ys), px)[..., None]
            patch = img[r0:r1, c0:c1]
            patch += (np.asarray(spec.OBJECT_COLORS[o.color], np.float32) - patch) * a
        out[t] = np.rint(img)
    return out


def frame_times(seconds: float, fps: float) -> np.ndarray:
    """Times of the frames of a clip: t = k / fps for k < round(seconds * fps)."""
    return np.arange(int(round(seconds * fps))) / fps


def render_trajectory(traj: Trajectory, times: np.ndarray, width: int, height: int) -> np.ndarray:
    centres, angles = traj.at(times)
    return render_frames(traj.layout, centres, angles, width, height)
