"""Read prompts and captions of the world back into scenes, and expand short prompts.

`parse_prompt` turns free text into a `PromptSpec`: every object the text names (colour,
shape, size, event, direction; None for what the text leaves open) and the background if
named. It reads every prompt and caption that `captions.py` writes, and the paraphrases a
person would type that the templates deliberately leave out (the held-out wording of
evaluation). The evaluator scores generated clips against its output, so it is built for
precision: an object exists only where a noun phrase names it, and a direction only where a
direction word stands in the object's own clause.

How a text is read:
1. normalise (lower case, contractions, "counter-clockwise", hyphens);
2. lift the background out ("on a navy background", "the background is gray");
3. rewrite "toward the left wall" to "to the left", then drop start positions and walls
   ("at the top left", "off the right wall"), so their left/right/top never read as motion;
4. find noun phrases ("a small red ball", "two boxes", "the red one", "a red and a blue
   ball"); one preceded by a preposition or a contact verb ("collides with a blue box") is a
   complement, any other is a subject;
5. each group of subjects joined by "and" / "," owns the words up to the next subject: the
   strongest event cue there is its event, the nearest direction word valid for that event
   its direction; a collide also takes the complement it names ("hits a blue box");
6. mentions are objects: indefinite ones ("a red ball") make new objects, definite ones
   ("the small orange ball") refer to the object of that colour (or shape) if there is one.

Expansion (`expand.py`) builds on this: what a prompt leaves open is drawn from the world.

The lexicon is the tables below. Words of colours and shapes the world does not have
("pink", "star") name an object whose colour or shape is then left open (None), unless the
caller asks to keep them (`keep_unknown`) so that it can refuse them by name, as
`expand_prompt` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace


from . import spec
from .scene import PartialObject, PromptSpec

# --- lexicon ------------------------------------------------------------------------------

# Object colours: the 8 of WORLD.md and unambiguous synonyms only (no "light blue": cyan or blue?).
COLOR_WORDS: dict[str, str] = {c: c for c in spec.OBJECT_COLORS} | {
    "violet": "purple", "aqua": "cyan", "turquoise": "cyan", "crimson": "red", "scarlet": "red",
}
# Colours the world never gives an object: they still name an object ("a pink ball").
FOREIGN_COLORS = frozenset({"black", "gray", "grey", "navy", "pink", "brown", "magenta", "silver",
                            "gold", "golden", "beige", "maroon", "teal", "lime", "indigo", "olive"})
# Background colours; "grey" is the British spelling.
BACKGROUND_WORDS: dict[str, str] = {b: b for b in spec.BACKGROUNDS} | {"grey": "gray"}

SIZE_WORDS: dict[str, str] = {
    "small": "small", "little": "small", "tiny": "small", "smaller": "small",
    "large": "large", "big": "large", "huge": "large", "giant": "large", "larger": "large",
    "bigger": "large",
}

# Singular nouns -> shape. Only obvious synonyms: a crate is a box, a pyramid drawn flat a triangle.
NOUN_SHAPES: dict[str, str] = {
    "ball": "ball", "circle": "ball", "sphere": "ball", "dot": "ball", "disc": "ball",
    "disk": "ball", "orb": "ball", "marble": "ball",
    "box": "box", "square": "box", "cube": "box", "block": "box", "crate": "box",
    "triangle": "triangle", "pyramid": "triangle",
}
# Shapes the world does not draw: they still name an object ("a red star").
FOREIGN_SHAPES = frozenset({"star", "hexagon", "pentagon", "octagon", "heart", "rectangle", "oval",
                            "ellipse", "diamond", "cross", "ring", "cylinder", "cone", "arrow"})
# Heads that name an object without its shape ("a red one").
GENERIC_NOUNS = frozenset({"one", "object", "shape", "thing", "item", "body", "piece", "figure"})
PLURALS: dict[str, str] = {"ones": "one", "bodies": "body", "boxes": "box"} | {
    w + "s": w for w in (*NOUN_SHAPES, *FOREIGN_SHAPES, *GENERIC_NOUNS) if w not in ("box", "one", "body")}

INDEFINITE = frozenset({"a", "an", "another", "some"})
DEFINITE = frozenset({"the", "this", "that", "these", "those", "both"})
NUMBER_WORDS: dict[str, int] = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                                **{str(k): k for k in range(1, 10)}}
# Adjectives that may stand in a noun phrase without changing what it names.
FILLER_ADJECTIVES = frozenset({"bright", "dark", "light", "pale", "deep", "solid", "plain", "flat",
                               "single", "lone", "shiny", "other", "colored", "coloured", "vivid"})
# Words of place that may stand between a determiner and a noun ("the left box", "the second ball").
POSITION_ADJECTIVES = frozenset({"left", "right", "top", "bottom", "upper", "lower", "middle", "central",
                                 "leftmost", "rightmost", "first", "second", "third"})
# Nouns that are not objects: a colour before them names no object ("a light gray floor").
SCENERY_NOUNS = frozenset({"floor", "ground", "wall", "walls", "edge", "edges", "side", "ceiling",
                           "border", "frame", "screen", "background", "backdrop", "corner", "bottom",
                           "top", "surface", "scene", "sky"})

# Event cues: (event, direction the word itself implies, strength, word forms). A strong cue
# names its event; a weak one only hints at it ("bounces" alone is a fall, but a thrown or
# colliding object bounces too; "rests" alone is still, but a fallen object rests too).
STRONG, WEAK = 2, 1
EVENT_LEXICON: tuple[tuple[str, str | None, int, str], ...] = (
    ("collide", None, STRONG, "collide collides collided colliding collision collisions crash crashes "
                              "crashed crashing smash smashes smashed smashing bump bumps bumped bumping "
                              "hit hits hitting strike strikes struck striking clash clashes clashed clashing"),
    ("throw", None, STRONG, "throw throws threw thrown throwing toss tosses tossed tossing hurl hurls "
                            "hurled hurling lob lobs lobbed lobbing fling flings flung flinging launch "
                            "launches launched launching catapult catapults catapulted arc arcs arced "
                            "arcing parabola parabolic pitch pitches pitched pitching hop hops hopped "
                            "hopping leap leaps leapt leaped leaping jump jumps jumped jumping fly flies "
                            "flew flown flying soar soars soared soaring"),
    ("fall", None, STRONG, "fall falls fell fallen falling drop drops dropped dropping plummet plummets "
                           "plummeted plummeting tumble tumbles tumbled tumbling plunge plunges plunged "
                           "plunging"),
    ("spin", None, STRONG, "spin spins spun spinning rotate rotates rotated rotating rotation turn turns "
                           "turned turning twirl twirls twirled twirling whirl whirls whirled whirling "
                           "revolve revolves revolved revolving swivel swivels swiveling swivelling "
                           "pirouette pirouettes pirouetted pirouetting"),
    ("slide", None, STRONG, "move moves moved moving slide slides slid sliding glide glides glided gliding "
                            "drift drifts drifted drifting float floats floated floating travel travels "
                            "traveled travelled traveling travelling head heads headed heading roll rolls "
                            "rolled rolling go goes went going shift shifts shifted shifting coast coasts "
                            "coasted coasting cruise cruises cruised cruising zoom zooms zoomed zooming "
                            "zip zips zipped zipping race races raced racing dash dashes dashed dashing "
                            "scoot scoots scooted scooting sail sails sailed sailing crosses crossed "
                            "crossing push pushes pushed pushing nudge nudges nudged nudging"),
    ("slide", "up", STRONG, "rise rises rose risen rising ascend ascends ascended ascending climb climbs "
                            "climbed climbing"),
    ("slide", "down", STRONG, "sink sinks sank sunk sinking descend descends descended descending"),
    ("still", None, STRONG, "still motionless stationary static immobile unmoving frozen put"),
    ("fall", None, WEAK, "bounce bounces bounced bouncing land lands landed landing"),
    ("still", None, WEAK, "sit sits sat sitting rest rests rested resting stay stays stayed staying "
                          "remain remains remained remaining lie lies lay lying stand stands stood "
                          "standing wait waits waited waiting idle idles hover hovers hovered hovering"),
)
# When a clause holds cues of several events: the more specific motion wins ("falls ... then
# rests", "slides ..., bouncing off the wall", "moves toward ..., collides with it").
EVENT_PRIORITY = ("collide", "throw", "fall", "spin", "slide", "still")


def _cue_table() -> dict[str, tuple[str, str | None, int]]:
    table: dict[str, tuple[str, str | None, int]] = {}
    for event, implied, strength, forms in EVENT_LEXICON:
        for form in forms.split():
            table.setdefault(form, (event, implied, strength))
    return table


EVENT_CUES = _cue_table()
MOTION_CUES = frozenset(w for w, (e, _, _) in EVENT_CUES.items() if e != "still") | {"motion", "movement"}
NEGATIONS = frozenset({"not", "never", "no", "without"})
COLLIDE_CUES = frozenset(w for w, (e, _, _) in EVENT_CUES.items() if e == "collide")
# "toward each other", "into one another": approach words that make a collide of a pair.
MUTUAL_APPROACH = frozenset({"toward", "towards", "at", "into", "approach", "approaches", "approached",
                             "approaching", "reach", "reaches", "meet", "meets", "met", "meeting"})

DIRECTION_WORDS: dict[str, str] = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up",
    "down": "down", "downward": "down", "downwards": "down",
    "clockwise": "clockwise", "cw": "clockwise",
    "counterclockwise": "counterclockwise", "anticlockwise": "counterclockwise", "ccw": "counterclockwise",
}
# Rotation words name a spin even after a motion verb ("goes clockwise").
SPIN_DIRECTION_WORDS = frozenset(w for w, d in DIRECTION_WORDS.items() if d in spec.EVENT_DIRS["spin"])
# Particles that are no direction: "slows down", "ends up", "right away".
NOT_DIRECTION_AFTER = frozenset({"slow", "slows", "slowed", "slowing", "settle", "settles", "settled",
                                 "settling", "touch", "touches", "touched", "touching", "speed", "speeds",
                                 "end", "ends", "pick", "picks", "calm", "calms"})
NOT_DIRECTION_BEFORE = frozenset({"away", "now", "next"})

# Words between two subjects that keep them one group ("a red ball, a blue box and ...").
GROUP_JOINERS = frozenset({"and", ",", "or", "plus", "as", "well"})
# Words before a noun phrase that make it a complement rather than a subject.
COMPLEMENT_MARKERS = frozenset({"with", "into", "toward", "towards", "against", "at", "to", "off", "past",
                                "than", "onto", "beside", "near", "behind", "by", "from", "on", "under",
                                "over", "above", "below", "besides", "approaches", "approach",
                                "approaching", "meets", "meet", "reaches", "reach"}) | COLLIDE_CUES
# ... and those of them after which a collide takes the complement as its partner.
PARTNER_MARKERS = frozenset({"with", "into", "toward", "towards", "against", "at", "by", "approaches",
                             "approach", "approaching", "meets", "meet", "reaches", "reach"}) | COLLIDE_CUES
SENTENCE_ENDS = frozenset({".", "!", "?", ";"})
PRONOUNS = frozenset({"it", "they", "them", "both", "each", "its"})

# --- phrase rewrites (before tokenising) -------------------------------------------------------

_ALL_COLOURS = sorted({*COLOR_WORDS, *FOREIGN_COLORS, *BACKGROUND_WORDS}, key=len, reverse=True)
_COLOUR = "|".join(_ALL_COLOURS)
_BG_NOUN = r"(?:background|backdrop|bg)"
_BG_MODS = r"(?P<mods>(?:(?:plain|solid|flat|simple|uniform|dark|light|deep|pale|pure|bright)\s+)*)"
_BG_BEFORE = re.compile(rf"(?:\b(?:on|against|over|with|in front of|in)\s+)?(?:\b(?:a|an|the)\s+)?"
                        rf"\b{_BG_MODS}(?P<c>{_COLOUR})\s+(?:colou?red\s+)?{_BG_NOUN}\b")
# "on black": a background colour no object takes, after "on", standing alone (not "on a gray floor")
_BG_ONLY = "|".join(sorted(w for w in BACKGROUND_WORDS if w not in COLOR_WORDS))  # black, gray, grey, navy
_BG_BARE = re.compile(rf"\b(?:on|against|over)\s+(?:(?:a|an|the)\s+)?{_BG_MODS}(?P<c>{_BG_ONLY})\b"
                      rf"(?!\s+(?:colou?red\s+)?(?:{'|'.join(sorted({*NOUN_SHAPES, *FOREIGN_SHAPES, *GENERIC_NOUNS, *SCENERY_NOUNS, *PLURALS}))})\b)")
_BG_AFTER = re.compile(rf"\b(?:the\s+)?{_BG_NOUN}(?:\s+colou?r)?\s*(?:is|was|:|=|of|in)\s+(?:a\s+|an\s+)?"
                       rf"{_BG_MODS}(?P<c>{_COLOUR})\b")

_POS = r"(?:top|middle|bottom|centre|center|left|right|upper|lower|side|corner|edge|wall|half|hand)"
# "toward the left wall" is a direction; rewrite it before walls are dropped.
_TOWARD_SIDE = re.compile(r"\b(?:to|toward|towards)\s+(?:the\s+)?(left|right|top|bottom)"
                          r"(?:\s+(?:wall|edge|side|border)|\s+of\s+the\s+(?:frame|screen))?\b")
_SIDE_DIRECTION = {"left": " to the left ", "right": " to the right ", "top": " upward ", "bottom": " downward "}
# "right to left" names where the motion ends: "moves from the top to the bottom" is downward.
_SIDE_TO_SIDE = re.compile(r"\b(?:from\s+)?(?:the\s+)?(?:left|right|top|bottom)\s+to\s+(?:the\s+)?"
                           r"(left|right|top|bottom)\b")
# Start positions and walls: "starts at the top left", "in the centre", "off the right wall".
_POSITION = re.compile(rf"\b(?:at|in|on|from|near|along|off|by|against)\s+(?:the\s+|its\s+)?"
                       rf"(?:(?:very|far)\s+)?{_POS}(?:\s+{_POS})*"
                       rf"(?:\s+of\s+the\s+(?:frame|screen|scene|image|picture|video|view))?\b")
_WALL = re.compile(r"\b(?:the\s+)?(?:left|right|top|bottom|upper|lower)\s+(?:wall|edge|side|corner|border)s?\b")
# "spins in a circle" names no ball.
_CIRCLE_IDIOM = re.compile(r"\b(?:in|around|round)\s+(?:a\s+)?(?:little\s+|small\s+|full\s+)?circles?\b")

_REWRITES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"[\u2018\u2019`]"), "'"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"\b(?:counter|anti)[\s-]*clockwise\b"), "counterclockwise"),
    (re.compile(r"\bnavy[\s-]+blue\b"), "navy"),
    (re.compile(r"\bdark[\s-]+blue(?=\s+(?:background|backdrop|bg)\b)"), "navy"),
    (re.compile(r"[-_/]"), " "),
    (re.compile(r"&"), " and "),
    (re.compile(r"\b(?:a\s+)?(?:pair|couple)\s+of\b"), "two"),
    # two that bounce off each other have collided
    (re.compile(r"\b(?:bounce[sd]?|bouncing|rebound(?:s|ed|ing)?|ricochet(?:s|ed|ing)?)\s+off\s+(?:of\s+)?"
                r"(?:each\s+other|one\s+another)\b"), "collide"),
)


def _normalise(text: str) -> str:
    text = f" {text.lower()} "
    for pattern, repl in _REWRITES:
        text = pattern.sub(repl, text)
    return text


def _background(text: str) -> tuple[str | None, str]:
    """The background the text names (or None), and the text without that phrase."""
    found = []

    def take(m: re.Match) -> str:
        colour = m.group("c")
        if colour == "blue" and "dark" in m.group("mods"):
            colour = "navy"
        found.append(BACKGROUND_WORDS.get(colour, COLOR_WORDS.get(colour, colour)))
        return " , "

    for pattern in (_BG_BEFORE, _BG_AFTER, _BG_BARE):
        text = pattern.sub(take, text)
    return (found[0] if found else None), text


def _drop_positions(text: str) -> str:
    text = _SIDE_TO_SIDE.sub(lambda m: _SIDE_DIRECTION[m.group(1)], text)
    text = _TOWARD_SIDE.sub(lambda m: _SIDE_DIRECTION[m.group(1)], text)
    # A wall stays in the text as "wall", so that "hits the left wall" is no collide.
    def drop(m: re.Match) -> str:
        return " wall " if re.search(r"\b(?:wall|edge|border)s?\b", m.group(0)) else " "

    for pattern in (_POSITION, _WALL, _CIRCLE_IDIOM):
        text = pattern.sub(drop, text)
    return text


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|\d+|[.,;:!?]", text)


# --- noun phrases ----------------------------------------------------------------------------

@dataclass
class _Mention:
    start: int
    end: int  # one past the last token
    definite: bool
    colors: list[str | None]  # one entry per object the phrase names
    shape: str | None
    size: str | None
    has_noun: bool
    plural: bool
    subject: bool = True
    refs: list[int] = field(default_factory=list)  # object ids, filled by resolution


def _noun(word: str) -> tuple[str, bool] | None:
    """(singular, plural?) if `word` is an object noun, generic head or foreign shape."""
    if word in PLURALS:
        return PLURALS[word], True
    if word in NOUN_SHAPES or word in GENERIC_NOUNS or word in FOREIGN_SHAPES:
        return word, False
    return None


def _colour(word: str) -> str | None:
    if word in COLOR_WORDS:
        return COLOR_WORDS[word]
    return word if word in FOREIGN_COLORS else None


def _mention_at(tokens: list[str], i: int) -> _Mention | None:
    """The noun phrase starting at token i, if one does."""
    n, j = len(tokens), i
    det = tokens[j] if tokens[j] in INDEFINITE | DEFINITE else None
    j += det is not None
    count = NUMBER_WORDS.get(tokens[j]) if j < n else None
    j += count is not None
    if det == "both":
        count = 2
    sizes, colours = [], []
    while j < n:
        word = tokens[j]
        if word in SIZE_WORDS:
            sizes.append(SIZE_WORDS[word])
        elif _colour(word):
            colours.append(_colour(word))
        elif word in FILLER_ADJECTIVES or (det and word in POSITION_ADJECTIVES):
            pass  # "the left box" names a box, and "left" there is no direction
        elif word in ("and", ",", "or") and colours and j + 1 < n and _colour(tokens[j + 1]):
            pass  # a colour list: "red and blue balls"
        else:
            break
        j += 1
    nouns = []  # "a square block": the last noun is the head
    while j < n and _noun(tokens[j]):
        nouns.append(_noun(tokens[j]))
        j += 1
    if not nouns:
        follows = tokens[j] if j < n else "."
        colour_only = (colours and (det or count) and follows not in SCENERY_NOUNS
                       and (follows in SENTENCE_ENDS | GROUP_JOINERS | {"while", "then", "but"}
                            or follows in EVENT_CUES))
        if not colour_only:
            return None
    head, plural = nouns[-1] if nouns else ("one", False)
    shape = NOUN_SHAPES.get(head, head if head in FOREIGN_SHAPES else None)
    if count is None:
        count = max(len(colours), 2 if plural else 1)
    if len(colours) == 1:
        objs = colours * count
    else:
        objs = colours + [None] * (count - len(colours))
    return _Mention(i, j, det in DEFINITE, objs, shape, sizes[0] if sizes else None, bool(nouns), plural)


def _mentions(tokens: list[str]) -> list[_Mention]:
    found, i = [], 0
    while i < len(tokens):
        m = _mention_at(tokens, i)
        if m:
            found.append(m)
            i = m.end
        else:
            i += 1
    _share_elided_nouns(tokens, found)
    _mark_complements(tokens, found)
    return found


def _share_elided_nouns(tokens: list[str], mentions: list[_Mention]) -> None:
    """'a red and a blue ball': the first phrase takes the second's noun."""
    for a, b in zip(mentions, mentions[1:]):
        if not a.has_noun and b.has_noun and b.start == a.end + 1 and tokens[a.end] in ("and", "or", ","):
            a.shape = b.shape


