"""The shipped default model (models/default): its folder, and `framecast generate` with no --model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framecast.cli import default_model_dir
from framecast.config import PRESETS
from framecast.pipeline import Framecast
from framecast.video.io import read_mp4

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "default"
PROMPT = "a red ball falls and bounces"


def run(*args, env=None):
    cmd = [str(Path(sys.executable).with_name("framecast")), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_the_default_model_is_shipped_small_and_self_describing():
    assert default_model_dir() == SHIPPED
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "model.safetensors", "recipe.json", "MODEL_CARD.md"} <= files
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30 * 2**20
    cfg = json.loads((SHIPPED / "config.json").read_text())
    meta = cfg["meta"]
    assert meta["fps"] >= 12 and meta["width"] >= 64 and meta["height"] >= 64
    recipe = json.loads((SHIPPED / "recipe.json").read_text())
    assert recipe["preset"] == "default" and recipe["dit_step"] > 0


def test_loading_checks_config_and_weights():
    model = Framecast.load(SHIPPED)  # load() refuses missing or mismatched weights
    assert model.config == PRESETS["default"]
    assert len(model.meta.latent_std) == model.config.dit.latent_channels


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two runs of the README's command (reduced steps), the same seed: no --model anywhere."""
    out = tmp_path_factory.mktemp("default")
    env = {k: v for k, v in os.environ.items() if k != "FRAMECAST_MODEL"}
    results = [run("generate", PROMPT, "-o", out / f"{i}.mp4", "--steps", 2, "--seconds", 2, "--seed", 5, env=env)
               for i in range(2)]
    return out, results


def test_generate_uses_the_shipped_model_by_default(clips):
    out, results = clips
    for res in results:
        assert res.returncode == 0, res.stderr
        assert "prompt expanded to" in res.stderr  # expansion is on by default
    (a, fps), (b, _) = read_mp4(out / "0.mp4"), read_mp4(out / "1.mp4")
    assert a.shape == (24, 64, 64, 3) and fps == pytest.approx(12)
    assert np.array_equal(a, b)  # same seed, same video


@pytest.mark.parametrize("size", ["112x64", "64x112"])
def test_wide_and_tall_frames_with_the_same_weights(tmp_path, size):
    out = tmp_path / "x.mp4"
    res = run("generate", PROMPT, "-o", out, "--steps", 1, "--seconds", 1, "--size", size)
    assert res.returncode == 0, res.stderr
    w, h = map(int, size.split("x"))
    assert read_mp4(out)[0].shape == (12, h, w, 3)


def test_bad_prompts_are_clear(tmp_path):
    out = tmp_path / "x.mp4"
    res = run("generate", "  ", "-o", out, "--steps", 1)
    assert res.returncode == 2 and "prompt is empty" in res.stderr
    res = run("generate", "a purple elephant dances", "-o", out, "--steps", 1)
    assert res.returncode == 2 and "turn it off" in res.stderr and not out.exists()
    long = "a red ball falls and bounces on the floor and " * 30
    res = run("generate", long, "--no-expand", "-o", out, "--steps", 1, "--seconds", 1)
    assert res.returncode == 0 and "cut to their first 128 tokens" in res.stderr
