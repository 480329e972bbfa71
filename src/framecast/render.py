"""The sampling loop every generation goes through: a planned clip made window by window.

A job (pipeline.prepare makes one) is a list of windows (windows.py) plus what is given: frames
before the new ones (an image, a clip to extend, the first of two clips to connect), frames
after them (a clip extended backward, the second clip), or a source clip to edit. Each window
encodes its given frames (the tail of what came before, the start of what comes after) with
the VAE, holds them clean through the sampler (flow/conditioning.py; an edit steps with FlowEdit,
flow/editing.py, unless asked for SDEdit) and decodes its latents; only a window's worth of
tensors is alive at a time, so memory stays flat for any length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .flow.conditioning import apply_given, condition
from .flow.editing import flow_edit
from .flow.guidance import cfg as guided
from .flow.looping import cyclic
from .flow.schedules import resolution_shift, sampling_times, start_at
from .windows import Window

if TYPE_CHECKING:
    from .pipeline import Framecast


@dataclass
class Job:
    """A generation, planned: everything render() needs besides the model."""

    plan: list[Window]
    fps: float
    width: int
    height: int
    seed: int
    steps: int
    scale: float
    sampler: Callable[..., torch.Tensor]
    text: tuple[Any, Any]  # (positive, negative) text conditioning, each (tokens (1, M, D), mask (1, M))
    before: torch.Tensor | None = None  # (T, H, W, 3) uint8 given first: an image or a clip; output as it is
    after: torch.Tensor | None = None  # given last: the clip the new frames lead into; output as it is
    source: torch.Tensor | None = None  # the clip an edit starts from; the output replaces it
    strength: float = 1.0  # the flow time an edit starts at: 0 keeps the source, 1 ignores it
    edit: str = "flowedit"  # how an edit is made: "flowedit" (flow/editing.py) or "sdedit"
    source_text: Any = None  # FlowEdit's source conditioning (the empty prompt): (tokens (1, M, D), mask (1, M))
    loop: bool = False  # the last window leads into the clip's own first frames
    notes: list[str] = field(default_factory=list)


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) float in [-1, 1]."""
    return frames.permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8 on the CPU."""
    return ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


def encode(model: Framecast, frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8, T = 1 + tf k -> normalised latents (1, C, 1 + k, H/f, W/f), fp32 (posterior mean)."""
    p = next(model.vae.parameters())
    post = model.vae.encode(to_video(frames).to(p.device, p.dtype), chunk=model.meta.decode_chunk)
    return model.normalize(post.mean.float())


def decode(model: Framecast, z: torch.Tensor) -> torch.Tensor:
    """Normalised latents (1, C, T', h, w) -> (1 + tf (T' - 1), H, W, 3) uint8, decoded in chunks."""
    p = next(model.vae.parameters())
    return to_frames(model.vae.decode(model.denormalize(z).to(p.dtype), chunk=model.meta.decode_chunk))


