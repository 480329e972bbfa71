"""Rigid-body simulation of a layout with pymunk, at a fixed step of 1/240 s.

Coordinates are the world's (frame heights, y down), so positive angles turn clockwise on
screen and gravity points to +y. Objects never rotate from contacts (infinite moment of
inertia): only `spin` objects turn, as kinematic bodies. Mass is proportional to area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pymunk

from . import spec
from .scene import Layout, local_vertices

WALL_THICKNESS = 0.05  # walls are thick segments just outside the frame, so nothing tunnels
WALLS = ("left", "right", "top", "bottom", "ground")


@dataclass
class Trajectory:
    """States at every physics step, t = k * dt for k = 0..S-1.

    pos: (S, N, 2) centres, vel: (S, N, 2), angle: (S, N) radians clockwise.
    contacts: (time, a, b) each time two things start touching; a and b are object indices
    or wall names ("left", "right", "top", "bottom", "ground").
    """

    layout: Layout
    dt: float
    pos: np.ndarray
    vel: np.ndarray
    angle: np.ndarray
    contacts: list[tuple[float, int | str, int | str]]

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.pos.shape[0]) * self.dt

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear interpolation of centres (T, N, 2) and angles (T, N) at the given times."""
        k = np.clip(np.asarray(times, dtype=np.float64) / self.dt, 0, self.pos.shape[0] - 1)
        k0 = np.floor(k).astype(int)
        k1 = np.minimum(k0 + 1, self.pos.shape[0] - 1)
        w = (k - k0)[:, None]
        pos = self.pos[k0] * (1 - w[..., None]) + self.pos[k1] * w[..., None]
        ang = self.angle[k0] * (1 - w) + self.angle[k1] * w
        return pos, ang

    def object_contacts(self) -> set[tuple[int, int]]:
        """Pairs of object indices (i < j) that touched at some time."""
        return {tuple(sorted((a, b))) for _, a, b in self.contacts
                if isinstance(a, int) and isinstance(b, int)}


def _body(o, st, gravity: bool) -> pymunk.Body:
    mass = spec.AREA_FACTOR[o.shape] * o.side ** 2
    if o.event == "still":
        body = pymunk.Body(body_type=pymunk.Body.STATIC)
    elif o.event == "spin":
        body = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        body.angular_velocity = st.omega
    else:
        body = pymunk.Body(mass, math.inf)
        body.velocity = (st.vx, st.vy)
    body.position = (st.x, st.y)
    body.angle = st.angle
    return body


def _walls(space: pymunk.Space, aspect: float, gravity: bool) -> dict[pymunk.Shape, str]:
    r = WALL_THICKNESS
    far = 10.0  # walls overhang the corners
    segs = {
        "left": ((-r, -far), (-r, 1 + far)),
        "right": ((aspect + r, -far), (aspect + r, 1 + far)),
        "top": ((-far, -r), (aspect + far, -r)),
    }
    if gravity:
        segs["ground"] = ((-far, spec.GROUND_Y + r), (aspect + far, spec.GROUND_Y + r))
    else:
        segs["bottom"] = ((-far, 1 + r), (aspect + far, 1 + r))
    names = {}
    for name, (a, b) in segs.items():
        seg = pymunk.Segment(space.static_body, a, b, r)
        if name == "ground":
            seg.elasticity = spec.GROUND_RESTITUTION
            seg.friction = math.sqrt(spec.GROUND_FRICTION)
        else:
            seg.elasticity = spec.WALL_RESTITUTION
            seg.friction = 0.0
        space.add(seg)
        names[seg] = name
    return names


