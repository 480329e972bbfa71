"""Prompting with images and videos: image-to-video, extend, loop, connect, edit, long clips and
text-to-image, through one pipeline of given latent frames. Tiny random models on CPU: these
tests pin the mechanics a user relies on (given frames kept exactly, lengths, seeds, bounded
windows, clear errors), not quality."""

import contextlib
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from framecast import cli, render, windows
from framecast.flow.conditioning import apply_given, condition
from framecast.flow.guidance import cfg
from framecast.flow.samplers import SAMPLERS
from framecast.flow.schedules import sampling_times, start_at
from framecast.models.text import TextEncoder
from framecast.pipeline import (
    Framecast,
    Given,
    ModelMeta,
    SampleOptions,
    expanded_caption,
    generate,
    generate_image,
    media_size,
    prepare,
)
from framecast.video.inputs import read_clip, read_image, resize
from framecast.video.metrics import psnr
from framecast.video.io import read_mp4, write_mp4
from framecast.world.export import write_samples
from tiny import tiny_model

# windows of 5 latent frames (17 frames), 2 given from the window before: clips of a few seconds
# at 8 fps already take several windows
META = ModelMeta(fps=8.0, width=32, height=32, steps=2, guidance=4.0, window=5, context=2)
PROMPT = "a red ball falls"
TF = 4
SRC = str(Path(__file__).resolve().parents[1] / "src")


def make_model(text: TextEncoder, seed: int = 0) -> Framecast:
    return tiny_model(META, text, seed=seed)


@pytest.fixture(scope="module")
def model():
    return make_model(TextEncoder())


@pytest.fixture(scope="module")
def clip(model):
    """A 2 s clip of the tiny model (16 frames, 32x32)."""
    return generate(model, PROMPT, SampleOptions(seconds=2.0, seed=5))[0]


@pytest.fixture(scope="module")
def other_clip(model):
    return generate(model, "a blue box slides left", SampleOptions(seconds=2.0, seed=6))[0]


@pytest.fixture
def record(model, monkeypatch):
    """What the DiT is called with ((x, t) per call) and the latents each window decodes."""
    calls, decoded = [], []
    hook = model.dit.register_forward_hook(lambda mod, args, out: calls.append((args[0].clone(), args[1].clone())))
    real = render.decode
    monkeypatch.setattr(render, "decode", lambda m, z: (decoded.append(z.clone()), real(m, z))[1])
    yield calls, decoded
    hook.remove()


def enc(model, frames) -> torch.Tensor:
    return render.encode(model, torch.as_tensor(frames))


def gen(model, prompt=PROMPT, given=None, **opts):
    frames, fps, notes = generate(model, prompt, SampleOptions(**{"seconds": 2.0, "seed": 1, **opts}), given=given)
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (32, 32, 3)
    return frames, fps, notes


# --- the conditioning wrapper and the schedule ---------------------------------------------

def test_conditioning_wrapper_passes_t0_and_clean_values_for_given_frames_and_zeroes_their_velocity():
    given = torch.tensor([True, False, False, True])
    clean = torch.randn(1, 3, 4, 2, 2)
    seen = {}

    def model_fn(x, t, cond):
        seen.update(x=x, t=t, cond=cond)
        return torch.ones_like(x)

    x = torch.randn(2, 3, 4, 2, 2)
    v = condition(model_fn, given, clean)(x, torch.full((2,), 0.7), "text")
    assert seen["cond"] == "text" and seen["t"].shape == (2, 4)
    assert torch.equal(seen["t"], torch.tensor([[0.0, 0.7, 0.7, 0.0]] * 2))
    assert torch.equal(seen["x"][:, :, given], clean[:, :, given].expand(2, -1, -1, -1, -1))
    assert torch.equal(seen["x"][:, :, ~given], x[:, :, ~given])
    assert (v[:, :, given] == 0).all() and (v[:, :, ~given] == 1).all()


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_samplers_keep_given_frames_bit_for_bit_under_guidance(sampler):
    given = torch.tensor([True, True, False, False, True])
    clean = torch.randn(1, 4, 5, 3, 3)
    w = torch.randn(4, 4)

    def model_fn(x, t, cond):  # any velocity that depends on x, t and the text
        assert t.shape == (x.shape[0], 5)
        return torch.einsum("bcthw,cd->bdthw", torch.sin(x), w) * (1 + t[:, None, :, None, None]) + cond[:, None, None, None, None]

    x = apply_given(torch.randn(1, 4, 5, 3, 3), given, clean)
    fn = condition(cfg(model_fn, 3.0), given, clean)
    z = SAMPLERS[sampler](fn, x, sampling_times(6, 2.0), (torch.ones(1), torch.zeros(1)))
    assert torch.equal(z[:, :, given], clean[:, :, given])
    assert not torch.allclose(z[:, :, ~given], x[:, :, ~given])


