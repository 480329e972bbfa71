"""How a clip is cut into DiT windows: pure arithmetic, no tensors.

The DiT makes at most `window` latent frames at a time (the length it was trained on). A
window may be given clean latent frames at its start (`head`: the last frames made so far, or
a given image or clip) and at its end (`tail`: the first frames of a clip it must lead into).
Longer clips are made window after window, each given the tail of the last, so time grows
linearly with the length and memory stays flat. A loop from text is one window of any length
whose latent frames form a cycle (`cyclic`), sampled a window at a time (flow/looping.py).

The causal VAE decides the frame counts (tf = its temporal factor, 4): a clip's first latent
frame is one frame and every later one is tf frames. Given frames are encoded as a clip of
their own, so
- a head of h latents is the last 1 + tf (h - 1) frames before the window;
- a tail of m latents is frames 1 .. tf m of the clip after the window: that clip's frame 0
  is encoded too (the single first latent, then dropped), and the window's last new frame
  is made in its place, so it is cut and the clip's own frame 0 follows instead.

A window with no given frames before it (text-to-video, an edit, a loop's start, each window of
a backward extension) drops its frame 0 (`skip`): the lone first latent frame, which the DiT
makes less consistently than the rest. In the default model's held-out clips frame 0 -> 1
changed 2.5x as much as a step inside a latent frame; without it the evaluator's stability pass
rate rose from 0.18 to 0.27. The window makes one latent frame more for it, none more for a
default 4 s clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOOP_SHARE = 0.25  # share of a loop's frames given to the transition from its end back to its start


@dataclass(frozen=True)
class Window:
    """One DiT call's latent frames: `head` given, `new` made, `tail` given; of the new frames
    decoded, the first `skip` are dropped and `keep` go to the output (the first ones left, or
    the last ones when `backward`)."""

    head: int
    new: int
    tail: int
    keep: int
    backward: bool = False
    skip: int = 0
    cyclic: bool = False  # its new frames after the first form a cycle: a loop made whole (flow/looping.py)

    @property
    def latents(self) -> int:
        return self.head + self.new + self.tail

    def head_frames(self, tf: int) -> int:
        """Frames of the head context (0 without one)."""
        return 1 + tf * (self.head - 1) if self.head else 0

    def tail_frames(self, tf: int) -> int:
        """Frames of the tail context, the clip's frame 0 included (0 without one)."""
        return 1 + tf * self.tail if self.tail else 0

    def made(self, tf: int) -> int:
        """New frames the window decodes that can go to the output."""
        frames = tf * self.new if self.head else 1 + tf * (self.new - 1)
        return frames - (1 if self.tail else 0) - self.skip


def head_latents(frames: int, tf: int) -> int:
    """Latent frames a head context can hold from `frames` frames."""
    return 1 + (frames - 1) // tf if frames > 0 else 0


def tail_latents(frames: int, tf: int) -> int:
    """Latent frames a tail context can hold from a clip of `frames` frames."""
    return (frames - 1) // tf if frames > 0 else 0


def forward(n: int, window: int, context: int, tf: int, before: int = 0) -> list[Window]:
    """n frames after `before` given frames (none: text-to-video, or an edit)."""
    plan: list[Window] = []
    available = before
    while n > 0:
        head = min(context, head_latents(available, tf))
        skip = int(not head)  # a clip made from nothing drops its lone first frame
        new = min(window - head, math.ceil(n / tf) + skip)
        keep = min(Window(head, new, 0, 0, skip=skip).made(tf), n)
        plan.append(Window(head, new, 0, keep, skip=skip))
        n -= keep
        available += keep
    return plan


def backward(n: int, window: int, context: int, tf: int, after: int) -> list[Window]:
    """n frames before a clip of `after` frames, made from the clip backward (in that order)."""
    plan: list[Window] = []
    available = after
    while n > 0:
        tail = min(context, tail_latents(available, tf))
        if tail < 1:
            raise ValueError(f"a clip to lead into needs at least {1 + tf} frames, got {after}")
        new = min(window - tail, 1 + math.ceil((n + 1) / tf))
        keep = min(Window(0, new, tail, 0, skip=1).made(tf), n)
        plan.append(Window(0, new, tail, keep, backward=True, skip=1))
        n -= keep
        available += keep
    return plan


def _final(n: int, head: int, tail: int, window: int, tf: int) -> Window:
    """The window that joins a head to a tail with about n frames: tf j - 1 of them for j new latents."""
    new = max(1, min(window - head - tail, round((n + 1) / tf)))
    return Window(head, new, tail, tf * new - 1)


def connect(n: int, window: int, context: int, tf: int, before: int, after: int) -> list[Window]:
    """About n frames from the end of a clip of `before` frames to the start of one of `after`.

    Exactly n unless a single joining window must round it (to tf j - 1 frames)."""
    if before < 1:
        raise ValueError("connecting needs a clip to start from")
    tail = min(context, tail_latents(after, tf))
    if tail < 1:
        raise ValueError(f"a clip to lead into needs at least {1 + tf} frames, got {after}")
    plan: list[Window] = []
    available = before
    while True:
        head = min(context, head_latents(available, tf))
        room = window - head - tail  # new latents a joining window can make here
        if room >= 1 and n <= tf * room - 1:
            return plan + [_final(n, head, tail, window, tf)]
        # a window forward first, leaving what a full joining window makes afterwards
        rest = tf * (window - context - tail) - 1
        step = forward(max(1, n - rest), window, context, tf, available)[0]
        plan.append(step)
        n -= step.keep
        available += step.keep


def loop(n: int, window: int, context: int, tf: int, before: int = 0) -> list[Window]:
    """n frames after `before` given ones, the last of which flows back into the first of them all.

    A loop from nothing is made whole, as a cycle of latent frames (after the lone first one,
    dropped): tf k frames, k = n / tf rounded; a cycle longer than a window is sampled a window
    at a time (flow/looping.py). A loop from an image is made forward, then a joining window
    leads from its end to its own start."""
    if before + n < 2 * tf:
        raise ValueError(f"a loop needs at least {2 * tf} frames, got {before + n}")
    if not before:
        k = round(n / tf)
        return [Window(0, 1 + k, 0, tf * k, skip=1, cyclic=True)]
    joined = max(1, min(window - 2 * context, round((before + n) * LOOP_SHARE / tf)))
    first = n - (tf * joined - 1)  # frames made before the joining window
    tail = min(context, tail_latents(before + first, tf))
    if first < 0 or tail < 1:
        raise ValueError(f"a loop needs at least {2 * tf} frames, got {before + n}")
    head = min(context, head_latents(before + first, tf))
    return forward(first, window, context, tf, before) + [Window(head, joined, tail, tf * joined - 1)]


def frames_made(plan: list[Window]) -> int:
    return sum(w.keep for w in plan)