def _mark_complements(tokens: list[str], mentions: list[_Mention]) -> None:
    """A phrase after a preposition or contact verb is a complement, once its sentence has a subject."""
    had_subject, prev_end = False, 0
    for m in mentions:
        if any(t in SENTENCE_ENDS for t in tokens[prev_end:m.start]):
            had_subject = False
        before = tokens[m.start - 1] if m.start else "."
        m.subject = not (had_subject and before in COMPLEMENT_MARKERS)
        if tokens[m.end:m.end + 1] in (["that"], ["which"]):
            m.subject = True  # "... next to a blue box that spins": the relative clause is its own
        had_subject, prev_end = had_subject or m.subject, m.end


# --- clauses and events --------------------------------------------------------------------

@dataclass
class _Group:
    """Subjects that share a verb: 'a red ball and a blue box collide'. A subject may carry words
    of its own before the next subject ('a red ball moving left and a blue ball ... collide')."""

    subjects: list[_Mention]
    own: list[list[int]] = field(default_factory=list)  # per subject: token indices of its own words
    shared: list[int] = field(default_factory=list)  # words after the last subject (and before the first)


def _joins(gap: list[str]) -> bool:
    """Whether the words between two subjects keep them in one group: only 'and' / ',', or a
    participle phrase ending in one ('moving left and')."""
    return all(t in GROUP_JOINERS for t in gap) or (
        len(gap) > 1 and gap[0].endswith("ing") and gap[-1] in ("and", ","))


