"""The checks of WORLD.md ("What a generated clip is checked for") on tracked colours.

Every check looks only at what the target names: a prompt that leaves the size open gets no
size check, an object with no event gets no motion check beyond permanence. Lengths are in
frame heights and times in seconds (frame k is at t = k / fps); each tolerance below is
a world quantity plus a pixel or a frame of slack, so one set of numbers serves every
resolution and frame rate. They were set on ground-truth renders round-tripped through mp4
(64x64 to 256x144 and 144x256, 8 to 30 fps), where every clip passes, and on broken clips
(wrong prompt, shuffled or reversed time, wrong gravity, vanishing objects, flicker), which
fail. Below 64 pixels of frame height a small object is 4 pixels across and touching
objects blur into each other: expect a few percent of false permanence failures there.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..world import spec
from ..world.scene import PartialObject, PromptSpec, Scene
from .track import ClipTracks, ColorTrack, min_object_area

CATEGORIES = ("alignment", "motion", "physics", "permanence", "stability")

# --- alignment --------------------------------------------------------------------------
PRESENT_FRACTION = 0.9  # a named object must be seen in this share of the frames
EXTRA_FRACTION = 0.25  # an unnamed colour seen in this share of the frames is an extra object
DOUBLE_AREA = 0.5  # a second region of a named colour this big (of the object's area), in EXTRA_FRACTION of the frames, is another object
SEEN_AREA = 0.5  # of the smallest object's area: a region this big counts as "seen"
SHAPE_MIN_RADIUS_PX = 3.2  # below this circumradius a shape cannot be told in pixels
# (fill of the circumscribed circle, |3-fold moment|, |4-fold moment|) of each shape, and
# the spread of each cue: the fill is the contract's cue; the n-fold moments keep it honest
# at 4-8 pixel sizes, where the codec's blur of a ball's edge lowers its fill toward a box's.
SHAPE_PROTOTYPES = {"ball": (spec.CIRCLE_FILL["ball"], 0.0, 0.0),
                    "box": (spec.CIRCLE_FILL["box"], 0.0, 0.28),
                    "triangle": (spec.CIRCLE_FILL["triangle"], 0.52, 0.0)}
SHAPE_SPREAD = (0.35, 0.1, 0.06)  # log-fill, m3, m4
SIZE_SPLIT = math.sqrt(spec.SIZES["small"] * spec.SIZES["large"])  # side between small and large
# area between the largest small object (box) and the smallest large one (triangle)
AREA_SPLIT = math.sqrt(spec.AREA_FACTOR["box"] * spec.SIZES["small"] ** 2
                       * spec.AREA_FACTOR["triangle"] * spec.SIZES["large"] ** 2)
BG_TOLERANCE = 30.0  # RGB distance from a world background colour
FLOOR_PRESENT = 0.5  # fraction of the bottom band in floor grey that means "a floor is drawn"

# --- motion -----------------------------------------------------------------------------
STILL_TOL = 0.01  # frame heights (+ 1 pixel) a still or spinning object's centre may wander
SLIDE_WINDOW = 1.0  # seconds over which a slide's direction is measured
SLIDE_MIN_SPEED = 0.1  # frame heights / s along the named direction (the world's least is 0.25)
GROUND_TOL = 0.03  # frame heights (+ 1.5 pixels) between an object's bottom and the ground
THROW_RISE = 0.04  # a thrown object rises at least this much in its first 0.25 s
THROW_SIDE = 0.02  # and moves at least this much sideways in the named direction
COLLIDE_MOVE = 0.04  # the pair's distance falls and then grows by at least this much
SPIN_MIN_MOMENT = 0.1  # n-fold moment below which an orientation is unreadable
SPIN_MIN_RATE = 0.3 * 2 * math.pi * spec.SPIN_TURNS_PER_SECOND  # rad/s: slower is not turning

# --- physics ----------------------------------------------------------------------------
G_TOL = 0.15  # relative error allowed in the measured acceleration of a fall or a throw
ARC_RESIDUAL = 0.005  # frame heights (+ half a pixel) rms off the best parabola of a flight
REBOUND_RANGE = (0.35, 0.65)  # rebound apex height / drop height (the world's is 0.7**2 = 0.49)
SPIN_RATE_TOL = 0.2  # relative error allowed in the spin rate
# the fastest thing in the world: a fall from y=0.1 hits the ground at sqrt(2*3*0.8) = 2.2
MAX_SPEED = 3.0  # frame heights / s between two frames (plus 2 pixels a frame)
EDGE_AREA = 0.75  # an object at the frame edge keeps this share of its area, or it is leaving

# --- permanence -------------------------------------------------------------------------
AREA_RANGE = (0.7, 1.4)  # an object's area in any frame relative to its median
CROWDED_AREA_RANGE = (0.5, 1.6)  # the same while it touches another object (edges are shared)
SPLIT_AREA = 0.3  # a second region of an object's colour this big (of its area) is a split
SHAPE_WINDOW, SHAPE_WINDOW_FRAMES = 0.4, 4  # seconds (at least this many frames) per shape read
SHAPE_CHANGE_FRACTION = 0.2  # share of those reads allowed to differ from the clip's shape
SHAPE_CHANGE_MARGIN = 1.0  # how much better (in shape-score units) another shape must fit

# --- stability --------------------------------------------------------------------------
BG_SHIFT = 6.0  # RGB levels the whole background may shift from its usual colour
BG_FLICKER = 0.03  # share of background pixels allowed to change between two frames


@dataclass
class Series:
    """One object's measurements per frame, in frame heights (nan where it is not seen)."""

    color: str
    t: np.ndarray
    found: np.ndarray
    area: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    x1: np.ndarray
    y1: np.ndarray
    radius_px: np.ndarray
    fill: np.ndarray
    m3: np.ndarray  # complex
    m4: np.ndarray
    crowded: np.ndarray
    extra: np.ndarray  # area of the largest other region of this colour

    @property
    def median_area(self) -> float:
        return float(np.nanmedian(self.area)) if self.found.any() else 0.0