def simulate(layout: Layout, seconds: float, dt: float = spec.PHYSICS_DT) -> Trajectory:
    """Run the scene for `seconds` and record the state at every step."""
    scene = layout.scene
    gravity = scene.gravity
    space = pymunk.Space()
    space.gravity = (0.0, spec.GRAVITY if gravity else 0.0)
    space.iterations = 30
    space.collision_slop = 1e-5
    space.sleep_time_threshold = math.inf

    labels: dict[pymunk.Shape, int | str] = dict(_walls(space, scene.aspect, gravity))
    bodies = []
    for i, (o, st) in enumerate(zip(scene.objects, layout.states)):
        body = _body(o, st, gravity)
        if o.shape == "ball":
            shape = pymunk.Circle(body, o.side / 2)
        else:
            shape = pymunk.Poly(body, local_vertices(o.shape, o.side))
        if body.body_type == pymunk.Body.DYNAMIC:
            shape.mass = spec.AREA_FACTOR[o.shape] * o.side ** 2
        shape.elasticity = 1.0
        shape.friction = math.sqrt(spec.GROUND_FRICTION)
        space.add(body, shape)
        bodies.append(body)
        labels[shape] = i

    contacts: list[tuple[float, int | str, int | str]] = []
    clock = [0.0]

    def begin(arbiter, space, data):
        a, b = (labels[s] for s in arbiter.shapes)
        contacts.append((clock[0], a, b))

    space.on_collision(begin=begin)

    steps = int(round(seconds / dt)) + 1
    n = len(bodies)
    pos = np.empty((steps, n, 2))
    vel = np.empty((steps, n, 2))
    ang = np.empty((steps, n))
    for k in range(steps):
        for i, b in enumerate(bodies):
            pos[k, i] = b.position
            vel[k, i] = b.velocity
            ang[k, i] = b.angle
        if k + 1 < steps:
            clock[0] = (k + 1) * dt
            space.step(dt)
    return Trajectory(layout, dt, pos, vel, ang, contacts)


@dataclass(frozen=True)
class ObjectStory:
    """What one object visibly did in a clip: what a detailed caption tells."""

    start: tuple[float, float]
    lands: bool  # touches the ground within the clip
    bounces: int  # rebounds off the ground that rise visibly
    rests: bool  # ends lying still on the ground
    walls: tuple[str, ...]  # walls it hit, in order
    hits: tuple[int, ...]  # other objects it touched, in order


VISIBLE_REBOUND = 0.01  # frame heights: a rebound lower than this reads as resting


def story(traj: Trajectory, i: int) -> ObjectStory:
    """Summarise object i's motion from its trajectory and contacts."""
    y = traj.pos[:, i, 1]
    vy = traj.vel[:, i, 1]
    bounces = 0
    for t, a, b in traj.contacts:
        if i in (a, b) and "ground" in (a, b):
            k = int(round(t / traj.dt))
            after = y[k:]
            # apex of the rebound: the highest point before it comes down again
            falling = np.nonzero(vy[k + 1:] > 0)[0]
            end = k + 1 + (falling[0] if len(falling) else len(after) - 1)
            if end > k + 1 and y[k] - y[k:end].min() >= VISIBLE_REBOUND:
                bounces += 1
    o = traj.layout.scene.objects[i]
    speed = np.hypot(*traj.vel[-1, i])
    bottom_gap = abs(spec.GROUND_Y - (y[-1] + _bottom(o)))
    rests = traj.layout.scene.gravity and o.event in ("fall", "throw") and speed < 0.02 and bottom_gap < 0.01
    walls, hits = [], []
    for _, a, b in traj.contacts:
        if i not in (a, b):
            continue
        other = b if a == i else a
        if isinstance(other, str):
            if other != "ground" and (not walls or walls[-1] != other):
                walls.append(other)
        elif not hits or hits[-1] != other:
            hits.append(other)
    lands = any(i in (a, b) and "ground" in (a, b) for _, a, b in traj.contacts)
    return ObjectStory((float(traj.pos[0, i, 0]), float(traj.pos[0, i, 1])), lands, bounces, bool(rests),
                       tuple(walls), tuple(hits))


def _bottom(o) -> float:
    return o.side / 2 if o.shape != "triangle" else o.side / (2 * math.sqrt(3))
