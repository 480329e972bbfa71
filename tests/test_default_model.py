"""The shipped default model (models/default): it loads, and `framecast generate` uses it with no
--model, at a reduced step count so CI stays fast."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framecast.config import PRESETS
from framecast.pipeline import Framecast
from framecast.video.io import read_mp4

FRAMECAST = Path(sys.executable).with_name("framecast")
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "default"


def generate(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "FRAMECAST_MODEL"}
    return subprocess.run([str(FRAMECAST), "generate", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


def test_the_shipped_model_folder_is_complete_small_and_of_the_default_preset():
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "model.safetensors", "recipe.json", "MODEL_CARD.md"} <= files
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30e6
    model = Framecast.load(SHIPPED)
    assert model.config == PRESETS["default"]
    assert (model.meta.width, model.meta.height, model.meta.fps) == (64, 64, 12.0)
    assert len(model.meta.latent_mean) == model.config.dit.latent_channels
    recipe = json.loads((SHIPPED / "recipe.json").read_text())
    assert recipe["preset"] == "default" and recipe["dit_step"] >= 1
    train = recipe["train"]  # the sampling defaults are the ones the recipe wrote, not edited by hand
    assert (model.meta.steps, model.meta.guidance) == (train["sample_steps"], train["guidance"])
    assert model.meta.sampler == train.get("sampler", "euler")  # recipes before the setting: Euler
    assert model.meta.best_of == train.get("best_of", 1)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The same prompt and seed twice, from another working directory, with no --model."""
    where = tmp_path_factory.mktemp("gen")
    outs = []
    for name in ("a", "b"):
        res = generate("a red ball falls and bounces", "--seconds", 2, "--steps", 3, "--seed", 5,
                       "-o", where / f"{name}.mp4", cwd=where)
        assert res.returncode == 0, res.stderr
        outs.append(read_mp4(where / f"{name}.mp4"))
    return outs


def test_generate_uses_the_shipped_model_with_the_requested_format(made):
    (frames, fps), _ = made
    assert frames.shape == (24, 64, 64, 3) and fps == pytest.approx(12)
    assert frames.std() > 1  # a picture, not a blank


def test_generate_with_the_shipped_model_is_deterministic(made):
    (a, _), (b, _) = made
    assert np.array_equal(a, b)


@pytest.mark.parametrize("size, shape", [("112x64", (12, 64, 112, 3)), ("64x112", (12, 112, 64, 3))])
def test_the_shipped_model_makes_wide_and_tall_clips(tmp_path, size, shape):
    out = tmp_path / "x.mp4"
    res = generate("a blue box slides to the right", "--seconds", 1, "--size", size, "--steps", 2, "-o", out)
    assert res.returncode == 0, res.stderr
    assert read_mp4(out)[0].shape == shape


def test_empty_and_overlong_prompts(tmp_path):
    res = generate("   ", "-o", tmp_path / "x.mp4")
    assert res.returncode == 2 and "empty" in res.stderr and not (tmp_path / "x.mp4").exists()
    long = "a red ball falls and bounces " + "and then it keeps on bouncing " * 40
    res = generate(long, "--no-expand", "--seconds", 1, "--steps", 2, "-o", tmp_path / "y.mp4")
    assert res.returncode == 0, res.stderr
    assert "cut to their first 128 tokens" in res.stderr and (tmp_path / "y.mp4").is_file()


def test_a_prompt_the_world_cannot_lay_out_is_refused_before_any_sampling(tmp_path):
    res = generate("two red balls fall", "-o", tmp_path / "x.mp4")
    assert res.returncode == 2 and "two objects are red" in res.stderr and not (tmp_path / "x.mp4").exists()
    assert "sampling" not in res.stderr  # no progress bar for a job that never starts


def test_an_edit_recolours_and_keeps_the_motion_with_the_shipped_model():
    """`framecast edit` with a new colour in the prompt shows that colour on the source's path
    (issue 5's edit: new colour, same motion). SDEdit, the old method, loses the triangle's shape
    here and fails alignment."""
    from framecast.evaluate import evaluate_clip
    from framecast.evaluate.track import path_drift
    from framecast.pipeline import Given, SampleOptions
    from framecast.pipeline import generate as make
    from framecast.world.clip import make_clip
    from framecast.world.parse import parse_prompt

    source = make_clip(1234646892, 2.0, 12.0, 64, 64)  # a held-out scene of benchmarks/prompting.py
    assert source.prompt == "a yellow triangle slides to the left on a navy background"
    edited = "a red triangle slides to the left on a navy background"
    model = Framecast.load(SHIPPED)
    frames, fps, _ = make(model, edited, SampleOptions(seed=0, steps=6, best_of=1), given=Given(source=source.frames))
    assert frames.shape == source.frames.shape
    report = evaluate_clip(frames.numpy(), fps, parse_prompt(edited))
    assert report["passed"]["alignment"] and report["passed"]["motion"], report["failed"]
    assert path_drift(source.frames, frames.numpy(), fps, "yellow", "red") < 0.05  # where the yellow one was