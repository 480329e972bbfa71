"""Prompt expansion (Sora's recaptioning step, for the world): a short prompt made concrete.

What the prompt leaves open is drawn, seeded, from the world's distribution; the scene is laid
out and simulated, and the detailed caption is written from what happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spec
from .captions import make_caption
from .parse import parse_prompt
from .physics import Trajectory, story
from .sample import place
from .scene import Layout, ObjectSpec, PartialObject, PromptSpec, Scene, SceneError


LAYOUT_REDRAWS = 20  # fresh draws of what the prompt left open, when a draw cannot be laid out
ATTEMPTS_PER_DRAW = 20  # layouts tried per draw before drawing again
ATTEMPTS_FIXED = 1000  # layouts tried when the prompt fixes every object's event: a throw beside a still
# box finds a clear path in 1 of about 30 tries (at 60 tries, 6 seeds in 10 failed)


@dataclass
class Expansion:
    """A short prompt made concrete: the scene, its layout and simulation, and the caption."""

    scene: Scene
    layout: Layout
    trajectory: Trajectory
    caption: str
    prompt: str


def _name(o: PartialObject) -> str:
    return "the " + " ".join(w for w in (o.size, o.color, o.shape or "object") if w)


def check_prompt(asked: PromptSpec) -> None:
    """Raise SceneError, in words a user can act on, if the world cannot show what `asked` asks."""
    objs = asked.objects
    if not objs:
        raise SceneError("the prompt names no object; name one to three, e.g. 'a red ball falls'")
    if len(objs) > 3:
        raise SceneError(f"the prompt names {len(objs)} objects; a scene holds at most 3")
    for o in objs:
        if o.color is not None and o.color not in spec.OBJECT_COLORS:
            raise SceneError(f"objects cannot be {o.color}; choose from {', '.join(spec.OBJECT_COLORS)}")
        if o.shape is not None and o.shape not in spec.SHAPES:
            raise SceneError(f"the world has no {o.shape}; shapes are ball, box (square) and triangle")
        if o.event == "spin" and o.shape == "ball":
            raise SceneError(f"{_name(o)} cannot be seen to spin; only a box or a triangle spins")
        if o.event is not None and o.dir is not None and o.dir not in spec.EVENT_DIRS.get(o.event, ()):
            raise SceneError(f"{_name(o)} cannot {o.event or 'move'} {o.dir}")
    if asked.bg is not None and asked.bg not in spec.BACKGROUNDS:
        raise SceneError(f"the background cannot be {asked.bg}; choose from {', '.join(spec.BACKGROUNDS)}")
    colors = [o.color for o in objs if o.color]
    for c in sorted({c for c in colors if colors.count(c) > 1}):
        raise SceneError(f"two objects are {c}; each object in a scene needs its own colour")
    _check_events(objs)


def _check_events(objs: tuple[PartialObject, ...]) -> None:
    with_gravity = [o for o in objs if o.event in spec.GRAVITY_EVENTS]
    without = [o for o in objs if o.event in spec.NO_GRAVITY_EVENTS]
    if with_gravity and without:
        a, b = with_gravity[0], without[0]
        raise SceneError(f"{_name(a)} needs gravity to {a.event} but {_name(b)} can only {b.event} without "
                         "it: slide and collide cannot share a scene with fall and throw")
    colliding = [o for o in objs if o.event == "collide"]
    if len(colliding) > 2:
        raise SceneError(f"{len(colliding)} objects are asked to collide; a collision takes exactly two")
    if len(colliding) == 1 and all(o.event is not None for o in objs):
        raise SceneError(f"{_name(colliding[0])} has nothing to collide with; a collision takes two objects, "
                         "e.g. 'a red ball and a blue box collide'")


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _gravity(objs: tuple[PartialObject, ...], rng: np.random.Generator) -> bool:
    """Fixed events decide gravity; with only spin/still fixed, a coin (as `sample_scene`)."""
    events = {o.event for o in objs}
    if events & spec.GRAVITY_EVENTS:
        return True
    if events & spec.NO_GRAVITY_EVENTS or None not in events:
        return False
    return bool(rng.random() < 0.5)


def _event_options(o: PartialObject, gravity: bool, can_pair: bool) -> list[str]:
    pool = ("fall", "throw", "spin", "still") if gravity else ("slide", "collide", "spin", "still")
    return [e for e in pool
            if (e != "spin" or o.shape in (None, *spec.SPIN_SHAPES))
            and (e != "collide" or can_pair)
            and (o.dir is None or o.dir in spec.EVENT_DIRS.get(e, ()))]


def _fill_events(objs: tuple[PartialObject, ...], gravity: bool, rng: np.random.Generator) -> list[str]:
    events = [o.event for o in objs]
    open_ = [i for i, e in enumerate(events) if e is None]
    if events.count("collide") == 1:  # the prompt named one side of a collision: pair it
        events[open_.pop(0)] = "collide"
    for n, i in enumerate(open_):
        if events[i] is not None:
            continue
        partners = [j for j in open_[n + 1:] if events[j] is None]
        options = _event_options(objs[i], gravity, bool(partners) and "collide" not in events)
        if not options:
            raise SceneError(f"{_name(objs[i])} cannot move {objs[i].dir} in this scene")
        events[i] = _pick(rng, options)
        if events[i] == "collide":
            events[_pick(rng, partners)] = "collide"
    if gravity and not set(events) & spec.GRAVITY_EVENTS:
        events[_pick(rng, open_)] = _pick(rng, ("fall", "throw"))
    return events


def fill_scene(asked: PromptSpec, rng: np.random.Generator, aspect: float) -> Scene:
    """Draw what `asked` leaves open from the world's distribution; keep what it fixes."""
    objs = asked.objects
    events = _fill_events(objs, _gravity(objs, rng), rng)
    free_colors = [c for c in spec.OBJECT_COLORS if c not in {o.color for o in objs}]
    out = []
    for o, event in zip(objs, events):
        color = o.color
        if color is None:
            color = _pick(rng, free_colors)
            free_colors.remove(color)
        shape = o.shape or _pick(rng, spec.SPIN_SHAPES if event == "spin" else spec.SHAPES)
        dirs = spec.EVENT_DIRS.get(event)
        direction = o.dir if o.dir is not None else (_pick(rng, dirs) if dirs else None)
        out.append(ObjectSpec(color, shape, o.size or _pick(rng, spec.SIZES), event, direction))
    return Scene(asked.bg or _pick(rng, spec.BACKGROUNDS), float(aspect), tuple(out))


