"""Seeded sampling of scenes and their layouts over the whole distribution of WORLD.md.

`sample_scene` draws what happens; `place` draws where each object starts, by rejection:
a layout is kept only if the simulated clip has no contact except between the two objects
of a collide, so objects' paths never cross by accident.
"""

from __future__ import annotations

import math

import numpy as np

from . import spec
from .physics import Trajectory, simulate
from .scene import Layout, ObjectSpec, ObjectState, Scene, SceneError, circumradius, extents

START_CLEARANCE = 0.02  # frame heights between circumscribed circles at the start


def _choice(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def sample_scene(rng: np.random.Generator, aspect: float) -> Scene:
    """Draw a scene: background, 1-3 objects of distinct colours, and their events."""
    n = int(rng.integers(1, 4))
    gravity = bool(rng.random() < 0.5)
    pool = ["fall", "throw", "spin", "still"] if gravity else ["slide", "collide", "spin", "still"]
    events: list[str] = []
    while len(events) < n:
        e = _choice(rng, pool)
        if e == "collide":
            if n - len(events) < 2 or "collide" in events:
                continue
            events += ["collide", "collide"]
        else:
            events.append(e)
    if gravity and not set(events) & spec.GRAVITY_EVENTS:
        events[int(rng.integers(n))] = _choice(rng, ["fall", "throw"])
    colors = rng.permutation(list(spec.OBJECT_COLORS))[:n]
    objects = []
    for color, event in zip(colors, events):
        shape = _choice(rng, spec.SPIN_SHAPES if event == "spin" else spec.SHAPES)
        dirs = spec.EVENT_DIRS.get(event)
        objects.append(ObjectSpec(str(color), shape, _choice(rng, spec.SIZES), event,
                                  _choice(rng, dirs) if dirs else None))
    return Scene(_choice(rng, spec.BACKGROUNDS), float(aspect), tuple(objects))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if hi < lo:
        raise SceneError("no room")
    return float(rng.uniform(lo, hi))


def _bounds(o: ObjectSpec, aspect: float, floor: float, angle: float = 0.0):
    """Ranges of centre x and y that keep the object inside [0, aspect] x [0, floor]."""
    left, right, top, bottom = extents(o.shape, o.side, angle)
    return (left, aspect - right), (top, floor - bottom)


def _place_object(o: ObjectSpec, scene: Scene, rng: np.random.Generator) -> ObjectState:
    a = scene.aspect
    floor = spec.GROUND_Y if scene.gravity else 1.0
    (x0, x1), (y0, y1) = _bounds(o, a, floor)
    if o.event == "still":
        y = y1 if scene.gravity else _uniform(rng, y0, y1)
        return ObjectState(_uniform(rng, x0, x1), y)
    if o.event == "spin":
        r = circumradius(o.shape, o.side)
        sign = 1.0 if o.dir == "clockwise" else -1.0
        return ObjectState(_uniform(rng, r, a - r), _uniform(rng, r, floor - r),
                           angle=_uniform(rng, 0, 2 * math.pi),
                           omega=sign * 2 * math.pi * spec.SPIN_TURNS_PER_SECOND)
    if o.event == "slide":
        horizontal = o.dir in ("left", "right")
        room = (x1 - x0) if horizontal else (y1 - y0)
        v = _uniform(rng, spec.SLIDE_SPEED[0], min(spec.SLIDE_SPEED[1], room / spec.SLIDE_FREE_SECONDS))
        travel = v * spec.SLIDE_FREE_SECONDS
        if o.dir == "right":
            return ObjectState(_uniform(rng, x0, x1 - travel), _uniform(rng, y0, y1), vx=v)
        if o.dir == "left":
            return ObjectState(_uniform(rng, x0 + travel, x1), _uniform(rng, y0, y1), vx=-v)
        if o.dir == "down":
            return ObjectState(_uniform(rng, x0, x1), _uniform(rng, y0, y1 - travel), vy=v)
        return ObjectState(_uniform(rng, x0, x1), _uniform(rng, y0 + travel, y1), vy=-v)
    if o.event == "fall":
        left, right, top, bottom = extents(o.shape, o.side)
        bottom_y = _uniform(rng, max(spec.FALL_BOTTOM_Y[0], top + bottom), spec.FALL_BOTTOM_Y[1])
        return ObjectState(_uniform(rng, x0, x1), bottom_y - bottom)
    if o.event == "throw":
        sign = 1.0 if o.dir == "right" else -1.0
        x = spec.THROW_X_FRACTION * a if sign > 0 else a - spec.THROW_X_FRACTION * a
        x = min(max(x, x0), x1)  # narrow frames: as near the side as the object fits
        return ObjectState(x, y1, vx=sign * _uniform(rng, *spec.THROW_VX), vy=-_uniform(rng, *spec.THROW_VY))
    raise SceneError(f"cannot place event {o.event!r} alone")


def _place_collide(a: ObjectSpec, b: ObjectSpec, aspect: float, rng: np.random.Generator):
    """Two objects on one horizontal line moving toward each other; returns (state_a, state_b)."""
    a_left = bool(rng.random() < 0.5)
    lo, hi = (a, b) if a_left else (b, a)
    # A triangle turns a vertical edge toward its partner, so the contact is face to face.
    ang_lo = -math.pi / 2 if lo.shape == "triangle" else 0.0
    ang_hi = math.pi / 2 if hi.shape == "triangle" else 0.0
    l_lo, r_lo, t_lo, b_lo = extents(lo.shape, lo.side, ang_lo)
    l_hi, r_hi, t_hi, b_hi = extents(hi.shape, hi.side, ang_hi)
    v_lo, v_hi = (_uniform(rng, *spec.COLLIDE_SPEED) for _ in range(2))
    widths = l_lo + r_lo + l_hi + r_hi
    gap_max = min(spec.COLLIDE_GAP[1], spec.COLLIDE_MEET_SECONDS * (v_lo + v_hi), aspect - widths)
    gap = _uniform(rng, spec.COLLIDE_GAP[0], gap_max)
    start = _uniform(rng, 0.0, aspect - widths - gap)
    x_lo = start + l_lo
    x_hi = x_lo + r_lo + gap + l_hi
    y = _uniform(rng, max(t_lo, t_hi), 1.0 - max(b_lo, b_hi))
    s_lo = ObjectState(x_lo, y, vx=v_lo, angle=ang_lo)
    s_hi = ObjectState(x_hi, y, vx=-v_hi, angle=ang_hi)
    return (s_lo, s_hi) if a_left else (s_hi, s_lo)


def _try_place(scene: Scene, rng: np.random.Generator) -> Layout:
    states: list[ObjectState | None] = [None] * len(scene.objects)
    pair = [i for i, o in enumerate(scene.objects) if o.event == "collide"]
    if pair:
        i, j = pair
        states[i], states[j] = _place_collide(scene.objects[i], scene.objects[j], scene.aspect, rng)
    for i, o in enumerate(scene.objects):
        if states[i] is None:
            states[i] = _place_object(o, scene, rng)
    for i in range(len(states)):
        for j in range(i):
            oi, oj = scene.objects[i], scene.objects[j]
            d = math.hypot(states[i].x - states[j].x, states[i].y - states[j].y)
            if d < circumradius(oi.shape, oi.side) + circumradius(oj.shape, oj.side) + START_CLEARANCE:
                raise SceneError("overlap at the start")
    return Layout(scene, tuple(states), tuple(pair) if pair else None)


def _acceptable(traj: Trajectory) -> bool:
    pair = traj.layout.collide_pair
    touched = traj.object_contacts()
    allowed = {tuple(sorted(pair))} if pair else set()
    if touched - allowed:
        return False
    return not pair or tuple(sorted(pair)) in touched


def place(scene: Scene, rng: np.random.Generator, seconds: float, attempts: int = 60) -> tuple[Layout, Trajectory]:
    """Lay out `scene` so that the world's rules hold for a clip of `seconds`."""
    scene.validate()
    for _ in range(attempts):
        try:
            layout = _try_place(scene, rng)
        except SceneError:
            continue
        traj = simulate(layout, seconds)
        if _acceptable(traj):
            return layout, traj
    raise SceneError(f"could not lay out {describe(scene)} in a {scene.aspect:.3g}:1 frame for "
                     f"{seconds:g} s without the objects' paths crossing")


def sample_layout(rng: np.random.Generator, aspect: float, seconds: float) -> tuple[Layout, Trajectory]:
    """Draw a scene and a layout for it; redraws the scene when it cannot be laid out."""
    for _ in range(200):
        scene = sample_scene(rng, aspect)
        try:
            return place(scene, rng, seconds, attempts=20)
        except SceneError:
            continue
    raise SceneError(f"no scene could be laid out in a {aspect:.3g}:1 frame for {seconds:g} s")


def describe(scene: Scene) -> str:
    return ", ".join(f"{o.size} {o.color} {o.shape} ({o.event}{' ' + o.dir if o.dir else ''})"
                     for o in scene.objects)