def _groups(tokens: list[str], mentions: list[_Mention]) -> list[_Group]:
    """Subjects joined into groups, each with the words up to the next group."""
    groups: list[_Group] = []
    for m in (m for m in mentions if m.subject):
        if groups and _joins(tokens[groups[-1].subjects[-1].end:m.start]):
            groups[-1].subjects.append(m)
        else:
            groups.append(_Group([m]))
    in_mention = {k for m in mentions for k in range(m.start, m.end)}
    for g in groups:
        g.own = [[] for _ in g.subjects]
    for k, gi in sorted(_word_owners(tokens, groups, in_mention).items()):
        g = groups[gi]
        mine = [i for i, m in enumerate(g.subjects[:-1]) if m.end <= k < g.subjects[i + 1].start]
        (g.own[mine[0]] if mine else g.shared).append(k)
    return groups


def _sentences(tokens: list[str]) -> list[list[int]]:
    """Token indices of each sentence, without the punctuation that ends it."""
    out: list[list[int]] = [[]]
    for k, word in enumerate(tokens):
        if word in SENTENCE_ENDS:
            out.append([])
        else:
            out[-1].append(k)
    return [s for s in out if s]


def _word_owners(tokens: list[str], groups: list[_Group], in_mention: set[int]) -> dict[int, int]:
    """Which group each word outside a noun phrase belongs to: the group before it in its
    sentence; words before a sentence's first subject go to that subject ('Spinning clockwise,
    a red box ...'), as does an event word between a later subject and its determiner ('and a
    still red box'); a sentence with no subject goes to the latest group only if a pronoun
    stands in it ('Then it bounces.', not 'A light gray floor runs along the bottom.')."""
    first_at = {g.subjects[0].start: gi for gi, g in enumerate(groups)}
    owner: dict[int, int] = {}
    latest = None
    for sentence in _sentences(tokens):
        words = [k for k in sentence if k not in in_mention]
        here = [first_at[k] for k in sentence if k in first_at]
        if not here:
            if latest is not None and any(tokens[k] in PRONOUNS for k in words):
                owner.update({k: latest for k in words})
            continue
        current = here[0]
        for k in sentence:
            current = first_at.get(k, current)
            if (k + 1 in first_at and tokens[k] in EVENT_CUES and k and tokens[k - 1] in INDEFINITE | DEFINITE
                    and (k < 2 or tokens[k - 2] not in PARTNER_MARKERS)):
                # "... and a still red box": an event word between a determiner and its subject is that
                # subject's; not after a verb that takes a partner ("hits a still box")
                current = owner[k - 1] = first_at[k + 1]
            if k not in in_mention:
                owner[k] = current
        latest = current
    return owner