def make_series(ct: ColorTrack, tracks: ClipTracks) -> Series:
    h = float(tracks.height)
    n = tracks.n_frames
    nan = np.full(n, np.nan)
    cols = {k: nan.copy() for k in ("area", "cx", "cy", "x0", "y0", "x1", "y1", "radius_px", "fill")}
    m3 = np.full(n, np.nan, complex)
    m4 = np.full(n, np.nan, complex)
    crowded = np.zeros(n, bool)
    extra = np.zeros(n)
    seen = SEEN_AREA * min_object_area(tracks.height)
    for t, b in enumerate(ct.main):
        if b is None or b.area < seen:
            continue
        cols["area"][t] = b.area / h ** 2
        cols["cx"][t], cols["cy"][t] = b.cx / h, b.cy / h
        cols["x0"][t], cols["y0"][t], cols["x1"][t], cols["y1"][t] = (v / h for v in b.bbox)
        cols["radius_px"][t] = b.radius
        cols["fill"][t] = b.fill
        m3[t], m4[t] = b.m3, b.m4
        crowded[t] = b.crowded
        # a sliver where two objects touch takes the colour their mix looks like
        # (yellow + blue reads white): only a piece standing apart is a split
        extra[t] = max((e.area for e in ct.extra[t] if not e.crowded), default=0.0) / h ** 2
    found = ~np.isnan(cols["area"])
    return Series(ct.color, np.arange(n) / tracks.fps, found, m3=m3, m4=m4, crowded=crowded,
                  extra=extra, **cols)


# --- the target -------------------------------------------------------------------------

def as_prompt_spec(target: Scene | PromptSpec) -> PromptSpec:
    if isinstance(target, Scene):
        return PromptSpec.from_scene(target)
    if isinstance(target, PromptSpec):
        return target
    raise TypeError(f"target must be a Scene or a PromptSpec, got {type(target).__name__}")


def gravity_of(target: PromptSpec) -> bool | None:
    """Gravity is on iff some object falls or is thrown; None when the target cannot tell."""
    events = [o.event for o in target.objects]
    if any(e in spec.GRAVITY_EVENTS for e in events):
        return True
    if any(e in spec.NO_GRAVITY_EVENTS for e in events) or (events and all(e is not None for e in events)):
        return False
    return None


def describe(o: PartialObject) -> str:
    words = [w for w in (o.size, o.color, o.shape or "object") if w]
    return " ".join(words)


# --- measurements -----------------------------------------------------------------------

def shape_scores(fill: float, m3: float, m4: float) -> dict[str, float]:
    """Distance of the measured cues to each shape's (0 is a perfect match)."""
    return {s: abs(math.log(max(fill, 1e-3) / f)) / SHAPE_SPREAD[0] + abs(m3 - p3) / SHAPE_SPREAD[1]
            + abs(m4 - p4) / SHAPE_SPREAD[2] for s, (f, p3, p4) in SHAPE_PROTOTYPES.items()}


