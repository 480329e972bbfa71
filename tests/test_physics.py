"""The world's physics: pymunk simulation obeys WORLD.md's rules."""

import math

import numpy as np
import pytest

from framecast.world import spec
from framecast.world.physics import simulate, story
from framecast.world.render import _signed_distance
from framecast.world.sample import place, sample_layout, sample_scene
from framecast.world.scene import (Layout, ObjectSpec, ObjectState, Scene, SceneError, extents,
                                   local_vertices)


TOL = 0.01  # frame heights: at most one 1/240 s step of travel at the fastest speed


def one(shape="ball", size="small", event="fall", dir=None, bg="black", aspect=1.0, **state):
    scene = Scene(bg, aspect, (ObjectSpec("red", shape, size, event, dir),))
    return Layout(scene, (ObjectState(**state),))


def first_ground_step(traj, i=0):
    return next(round(t / traj.dt) for t, a, b in traj.contacts if i in (a, b) and "ground" in (a, b))


@pytest.mark.parametrize("shape", ["ball", "box", "triangle"])
def test_fall_accelerates_at_g(shape):
    traj = simulate(one(shape, x=0.5, y=0.2), 2.0)
    k = first_ground_step(traj)
    t, y = traj.times[:k - 1], traj.pos[:k - 1, 0, 1]
    g = 2 * np.polyfit(t, y, 2)[0]
    assert abs(g - spec.GRAVITY) / spec.GRAVITY < 0.01


def test_rebound_height_ratio_is_restitution_squared():
    traj = simulate(one(x=0.5, y=0.3), 3.0)
    rest_y = spec.GROUND_Y - 0.06
    k = first_ground_step(traj)
    apex = traj.pos[k:k + 240, 0, 1].min()
    ratio = (rest_y - apex) / (rest_y - 0.3)
    assert ratio == pytest.approx(spec.GROUND_RESTITUTION ** 2, abs=0.02)


def test_fall_comes_to_rest_on_the_ground():
    traj = simulate(one("box", "large", x=0.5, y=0.25), 6.0)
    st = story(traj, 0)
    assert st.rests and st.bounces >= 3
    assert traj.pos[-1, 0, 1] + 0.11 == pytest.approx(spec.GROUND_Y, abs=1e-3)


def collide_layout(shape_a, shape_b, va=0.3, vb=0.25):
    scene = Scene("gray", 1.5, (ObjectSpec("red", shape_a, "small", "collide"),
                                ObjectSpec("blue", shape_b, "large", "collide")))
    ang_a = -math.pi / 2 if shape_a == "triangle" else 0.0
    ang_b = math.pi / 2 if shape_b == "triangle" else 0.0
    return Layout(scene, (ObjectState(0.3, 0.5, vx=va, angle=ang_a), ObjectState(0.9, 0.5, vx=-vb, angle=ang_b)), (0, 1))


@pytest.mark.parametrize("shapes", [("ball", "box"), ("triangle", "ball"), ("box", "triangle"), ("ball", "ball")])
def test_collision_conserves_momentum_and_energy(shapes):
    traj = simulate(collide_layout(*shapes), 2.0)
    (t_hit, a, b), *_ = traj.contacts
    assert {a, b} == {0, 1}
    objs = traj.layout.scene.objects
    m = np.array([spec.AREA_FACTOR[o.shape] * o.side ** 2 for o in objs])
    k0, k1 = round(t_hit / traj.dt) - 2, round(t_hit / traj.dt) + 2
    p0, p1 = (m[:, None] * traj.vel[k0]).sum(0), (m[:, None] * traj.vel[k1]).sum(0)
    e0, e1 = (0.5 * m * (traj.vel[k0] ** 2).sum(1)).sum(), (0.5 * m * (traj.vel[k1] ** 2).sum(1)).sum()
    assert np.allclose(p0, p1, atol=1e-6 * abs(p0[0]) + 1e-9)
    assert e1 == pytest.approx(e0, rel=1e-4)
    # they really bounced: the red one now moves left
    assert traj.vel[k1, 0, 0] < 0 < traj.vel[k0, 0, 0]