@dataclass
class _Cue:
    at: int
    event: str
    strength: int
    implied_dir: str | None = None


def _cues(tokens: list[str], span: list[int], mentions: list[_Mention]) -> list[_Cue]:
    """Event cues among a group's words, in order."""
    words = {k: tokens[k] for k in span}
    starts = {m.start for m in mentions}
    cues, negated = [], set()
    for k in sorted(words):
        word = words[k]
        if word in NEGATIONS:
            hit = next((j for j in range(k + 1, k + 4) if words.get(j) in MOTION_CUES), None)
            if hit is not None:
                negated.add(hit)
                cues.append(_Cue(k, "still", STRONG))
            continue
        if k in negated:
            continue
        if word in ("each", "one") and tokens[k + 1:k + 2] in (["other"], ["another"]):
            if k and tokens[k - 1] in MUTUAL_APPROACH | COLLIDE_CUES:
                cues.append(_Cue(k, "collide", STRONG))
            continue
        if word == "into" and k + 1 in starts:
            cues.append(_Cue(k, "collide", STRONG))
            continue
        if word in SPIN_DIRECTION_WORDS:
            cues.append(_Cue(k, "spin", STRONG))
            continue
        if word not in EVENT_CUES:
            continue
        event, implied, strength = EVENT_CUES[word]
        if event == "collide" and _hits_scenery(tokens, k, starts):
            continue
        if word == "put" and (not k or tokens[k - 1] not in ("stay", "stays", "stayed", "staying")):
            continue
        cues.append(_Cue(k, event, strength, implied))
    return cues