def classify_shape(fill: float, m3: float, m4: float) -> str:
    scores = shape_scores(fill, m3, m4)
    return min(scores, key=scores.get)


def shape_judgeable(s: Series) -> bool:
    return s.found.any() and float(np.nanmedian(s.radius_px)) >= SHAPE_MIN_RADIUS_PX


def measured_shape(s: Series) -> str | None:
    if not shape_judgeable(s):
        return None
    return classify_shape(float(np.nanmedian(s.fill)), float(np.nanmedian(np.abs(s.m3))),
                          float(np.nanmedian(np.abs(s.m4))))


def measured_size(s: Series, shape: str | None) -> str:
    area = s.median_area
    if shape is None:
        return "small" if area < AREA_SPLIT else "large"
    side = math.sqrt(area / spec.AREA_FACTOR[shape])
    return "small" if side < SIZE_SPLIT else "large"


def background(tracks: ClipTracks) -> tuple[str | None, np.ndarray]:
    """The nearest world background to the clip's background colour, and that colour."""
    top = max(1, int(0.85 * tracks.height))
    rgb = np.median(tracks.plate[:top], axis=0) + np.median(tracks.offsets, axis=0)
    name, dist = min(((k, float(np.linalg.norm(rgb - np.asarray(v)))) for k, v in spec.BACKGROUNDS.items()),
                     key=lambda kv: kv[1])
    return (name if dist <= BG_TOLERANCE else None), rgb


def seen_fraction(s: Series) -> float:
    return float(s.found.mean()) if len(s.found) else 0.0


# --- assignment of named objects to colours ---------------------------------------------

def assign(target: PromptSpec, series: dict[str, Series]) -> list[str | None]:
    """The colour each named object is tracked by; open colours go to unclaimed colours seen
    in the clip, matched by shape and size. None: nothing in the clip can be that object."""
    out: list[str | None] = [o.color for o in target.objects]
    open_idx = [i for i, c in enumerate(out) if c is None]
    if not open_idx:
        return out
    claimed = {c for c in out if c}
    free = [c for c, s in series.items() if c not in claimed and seen_fraction(s) >= 0.5]

    def fit(o: PartialObject, c: str) -> int:
        s = series[c]
        shape = measured_shape(s)
        score = 0
        if o.shape and shape:
            score += 2 if shape == o.shape else 0
        if o.size:
            score += 1 if measured_size(s, o.shape or shape) == o.size else 0
        return score

    best, best_score = None, -1
    k = min(len(open_idx), len(free))
    for cols in itertools.permutations(free, k):
        score = sum(fit(target.objects[i], c) for i, c in zip(open_idx, cols))
        score += 100 * len(cols)  # fill as many named objects as possible first
        if score > best_score:
            best, best_score = cols, score
    for i, c in zip(open_idx, best or ()):
        out[i] = c
    return out


# --- the checks -------------------------------------------------------------------------

@dataclass
class Context:
    target: PromptSpec
    tracks: ClipTracks
    series: dict[str, Series]  # every object colour, seen or not
    colors: list[str | None]  # the colour tracking each named object

    @property
    def px(self) -> float:
        """One pixel in frame heights."""
        return 1.0 / self.tracks.height

    @property
    def duration(self) -> float:
        return self.tracks.n_frames / self.tracks.fps

    @property
    def aspect(self) -> float:
        return self.tracks.width / self.tracks.height

    @property
    def gravity(self) -> bool | None:
        return gravity_of(self.target)

    def objects(self):
        """(index, named object, its series or None) for every named object."""
        for i, (o, c) in enumerate(zip(self.target.objects, self.colors)):
            yield i, o, (self.series[c] if c else None)

    def name(self, i: int) -> str:
        o = self.target.objects[i]
        if o.color is None and self.colors[i]:
            return f"{describe(o)} (tracked as {self.colors[i]})"
        return describe(o)


def _frames_at(s: Series, tau: float) -> int | None:
    """The seen frame nearest to time tau (at least one frame after the first)."""
    idx = np.nonzero(s.found)[0]
    if len(idx) < 2:
        return None
    k = int(np.argmin(np.abs(s.t[idx] - tau)))
    return int(idx[max(k, 1)])


def _first(s: Series) -> int:
    return int(np.nonzero(s.found)[0][0])


def _direction_word(vx: float, vy: float) -> str:
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def _at_t(s: Series, k: int) -> str:
    return f"t={s.t[k]:.2f}s"


def _wander(s: Series) -> float:
    cx, cy = s.cx[s.found], s.cy[s.found]
    return float(np.max(np.hypot(cx - np.median(cx), cy - np.median(cy))))