def window_times(model: Framecast, job: Job, w: Window) -> torch.Tensor:
    """The sampler's times for a window: shifted by its token count; an edit starts part way."""
    sf = model.vae.spatial_factor
    grid = model.dit.grid((min(w.latents, model.meta.window), job.height // sf, job.width // sf))
    times = sampling_times(job.steps, resolution_shift(grid[0] * grid[1] * grid[2], model.meta.time_shift))
    return start_at(times, job.strength) if job.source is not None else times


def sample_window(model: Framecast, job: Job, w: Window, gen: torch.Generator, head: torch.Tensor | None,
                  tail: torch.Tensor | None, init: torch.Tensor | None,
                  callback: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """One window: its new frames, decoded, (w.made(tf), H, W, 3) uint8.

    head: the w.head_frames(tf) frames before it; tail: the w.tail_frames(tf) first frames of
    the clip after it; init (edits): the source's frames under the head and the new frames.
    """
    tf, sf = model.vae.temporal_factor, model.vae.spatial_factor
    dit_param = next(model.dit.parameters())
    device, dtype = dit_param.device, dit_param.dtype
    shape = (1, model.config.dit.latent_channels, w.latents, job.height // sf, job.width // sf)
    x = torch.randn(shape, generator=gen).to(device)  # CPU noise: same seed, same video on any device
    given = torch.zeros(w.latents, dtype=torch.bool, device=device)
    clean = torch.zeros(shape, device=device)
    if w.head:
        clean[:, :, :w.head] = encode(model, head)
        given[:w.head] = True
    if w.tail:
        clean[:, :, w.latents - w.tail:] = encode(model, tail)[:, :, 1:]  # frame 0 of the clip after: dropped
        given[w.latents - w.tail:] = True
    x0 = None
    if init is not None and job.strength < 1.0:  # strength 1 ignores the source: a fresh generation
        x0 = torch.zeros(shape, device=device)
        x0[:, :, :w.head + w.new] = encode(model, init)
    flowedit = x0 is not None and job.edit == "flowedit"
    if x0 is not None and not flowedit:  # SDEdit: x_s = (1 - s) x_source + s noise
        x = (1 - job.strength) * x0 + job.strength * x

    def model_fn(x, t, cond):
        text, text_mask = cond
        return model.dit(x.to(dtype), t, text, text_mask).float()

    fn = guided(model_fn, job.scale)
    if w.cyclic:
        fn = cyclic(fn, first=1, window=model.meta.window)
    source_fn = model_fn
    if given.any():
        fn = condition(fn, given, clean)
        source_fn = condition(source_fn, given, clean)
        x = apply_given(x, given, clean)
    if flowedit:
        z = flow_edit(fn, source_fn, apply_given(x0, given, clean), window_times(model, job, w), job.text,
                      job.source_text, lambda: torch.randn(shape, generator=gen).to(device), callback=callback)
    else:
        z = job.sampler(fn, x, window_times(model, job, w), job.text, callback=callback)
    if w.cyclic:  # decoded after its own last window's worth, the cycle starts where it ends, as in a loop
        warm = z[:, :, max(1, w.latents - model.meta.window + 1):]
        return decode(model, torch.cat([z[:, :, :1], warm, z[:, :, 1:]], dim=2))[-w.made(tf):]
    frames = decode(model, z)  # head context, new frames, tail context
    start = w.head_frames(tf) + w.skip
    return frames[start:start + w.made(tf)]


@torch.no_grad()
def render(model: Framecast, job: Job, progress: Callable[[int, int], None] | None = None) -> Iterator[torch.Tensor]:
    """The job's output, in order, as chunks of (t, H, W, 3) uint8 frames.

    progress(i, n) after each of the n sampler steps of all windows together.
    """
    tf = model.vae.temporal_factor
    gen = torch.Generator().manual_seed(job.seed)
    total = sum(len(window_times(model, job, w)) - 1 for w in job.plan)
    done = 0

    def callback(i: int, n: int, x: torch.Tensor) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    keep_recent = max((w.head_frames(tf) for w in job.plan), default=0)  # the most any head needs
    keep_start = max((w.tail_frames(tf) for w in job.plan), default=0) if job.loop else 0
    empty = torch.zeros(0, job.height, job.width, 3, dtype=torch.uint8)
    recent = job.before[-keep_recent:] if job.before is not None and keep_recent else empty
    start = job.before[:keep_start] if job.before is not None else empty
    if job.before is not None:
        yield job.before
    made = 0  # new frames so far (forward)
    backward: list[torch.Tensor] = []  # new frames made from the end of the clip back, in output order
    for w in job.plan:
        if w.backward:
            ahead = torch.cat([*backward, job.after])[:w.tail_frames(tf)]
            frames = sample_window(model, job, w, gen, None, ahead, None, callback)
            backward.insert(0, frames[len(frames) - w.keep:])
            continue
        head = recent[len(recent) - w.head_frames(tf):] if w.head else None
        tail = None
        if w.tail:
            tail = (start if job.loop else job.after)[:w.tail_frames(tf)]
        init = None
        if job.source is not None:  # the source under this window, its first and last frames repeated past its ends
            lo, hi = made - w.head_frames(tf) - w.skip, made + w.made(tf)
            idx = torch.arange(lo, hi).clamp(0, len(job.source) - 1)
            init = job.source[idx]
        frames = sample_window(model, job, w, gen, head, tail, init, callback)[:w.keep]
        made += w.keep
        if keep_recent:
            recent = torch.cat([recent, frames])[-keep_recent:]
        if len(start) < keep_start:
            start = torch.cat([start, frames])[:keep_start]
        yield frames
    yield from backward
    if job.after is not None:
        yield job.after