def _hits_scenery(tokens: list[str], k: int, starts: set[int]) -> bool:
    """'hits the wall', 'crashes to the floor': contact with scenery is no collide."""
    for j in range(k + 1, min(k + 5, len(tokens))):
        if j in starts or tokens[j] in SENTENCE_ENDS:
            return False
        if tokens[j] in SCENERY_NOUNS:
            return True
    return False


def _choose(cues: list[_Cue]) -> _Cue | None:
    if not cues:
        return None
    return min(cues, key=lambda c: (-c.strength, EVENT_PRIORITY.index(c.event), c.at))


def _direction(tokens: list[str], span: list[int], cue: _Cue, cues: list[_Cue]) -> str | None:
    """The direction word valid for the event nearest after its cue (else before it), or what
    the verb itself implies ('rises')."""
    allowed = spec.EVENT_DIRS.get(cue.event)
    if not allowed:
        return None
    found = []
    for k in span:
        d = DIRECTION_WORDS.get(tokens[k])
        if d not in allowed:
            continue
        if k and tokens[k - 1] in NOT_DIRECTION_AFTER:
            continue
        if tokens[k + 1:k + 2] and tokens[k + 1] in NOT_DIRECTION_BEFORE and d in ("left", "right"):
            continue
        found.append((k, d))
    after = [d for k, d in found if k > cue.at]
    before = [d for k, d in found if k <= cue.at]
    if after:
        return after[0]
    if before:
        return before[-1]
    return next((c.implied_dir for c in cues if c.event == cue.event and c.implied_dir), None)