def test_an_edit_schedule_starts_at_the_strength():
    times = sampling_times(10, 2.0)
    assert torch.equal(start_at(times, 1.0), times)
    assert start_at(times, 0.0).tolist() == [0.0]
    part = start_at(times, 0.5)
    assert part[0] == 0.5 and torch.equal(part[1:], times[times < 0.5]) and part[-1] == 0


# --- windows --------------------------------------------------------------------------------

@pytest.mark.parametrize("n, before", [(1, 0), (48, 0), (49, 0), (50, 0), (720, 0), (47, 1), (300, 1), (5, 30)])
def test_forward_windows_make_exactly_n_frames_in_windows_of_bounded_length(n, before):
    plan = windows.forward(n, 13, 2, TF, before)
    assert windows.frames_made(plan) == n
    assert all(w.latents <= 13 and w.tail == 0 and w.keep >= 1 for w in plan)
    assert plan[0].head == min(2, windows.head_latents(before, TF)) and all(w.head == 2 for w in plan[1:])


def test_the_default_model_makes_4_s_in_one_window_and_a_minute_window_by_window():
    assert windows.forward(48, 13, 2, TF) == [windows.Window(0, 13, 0, 48, skip=1)]  # 4 s at 12 fps: 49 made, frame 0 dropped
    assert windows.forward(47, 13, 2, TF, before=1) == [windows.Window(1, 12, 0, 47)]  # image-to-video, 4 s
    minute = windows.forward(720, 13, 2, TF)
    assert len(minute) == 17 and minute[0] == windows.Window(0, 13, 0, 48, skip=1)
    assert all(w == windows.Window(2, 11, 0, 44) for w in minute[1:-1])


@pytest.mark.parametrize("n", [1, 4, 11, 12, 40, 200])
def test_backward_windows(n):
    plan = windows.backward(n, 13, 2, TF, after=20)
    assert windows.frames_made(plan) == n
    assert all(w.backward and w.head == 0 and w.tail == 2 and w.latents <= 13 for w in plan)


@pytest.mark.parametrize("n, made", [(1, 3), (3, 3), (5, 7), (6, 7), (12, 11), (35, 35), (36, 36), (100, 100)])
def test_connecting_windows_join_a_head_to_a_tail(n, made):
    plan = windows.connect(n, 13, 2, TF, before=20, after=20)
    assert windows.frames_made(plan) == made  # a short transition is 4j - 1 frames
    last = plan[-1]
    assert last.head == 2 and last.tail == 2 and last.latents <= 13
    assert all(w.tail == 0 for w in plan[:-1])


@pytest.mark.parametrize("n, before", [(47, 1), (100, 3), (719, 1), (7, 1)])
def test_loop_windows_from_an_image_end_leading_into_the_start(n, before):
    plan = windows.loop(n, 13, 2, TF, before)
    assert windows.frames_made(plan) == n
    assert plan[-1].tail >= 1 and plan[-1].head >= 1 and all(w.latents <= 13 for w in plan)
    assert not any(w.cyclic for w in plan)
    with pytest.raises(ValueError, match="a loop needs at least 8 frames"):
        windows.loop(7 - before, 13, 2, TF, before)


