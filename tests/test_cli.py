"""The `framecast` command end to end, through its installed entry point."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framecast.video.io import read_mp4
from framecast.world import spec
from framecast.world.clip import make_clip

FRAMECAST = Path(sys.executable).with_name("framecast")


def run(*args, check=True):
    cmd = [str(FRAMECAST)] if FRAMECAST.exists() else [sys.executable, "-m", "framecast"]
    res = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_world_sample_writes_clips_and_exact_json(tmp_path):
    out = tmp_path / "clips"
    run("world", "sample", "--n", "3", "--seconds", "2", "--fps", "12", "--size", "96x64", "--seed", "3", "--out", str(out))
    names = sorted(p.stem for p in out.glob("*.mp4"))
    assert len(names) == 3 and names == sorted(p.stem for p in out.glob("*.json"))
    for name in names:
        meta = json.loads((out / f"{name}.json").read_text())
        assert set(meta) == {"prompt", "caption", "scene", "fps", "seconds", "seed"}
        assert set(meta["scene"]) == {"bg", "aspect", "objects"}
        assert meta["scene"]["aspect"] == pytest.approx(1.5)
        for o in meta["scene"]["objects"]:
            keys = {"color", "shape", "size", "event"} | ({"dir"} if o["event"] in spec.EVENT_DIRS else set())
            assert set(o) == keys
            assert o["color"] in spec.OBJECT_COLORS and o["shape"] in spec.SHAPES and o["size"] in spec.SIZES
            assert o.get("dir") in spec.EVENT_DIRS.get(o["event"], (None,))
        frames, fps = read_mp4(out / f"{name}.mp4")
        assert frames.shape == (24, 64, 96, 3) and fps == pytest.approx(12)
        # the JSON's seed reproduces the clip alone; the mp4 holds it up to H.264 loss
        clip = make_clip(meta["seed"], 2, 12, 96, 64)
        assert clip.prompt == meta["prompt"] and clip.scene.to_json() == meta["scene"]
        assert np.abs(frames.astype(int) - clip.frames).mean() < 3


def test_same_seed_same_files(tmp_path):
    for d in ("a", "b"):
        run("world", "sample", "--n", "2", "--seconds", "1", "--fps", "8", "--size", "32x32", "--seed", "9", "--out", str(tmp_path / d))
    for name in ("clip_00000", "clip_00001"):
        assert (tmp_path / "a" / f"{name}.json").read_text() == (tmp_path / "b" / f"{name}.json").read_text()
        fa, _ = read_mp4(tmp_path / "a" / f"{name}.mp4")
        fb, _ = read_mp4(tmp_path / "b" / f"{name}.mp4")
        assert np.array_equal(fa, fb)


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n must be at least 1"),
    (["--size", "0x0"], "size must be at least 1x1"),
    (["--size", "big"], "size must look like"),
    (["--fps", "0"], "must be positive"),
    (["--seconds", "-1"], "must be positive"),
    (["--size", "33x33"], "even width and height"),
])
def test_bad_input_is_a_clear_error(tmp_path, args, message):
    res = run("world", "sample", "--out", str(tmp_path / "x"), *args, check=False)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_world_expand_refuses_what_the_world_cannot_show():
    res = run("world", "expand", "a magenta ball falls", check=False)
    assert res.returncode == 2 and "magenta" in res.stderr and "Traceback" not in res.stderr
    res = run("world", "expand", "a red ball falls and bounces", "--seed", "4")
    doc = json.loads(res.stdout)
    assert doc["scene"]["objects"][0]["color"] == "red" and doc["scene"]["objects"][0]["event"] == "fall"
    assert "red ball" in doc["caption"]