# --- objects -----------------------------------------------------------------------------

@dataclass
class _Object:
    color: str | None
    shape: str | None
    size: str | None
    first: int  # token index of its first mention
    first_subject: int | None = None
    from_plural: bool = False  # made by "two balls": a later "a red one" may name its colour
    reads: list[tuple[int, int, str, str | None]] = field(default_factory=list)  # (strength, -rank, event, dir)

    def fits(self, m: _Mention, color: str | None) -> bool:
        return all(want is None or have is None or want == have
                   for want, have in ((color, self.color), (m.shape, self.shape), (m.size, self.size)))

    def take(self, m: _Mention, color: str | None) -> None:
        self.color = self.color or color
        self.shape = self.shape or m.shape
        self.size = self.size or m.size
        self.first = min(self.first, m.start)
        if m.subject:
            self.first_subject = m.start if self.first_subject is None else min(self.first_subject, m.start)


def _resolve(mentions: list[_Mention]) -> list[_Object]:
    """Mentions -> objects: indefinite phrases make objects, definite ones refer back (or forward)."""
    objects: list[_Object] = []

    def new(m: _Mention, color: str | None) -> int:
        objects.append(_Object(None, None, None, m.start, from_plural=len(m.colors) > 1))
        objects[-1].take(m, color)
        return len(objects) - 1

    for m in mentions:
        if not m.definite:
            m.refs = [_fill_open_slot(objects, m, c) if _is_slot_filler(objects, m, c) else new(m, c)
                      for c in m.colors]
    for m in mentions:
        if m.definite:
            m.refs = []
            for c in m.colors:
                k = _referent(objects, m, c, exclude=m.refs)
                if k is None:
                    k = new(m, c)
                else:
                    objects[k].take(m, c)
                m.refs.append(k)
    return objects