@pytest.mark.parametrize("n, made", [(8, 8), (9, 8), (47, 48), (48, 48), (720, 720)])
def test_a_loop_from_text_is_one_cycle(n, made):
    plan = windows.loop(n, 13, 2, TF)
    assert plan == [windows.Window(0, 1 + made // TF, 0, made, skip=1, cyclic=True)]
    assert windows.frames_made(plan) == made  # whole latent frames: tf k


# --- image-to-video -------------------------------------------------------------------------

def test_image_to_video_starts_with_the_image(model, record):
    calls, decoded = record
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    frames, fps, _ = gen(model, given=Given(image=image))
    assert frames.shape[0] == 16 and fps == META.fps
    assert torch.equal(frames[0], torch.from_numpy(image))
    z_image = enc(model, image[None])  # (1, C, 1, h, w)
    for x, t in calls:  # the DiT always saw the image's latent, clean, at t = 0
        assert torch.equal(x[:, :, :1], z_image.expand(x.shape[0], -1, -1, -1, -1))
        assert (t[:, 0] == 0).all() and (t[:, 1:] > 0).all()
    assert torch.equal(decoded[0][:, :, :1], z_image)  # kept exactly through the sampler
    # the window decodes to the VAE round trip of the image, then the new frames
    assert torch.equal(render.decode(model, decoded[0])[0], render.decode(model, z_image)[0])


def test_image_to_video_resizes_an_image_of_another_size_with_a_notice(model):
    image = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    frames, _, notes = generate(model, PROMPT, SampleOptions(seconds=1.0), given=Given(image=image))
    assert frames.shape == (8, 32, 48, 3)
    assert torch.equal(frames[0], torch.from_numpy(resize(image[None], 48, 32)[0]))
    assert any("resized from 40x24 to 48x32, cropped evenly" in n for n in notes)


def test_resizing_to_another_aspect_ratio_crops_the_sides_evenly_instead_of_squeezing():
    image = np.zeros((1, 20, 40, 3), np.uint8)
    image[:, :, :10] = image[:, :, 30:] = 255  # white sides, a black middle
    square = resize(image, 20, 20)
    assert square.shape == (1, 20, 20, 3) and square.mean() < 10  # the middle alone: no white squeezed in
    assert resize(image, 40, 20) is image


@pytest.mark.parametrize("size, made", [
    ((64, 64), (64, 64)), ((112, 64), (112, 64)), ((96, 96), (96, 96)),  # sizes the model makes: kept
    ((32, 32), (64, 64)), ((256, 256), (64, 64)), ((1920, 1080), (80, 48)), ((70, 70), (64, 64)),
])
def test_given_media_keep_a_size_the_model_makes_else_take_its_area(size, made):
    assert media_size(ModelMeta(width=64, height=64), (16, 16), *size) == made


# --- extend ---------------------------------------------------------------------------------

def test_extend_forward_keeps_the_clip_and_continues_from_its_tail(model, clip, record):
    calls, decoded = record
    frames, _, _ = gen(model, given=Given(before=clip, fps=8.0), seconds=3.0, seed=3)
    assert frames.shape[0] == 16 + 24
    assert torch.equal(frames[:16], clip)
    z_tail = enc(model, clip[-(1 + TF):])  # 2 latent frames of context: the last 5 frames
    assert torch.equal(decoded[0][:, :, :2], z_tail)
    assert all((t[:, :2] == 0).all() and (t[:, 2:] > 0).all() for _, t in calls)
    again, _, _ = gen(model, given=Given(before=clip, fps=8.0), seconds=3.0, seed=3)
    other, _, _ = gen(model, given=Given(before=clip, fps=8.0), seconds=3.0, seed=4)
    assert torch.equal(frames, again)
    assert torch.equal(other[:16], clip) and (other[16:].float() - frames[16:].float()).abs().mean() > 1


def test_extend_backward_precedes_the_clip(model, clip, record):
    calls, decoded = record
    frames, _, _ = gen(model, given=Given(after=clip, fps=8.0), seconds=1.0)
    assert frames.shape[0] == 8 + 16 and torch.equal(frames[8:], clip)
    # the clip's frames 1..8 are the window's tail (its frame 0 is encoded first, then dropped)
    assert torch.equal(decoded[0][:, :, -2:], enc(model, clip[:1 + 2 * TF])[:, :, 1:])
    assert all((t[:, -2:] == 0).all() and (t[:, :-2] > 0).all() for _, t in calls)


def test_a_clip_to_lead_into_needs_five_frames(model, clip):
    with pytest.raises(ValueError, match="needs at least 5 frames"):
        gen(model, given=Given(after=clip[:4], fps=8.0))


# --- connect and loop -----------------------------------------------------------------------

def test_connect_joins_two_clips_unchanged(model, clip, other_clip, record):
    calls, decoded = record
    frames, _, notes = gen(model, "", given=Given(before=clip, after=other_clip, fps=8.0), seconds=1.0)
    assert frames.shape[0] == 16 + 8 + 16 and not any("transition" in n for n in notes)
    assert torch.equal(frames[:16], clip) and torch.equal(frames[-16:], other_clip)
    head = enc(model, clip[-(1 + TF):])
    assert torch.equal(decoded[0][:, :, :2], head)
    assert torch.equal(decoded[-1][:, :, -2:], enc(model, other_clip[:1 + 2 * TF])[:, :, 1:])
    _, t_last = calls[-1]
    assert (t_last[:, :2] == 0).all() and (t_last[:, -2:] == 0).all() and (t_last[:, 2:-2] > 0).all()


def test_a_short_transition_is_rounded_with_a_notice(model, clip, other_clip):
    frames, _, notes = gen(model, "", given=Given(before=clip, after=other_clip, fps=8.0), seconds=0.125)
    assert frames.shape[0] == 16 + 3 + 16
    assert any("the transition is 3 frames" in n for n in notes)


def test_a_loop_from_an_image_ends_leading_into_its_own_start(model, record):
    _, decoded = record
    image = np.full((32, 32, 3), 90, np.uint8)
    given = Given(image=image, loop=True)
    frames, _, _ = gen(model, given=given, seconds=4.0)
    assert frames.shape[0] == 32
    assert torch.equal(frames[0], torch.from_numpy(image))
    m = prepare(model, PROMPT, SampleOptions(seconds=4.0), given).plan[-1].tail
    assert torch.equal(decoded[-1][:, :, -m:], enc(model, frames[:1 + TF * m])[:, :, 1:])


def test_a_short_loop_is_made_as_a_cycle_and_decoded_from_its_own_end(model, record):
    calls, decoded = record
    frames, _, notes = gen(model, given=Given(loop=True), seconds=1.75, guidance=1.0)
    assert frames.shape[0] == 16 and any("the loop is 16 frames" in n for n in notes)
    (z,) = decoded  # one window, its cycle (latents 1..4) decoded twice
    assert z.shape[2] == 1 + 4 + 4 and torch.equal(z[:, :, 1:5], z[:, :, 5:])
    assert torch.equal(frames, render.decode(model, z)[-16:])  # the second turn: it starts where it ended
    orders = {tuple(x[0, 0, :, 0, 0].tolist()) for x, _ in calls}
    assert len(orders) == len(calls) == META.steps  # the model saw the cycle rolled a new way each step


def test_a_loop_longer_than_a_window_is_sampled_a_window_at_a_time(model, record):
    calls, decoded = record
    frames, _, _ = gen(model, given=Given(loop=True), seconds=4.0, guidance=1.0)
    assert frames.shape[0] == 32  # a cycle of 8 latent frames; the DiT's window holds 5
    assert all(x.shape[2] <= META.window for x, _ in calls) and len(calls) == 2 * META.steps
    (z,) = decoded  # the cycle, after its own last window's worth (4 latents): it starts where it ends
    assert z.shape[2] == 1 + 4 + 8 and torch.equal(z[:, :, 1:5], z[:, :, -4:])
    assert torch.equal(frames, render.decode(model, z)[-32:])


# --- long clips -----------------------------------------------------------------------------

def _dit_and_decoder_sizes(model, seconds):
    dit, dec = [], []
    hooks = [model.dit.register_forward_hook(lambda mod, args, out: dit.append(args[0].shape)),
             model.vae.decoder.register_forward_hook(lambda mod, args, out: dec.append(args[0].shape))]
    try:
        frames, _, _ = gen(model, seconds=seconds, guidance=1.0)
    finally:
        for h in hooks:
            h.remove()
    return frames, dit, dec


def test_long_clips_are_made_window_by_window_with_flat_tensor_sizes(model, record):
    _, decoded = record
    short, dit_short, dec_short = _dit_and_decoder_sizes(model, 2.0)
    decoded.clear()
    long, dit_long, dec_long = _dit_and_decoder_sizes(model, 12.0)
    assert short.shape[0] == 16 and long.shape[0] == 96
    assert len(decoded) == len(windows.forward(96, META.window, META.context, TF)) == 8
    assert max(s[2] for s in dit_long) <= META.window  # the DiT never sees more than a window
    assert max(s.numel() for s in dit_long) == max(s.numel() for s in dit_short)
    assert max(s.numel() for s in dec_long) == max(s.numel() for s in dec_short)  # decoded chunk by chunk
    assert len(dit_long) == 8 * META.steps
    made = 0
    for i, z in enumerate(decoded):  # each window is given the last 5 frames made before it
        if i:
            assert torch.equal(z[:, :, :2], enc(model, long[made - (1 + TF):made]))
        made += windows.forward(96, META.window, META.context, TF)[i].keep


def test_progress_counts_the_steps_of_all_windows(model):
    seen = []
    generate(model, PROMPT, SampleOptions(seconds=6.0, steps=2), lambda i, n: seen.append((i, n)))
    n = 2 * len(windows.forward(48, META.window, META.context, TF))
    assert seen == [(i, n) for i in range(1, n + 1)]


# --- edit -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["flowedit", "sdedit"])
def test_edit_at_strength_0_is_the_round_trip_and_at_1_ignores_the_source(model, clip, method):
    padded = torch.cat([clip[:1], clip])  # 17 = 1 + 4k frames; the lone first latent frame is dropped
    round_trip = render.decode(model, enc(model, padded))[1:]
    keep, _, _ = gen(model, "a blue ball falls", given=Given(source=clip, strength=0.0, fps=8.0, edit=method))
    assert torch.equal(keep, round_trip)
    fresh, _, _ = gen(model, "a blue ball falls", given=Given(source=clip, strength=1.0, fps=8.0, edit=method), seed=7)
    assert torch.equal(fresh, gen(model, "a blue ball falls", seed=7, fps=8.0)[0])
    half, _, _ = gen(model, "a blue ball falls", given=Given(source=clip, strength=0.5, fps=8.0, edit=method), seed=7)
    again, _, _ = gen(model, "a blue ball falls", given=Given(source=clip, strength=0.5, fps=8.0, edit=method), seed=7)
    assert torch.equal(half, again)
    for other in (keep, fresh):
        assert (half.float() - other.float()).abs().mean() > 0.5


def test_flowedit_and_sdedit_are_different_edits(model, clip, record):
    """FlowEdit runs the empty prompt's flow beside the prompt's (3 clips a step with guidance);
    SDEdit only the prompt's (2)."""
    calls, _ = record
    made = {}
    for method in ("flowedit", "sdedit"):
        calls.clear()
        made[method], _, _ = gen(model, "a blue ball falls", given=Given(source=clip, strength=0.5, fps=8.0, edit=method))
        made[method + " batch"] = sum(x.shape[0] for x, _ in calls) / len(calls)
    assert (made["flowedit"].float() - made["sdedit"].float()).abs().mean() > 0.5
    assert made["flowedit batch"] == 1.5 and made["sdedit batch"] == 2


def test_a_long_edit_goes_window_by_window(model, clip, other_clip, record):
    calls, _ = record
    source = torch.cat([clip, other_clip, clip])  # 48 frames: several windows
    frames, fps, _ = gen(model, "a blue ball falls", given=Given(source=source, strength=0.6, fps=8.0))
    assert frames.shape[0] == 48 and fps == 8.0
    assert max(x.shape[2] for x, _ in calls) <= META.window


# --- text-to-image --------------------------------------------------------------------------

def test_text_to_image_is_a_one_frame_video(model, record):
    calls, _ = record
    image, _ = generate_image(model, PROMPT, SampleOptions(seed=2))
    assert image.shape == (32, 32, 3) and image.dtype == torch.uint8
    # the frame after the lone first latent frame: the DiT makes two latent frames
    assert all(x.shape[2] == 2 for x, _ in calls)
    assert torch.equal(image, generate_image(model, PROMPT, SampleOptions(seed=2))[0])
    assert not torch.equal(image, generate_image(model, PROMPT, SampleOptions(seed=3))[0])


def test_text_to_image_of_a_collision(model):
    """A still of a scene whose event needs time (two objects meet within 2 s) is its first moment."""
    image, notes = generate_image(model, "a red ball and a blue box move toward each other and collide",
                                  SampleOptions(seed=0))
    assert image.shape == (32, 32, 3)
    assert expanded_caption(notes)  # laid out and expanded, not refused


def test_short_clip_of_a_collision(model):
    """A clip shorter than two objects need to meet shows the start of a scene in which they do."""
    prompt = "a red ball and a blue box move toward each other and collide"
    frames, fps, notes = generate(model, prompt, SampleOptions(seconds=0.25, seed=0))
    assert len(frames) == round(0.25 * fps)
    assert "collides" in expanded_caption(notes)


# --- bad requests to the library ------------------------------------------------------------

@pytest.mark.parametrize("prompt, given, message", [
    (PROMPT, Given(source=np.zeros((4, 32, 32, 3), np.uint8), strength=1.5), "strength must be between 0 and 1"),
    (PROMPT, Given(source=np.zeros((4, 32, 32, 3), np.uint8), strength=-0.1), "strength must be between 0 and 1"),
    (PROMPT, Given(source=np.zeros((4, 32, 32, 3), np.uint8), edit="inpaint"), "unknown edit method 'inpaint'"),
    (PROMPT, Given(image=np.zeros((32, 32, 3), np.uint8), before=np.zeros((4, 32, 32, 3), np.uint8)), "not both"),
    (PROMPT, Given(before=np.zeros((0, 32, 32, 3), np.uint8)), "holds no frames"),
    (PROMPT, Given(image=np.zeros((32, 32, 4), np.uint8)), "must be uint8 frames"),
    (PROMPT, Given(before=np.zeros((4, 32, 32, 3), np.uint16)), "must be uint8 frames"),
    ("", None, "the prompt is empty"),
])
def test_bad_requests_are_clear_errors(model, prompt, given, message):
    with pytest.raises(ValueError, match=message):
        generate(model, prompt, SampleOptions(seconds=1.0), given=given)


def test_given_arrays_are_never_changed(model, clip):
    array = clip.numpy().copy()
    before = array.copy()
    gen(model, given=Given(before=array, fps=8.0), seconds=1.0)
    gen(model, given=Given(source=array, fps=8.0, strength=0.3))
    assert np.array_equal(array, before)


# --- pixel fidelity -------------------------------------------------------------------------

def test_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == float("inf")
    b[0] = 255  # half the values off by the peak: mse = 255^2 / 2
    assert psnr(a, b) == pytest.approx(10 * np.log10(2))
    assert psnr(a, b, where=np.array([False, True])) == float("inf")  # only the equal frame
    with pytest.raises(ValueError, match="different shapes"):
        psnr(a, b[:1])


# --- reading images and clips ---------------------------------------------------------------

def _png48(path: Path) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow opens these as 8-bit RGB unless asked)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + np.full((8, 3), 30000, ">u2").tobytes() for _ in range(8))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rgb = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(d / "rgba.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(d / "grey16.png")
    _png48(d / "rgb48.png")
    (d / "notes.txt").write_text("not a picture or a video\n")
    (d / "zero.mp4").write_bytes(b"")
    (d / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    out = av.open(str(d / "no_frames.mp4"), mode="w", format="mp4")  # a container with no frame in it
    stream = out.add_stream("libx264", rate=8)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    out.start_encoding()
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    ramp = np.linspace(0, 255, 32).astype(np.uint8)
    photo = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], np.full((32, 32), 120, np.uint8)), -1)
    Image.fromarray(photo).save(d / "rgb.png")
    Image.fromarray(photo[..., 0]).save(d / "grey.png")
    return d