def _outline(o, pos, angle, n=64):
    """Points on an object's boundary, (n, 2)."""
    if o.shape == "ball":
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return pos + o.side / 2 * np.stack([np.cos(t), np.sin(t)], 1)
    c, s = math.cos(angle), math.sin(angle)
    v = np.array([(c * x - s * y, s * x + c * y) for x, y in local_vertices(o.shape, o.side)]) + pos
    w = np.linspace(0, 1, n // len(v), endpoint=False)[:, None, None]
    return (v[None] * (1 - w) + np.roll(v, -1, 0)[None] * w).reshape(-1, 2)


def penetration(oi, pi, ai, oj, pj, aj):
    """How deep object j's outline reaches into object i (0 if apart)."""
    pts = _outline(oj, np.asarray(pj), aj)
    d = _signed_distance(oi.shape, oi.side, pi[0], pi[1], ai, pts[:, 0], pts[:, 1])
    return max(0.0, -float(d.min()))


def test_sampled_clips_obey_the_rules():
    rng = np.random.default_rng(0)
    for k in range(36):
        aspect = (1.0, 16 / 9, 9 / 16)[k % 3]
        layout, traj = sample_layout(rng, aspect, 4.0)
        scene = layout.scene
        scene.validate()
        floor = spec.GROUND_Y if scene.gravity else 1.0
        for i, (o, st) in enumerate(zip(scene.objects, layout.states)):
            # nothing leaves the frame (contacts are found after one step of travel, < 0.01)
            for s in range(0, traj.pos.shape[0], 4):
                left, right, top, bottom = extents(o.shape, o.side, traj.angle[s, i])
                x, y = traj.pos[s, i]
                assert x - left > -TOL and x + right < aspect + TOL
                assert y - top > -TOL and y + bottom < floor + TOL
            _check_event_start(o, st, scene, traj, i)
        # no interpenetration, and only the collide pair ever touches
        for s in range(0, traj.pos.shape[0], 2):
            objs, pos, ang = scene.objects, traj.pos[s], traj.angle[s]
            for i in range(len(objs)):
                for j in range(len(objs)):
                    if i != j:
                        depth = penetration(objs[i], pos[i], ang[i], objs[j], pos[j], ang[j])
                        assert depth < TOL, f"objects {i} and {j} interpenetrate by {depth}"
        allowed = {tuple(sorted(layout.collide_pair))} if layout.collide_pair else set()
        assert traj.object_contacts() <= allowed


def _check_event_start(o, st, scene, traj, i):
    if o.event == "slide":
        speed = math.hypot(st.vx, st.vy)
        assert spec.SLIDE_SPEED[0] - 1e-9 <= speed <= spec.SLIDE_SPEED[1] + 1e-9
        free = round(spec.SLIDE_FREE_SECONDS / traj.dt)
        assert np.allclose(traj.vel[:free, i], traj.vel[0, i])  # no wall within 1.5 s
    elif o.event == "fall":
        _, _, _, bottom = extents(o.shape, o.side)
        assert spec.FALL_BOTTOM_Y[0] - 1e-9 <= st.y + bottom <= spec.FALL_BOTTOM_Y[1] + 1e-9
        assert st.vx == st.vy == 0
    elif o.event == "throw":
        _, _, _, bottom = extents(o.shape, o.side)
        assert st.y + bottom == pytest.approx(spec.GROUND_Y)
        assert spec.THROW_VX[0] <= abs(st.vx) <= spec.THROW_VX[1]
        assert spec.THROW_VY[0] <= -st.vy <= spec.THROW_VY[1]
        assert (st.vx > 0) == (o.dir == "right")
        assert (st.x < scene.aspect / 2) == (o.dir == "right")
    elif o.event == "collide":
        assert spec.COLLIDE_SPEED[0] <= abs(st.vx) <= spec.COLLIDE_SPEED[1] and st.vy == 0
        hits = [t for t, a, b in traj.contacts if {a, b} == set(traj.layout.collide_pair)]
        assert hits and hits[0] <= spec.COLLIDE_MEET_SECONDS + 0.01
    elif o.event == "spin":
        assert abs(st.omega) == pytest.approx(2 * math.pi * spec.SPIN_TURNS_PER_SECOND)
        assert (st.omega > 0) == (o.dir == "clockwise")
        assert np.allclose(traj.pos[:, i], traj.pos[0, i])
    elif o.event == "still":
        assert np.allclose(traj.pos[:, i], traj.pos[0, i]) and np.allclose(traj.angle[:, i], traj.angle[0, i])
        if scene.gravity:
            _, _, _, bottom = extents(o.shape, o.side)
            assert st.y + bottom == pytest.approx(spec.GROUND_Y)


def test_collide_pairs_start_on_one_line_with_the_right_gap():
    rng = np.random.default_rng(1)
    scene = Scene("black", 16 / 9, (ObjectSpec("red", "triangle", "large", "collide"),
                                    ObjectSpec("green", "box", "small", "collide")))
    for _ in range(10):
        layout, traj = place(scene, rng, 3.0)
        a, b = layout.states
        assert a.y == b.y and a.vx * b.vx < 0
        lo, hi = (0, 1) if a.x < b.x else (1, 0)
        s_lo, s_hi = layout.states[lo], layout.states[hi]
        o_lo, o_hi = scene.objects[lo], scene.objects[hi]
        gap = (s_hi.x - extents(o_hi.shape, o_hi.side, s_hi.angle)[0]) - (s_lo.x + extents(o_lo.shape, o_lo.side, s_lo.angle)[1])
        assert spec.COLLIDE_GAP[0] - 1e-9 <= gap <= spec.COLLIDE_GAP[1] + 1e-9
        assert s_lo.vx > 0 > s_hi.vx


def test_sampling_covers_the_whole_distribution():
    rng = np.random.default_rng(2)
    seen = {k: set() for k in ("color", "shape", "size", "event", "dirs", "bg", "n")}
    for _ in range(600):
        scene = sample_scene(rng, 1.0)
        scene.validate()
        seen["bg"].add(scene.bg)
        seen["n"].add(len(scene.objects))
        for o in scene.objects:
            seen["color"].add(o.color)
            seen["shape"].add(o.shape)
            seen["size"].add(o.size)
            seen["event"].add(o.event)
            seen["dirs"].add((o.event, o.dir))
    assert seen["color"] == set(spec.OBJECT_COLORS) and seen["bg"] == set(spec.BACKGROUNDS)
    assert seen["shape"] == set(spec.SHAPES) and seen["size"] == set(spec.SIZES)
    assert seen["event"] == set(spec.EVENTS) and seen["n"] == {1, 2, 3}
    want = {(e, d) for e in spec.EVENTS for d in spec.EVENT_DIRS.get(e, (None,))}
    assert seen["dirs"] == want


@pytest.mark.parametrize("objects, message", [
    ((ObjectSpec("red", "ball", "small", "slide", "right"), ObjectSpec("red", "box", "small", "still")), "colour"),
    ((ObjectSpec("red", "ball", "small", "slide", "right"), ObjectSpec("blue", "box", "small", "fall")), "gravity"),
    ((ObjectSpec("red", "ball", "small", "spin", "clockwise"),), "spin"),
    ((ObjectSpec("red", "ball", "small", "collide"),), "collide"),
    ((ObjectSpec("magenta", "ball", "small", "still"),), "unknown colour"),
    ((ObjectSpec("red", "ball", "small", "slide"),), "direction"),
])
def test_invalid_scenes_are_refused(objects, message):
    with pytest.raises(SceneError, match=message):
        place(Scene("black", 1.0, objects), np.random.default_rng(0), 2.0)


def test_impossible_layout_is_a_clear_error():
    scene = Scene("black", 9 / 16, (ObjectSpec("red", "box", "large", "collide"), ObjectSpec("blue", "box", "large", "collide")))
    with pytest.raises(SceneError, match="could not lay out"):
        place(scene, np.random.default_rng(0), 2.0, attempts=5)