def _open_slot(o: _Object, m: _Mention) -> bool:
    return o.from_plural and o.color is None and o.first < m.start and o.fits(m, None)


def _is_slot_filler(objects: list[_Object], m: _Mention, color: str | None) -> bool:
    """'two balls: a red one and a blue one': a colour with no noun of its own names one of them."""
    return color is not None and m.shape is None and any(_open_slot(o, m) for o in objects)


def _fill_open_slot(objects: list[_Object], m: _Mention, color: str | None) -> int:
    k = next(k for k, o in enumerate(objects) if _open_slot(o, m))
    objects[k].take(m, color)
    return k


def _referent(objects: list[_Object], m: _Mention, color: str | None, exclude: list[int]) -> int | None:
    """The object a definite phrase means: by colour if it names one, else the nearest that fits."""
    fits = [k for k, o in enumerate(objects) if k not in exclude and o.fits(m, color)
            and (color is None or o.color == color)]
    if not fits:
        return None
    before = [k for k in fits if objects[k].first < m.start]
    return before[-1] if before else fits[0]


def _read_events(tokens: list[str], mentions: list[_Mention], objects: list[_Object]) -> None:
    for g in _groups(tokens, mentions):
        shared = _choose(_cues(tokens, g.shared, mentions))
        for m, own in zip(g.subjects, g.own):
            own_cue = _choose(_cues(tokens, own, mentions))
            # Words after the group are every subject's, unless a subject has its own verb:
            # then only a collision, which takes the pair, is shared.
            takes_shared = not own_cue or own_cue.strength < STRONG or (shared and shared.event == "collide")
            span = sorted(own + g.shared) if takes_shared else own
            _read_clause(tokens, span, m, mentions, objects)