@pytest.mark.parametrize("name, message", [
    ("rgba.png", "has transparency (mode RGBA)"),
    ("palette.png", "is a palette image (mode P)"),
    ("grey16.png", "16/32-bit image (mode I;16"),
    ("rgb48.png", "is a 16-bit image"),
    ("notes.txt", "is not an image file"),
    ("zero.mp4", "is not an image file"),
])
def test_images_in_odd_modes_are_refused(bad_files, name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_image(bad_files / name)


def test_rgb_and_grey_images_are_read(bad_files):
    assert read_image(bad_files / "rgb.png").shape == read_image(bad_files / "grey.png").shape == (32, 32, 3)


@pytest.mark.parametrize("name, message", [
    ("notes.txt", "is not a video file"),
    ("noise.mp4", "is not a video file"),
    ("zero.mp4", "is empty"),
    ("no_frames.mp4", "holds no video frames"),
    ("missing.mp4", "no such file"),
])
def test_unreadable_clips_are_refused(bad_files, name, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_clip(bad_files / name)


# --- the command line -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two world clips, 2 s at 8 fps, 32x32, with their JSON (prompt and caption)."""
    d = tmp_path_factory.mktemp("world")
    return write_samples(d, 2, 2.0, 8.0, 32, 32, seed=4, progress=False)


def snapshot(*paths: Path) -> list:
    return [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths]


def call(*args) -> tuple[int, str, str]:
    """framecast's main() in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_every_command(model_dir, world, bad_files, tmp_path):
    a, b = world
    image = bad_files / "rgb.png"
    before = snapshot(a, b, image)
    o = tmp_path
    runs = {
        "i2v": ["generate", PROMPT, "--image", image, "--seconds", 1, "-o", o / "i2v.mp4"],
        "extend": ["extend", a, "--seconds", 1, "--seed", 3, "-o", o / "extend.mp4"],
        "backward": ["extend", a, PROMPT, "--seconds", 1, "--backward", "-o", o / "backward.mp4"],
        "connect": ["connect", a, b, "--seconds", 1, "-o", o / "connect.mp4"],
        "edit": ["edit", a, "a blue ball falls", "--strength", 0.5, "-o", o / "edit.mp4"],
        "sdedit": ["edit", a, "a blue ball falls", "--method", "sdedit", "-o", o / "sdedit.mp4"],
        "loop": ["generate", PROMPT, "--loop", "--seconds", 2, "-o", o / "loop.mp4"],
        "image": ["image", "a blue box", "--size", "48x32", "-o", o / "still.png"],
    }
    for k, args in runs.items():
        code, out, err = call(*args, "--model", model_dir, "--steps", 1)
        assert code == 0, (k, err)
        assert "wrote" in out and "sampling" in err, (k, err)  # and the progress bar
    assert snapshot(a, b, image) == before  # inputs untouched
    clip_a, _ = read_mp4(a)
    clip_b, _ = read_mp4(b)
    lengths = {"i2v": 8, "extend": 16 + 8, "backward": 8 + 16, "connect": 16 + 8 + 16, "edit": 16, "sdedit": 16,
               "loop": 16}
    for k, n in lengths.items():
        frames, fps = read_mp4(o / f"{k}.mp4")
        assert frames.shape == (n, 32, 32, 3) and fps == pytest.approx(8.0), k
    # the input clips are kept (through one more H.264 encode)
    assert psnr(read_mp4(o / "extend.mp4")[0][:16], clip_a) >= 35
    assert psnr(read_mp4(o / "backward.mp4")[0][8:], clip_a) >= 35
    joined = read_mp4(o / "connect.mp4")[0]
    assert psnr(joined[:16], clip_a) >= 35 and psnr(joined[-16:], clip_b) >= 35
    assert psnr(read_mp4(o / "i2v.mp4")[0][0], read_image(image)) >= 30
    assert Image.open(o / "still.png").size == (48, 32)


def test_a_warning_is_one_plain_line(model_dir, tmp_path, monkeypatch):
    """framecast's warnings reach a CLI user as `framecast: warning: ...`, not Python's file:line form."""
    import framecast.provenance as provenance

    monkeypatch.setattr(provenance, "detect_still", lambda still: provenance.watermark.Detection(False, None, 0.0, 1.0, 0.0, ()))
    code, out, err = call("image", "a blue box", "-o", tmp_path / "still.png", "--model", model_dir, "--steps", 1)
    assert code == 0 and "wrote" in out
    assert "framecast: warning: still.png: the watermark could not be read back" in err
    assert "UserWarning" not in err and "cli.py" not in err


def test_the_module_entry_point_with_a_clip_and_its_caption(model_dir, world, tmp_path):
    a, _ = world
    before = snapshot(a)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "framecast", "extend", str(a), "--seconds", "1", "--steps", "1",
                          "--model", str(model_dir), "-o", str(tmp_path / "x.mp4")],
                         check=False, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "prompt taken from clip_00000.json" in res.stderr  # no prompt: the clip's own caption
    assert "sampling" in res.stderr and "wrote" in res.stdout
    assert read_mp4(tmp_path / "x.mp4")[0].shape[0] == 24 and snapshot(a) == before


BAD = [
    (["extend", "{bad}/missing.mp4"], "no such file"),
    (["extend", "{bad}/notes.txt"], "is not a video file"),
    (["extend", "{bad}/zero.mp4"], "is empty"),
    (["extend", "{bad}/no_frames.mp4"], "holds no video frames"),
    (["extend", "{a}", "--seconds", "0"], "must be positive"),
    (["extend", "{a}", "--seconds", "-2"], "must be positive"),
    (["extend", "{a}", "-o", "{a}"], "is the input"),
    (["extend", "{a}", "", "--seconds", "1"], "the prompt is empty"),
    (["connect", "{a}", "{bad}/notes.txt"], "is not a video file"),
    (["connect", "{a}", "{b}", "--seconds", "0"], "must be positive"),
    (["connect", "{a}", "{b}", "-o", "{b}"], "is the input"),
    (["edit", "{a}", "a blue ball", "--strength", "1.5"], "must be between 0 and 1"),
    (["edit", "{a}", "a blue ball", "--strength", "-0.1"], "must be between 0 and 1"),
    (["edit", "{a}", "a blue ball", "--strength", "lots"], "expected a number"),
    (["edit", "{a}", "a blue ball", "--method", "inpaint"], "invalid choice: 'inpaint'"),
    (["edit", "{bad}/noise.mp4", "a blue ball"], "is not a video file"),
    (["edit", "{a}", "a blue ball", "-o", "{a}"], "is the input"),
    (["generate", PROMPT, "--image", "{bad}/rgba.png"], "has transparency"),
    (["generate", PROMPT, "--image", "{bad}/palette.png"], "palette image"),
    (["generate", PROMPT, "--image", "{bad}/grey16.png"], "16/32-bit image"),
    (["generate", PROMPT, "--image", "{bad}/rgb48.png"], "16-bit image"),
    (["generate", PROMPT, "--image", "{bad}/notes.txt"], "is not an image file"),
    (["generate", PROMPT, "--image", "{bad}/missing.png"], "no such file"),
    (["generate", PROMPT, "--image", "{bad}/rgb.png", "-o", "{bad}/rgb.png"], "is the input"),
    (["image", ""], "the prompt is empty"),
    (["image", PROMPT, "-o", "{tmp}"], "is a folder"),
    (["image", PROMPT, "-o", "{tmp}/still.xyz"], "cannot tell an image format"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_exits_2_with_a_message_and_leaves_the_input_alone(args, message, model_dir, world, bad_files,
                                                                        tmp_path):
    a, b = world
    args = [x.format(a=a, b=b, bad=bad_files, tmp=tmp_path) for x in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.mp4")]
    inputs = [p for p in map(Path, args) if p.is_file()]
    before = snapshot(*inputs)
    code, _, err = call(*args, "--model", model_dir)
    assert code == 2, err
    assert message in err and "Traceback" not in err, err
    assert snapshot(*inputs) == before
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("args, message", [
    (["extend", "{short}", "--backward"], "needs at least 5 frames"),
    (["connect", "{a}", "{fast}"], "connect needs two clips of one frame rate"),
])
def test_bad_clips_found_by_the_pipeline_exit_2(args, message, model_dir, world, tmp_path):
    a, _ = world
    frames, _ = read_mp4(a)
    write_mp4(tmp_path / "short.mp4", frames[:3], 8.0)
    write_mp4(tmp_path / "fast.mp4", frames, 24.0)
    args = [x.format(a=a, short=tmp_path / "short.mp4", fast=tmp_path / "fast.mp4") for x in args]
    before = snapshot(a, tmp_path / "short.mp4", tmp_path / "fast.mp4")
    code, _, err = call(*args, "--model", model_dir, "-o", tmp_path / "out.mp4")
    assert code == 2 and message in err, err
    assert snapshot(a, tmp_path / "short.mp4", tmp_path / "fast.mp4") == before
    assert not (tmp_path / "out.mp4").exists()
