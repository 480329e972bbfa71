"""The constants of the framecast world, version 1 (shared/WORLD.md is the contract).

Units: time in seconds, length in frame heights. y runs from 0 (top) to 1 (bottom),
x from 0 (left) to `aspect` = width / height (right).
"""

from __future__ import annotations

import math

WORLD_VERSION = 1

# sRGB 0-255. Nothing else is drawn in these colours.
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 190, 60),
    "cyan": (30, 200, 220),
    "blue": (50, 90, 235),
    "purple": (160, 60, 210),
    "white": (240, 240, 240),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "navy": (15, 20, 60),
    "gray": (70, 70, 70),
}
FLOOR_RGB = (150, 150, 150)
GROUND_Y = 0.9  # top edge of the floor band, drawn only in gravity scenes

SHAPES = ("ball", "box", "triangle")
SIZES: dict[str, float] = {"small": 0.12, "large": 0.22}  # diameter / side, frame heights

EVENTS = ("slide", "fall", "throw", "collide", "spin", "still")
EVENT_DIRS: dict[str, tuple[str, ...]] = {
    "slide": ("left", "right", "up", "down"),
    "throw": ("left", "right"),
    "spin": ("clockwise", "counterclockwise"),
}
GRAVITY_EVENTS = frozenset({"fall", "throw"})  # gravity is on iff one of these is present
NO_GRAVITY_EVENTS = frozenset({"slide", "collide"})
SPIN_SHAPES = ("box", "triangle")

# Physics.
PHYSICS_DT = 1.0 / 240.0
GRAVITY = 3.0  # frame heights / s^2, downward
GROUND_RESTITUTION = 0.7
WALL_RESTITUTION = 1.0
# Thrown objects skid on the floor and come to rest; WORLD.md leaves friction open, and a
# frictionless floor would let a thrown object slide wall to wall for the rest of the clip.
GROUND_FRICTION = 0.05

# Event parameters.
SLIDE_SPEED = (0.25, 0.5)
SLIDE_FREE_SECONDS = 1.5  # travels at least this long before touching a wall
FALL_BOTTOM_Y = (0.1, 0.4)
THROW_X_FRACTION = 0.15  # of the aspect, from the side the object leaves
THROW_VX = (0.3, 0.5)
THROW_VY = (1.2, 1.8)  # upward
COLLIDE_GAP = (0.3, 0.8)  # between the facing edges
COLLIDE_SPEED = (0.2, 0.4)  # each object, toward the other
COLLIDE_MEET_SECONDS = 2.0
SPIN_TURNS_PER_SECOND = 0.5

# Area of each shape for side / diameter s: area = AREA_FACTOR[shape] * s**2.
AREA_FACTOR: dict[str, float] = {"ball": math.pi / 4, "box": 1.0, "triangle": math.sqrt(3) / 4}
# Fraction of its circumscribed circle a shape fills (the evaluator's shape cue).
CIRCLE_FILL: dict[str, float] = {"ball": 1.0, "box": 2 / math.pi, "triangle": 3 * math.sqrt(3) / (4 * math.pi)}


def event_has_dir(event: str) -> bool:
    return event in EVENT_DIRS