def _read_clause(tokens: list[str], span: list[int], subject: _Mention, mentions: list[_Mention],
                 objects: list[_Object]) -> None:
    """Give the subject the event and direction its words say; a collide also to its partner."""
    cues = _cues(tokens, span, mentions)
    cue = _choose(cues)
    if cue is None:
        return
    direction = _direction(tokens, span, cue, cues)
    if cue.event == "fall" and cue.strength == WEAK:  # "bounces to the right": what bounces sideways was thrown
        sideways = _direction(tokens, span, replace(cue, event="throw"), cues)
        cue, direction = (replace(cue, event="throw"), sideways) if sideways else (cue, direction)
    read = (cue.strength, -EVENT_PRIORITY.index(cue.event), cue.event, direction)
    targets = list(subject.refs)
    if cue.event == "collide":
        words = set(span)
        targets += [k for m in mentions if not m.subject and m.start - 1 in words
                    and _partner_marked(tokens, m) for k in m.refs]
    for k in targets:
        objects[k].reads.append(read)


def _partner_marked(tokens: list[str], m: _Mention) -> bool:
    return m.start > 0 and tokens[m.start - 1] in PARTNER_MARKERS


def parse_prompt(text: str, keep_unknown: bool = False) -> PromptSpec:
    """Every object `text` names, with what it says of each, and the background if named.

    Every value is one of the world's (spec.py) or None. With `keep_unknown`, colours, shapes
    and backgrounds the world lacks ("a pink star", "a white background") are kept as named,
    so that a caller can refuse them by name; `expand_prompt` does.
    """
    bg, text = _background(_normalise(text))
    tokens = _tokens(_drop_positions(text))
    mentions = _mentions(tokens)
    objects = _resolve(mentions)
    _read_events(tokens, mentions, objects)
    order = sorted(objects, key=lambda o: o.first_subject if o.first_subject is not None else o.first)
    out = []
    for o in order:
        # strongest read first; of equal ones, one that states a direction
        best = max(o.reads, key=lambda r: (r[0], r[1], r[3] is not None), default=None)
        event, direction = (best[2], best[3]) if best else (None, None)
        out.append(PartialObject(_known(o.color, spec.OBJECT_COLORS, keep_unknown),
                                 _known(o.shape, spec.SHAPES, keep_unknown), o.size, event, direction))
    return PromptSpec(tuple(out), _known(bg, spec.BACKGROUNDS, keep_unknown))


def _known(value: str | None, world, keep_unknown: bool) -> str | None:
    return value if keep_unknown or value in world else None