def _local_max(y: np.ndarray, start: int, eps: float) -> int | None:
    """First index >= start where y stops rising (y[k+1] falls below y[k] by more than eps)."""
    for k in range(max(start, 1), len(y) - 1):
        if y[k + 1] < y[k] - eps and y[k] >= y[k - 1] - eps:
            return k
    return None


def _seen_yt(s: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.nonzero(s.found)[0]
    return idx, s.t[idx], s.cy[idx]


def check_alignment(ctx: Context) -> list[str]:
    out = []
    for i, o, s in ctx.objects():
        name = ctx.name(i)
        if s is None:
            out.append(f"no {name} in the clip")
            continue
        frac = seen_fraction(s)
        if frac < PRESENT_FRACTION:
            out.append(f"{name} is missing" if frac == 0 else f"{name} is seen in only {frac:.0%} of the frames")
            if frac == 0:
                continue
        shape = measured_shape(s)
        if o.shape and shape and shape != o.shape:
            fill = float(np.nanmedian(s.fill))
            out.append(f"{name} looks like a {shape} (fills {fill:.2f} of its circumscribed circle; "
                       f"a {o.shape} fills {spec.CIRCLE_FILL[o.shape]:.2f})")
        if o.size:
            size = measured_size(s, shape or o.shape)
            if size != o.size:
                side = math.sqrt(s.median_area / spec.AREA_FACTOR[shape or o.shape or "box"])
                out.append(f"{name} is {size}, not {o.size} (about {side:.2f} frame heights across; "
                           f"{o.size} is {spec.SIZES[o.size]})")
        # no two objects share a colour (WORLD.md), so a second region of this one is another object
        doubled = float((s.found & (s.extra >= DOUBLE_AREA * s.median_area)).mean())
        if doubled >= EXTRA_FRACTION:
            out.append(f"a second {s.color} object is in {doubled:.0%} of the frames, besides the {name}")
    named = {c for c in ctx.colors if c}
    for c, s in ctx.series.items():
        if c not in named and seen_fraction(s) >= EXTRA_FRACTION:
            out.append(f"an unnamed {c} object is in the clip")
    bg, rgb = background(ctx.tracks)
    if bg is None:
        out.append(f"the background ({', '.join(str(round(v)) for v in rgb)}) is not a world background colour")
    elif ctx.target.bg and bg != ctx.target.bg:
        out.append(f"the background is {bg}, not {ctx.target.bg}")
    floor = ctx.tracks.floor_fraction >= FLOOR_PRESENT
    if ctx.gravity is True and not floor:
        out.append("no floor is drawn although something falls or is thrown")
    elif ctx.gravity is False and floor:
        out.append("a floor is drawn in a scene without gravity")
    return out


def check_motion(ctx: Context) -> list[str]:
    out = []
    collide = [i for i, o in enumerate(ctx.target.objects) if o.event == "collide"]
    for i, o, s in ctx.objects():
        if o.event is None:
            continue
        name = ctx.name(i)
        if s is None or s.found.sum() < 2:
            out.append(f"{name} cannot be followed (not in the clip)")
            continue
        if o.event == "collide":
            continue  # judged as a pair below
        msg = MOTION_CHECKS[o.event](ctx, o, s, name)
        if msg:
            out.append(msg)
    if len(collide) == 2:
        a, b = collide
        sa, sb = (ctx.series[ctx.colors[k]] if ctx.colors[k] else None for k in collide)
        if sa is not None and sb is not None:
            out += _collide_motion(ctx, sa, sb, ctx.name(a), ctx.name(b))
    return out


def _still_motion(ctx, o, s, name):
    d = _wander(s)
    if d > STILL_TOL + ctx.px:
        return f"{name} should stay still but its centre moves {d:.3f} frame heights"
    rate = spin_rate(ctx, o, s)
    if rate is not None and abs(rate) >= SPIN_MIN_RATE:
        return f"{name} should stay still but turns {'clockwise' if rate > 0 else 'counterclockwise'}"
    return None


_DIRS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def _slide_motion(ctx, o, s, name):
    idx = np.nonzero(s.found & (s.t <= max(SLIDE_WINDOW, 2.5 / ctx.tracks.fps)))[0]
    if len(idx) < 2:
        return None
    vx = float(np.polyfit(s.t[idx], s.cx[idx], 1)[0])
    vy = float(np.polyfit(s.t[idx], s.cy[idx], 1)[0])
    speed = math.hypot(vx, vy)
    if o.dir is None:
        return None if speed >= SLIDE_MIN_SPEED else f"{name} should slide but barely moves ({speed:.2f}/s)"
    dx, dy = _DIRS[o.dir]
    along = vx * dx + vy * dy
    across = abs(vx * dy - vy * dx)
    if along >= SLIDE_MIN_SPEED and across <= along:
        return None
    if speed < SLIDE_MIN_SPEED:
        return f"{name} should slide {o.dir} but barely moves ({speed:.2f} frame heights/s)"
    return f"{name} should slide {o.dir} but moves {_direction_word(vx, vy)}"


def _fall_motion(ctx, o, s, name):
    k0 = _first(s)
    k = _frames_at(s, max(0.3, 2.0 / ctx.tracks.fps))
    if k is None:
        return None
    dy = s.cy[k] - s.cy[k0]
    if dy < 0.03:
        word = "moves up" if dy < -0.03 else "does not move down"
        return f"{name} should fall but {word} at first"
    bottom0 = s.y1[k0]
    need = math.sqrt(2 * max(spec.GROUND_Y - bottom0, 0.0) / spec.GRAVITY) * 1.2 + 1.0 / ctx.tracks.fps
    lowest = float(np.nanmax(s.y1))
    if ctx.duration >= need and lowest < spec.GROUND_Y - (GROUND_TOL + 1.5 * ctx.px):
        return (f"{name} falls but never reaches the ground (its bottom gets to y={lowest:.2f}, "
                f"the ground is at {spec.GROUND_Y})")
    return None


def _throw_motion(ctx, o, s, name):
    k0 = _first(s)
    k = _frames_at(s, max(0.25, 2.0 / ctx.tracks.fps))
    if k is None:
        return None
    rise = s.cy[k0] - s.cy[k]
    side = s.cx[k] - s.cx[k0]
    if rise < THROW_RISE:
        return f"{name} should be thrown but does not go up first"
    if o.dir is None:
        if abs(side) < THROW_SIDE:
            return f"{name} should be thrown but goes straight up"
        return None
    sign = 1.0 if o.dir == "right" else -1.0
    if side * sign < THROW_SIDE:
        went = "straight up" if abs(side) < THROW_SIDE else ("right" if side > 0 else "left")
        return f"{name} should be thrown {o.dir} but goes {went}"
    return None


def spin_rate(ctx: Context, o: PartialObject, s: Series) -> float | None:
    """Turning rate in rad/s (positive: clockwise on screen), or None where unreadable."""
    shape = measured_shape(s) if o.shape is None else o.shape
    if shape not in spec.SPIN_SHAPES or not shape_judgeable(s):
        return None
    n, m = (4, s.m4) if shape == "box" else (3, s.m3)
    ok = s.found & (np.abs(np.nan_to_num(m)) >= SPIN_MIN_MOMENT)
    if ok.sum() < 3 or ok.mean() < 0.8:
        return None
    idx = np.nonzero(ok)[0]
    phase = np.unwrap(np.angle(m[idx])) / n  # orientation mod 2*pi/n, unwrapped
    return float(np.polyfit(s.t[idx], phase, 1)[0])


def _spin_motion(ctx, o, s, name):
    d = _wander(s)
    if d > STILL_TOL + ctx.px:
        return f"{name} should spin in place but its centre moves {d:.3f} frame heights"
    rate = spin_rate(ctx, o, s)
    if rate is None:
        return None
    if abs(rate) < SPIN_MIN_RATE:
        return f"{name} should spin but barely turns ({rate / (2 * math.pi):+.2f} turns/s)"
    turned = "clockwise" if rate > 0 else "counterclockwise"
    if o.dir and turned != o.dir:
        return f"{name} should spin {o.dir} but turns {turned}"
    return None


MOTION_CHECKS = {"still": _still_motion, "slide": _slide_motion, "fall": _fall_motion,
                 "throw": _throw_motion, "spin": _spin_motion}


def _pair(sa: Series, sb: Series) -> np.ndarray:
    """Frames where both objects of a pair are seen."""
    return np.nonzero(sa.found & sb.found)[0]


def _meeting(d: np.ndarray, px: float) -> int:
    """Frame of the pair's first closest approach (walls may bring them together again later)."""
    for k in range(len(d) - 1):
        if d[k + 1] > d[k] + 0.5 * px:
            return k
    return len(d) - 1


@dataclass
class PairTrack:
    """A collide pair over the frames where both are seen: idx (frame indices), t (s), diff (centre
    x of a minus b), d = |diff|, early (mask of the first moments), k (index of the first meeting)."""

    idx: np.ndarray
    t: np.ndarray
    diff: np.ndarray
    d: np.ndarray
    early: np.ndarray
    k: int


def _pair_track(ctx, sa: Series, sb: Series) -> PairTrack | None:
    idx = _pair(sa, sb)
    if len(idx) < 3:
        return None
    t = sa.t[idx]
    diff = sa.cx[idx] - sb.cx[idx]
    d = np.abs(diff)
    return PairTrack(idx, t, diff, d, t <= max(0.5, 2.5 / ctx.tracks.fps), _meeting(d, ctx.px))


def _collide_motion(ctx, sa, sb, na, nb) -> list[str]:
    p = _pair_track(ctx, sa, sb)
    if p is None:
        return []
    idx, t, d, k = p.idx, p.t, p.d, p.k
    out = []
    early = idx[p.early]
    if len(early) >= 2:
        left_first = sa.cx[idx[0]] < sb.cx[idx[0]]
        for s, n, toward in ((sa, na, 1.0 if left_first else -1.0), (sb, nb, -1.0 if left_first else 1.0)):
            v = float(np.polyfit(s.t[early], s.cx[early], 1)[0])
            if v * toward < 0.05:
                out.append(f"{n} does not move toward the other object of the collision")
    if d[0] - d[k] < COLLIDE_MOVE:
        out.append(f"{na} and {nb} do not approach each other")
    elif ctx.duration - t[k] >= 0.3 and d[k:].max() - d[k] < COLLIDE_MOVE:
        out.append(f"{na} and {nb} do not separate after they meet")
    elif ctx.duration - t[k] < 0.3 and ctx.duration >= spec.COLLIDE_MEET_SECONDS + 0.5:
        out.append(f"{na} and {nb} are still closing in at the end: they never collide")
    return out


def check_physics(ctx: Context) -> list[str]:
    out = []
    for i, o, s in ctx.objects():
        name = ctx.name(i)
        if s is None or not s.found.any():
            if o.event in ("fall", "throw", "collide"):
                out.append(f"{name}'s {o.event} cannot be checked (not in the clip)")
            continue
        out += _inside(ctx, s, name)
        if o.event == "fall":
            out += _fall_physics(ctx, s, name)
        elif o.event == "throw":
            out += _throw_physics(ctx, s, name)
        elif o.event == "still" and ctx.gravity:
            gap = spec.GROUND_Y - float(np.nanmedian(s.y1))
            if abs(gap) > GROUND_TOL + 1.5 * ctx.px:
                out.append(f"{name} should rest on the floor but its bottom is {gap:+.2f} frame heights from it")
        elif o.event == "spin":
            rate = spin_rate(ctx, o, s)
            want = 2 * math.pi * spec.SPIN_TURNS_PER_SECOND
            if rate is not None and abs(abs(rate) - want) > SPIN_RATE_TOL * want:
                out.append(f"{name} spins at {abs(rate) / (2 * math.pi):.2f} turns/s, "
                           f"not {spec.SPIN_TURNS_PER_SECOND}")
    collide = [i for i, o in enumerate(ctx.target.objects) if o.event == "collide"]
    if len(collide) == 2 and all(ctx.colors[k] for k in collide):
        a, b = collide
        out += _collide_physics(ctx, ctx.series[ctx.colors[a]], ctx.series[ctx.colors[b]],
                                ctx.name(a), ctx.name(b))
    return out


def _inside(ctx: Context, s: Series, name: str) -> list[str]:
    out = []
    idx = np.nonzero(s.found)[0]
    if len(idx) >= 2:
        step = np.hypot(np.diff(s.cx[idx]), np.diff(s.cy[idx]))
        speed = step / np.diff(s.t[idx])
        limit = MAX_SPEED + 2 * ctx.px * ctx.tracks.fps
        if speed.max() > limit:
            k = int(idx[int(np.argmax(speed)) + 1])
            out.append(f"{name} jumps {step.max():.2f} frame heights between two frames at {_at_t(s, k)} "
                       f"({speed.max():.1f} frame heights/s; nothing in the world moves faster than {MAX_SPEED:g})")
    margin = 0.5 * ctx.px
    at_edge = s.found & ((s.x0 <= margin) | (s.y0 <= margin) | (s.x1 >= ctx.aspect - margin)
                         | (s.y1 >= 1 - margin))
    cut = at_edge & (s.area < EDGE_AREA * s.median_area)
    if cut.any():
        k = int(np.nonzero(cut)[0][0])
        out.append(f"{name} leaves the frame at {_at_t(s, k)}")
    if ctx.gravity:
        sunk = s.found & (s.y1 > spec.GROUND_Y + GROUND_TOL + 1.5 * ctx.px)
        if sunk.any():
            k = int(np.nonzero(sunk)[0][0])
            out.append(f"{name} sinks into the floor at {_at_t(s, k)}")
    return out


def _g_fit(t: np.ndarray, y: np.ndarray) -> float:
    return 2.0 * float(np.polyfit(t, y, 2)[0])


def _fall_physics(ctx: Context, s: Series, name: str) -> list[str]:
    idx, t, y = _seen_yt(s)
    bottom = s.y1[idx]
    eps = 0.5 * ctx.px
    land = _local_max(y, 1, eps)  # the first bounce: where it stops going down
    grounded = np.nonzero(bottom >= spec.GROUND_Y - (GROUND_TOL + 1.5 * ctx.px))[0]
    touch = int(grounded[0]) if len(grounded) else None
    ends = [k for k in (land, touch) if k is not None]
    # the frame that ends the descent may already be past the bounce: fit the frames before it
    descent = min(ends) if ends else len(y)
    out = []
    if descent >= 4:
        g = _g_fit(t[:descent], y[:descent])
        if abs(g - spec.GRAVITY) > G_TOL * spec.GRAVITY:
            out.append(f"{name} falls with an acceleration of {g:.2f} frame heights/s^2, not {spec.GRAVITY}")
    if land is None:
        if touch is not None and t[-1] - t[touch] >= 0.3:
            out.append(f"{name} lands but does not rebound from the ground")
        return out
    rest = spec.GROUND_Y - float(np.nanmedian(s.y1 - s.cy))  # centre height when lying on the ground
    drop = rest - y[0]
    if drop < 0.1:
        return out
    after = y[land:]
    k_apex = int(np.argmin(after))
    if k_apex == len(after) - 1:
        # never turned down again within the clip: judge only if it should have
        if ctx.duration - t[land] > 2 * math.sqrt(2 * 0.7 * drop / spec.GRAVITY) + 0.2:
            out.append(f"{name} does not come back down after its first bounce")
        return out
    ratio = (rest - after[k_apex]) / drop
    if ratio < 0.02:
        out.append(f"{name} does not rebound from the ground")
    elif not REBOUND_RANGE[0] <= ratio <= REBOUND_RANGE[1]:
        out.append(f"{name} rebounds to {ratio:.2f} of its drop height, not about "
                   f"{spec.GROUND_RESTITUTION ** 2:.2f}")
    return out


def _throw_physics(ctx: Context, s: Series, name: str) -> list[str]:
    idx, t, y = _seen_yt(s)
    if len(y) < 3:
        return []
    eps = 0.5 * ctx.px
    apex = int(np.argmin(y))
    if apex == 0 or y[0] - y[apex] < THROW_RISE:
        return [f"{name} is not thrown upward"]
    land = _local_max(y, apex, eps)  # its first bounce
    grounded = np.nonzero(s.y1[idx][apex:] >= spec.GROUND_Y - (GROUND_TOL + 1.5 * ctx.px))[0]
    ends = [k for k in (land, apex + int(grounded[0]) if len(grounded) else None) if k is not None]
    out = []
    if not ends and ctx.duration >= 2 * spec.THROW_VY[1] / spec.GRAVITY + 0.3:
        out.append(f"{name} goes up but never comes back down")
    arc = min(ends) if ends else len(y)  # the frame that ends the flight may be past the bounce
    if arc >= 5:
        g = _g_fit(t[:arc], y[:arc])
        fit = np.polyval(np.polyfit(t[:arc], y[:arc], 2), t[:arc])
        miss = float(np.sqrt(np.mean((fit - y[:arc]) ** 2)))
        if miss > ARC_RESIDUAL + 0.5 * ctx.px:
            out.append(f"{name}'s flight is not a parabola (it strays {miss:.3f} frame heights from the best one)")
        elif abs(g - spec.GRAVITY) > G_TOL * spec.GRAVITY:
            out.append(f"{name} flies on an arc bending at {g:.2f} frame heights/s^2, not {spec.GRAVITY} "
                       "(not a free-fall parabola)")
    return out


def _collide_physics(ctx: Context, sa: Series, sb: Series, na: str, nb: str) -> list[str]:
    p = _pair_track(ctx, sa, sb)
    if p is None:
        return []
    idx, t, diff, d, early, k = p.idx, p.t, p.diff, p.d, p.early, p.k
    clear = np.abs(diff) > 1.5 * ctx.px
    signs = np.sign(diff[clear])
    out = []
    if len(signs) and (signs != signs[0]).any():
        return [f"{na} and {nb} pass through each other"]
    a_left = diff[0] < 0
    left, right = (sa, sb) if a_left else (sb, sa)
    gap = right.x0[idx] - left.x1[idx]
    speed = -float(np.polyfit(t[early], d[early], 1)[0]) if early.sum() >= 2 else 0.0
    tol = max(speed, 0.0) / (2 * ctx.tracks.fps) + 2 * ctx.px + 0.01
    met = d[0] - d[k] >= COLLIDE_MOVE and k < len(d) - 1  # they met and turned back within the clip
    if met and gap.min() > tol:
        out.append(f"{na} and {nb} turn back without touching (closest gap {gap.min():.2f} frame heights)")
    if gap.min() < -(3 * ctx.px + 0.01):
        out.append(f"{na} and {nb} overlap (by {-gap.min():.2f} frame heights)")
    return out


def check_permanence(ctx: Context) -> list[str]:
    out = []
    for i, o, s in ctx.objects():
        name = ctx.name(i)
        if s is None or not s.found.any():
            out.append(f"{name} never appears")
            continue
        lost = ~s.found
        if lost.any():
            k = int(np.nonzero(lost)[0][0])
            out.append(f"{name} vanishes in {int(lost.sum())} of {len(lost)} frames (first at {_at_t(s, k)})")
        ratio = s.area / s.median_area
        lo = np.where(s.crowded, CROWDED_AREA_RANGE[0], AREA_RANGE[0])
        hi = np.where(s.crowded, CROWDED_AREA_RANGE[1], AREA_RANGE[1])
        bad = s.found & ((ratio < lo) | (ratio > hi))
        if bad.any():
            k = int(np.nonzero(bad)[0][0])
            out.append(f"{name} changes size (area x{ratio[k]:.2f} of its usual at {_at_t(s, k)})")
        split = s.found & (s.extra >= SPLIT_AREA * s.median_area)
        if split.any():
            k = int(np.nonzero(split)[0][0])
            out.append(f"{name} splits into pieces at {_at_t(s, k)}")
        changed = _shape_change(ctx, s)
        if changed:
            out.append(f"{name} changes shape ({changed})")
    return out


def _shape_change(ctx: Context, s: Series) -> str | None:
    """Reads of the shape over windows of ~0.4 s; one frame's read is too noisy at small sizes."""
    if not shape_judgeable(s):
        return None
    main = measured_shape(s)
    n = max(SHAPE_WINDOW_FRAMES, round(SHAPE_WINDOW * ctx.tracks.fps))
    reads = []
    for k in range(0, len(s.t) - n + 1, n):
        w = slice(k, k + n)
        ok = s.found[w] & (s.radius_px[w] >= SHAPE_MIN_RADIUS_PX)
        if ok.sum() * 2 < n:
            continue
        scores = shape_scores(float(np.median(s.fill[w][ok])), float(np.median(np.abs(s.m3[w][ok]))),
                              float(np.median(np.abs(s.m4[w][ok]))))
        best = min(scores, key=scores.get)
        # a window reads as another shape only when it clearly does: small objects on a
        # low-contrast background blur toward a ball for some orientations
        reads.append((k, best if scores[main] - scores[best] >= SHAPE_CHANGE_MARGIN else main))
    other = [(k, x) for k, x in reads if x != main]
    if len(other) > SHAPE_CHANGE_FRACTION * len(reads):
        k, x = other[0]
        return f"a {main} that reads as a {x} at {_at_t(s, k)}"
    return None



def check_stability(ctx: Context) -> list[str]:
    out = []
    tr = ctx.tracks
    shift = np.linalg.norm(tr.offsets - np.median(tr.offsets, axis=0), axis=1)
    if shift.max() > BG_SHIFT:
        k = int(np.argmax(shift))
        out.append(f"the background colour shifts by up to {shift.max():.0f} levels "
                   f"({int((shift > BG_SHIFT).sum())} frames, worst at t={k / tr.fps:.2f}s)")
    if tr.n_frames > 1 and tr.bg_change.max() > BG_FLICKER:
        k = int(np.argmax(tr.bg_change))
        out.append(f"the background flickers ({tr.bg_change.max():.0%} of its pixels change at t={k / tr.fps:.2f}s)")
    return out


CHECKS = {"alignment": check_alignment, "motion": check_motion, "physics": check_physics,
          "permanence": check_permanence, "stability": check_stability}
