"""Colour tracking: where each palette colour is, frame by frame, in a decoded clip.

World clips are flat palette colours on a flat background (WORLD.md), but an mp4 round trip
(H.264, yuv420p) halves the chroma resolution and smears it: the inside of an 8-pixel object
keeps its brightness but loses much of its colour. So a pixel is never judged by its own
colour alone:

- the background plate holds one colour per row (the floor band and its anti-aliased edge
  included), from the pixels between the background and floor colours, shifted per frame
  by the frame's median offset (a background that pulses shows up in those offsets);
- a pixel is foreground where it differs from the plate; its colour label comes from the
  *local sum* of differences over a 5x5 window (the chroma the codec spread around is summed
  back), as the object colour whose direction from the plate it matches best;
- each connected region of one label is measured on a support dilated by 2 pixels: its
  coverage alpha (a projection of the difference onto the colour's direction, luma-weighted
  because luma keeps full resolution) gives area, centroid, circumradius and n-fold angular
  moments (orientation of a box or triangle). A region whose most solid pixels are not even
  half its colour is a smudge of the background, not an object;
- background pixels away from every object that change between frames are flicker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..world import spec

# BT.601 RGB -> (Y, Cb, Cr) differences; chroma carries the colour's identity, luma the edge.
_YCC = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]])
COLOR_NAMES = tuple(spec.OBJECT_COLORS)
_OBJ = np.array([spec.OBJECT_COLORS[c] for c in COLOR_NAMES], np.float64)  # (K, 3)

FG_THRESHOLD = 20.0  # YCbCr distance from the plate that makes a pixel foreground
LABEL_WINDOW = 5  # pixels: window over which chroma is summed back before labelling
MIN_COS = 0.85  # a pixel whose local colour points nowhere near an object colour is unlabelled
SUPPORT_DILATION = 2  # pixels around a region whose smeared colour still belongs to it
CHROMA_WEIGHT = 0.3  # weight of chroma against luma in a pixel's coverage estimate
MIN_PEAK = 0.45  # a region never even half its colour is a smudge of the background, not an object
BG_CHANGE_LEVELS = 16  # a background pixel that changes more than this between frames flickers
EIGHT = np.ones((3, 3), bool)


@dataclass
class Blob:
    """One connected region of one object colour in one frame (pixel units, y down)."""

    area: float  # coverage-weighted pixel area
    cx: float
    cy: float
    radius: float  # circumradius about the centroid, from the anti-aliased edge
    bbox: tuple[float, float, float, float]  # x0, y0, x1, y1 of the pixels at least half covered
    m3: complex  # 3-fold and 4-fold angular moments (orientation of a triangle / a box)
    m4: complex
    crowded: bool = False  # touches another object's pixels, so part of its edge went to that one
    peak: float = 1.0  # coverage of its most solid pixels: 1 for a flat-coloured object

    @property
    def fill(self) -> float:
        """Fraction of the circumscribed circle covered (ball 1, box 0.64, triangle 0.41)."""
        return self.area / (math.pi * self.radius ** 2) if self.radius > 0 else 0.0


@dataclass
class ColorTrack:
    """One colour through a clip: its largest region per frame (None where absent)."""

    color: str
    main: list[Blob | None]
    extra: list[list[Blob]]  # the other regions of this colour in each frame, largest first


@dataclass
class ClipTracks:
    width: int
    height: int
    fps: float
    n_frames: int
    plate: np.ndarray  # (H, 3) RGB background of each row
    offsets: np.ndarray  # (T, 3) per-frame shift of the background from the plate
    bg_change: np.ndarray  # (T,) fraction of background pixels that changed since the last frame
    floor_fraction: float  # fraction of the bottom band that is floor-coloured
    colors: dict[str, ColorTrack] = field(default_factory=dict)


def _plate(frames: np.ndarray) -> np.ndarray:
    """(H, 3): the background of each row (the floor band and its anti-aliased edge included).

    Still objects can fill most of a row in a narrow frame, so a row's plain median is not
    enough: the background is the frame's most common colour (the median above the floor),
    the floor is the median of the bottom rows, and each row takes the median of only its
    pixels that lie between the two.
    """
    t, h = frames.shape[:2]
    step = max(1, t // 24)  # a subsample of frames keeps this fast on long clips
    sample = frames[::step].astype(np.float64)  # (T', H, W, 3)
    top = max(1, int(0.85 * h))
    bg = np.median(sample[:, :top].reshape(-1, 3), axis=0)
    low = math.ceil((spec.GROUND_Y + 0.03) * h)
    floor = np.median(sample[:, low:].reshape(-1, 3), axis=0) if low < h else bg
    seg = floor - bg
    rows = sample.transpose(1, 0, 2, 3).reshape(h, -1, 3)  # (H, T'*W, 3)
    u = ((rows - bg) @ seg) / max(float(seg @ seg), 1e-6)
    u = np.clip(u, -0.1, 1.1) if seg @ seg > 1.0 else np.zeros_like(u)
    off = np.linalg.norm(rows - bg - u[..., None] * seg, axis=-1)
    plate = np.empty((h, 3))
    for r in range(h):
        ok = off[r] < 30.0
        if ok.mean() >= 0.1:
            plate[r] = np.median(rows[r][ok], axis=0)
        else:
            plate[r] = bg if r < spec.GROUND_Y * h else floor
    return plate


def min_object_area(height: int) -> float:
    """Pixel area of the smallest object the world draws (a small triangle)."""
    return spec.AREA_FACTOR["triangle"] * (spec.SIZES["small"] * height) ** 2


def track(frames: np.ndarray, fps: float) -> ClipTracks:
    """Track every object colour through (T, H, W, 3) uint8 frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    t_count, h, w, _ = frames.shape
    plate = _plate(frames)
    obj_dir = (_OBJ[None] - plate[:, None]) @ _YCC.T  # (H, K, 3) colour minus background
    unit = obj_dir / np.maximum(np.linalg.norm(obj_dir, axis=-1, keepdims=True), 1e-6)
    wts = np.array([1.0, CHROMA_WEIGHT, CHROMA_WEIGHT])
    denom = np.maximum((obj_dir ** 2 * wts).sum(-1), 1e-6)  # (H, K)
    keep_frag = max(2.0, 0.25 * min_object_area(h))  # smaller regions are flecks, not objects
    min_px = max(1.0, 0.15 * min_object_area(h))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5

    offsets = np.zeros((t_count, 3))
    bg_change = np.zeros(t_count)
    mains: dict[str, list] = {c: [None] * t_count for c in COLOR_NAMES}
    extras: dict[str, list] = {c: [[] for _ in range(t_count)] for c in COLOR_NAMES}
    floor_hits = []
    prev = None
    for t in range(t_count):
        f = frames[t].astype(np.float64)
        raw = f - plate[:, None]
        offsets[t] = np.median(raw.reshape(-1, 3), axis=0)
        d = (raw - offsets[t]) @ _YCC.T  # (H, W, 3)
        fg = np.linalg.norm(d, axis=-1) > FG_THRESHOLD
        local = ndi.uniform_filter(d, size=(LABEL_WINDOW, LABEL_WINDOW, 1), mode="nearest")
        cos = np.einsum("hwc,hkc->hwk", local, unit) / (np.linalg.norm(local, axis=-1)[..., None] + 1e-9)
        lab = cos.argmax(-1)
        lab[~fg | (cos.max(-1) < MIN_COS)] = -1
        objects = np.zeros((h, w), bool)  # the pixels that belong to some object
        for k in np.unique(lab[lab >= 0]):
            mask = lab == k
            comps, _ = ndi.label(mask, EIGHT)
            others = (lab >= 0) & ~mask
            counts = np.bincount(comps.ravel())
            blobs = []
            for i, sl in enumerate(ndi.find_objects(comps)):
                if counts[i + 1] < min_px:
                    continue  # too few pixels to be an object: skip the measuring
                sl = _pad(sl, SUPPORT_DILATION + 1, h, w)
                got = _measure(comps[sl] == i + 1, others[sl], d[sl], obj_dir[sl[0], k], denom[sl[0], k],
                               xs[sl], ys[sl], wts)
                if got is None or got[0].area < keep_frag or got[0].peak < MIN_PEAK:
                    continue  # a fleck, or a faint smudge of the background rather than an object
                blobs.append(got[0])
                objects[sl] |= got[1]
            blobs.sort(key=lambda b: -b.area)
            if blobs:
                name = COLOR_NAMES[k]
                mains[name][t] = blobs[0]
                extras[name][t] = blobs[1:]
        near = ndi.binary_dilation(objects, EIGHT, iterations=2)
        if prev is not None:
            quiet = ~(near | prev[1])
            change = np.abs(f - prev[0]).max(-1) > BG_CHANGE_LEVELS
            bg_change[t] = change[quiet].mean() if quiet.any() else 0.0
        prev = (f, near)
        floor_hits.append(_floor_fraction(f, h, near))
    colors = {c: ColorTrack(c, mains[c], extras[c]) for c in COLOR_NAMES}
    return ClipTracks(w, h, float(fps), t_count, plate, offsets, bg_change,
                      float(np.median(floor_hits)), colors)