def _leaves_layout_open(asked: PromptSpec) -> bool:
    """Whether a redraw could change what the layout depends on (sizes, shapes, events, dirs)."""
    return any(v is None for o in asked.objects for v in (o.shape, o.size, o.event)) or any(
        o.dir is None and spec.event_has_dir(o.event or "") for o in asked.objects)


def expand_prompt(prompt: str, seed: int = 0, aspect: float = 1.0, seconds: float = 4.0) -> Expansion:
    """Make a short prompt concrete: fill what it leaves open (seeded), lay out, simulate, caption."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    asked = parse_prompt(prompt, keep_unknown=True)
    check_prompt(asked)
    rng = np.random.default_rng(seed)
    redraws = LAYOUT_REDRAWS if _leaves_layout_open(asked) else 1
    for _ in range(redraws):
        scene = fill_scene(asked, rng, aspect)
        try:
            layout, traj = place(scene, rng, seconds, attempts=ATTEMPTS_PER_DRAW if redraws > 1 else ATTEMPTS_FIXED)
            break
        except SceneError as err:
            failure = err
    else:
        raise SceneError(f"{failure}; try smaller objects, fewer objects, a wider frame or a shorter clip")
    stories = [story(traj, i) for i in range(len(scene.objects))]
    caption = make_caption(scene, stories, np.random.default_rng([seed, 1]))  # as clip.py words a clip
    return Expansion(scene, layout, traj, caption, prompt)
