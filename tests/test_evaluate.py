"""The evaluator: ground-truth world clips pass every check, broken clips fail the right one.

Every clip goes through a real mp4 round trip (H.264, yuv420p), as generated clips do.
"""

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from framecast.evaluate import CATEGORIES, evaluate_clip, evaluate_dir, format_report
from framecast.video.io import read_mp4, write_mp4
from framecast.world import spec
from framecast.world.clip import make_clip
from framecast.world.export import clip_seed
from framecast.world.render import frame_times, render_background, render_frames
from framecast.world.sample import place
from framecast.world.scene import ObjectSpec, PartialObject, PromptSpec, Scene

FPS = 12.0
SECONDS = 3.0


def round_trip(frames, fps=FPS):
    """Frames as a generated clip gives them back: encoded to mp4 and decoded."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_mp4(path, frames, fps)
        return read_mp4(path)[0]


def world_clip(seed, size=(64, 64), scene=None, seconds=SECONDS, fps=FPS):
    clip = make_clip(seed, seconds, fps, *size, scene=scene)
    return clip, round_trip(clip.frames, fps)


def failed(result, category):
    return not result["passed"][category]


def one(color="red", shape="ball", size="large", event="still", dir=None, bg="black", aspect=1.0, *more):
    return Scene(bg, aspect, (ObjectSpec(color, shape, size, event, dir), *more))


# --- ground truth -----------------------------------------------------------------------

GT_SIZES = [(64, 64)] * 14 + [(96, 96)] * 6 + [(128, 72)] * 5 + [(72, 128)] * 5


@pytest.fixture(scope="module")
def ground_truth():
    return [world_clip(clip_seed(7, i), size) for i, size in enumerate(GT_SIZES)]


def test_ground_truth_passes_every_category(ground_truth):
    results = [evaluate_clip(frames, FPS, clip.scene) for clip, frames in ground_truth]
    for cat in CATEGORIES:
        rate = np.mean([r["passed"][cat] for r in results])
        bad = [(c.prompt, r["failed"]) for (c, _), r in zip(ground_truth, results) if not r["passed"][cat]]
        assert rate >= 0.95, (cat, bad)  # measured: 1.0 on ~1,000 clips from 64x64 to 256x144


def test_ground_truth_passes_against_its_prompt(ground_truth):
    from framecast.world.parse import parse_prompt

    results = [evaluate_clip(frames, FPS, parse_prompt(clip.prompt)) for clip, frames in ground_truth[:12]]
    assert np.mean([all(r["passed"].values()) for r in results]) >= 0.9, [r["failed"] for r in results]


def test_result_format(ground_truth):
    clip, frames = ground_truth[0]
    r = evaluate_clip(frames, FPS, clip.scene)
    assert set(r) == {"passed", "failed"} and list(r["passed"]) == list(CATEGORIES)
    wrong = dataclasses.replace(clip.scene, bg=next(b for b in spec.BACKGROUNDS if b != clip.scene.bg))
    r = evaluate_clip(frames, FPS, wrong)
    assert r["failed"] and all(f.split(":")[0] in CATEGORIES for f in r["failed"])
    assert any(f.startswith("alignment: the background is") for f in r["failed"])


# --- alignment --------------------------------------------------------------------------

def test_wrong_colour_size_shape_background_fail_alignment():
    scene = one("green", "box", "large", "still", bg="navy")
    _, frames = world_clip(1, scene=scene)
    assert all(evaluate_clip(frames, FPS, scene)["passed"].values())
    for change in ({"color": "cyan"}, {"size": "small"}, {"shape": "ball"}, {"shape": "triangle"}):
        wrong = Scene("navy", 1.0, (dataclasses.replace(scene.objects[0], **change),))
        r = evaluate_clip(frames, FPS, wrong)
        assert failed(r, "alignment"), change
    assert failed(evaluate_clip(frames, FPS, dataclasses.replace(scene, bg="gray")), "alignment")


def test_small_shapes_are_told_apart_at_64px():
    for shape in spec.SHAPES:
        scene = one("orange", shape, "small", "still", bg="gray")
        _, frames = world_clip(2, scene=scene)
        for other in spec.SHAPES:
            target = Scene("gray", 1.0, (dataclasses.replace(scene.objects[0], shape=other),))
            assert evaluate_clip(frames, FPS, target)["passed"]["alignment"] == (other == shape), (shape, other)


def test_open_prompt_checks_only_what_it_names():
    scene = one("yellow", "triangle", "small", "fall", bg="gray")
    _, frames = world_clip(3, scene=scene)
    open_spec = PromptSpec((PartialObject(shape="triangle", event="fall"),))
    assert all(evaluate_clip(frames, FPS, open_spec)["passed"].values())
    assert all(evaluate_clip(frames, FPS, PromptSpec((PartialObject(color="yellow"),)))["passed"].values())
    r = evaluate_clip(frames, FPS, PromptSpec((PartialObject(shape="ball", event="fall"),)))
    assert failed(r, "alignment") and not failed(r, "motion")


def test_unnamed_object_fails_alignment():
    scene = Scene("black", 1.0, (ObjectSpec("red", "ball", "small", "still"),
                                 ObjectSpec("white", "box", "large", "spin", "clockwise")))
    _, frames = world_clip(4, scene=scene)
    assert all(evaluate_clip(frames, FPS, scene)["passed"].values())
    r = evaluate_clip(frames, FPS, Scene("black", 1.0, scene.objects[:1]))
    assert failed(r, "alignment") and any("unnamed white" in f for f in r["failed"])


def test_a_second_object_of_a_named_colour_fails_alignment():
    scene = Scene("black", 1.0, (ObjectSpec("red", "ball", "large", "still"), ObjectSpec("white", "ball", "large", "still")))
    clip = make_clip(4, SECONDS, FPS, 64, 64, scene=scene)
    frames = clip.frames.copy()
    white = (frames.astype(int).min(axis=-1) > 128)  # the white ball, repainted as a second red one
    frames[white] = spec.OBJECT_COLORS["red"]
    one_red = Scene("black", 1.0, scene.objects[:1])
    r = evaluate_clip(round_trip(frames), FPS, one_red)
    assert failed(r, "alignment") and any("a second red object" in f for f in r["failed"]), r["failed"]
    assert not failed(evaluate_clip(round_trip(clip.frames), FPS, scene), "alignment")


def test_noise_and_blank_clips_fail_alignment():
    scene = one("blue", "ball", "large", "fall", bg="navy")
    rng = np.random.default_rng(0)
    noise = round_trip(rng.integers(0, 256, (36, 64, 64, 3), dtype=np.uint8))
    assert failed(evaluate_clip(noise, FPS, scene), "alignment")
    blank = np.rint(render_background("navy", True, 64, 64)).astype(np.uint8)
    r = evaluate_clip(round_trip(np.repeat(blank[None], 36, 0)), FPS, scene)
    assert failed(r, "alignment") and failed(r, "motion") and failed(r, "permanence")


# --- motion -----------------------------------------------------------------------------

OPPOSITE = {"right": "left", "left": "right", "up": "down", "down": "up",
            "clockwise": "counterclockwise", "counterclockwise": "clockwise"}


@pytest.mark.parametrize("obj", [
    ObjectSpec("red", "box", "small", "slide", "right"),
    ObjectSpec("cyan", "ball", "large", "slide", "up"),
    ObjectSpec("green", "triangle", "small", "throw", "left"),
    ObjectSpec("purple", "box", "small", "spin", "clockwise"),
    ObjectSpec("white", "triangle", "large", "spin", "counterclockwise"),
])
def test_wrong_direction_fails_motion(obj):
    scene = Scene("gray", 1.0, (obj,))
    _, frames = world_clip(5, scene=scene)
    assert all(evaluate_clip(frames, FPS, scene)["passed"].values())
    wrong = Scene("gray", 1.0, (dataclasses.replace(obj, dir=OPPOSITE[obj.dir]),))
    r = evaluate_clip(frames, FPS, wrong)
    assert failed(r, "motion") and obj.color in " ".join(r["failed"])


@pytest.mark.parametrize("event,claim", [("fall", "throw"), ("still", "slide"), ("spin", "still"),
                                         ("slide", "still"), ("throw", "fall")])
def test_wrong_event_fails_motion(event, claim):
    dirs = {"slide": "down", "throw": "right", "spin": "clockwise"}
    shape = "box" if event == "spin" else "ball"
    scene = one("orange", shape, "large", event, dirs.get(event), bg="navy")
    _, frames = world_clip(6, scene=scene)
    target = PromptSpec((PartialObject("orange", shape, "large", claim, dirs.get(claim)),))
    assert failed(evaluate_clip(frames, FPS, target), "motion")


def test_collision_judged_as_a_pair():
    scene = Scene("black", 1.0, (ObjectSpec("yellow", "ball", "small", "collide"),
                                 ObjectSpec("blue", "box", "large", "collide")))
    _, frames = world_clip(8, scene=scene)
    assert all(evaluate_clip(frames, FPS, scene)["passed"].values())
    still = PromptSpec((PartialObject("yellow", event="still"), PartialObject("blue", event="still")))
    assert failed(evaluate_clip(frames, FPS, still), "motion")


def test_shuffled_frames_fail_motion_or_physics():
    rng = np.random.default_rng(1)
    for seed, obj in enumerate([ObjectSpec("red", "ball", "large", "fall"),
                                ObjectSpec("green", "box", "small", "throw", "right"),
                                ObjectSpec("white", "triangle", "small", "slide", "left")]):
        scene = Scene("black", 1.0, (obj,))
        _, frames = world_clip(seed, scene=scene)
        r = evaluate_clip(frames[rng.permutation(len(frames))], FPS, scene)
        assert failed(r, "motion") or failed(r, "physics"), obj


# --- physics ----------------------------------------------------------------------------

def _render(scene, centres, size=64):
    layout, _ = place(scene, np.random.default_rng(0), SECONDS)
    return round_trip(render_frames(layout, centres, np.zeros(centres.shape[:2]), size, size))


def _fall(y0, g, restitution, half):
    t = frame_times(SECONDS, FPS)
    dt, y, v, ys = 1 / 240, y0, 0.0, []
    for _ in range(int(SECONDS * 240) + 1):
        ys.append(y)
        v += g * dt
        y += v * dt
        if y > spec.GROUND_Y - half:
            y, v = spec.GROUND_Y - half, -restitution * v
    y = np.array(ys)[np.rint(t * 240).astype(int)]
    return np.stack([np.full_like(y, 0.5), y], -1)[:, None]


@pytest.mark.parametrize("g,e,ok", [(3.0, 0.7, True), (2.0, 0.7, False), (4.0, 0.7, False),
                                    (3.0, 0.0, False), (3.0, 0.95, False)])
def test_fall_needs_world_gravity_and_rebound(g, e, ok):
    scene = one("red", "ball", "large", "fall")
    r = evaluate_clip(_render(scene, _fall(0.3, g, e, 0.11)), FPS, scene)
    assert r["passed"]["physics"] == ok, r["failed"]


def test_straight_line_throw_is_not_a_parabola():
    scene = one("green", "box", "small", "throw", "right", bg="navy")
    t = frame_times(SECONDS, FPS)
    y = spec.GROUND_Y - 0.06 - 1.2 * np.minimum(t, 0.5) + 1.2 * np.clip(t - 0.5, 0, 0.5)
    centres = np.stack([0.15 + 0.3 * np.minimum(t, 1.0), y], -1)[:, None]
    r = evaluate_clip(_render(scene, centres), FPS, scene)
    assert failed(r, "physics") and not failed(r, "motion")


def test_passing_through_and_leaving_the_frame_fail_physics():
    scene = Scene("black", 1.0, (ObjectSpec("red", "ball", "large", "collide"),
                                 ObjectSpec("blue", "box", "small", "collide")))
    t = frame_times(SECONDS, FPS)
    a = np.stack([0.2 + 0.2 * t, np.full_like(t, 0.5)], -1)
    b = np.stack([0.8 - 0.2 * t, np.full_like(t, 0.5)], -1)
    r = evaluate_clip(_render(scene, np.stack([a, b], 1)), FPS, scene)
    assert any("pass through each other" in f for f in r["failed"])
    slide = one("yellow", "ball", "small", "slide", "right", bg="gray")
    centres = np.stack([0.3 + 0.45 * t, np.full_like(t, 0.5)], -1)[:, None]
    r = evaluate_clip(_render(slide, centres), FPS, slide)
    assert any("leaves the frame" in f for f in r["failed"])


# --- permanence and stability ---------------------------------------------------------------

def test_vanishing_object_fails_permanence():
    scene = Scene("navy", 1.0, (ObjectSpec("orange", "triangle", "small", "slide", "right"),
                                ObjectSpec("white", "ball", "large", "still")))
    clip, frames = world_clip(9, scene=scene)
    assert all(evaluate_clip(frames, FPS, scene)["passed"].values())
    centres, angles = clip.trajectory.at(frame_times(SECONDS, FPS))
    for gone in (slice(10, 11), slice(10, 14)):
        hidden = centres.copy()
        hidden[gone, 0] = -10.0  # off screen: not drawn
        broken = round_trip(render_frames(clip.trajectory.layout, hidden, angles, 64, 64))
        r = evaluate_clip(broken, FPS, scene)
        assert failed(r, "permanence") and any("vanishes" in f for f in r["failed"])


def test_flickering_background_fails_stability():
    scene = one("red", "box", "large", "spin", "clockwise", bg="black")
    clip, frames = world_clip(10, scene=scene)
    assert evaluate_clip(frames, FPS, scene)["passed"]["stability"]
    raw = clip.frames.astype(np.int16)
    bg = np.all(np.abs(raw - np.array(spec.BACKGROUNDS["black"])) < 3, axis=-1)
    glow = raw.copy()
    glow[1::2][bg[1::2]] += 25  # the whole background pulses
    assert failed(evaluate_clip(round_trip(glow.clip(0, 255).astype(np.uint8)), FPS, scene), "stability")
    blotch = raw.copy()
    patch = np.zeros_like(bg)
    patch[::3, 5:25, 30:55] = True  # a block of background brightens every third frame
    blotch[patch & bg] += 30
    r = evaluate_clip(round_trip(blotch.clip(0, 255).astype(np.uint8)), FPS, scene)
    assert failed(r, "stability") and not failed(r, "alignment")


def test_degenerate_input():
    scene = one()
    frame = np.rint(render_background("black", False, 32, 32)).astype(np.uint8)
    r = evaluate_clip(frame[None], 12.0, scene)  # one frame, nothing in it
    assert failed(r, "alignment")
    with pytest.raises(ValueError):
        evaluate_clip(np.zeros((4, 8, 8), np.uint8), 12.0, scene)
    with pytest.raises(TypeError):
        evaluate_clip(frame[None], 12.0, "a red ball")


# --- folders, report and CLI ------------------------------------------------------------

def _cli():
    exe = Path(sys.executable).with_name("framecast")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "framecast.cli"]


def test_cli_eval_on_world_samples(tmp_path):
    out = tmp_path / "samples"
    subprocess.run(_cli() + ["world", "sample", "--n", "4", "--out", str(out), "--seed", "1"],
                   check=True, capture_output=True, text=True)
    done = subprocess.run(_cli() + ["eval", str(out), "--json"], check=True, capture_output=True, text=True)
    report = json.loads(done.stdout)
    assert report["summary"] == {c: 1.0 for c in CATEGORIES}
    assert [c["name"] for c in report["clips"]] == [f"clip_{i:05d}" for i in range(4)]
    assert all(c["prompt"] and not c["failed"] for c in report["clips"])
    text = subprocess.run(_cli() + ["eval", str(out)], check=True, capture_output=True, text=True).stdout
    assert "every clip passes" in text and all(c in text for c in CATEGORIES)
    assert subprocess.run(_cli() + ["eval", str(out), "--strict"], capture_output=True).returncode == 0
    # judged against a scene with another colour, the clip fails, and --strict says so
    meta_path = out / "clip_00000.json"
    meta = json.loads(meta_path.read_text())
    used = {o["color"] for o in meta["scene"]["objects"]}
    meta["scene"]["objects"][0]["color"] = next(c for c in spec.OBJECT_COLORS if c not in used)
    meta_path.write_text(json.dumps(meta))
    assert subprocess.run(_cli() + ["eval", str(out), "--strict"], capture_output=True).returncode == 1


def test_evaluate_dir_reports_bad_clips_without_crashing(tmp_path):
    scene = one("red", "ball", "large", "fall", bg="gray")
    clip = make_clip(11, 2.0, FPS, 64, 64, scene=scene)
    write_mp4(tmp_path / "good.mp4", clip.frames, FPS)
    (tmp_path / "good.json").write_text(json.dumps({"scene": scene.to_json()}))
    write_mp4(tmp_path / "wrong.mp4", clip.frames, FPS)
    (tmp_path / "wrong.json").write_text(json.dumps({"scene": dataclasses.replace(scene, bg="navy").to_json(),
                                                     "prompt": "a red ball falls on a navy background"}))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "broken.json").write_text(json.dumps({"scene": scene.to_json()}))
    write_mp4(tmp_path / "badjson.mp4", clip.frames, FPS)
    (tmp_path / "badjson.json").write_text("{ nope")
    write_mp4(tmp_path / "empty.mp4", clip.frames, FPS)
    (tmp_path / "empty.json").write_text(json.dumps({"caption": "no prompt, no scene"}))
    write_mp4(tmp_path / "lonely.mp4", clip.frames, FPS)  # no JSON: not a clip to score
    report = evaluate_dir(tmp_path)
    by_name = {c["name"]: c for c in report["clips"]}
    assert sorted(by_name) == ["badjson", "broken", "empty", "good", "wrong"]
    assert all(by_name["good"]["passed"].values())
    assert by_name["wrong"]["failed"] == ["alignment: the background is gray, not navy"]
    for name in ("broken", "badjson", "empty"):
        assert not any(by_name[name]["passed"].values()) and len(by_name[name]["failed"]) == len(CATEGORIES)
    assert "cannot decode" in by_name["broken"]["failed"][0]
    assert report["summary"]["alignment"] == pytest.approx(1 / 5)
    assert report["summary"]["physics"] == pytest.approx(2 / 5)
    text = format_report(report)
    assert "wrong" in text and "the background is gray, not navy" in text and "20.0%" in text


def test_evaluate_dir_uses_prompt_when_no_scene(tmp_path):
    clip = make_clip(12, 2.0, FPS, 64, 64, scene=one("cyan", "box", "small", "slide", "right", bg="black"))
    write_mp4(tmp_path / "a.mp4", clip.frames, FPS)
    (tmp_path / "a.json").write_text(json.dumps({"prompt": "a cyan square slides to the right"}))
    write_mp4(tmp_path / "b.mp4", clip.frames, FPS)
    (tmp_path / "b.json").write_text(json.dumps({"prompt": "a cyan square slides to the left"}))
    report = evaluate_dir(tmp_path)
    a, b = report["clips"]
    assert all(a["passed"].values()) and a["prompt"] == "a cyan square slides to the right"
    assert [f.split(":")[0] for f in b["failed"]] == ["motion"] and "moves right" in b["failed"][0]


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no clips"):
        evaluate_dir(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        evaluate_dir(tmp_path / "missing")
