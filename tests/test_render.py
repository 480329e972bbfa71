"""Rendering: exact palette interiors, anti-aliased edges, true sizes at any resolution."""

import math

import numpy as np
import pytest

from framecast.world import spec
from framecast.world.clip import make_clip
from framecast.world.render import frame_times, render_frames
from framecast.world.scene import Layout, ObjectSpec, ObjectState, Scene


def still_frame(shape, size, width, height, bg="navy", angle=0.0, gravity=False):
    aspect = width / height
    objs = [ObjectSpec("orange", shape, size, "still")]
    states = [ObjectState(aspect / 2, 0.45, angle=angle)]
    if gravity:  # a thrown object turns the floor on
        objs.append(ObjectSpec("cyan", "ball", "small", "throw", "right"))
        states.append(ObjectState(0.1, 0.84))
    layout = Layout(Scene(bg, aspect, tuple(objs)), tuple(states))
    centres = np.array([[[s.x, s.y] for s in states]])
    angles = np.array([[s.angle for s in states]])
    return render_frames(layout, centres, angles, width, height)[0]


@pytest.mark.parametrize("shape", spec.SHAPES)
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("wh", [(64, 64), (160, 90), (90, 160), (256, 256)])
def test_area_and_interior_colour(shape, size, wh):
    w, h = wh
    img = still_frame(shape, size, w, h, angle=0.4).astype(np.float64)
    bg, col = np.array(spec.BACKGROUNDS["navy"]), np.array(spec.OBJECT_COLORS["orange"])
    coverage = ((img - bg) @ (col - bg)) / ((col - bg) @ (col - bg))
    side_px = spec.SIZES[size] * h
    expected = spec.AREA_FACTOR[shape] * side_px ** 2
    assert coverage.sum() == pytest.approx(expected, rel=0.03)
    # interior pixels hold the exact palette colour; the centre is interior
    cy, cx = int(0.45 * h), w // 2
    assert tuple(img[cy, cx]) == spec.OBJECT_COLORS["orange"]
    exact = np.all(img == col, axis=-1).sum()
    assert exact > 0.5 * expected
    # far from the object the background is exact
    assert tuple(img[1, 1]) == spec.BACKGROUNDS["navy"]


def test_edges_are_anti_aliased():
    img = still_frame("ball", "large", 128, 128, bg="black")
    bg, col = np.array(spec.BACKGROUNDS["black"]), np.array(spec.OBJECT_COLORS["orange"])
    mixed = ~np.all(img == bg, -1) & ~np.all(img == col, -1)
    # a ring of partial pixels about one pixel wide around the disc
    circumference = math.pi * spec.SIZES["large"] * 128
    assert 0.7 * circumference < mixed.sum() < 2.5 * circumference


def test_floor_band_only_with_gravity():
    with_floor = still_frame("box", "small", 100, 100, bg="gray", gravity=True)
    without = still_frame("box", "small", 100, 100, bg="gray")
    assert np.all(with_floor[91:, :] == spec.FLOOR_RGB)
    assert np.all(with_floor[85, 0] == spec.BACKGROUNDS["gray"])
    assert np.all(without[91:, :] == spec.BACKGROUNDS["gray"])


def test_same_seed_same_clip_other_seed_other_clip():
    a = make_clip(11, 1.0, 8, 48, 32)
    b = make_clip(11, 1.0, 8, 48, 32)
    c = make_clip(12, 1.0, 8, 48, 32)
    assert np.array_equal(a.frames, b.frames) and a.prompt == b.prompt and a.caption == b.caption
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("seconds, fps, n", [(4, 12, 48), (1, 30, 30), (2.5, 8, 20), (0.5, 24, 12)])
def test_any_frame_rate(seconds, fps, n):
    clip = make_clip(5, seconds, fps, 32, 32)
    assert clip.frames.shape == (n, 32, 32, 3)
    assert np.allclose(frame_times(seconds, fps), np.arange(n) / fps)


def test_same_scene_at_two_resolutions_matches():
    """A scene means the same thing at any resolution: downsampled 4x it matches the small render."""
    big = make_clip(21, 1.0, 6, 256, 144).frames.astype(np.float64)
    small = make_clip(21, 1.0, 6, 64, 36).frames.astype(np.float64)
    pooled = big.reshape(6, 36, 4, 64, 4, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 2.0
