"""Scenes: what is in a clip (semantic) and where it starts (layout), plus shape geometry.

A `Scene` is what a prompt or caption talks about and what clip JSON stores. A `Layout`
adds each object's initial state; the simulator turns a layout into trajectories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import spec


class SceneError(ValueError):
    """A scene that breaks the world's rules, or that cannot be laid out."""


@dataclass(frozen=True)
class ObjectSpec:
    color: str
    shape: str
    size: str
    event: str
    dir: str | None = None

    @property
    def side(self) -> float:
        """Diameter (ball) or side (box, triangle) in frame heights."""
        return spec.SIZES[self.size]

    def validate(self) -> None:
        for value, allowed, what in (
            (self.color, spec.OBJECT_COLORS, "colour"),
            (self.shape, spec.SHAPES, "shape"),
            (self.size, spec.SIZES, "size"),
            (self.event, spec.EVENTS, "event"),
        ):
            if value not in allowed:
                raise SceneError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        dirs = spec.EVENT_DIRS.get(self.event)
        if dirs is None and self.dir is not None:
            raise SceneError(f"event {self.event!r} takes no direction (got {self.dir!r})")
        if dirs is not None and self.dir not in dirs:
            raise SceneError(f"event {self.event!r} needs a direction: one of {', '.join(dirs)}")
        if self.event == "spin" and self.shape not in spec.SPIN_SHAPES:
            raise SceneError(f"a {self.shape} cannot be seen to spin; only a box or a triangle spins")

    def to_json(self) -> dict:
        out = {"color": self.color, "shape": self.shape, "size": self.size, "event": self.event}
        if self.dir is not None:
            out["dir"] = self.dir
        return out

    @classmethod
    def from_json(cls, d: dict) -> ObjectSpec:
        return cls(d["color"], d["shape"], d["size"], d["event"], d.get("dir"))


@dataclass(frozen=True)
class Scene:
    bg: str
    aspect: float
    objects: tuple[ObjectSpec, ...]

    @property
    def gravity(self) -> bool:
        return any(o.event in spec.GRAVITY_EVENTS for o in self.objects)

    def validate(self) -> None:
        if self.bg not in spec.BACKGROUNDS:
            raise SceneError(f"unknown background {self.bg!r}; choose one of {', '.join(spec.BACKGROUNDS)}")
        if not (self.aspect > 0 and math.isfinite(self.aspect)):
            raise SceneError(f"aspect must be a positive number, got {self.aspect}")
        if not 1 <= len(self.objects) <= 3:
            raise SceneError(f"a scene holds 1 to 3 objects, got {len(self.objects)}")
        for o in self.objects:
            o.validate()
        colors = [o.color for o in self.objects]
        if len(set(colors)) != len(colors):
            raise SceneError("no two objects in a scene may share a colour")
        events = {o.event for o in self.objects}
        if events & spec.GRAVITY_EVENTS and events & spec.NO_GRAVITY_EVENTS:
            raise SceneError("slide and collide happen without gravity; fall and throw need it: "
                             "they cannot share a scene")
        n_collide = sum(o.event == "collide" for o in self.objects)
        if n_collide not in (0, 2):
            raise SceneError(f"collide takes exactly two objects, got {n_collide}")

    def to_json(self) -> dict:
        return {"bg": self.bg, "aspect": self.aspect, "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, d: dict) -> Scene:
        return cls(d["bg"], float(d["aspect"]), tuple(ObjectSpec.from_json(o) for o in d["objects"]))


@dataclass(frozen=True)
class PartialObject:
    """An object as a prompt names it: whatever the prompt leaves open is None."""

    color: str | None = None
    shape: str | None = None
    size: str | None = None
    event: str | None = None
    dir: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: the objects it names and, if it says, the background."""

    objects: tuple[PartialObject, ...]
    bg: str | None = None

    @classmethod
    def from_scene(cls, scene: Scene) -> PromptSpec:
        return cls(tuple(PartialObject(o.color, o.shape, o.size, o.event, o.dir) for o in scene.objects), scene.bg)


@dataclass(frozen=True)
class ObjectState:
    """Initial state of one object: centre (centroid), velocity, orientation, spin rate."""

    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    angle: float = 0.0  # radians, clockwise on screen (y points down)
    omega: float = 0.0  # radians / s, clockwise on screen


@dataclass(frozen=True)
class Layout:
    scene: Scene
    states: tuple[ObjectState, ...]
    collide_pair: tuple[int, int] | None = field(default=None)


# --- geometry ---------------------------------------------------------------------------

def local_vertices(shape: str, side: float) -> list[tuple[float, float]]:
    """Polygon vertices around the centroid at angle 0 (triangle apex up). Not for balls."""
    if shape == "box":
        h = side / 2
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "triangle":
        r = side / math.sqrt(3)  # circumradius; the base lies r/2 below the centroid
        return [(0.0, -r), (side / 2, r / 2), (-side / 2, r / 2)]
    raise ValueError(f"{shape} has no vertices")


def circumradius(shape: str, side: float) -> float:
    return {"ball": side / 2, "box": side / math.sqrt(2), "triangle": side / math.sqrt(3)}[shape]


def extents(shape: str, side: float, angle: float = 0.0) -> tuple[float, float, float, float]:
    """Distances from the centre to the (left, right, top, bottom) of the shape's bounding box."""
    if shape == "ball":
        r = side / 2
        return r, r, r, r
    c, s = math.cos(angle), math.sin(angle)
    xs, ys = zip(*((c * x - s * y, s * x + c * y) for x, y in local_vertices(shape, side)))
    return -min(xs), max(xs), -min(ys), max(ys)
