"""Prompts (short, as a person types them) and captions (detailed, as a recaptioner writes).

Both are drawn from the scene with varied wording. Some paraphrases are deliberately kept
out of these templates (e.g. "drifts", "is tossed", "twirls") so that evaluation can ask for
wording the model never trained on; the parser (`parse.py`) understands them all.
"""

from __future__ import annotations

import numpy as np

from .physics import ObjectStory
from .scene import ObjectSpec, Scene

NOUNS = {"ball": ("ball", "circle", "sphere", "dot"), "box": ("box", "square", "cube", "block"),
         "triangle": ("triangle",)}

PROMPT_EVENTS: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("slide", "right"): ("moves to the right", "slides right", "glides to the right", "slides to the right"),
    ("slide", "left"): ("moves to the left", "slides left", "glides to the left", "slides to the left"),
    ("slide", "up"): ("moves up", "slides up", "glides upward", "moves upward"),
    ("slide", "down"): ("moves down", "slides down", "glides downward", "moves downward"),
    ("fall", None): ("falls and bounces on the floor", "drops to the ground and bounces", "falls",
                     "falls and bounces", "drops to the floor"),
    ("throw", "right"): ("is thrown to the right", "flies in an arc to the right", "is thrown right",
                         "is launched to the right"),
    ("throw", "left"): ("is thrown to the left", "flies in an arc to the left", "is thrown left",
                        "is launched to the left"),
    ("spin", "clockwise"): ("spins clockwise", "rotates clockwise", "turns clockwise"),
    ("spin", "counterclockwise"): ("spins counterclockwise", "rotates counterclockwise",
                                   "turns counterclockwise", "spins anticlockwise"),
    ("still", None): ("sits still", "rests in place", "stays still", "does not move"),
}
COLLIDE_PROMPTS = ("{a} and {b} move toward each other and collide", "{a} and {b} collide",
                   "{a} and {b} slide toward each other and bump", "{a} and {b} crash into each other")
NUMBERS = ("no", "once", "twice", "three times", "four times", "five times", "six times",
           "seven times", "eight times", "nine times", "ten times")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def object_phrase(o: ObjectSpec, rng: np.random.Generator, with_size: bool) -> str:
    words = f"{o.size} {o.color}" if with_size else o.color
    return f"{article(words)} {words} {_pick(rng, NOUNS[o.shape])}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(clauses: list[str], rng: np.random.Generator) -> str:
    if len(clauses) == 1:
        return clauses[0]
    head = ", ".join(clauses[:-1]) if len(clauses) > 2 else clauses[0]
    return f"{head} {_pick(rng, ('and', 'while'))} {clauses[-1]}"


def _clauses(scene: Scene) -> list[tuple[int, int | None]]:
    """Object indices in order, a collide pair as (i, j) once."""
    out, seen = [], set()
    for i, o in enumerate(scene.objects):
        if i in seen:
            continue
        if o.event == "collide":
            j = next(k for k, p in enumerate(scene.objects) if p.event == "collide" and k != i)
            seen.add(j)
            out.append((i, j))
        else:
            out.append((i, None))
    return out


def make_prompt(scene: Scene, rng: np.random.Generator) -> str:
    """A short prompt as a person would type it."""
    with_size = bool(rng.random() < 0.5)
    clauses = []
    for i, j in _clauses(scene):
        a = object_phrase(scene.objects[i], rng, with_size)
        if j is not None:
            b = object_phrase(scene.objects[j], rng, with_size)
            clauses.append(_pick(rng, COLLIDE_PROMPTS).format(a=a, b=b))
        else:
            o = scene.objects[i]
            clauses.append(f"{a} {_pick(rng, PROMPT_EVENTS[(o.event, o.dir)])}")
    text = _join(clauses, rng)
    if rng.random() < 0.5:
        text += f" on a {scene.bg} background"
    return text


def position_words(x: float, y: float, aspect: float) -> str:
    """Start position as 'top left', 'middle right', 'centre', ..."""
    h = ("left", "centre", "right")[min(int(3 * x / aspect), 2)]
    v = ("top", "middle", "bottom")[min(int(3 * y), 2)]
    if v == "middle" and h == "centre":
        return "centre"
    if h == "centre":
        return f"{v} centre"
    return f"{v} {h}"


def _times(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else f"{n} times"


def _walls(st: ObjectStory) -> str:
    if not st.walls:
        return ""
    names = [f"the {w} wall" for w in st.walls[:3]]
    return ", bouncing off " + (" and then ".join(names))


def event_description(o: ObjectSpec, st: ObjectStory, gravity: bool, partner: str | None) -> str:
    if o.event == "slide":
        return f"slides {'to the ' if o.dir in ('left', 'right') else ''}{o.dir} at a steady speed{_walls(st)}"
    if o.event == "fall":
        if not st.lands:
            return "falls toward the floor"
        if st.bounces == 0:
            return "falls to the floor" + (" and rests there" if st.rests else "")
        rest = ", then rests on the floor" if st.rests else ""
        lower = ", each bounce lower" if st.bounces > 1 else ""
        return f"falls to the floor and bounces {_times(st.bounces)}{lower}{rest}"
    if o.event == "throw":
        text = f"is thrown to the {o.dir} and flies in an arc"
        if st.bounces:
            text += f", lands and bounces {_times(st.bounces)}"
        text += _walls(st)
        if st.rests:
            text += ", then skids to a stop on the floor"
        return text
    if o.event == "collide":
        return f"moves toward the {partner}, collides with it and bounces back"
    if o.event == "spin":
        return f"spins {o.dir} in place"
    return "sits still on the floor" if gravity else "sits still"


def make_caption(scene: Scene, stories: list[ObjectStory], rng: np.random.Generator) -> str:
    """A detailed caption naming every object's size, colour, shape, start, motion and the background."""
    sentences = []
    for i, (o, st) in enumerate(zip(scene.objects, stories)):
        where = position_words(st.start[0], st.start[1], scene.aspect)
        where = "in the centre" if where == "centre" else f"at the {where}"
        partner = None
        if o.event == "collide":
            p = next(scene.objects[k] for k in range(len(scene.objects))
                     if k != i and scene.objects[k].event == "collide")
            partner = f"{p.size} {p.color} {p.shape}"
        what = event_description(o, st, scene.gravity, partner)
        template = _pick(rng, ("{size} {color} {shape} starts {where} and {what}.",
                               "{size} {color} {shape} {where} {what}."))
        text = template.format(size=o.size, color=o.color, shape=o.shape, where=where, what=what)
        sentences.append(f"{article(o.size).capitalize()} {text}")
    bg = _pick(rng, ("The background is {bg}.", "Everything happens on a plain {bg} background."))
    sentences.append(bg.format(bg=scene.bg))
    if scene.gravity:
        sentences.append("A light gray floor runs along the bottom.")
    return " ".join(sentences)