def _pad(sl, r: int, h: int, w: int):
    return (slice(max(sl[0].start - r, 0), min(sl[0].stop + r, h)),
            slice(max(sl[1].start - r, 0), min(sl[1].stop + r, w)))


def _measure(region, others, d, obj_dir, denom, xs, ys, wts) -> tuple[Blob, np.ndarray] | None:
    """Coverage-weighted area, centroid, circumradius and angular moments of one region,
    and the support it was measured on."""
    grown = ndi.binary_dilation(region, EIGHT, iterations=SUPPORT_DILATION)
    support = grown & ~others
    crowded = bool((grown & others).any())
    alpha = (d * obj_dir[:, None, :] * wts).sum(-1) / denom[:, None]
    alpha = np.where(support, alpha, 0.0)
    area = float(alpha.sum())
    a = np.clip(alpha, 0.0, 1.0)
    total = a.sum()
    if area <= 0 or total <= 0:
        return None
    cx, cy = float((a * xs).sum() / total), float((a * ys).sum() / total)
    dx, dy = xs - cx, ys - cy
    r = np.hypot(dx, dy)
    edge = a > 0.2
    # an edge pixel of coverage a lies a - 0.5 pixels inside the boundary (the renderer's box filter)
    radius = float((r + a - 0.5)[edge].max()) if edge.any() else 0.0
    theta = np.arctan2(dy, dx)  # y points down: a clockwise turn on screen increases theta
    w2 = a * r ** 2
    m3 = complex((w2 * np.exp(3j * theta)).sum() / max(w2.sum(), 1e-9))
    m4 = complex((w2 * np.exp(4j * theta)).sum() / max(w2.sum(), 1e-9))
    half = a >= 0.5
    if half.any():
        hx, hy = xs[half], ys[half]
        bbox = (float(hx.min() - 0.5), float(hy.min() - 0.5), float(hx.max() + 0.5), float(hy.max() + 0.5))
    else:
        bbox = (cx, cy, cx, cy)
    peak = float(np.percentile(a[region], 90))
    return Blob(area, cx, cy, radius, bbox, m3, m4, crowded, peak), support


def _floor_fraction(f: np.ndarray, h: int, near: np.ndarray) -> float:
    """Fraction of the pixels well inside the floor band (y in [0.92, 1]) that are floor grey."""
    top = math.ceil((spec.GROUND_Y + 0.02) * h)
    band = f[top:]
    if band.size == 0:
        return 0.0
    close = np.linalg.norm(band - np.asarray(spec.FLOOR_RGB, np.float64), axis=-1) < 40
    free = ~near[top:]
    return float(close[free].mean()) if free.any() else float(close.mean())


def path_drift(source: np.ndarray, edited: np.ndarray, fps: float, old: str, new: str) -> float | None:
    """How far an edit moved a recoloured object: the mean distance (frame heights) between its
    centre in the source (colour `old`) and in the edit (colour `new`), frame by frame, over the
    frames that show both; None if either is never seen. An edit that keeps the motion stays
    within a few hundredths."""
    a, b = track(source, fps).colors.get(old), track(edited, fps).colors.get(new)
    if a is None or b is None:
        return None
    d = [np.hypot(p.cx - q.cx, p.cy - q.cy) for p, q in zip(a.main, b.main) if p is not None and q is not None]
    return float(np.mean(d)) / source.shape[1] if d else None
