"""`framecast train` end to end: the tiny recipe, resume, then generate with what it made."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framecast.config import TRAIN_PRESETS
from framecast.video.io import read_mp4

FRAMECAST = Path(sys.executable).with_name("framecast")


def run(*args):
    return subprocess.run([str(FRAMECAST), *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = run("train", "--preset", "tiny", "--steps", "6", "--seed", "1", "--out", out)
    assert res.returncode == 0, res.stderr
    return out


def test_train_writes_a_model_folder_logs_and_checkpoints(trained):
    model = trained / "model"
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["meta"]["latent_mean"] and len(cfg["meta"]["latent_std"]) == cfg["model"]["dit"]["latent_channels"]
    tc = TRAIN_PRESETS["tiny"]
    assert cfg["meta"]["time_shift"] == tc.time_shift  # the sampler shifts its times as training did
    assert (cfg["meta"]["steps"], cfg["meta"]["guidance"], cfg["meta"]["sampler"], cfg["meta"]["best_of"]) == (
        tc.sample_steps, tc.guidance, tc.sampler, tc.best_of)  # the preset's sampling defaults
    assert tc.best_of > 1  # world data: candidates are checked by the world's rules
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    dit = [r for r in log if r["stage"] == "dit"]
    assert dit[-1]["step"] == 6 and all(np.isfinite(r["loss"]) for r in log)
    assert {r["stage"] for r in log} == {"vae", "dit", "decoder"}
    assert (trained / "vae.ckpt").is_file() and (trained / "dit.ckpt").is_file()


def test_rerun_needs_resume_and_resume_finishes(trained):
    res = run("train", "--preset", "tiny", "--steps", "6", "--seed", "1", "--out", trained)
    assert res.returncode == 2 and "--resume" in res.stderr
    before = (trained / "model" / "model.safetensors").read_bytes()
    res = run("train", "--preset", "tiny", "--steps", "6", "--seed", "1", "--out", trained, "--resume")
    assert res.returncode == 0, res.stderr
    assert (trained / "model" / "model.safetensors").read_bytes() == before  # nothing left to train
    res = run("train", "--preset", "tiny", "--steps", "6", "--seed", "2", "--out", trained, "--resume")
    assert res.returncode == 2 and "other settings" in res.stderr


def test_generate_with_the_trained_model(trained, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.mp4"
        res = run("generate", "a red ball moves to the right", "--model", trained / "model", "--seconds", 2,
                  "--steps", 4, "--seed", 11, "-o", out)
        assert res.returncode == 0, res.stderr
        outs.append(read_mp4(out))
    (a, fps), (b, _) = outs
    assert a.shape == (16, 32, 32, 3) and fps == pytest.approx(8)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "unknown preset"),
    (["--preset", "tiny", "--steps", "0"], "--steps must be at least 1"),
    (["--preset", "tiny", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--preset", "tiny", "--vae-steps", "0"], "--vae-steps must be at least 1"),
    (["--preset", "tiny", "--decoder-steps", "-1"], "--decoder-steps must be at least 0"),
    (["--preset", "tiny", "--dit-clips", "0"], "--dit-clips must be at least 1"),
    (["--preset", "tiny", "--decoder-denoise", "1.5"], "--decoder-denoise is a flow time in [0, 1]"),
    (["--preset", "tiny", "--lr", "0"], "--lr must be a learning rate between 0 and 1"),
    (["--preset", "tiny", "--stage", "decoder", "--decoder-denoise", "0.3"], "train it after the DiT"),
    (["--preset", "tiny", "--init", "no/such/model"], "no model folder"),
])
def test_bad_train_arguments(tmp_path, args, message):
    res = run("train", "--out", tmp_path / "x", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_dit_settings_may_change_until_the_dit_starts(tmp_path):
    from framecast.train.recipe import _check_settings
    settings = {"preset": "tiny", "seed": 0, "vae_steps": 20, "dit_steps": 20, "cond_prob": 0.2, "guidance": 4.0}
    _check_settings(tmp_path, settings, resume=False)
    (tmp_path / "vae.ckpt").write_bytes(b"")
    _check_settings(tmp_path, {**settings, "dit_steps": 40, "cond_prob": 0.5}, resume=True)
    with pytest.raises(ValueError, match="vae_steps"):
        _check_settings(tmp_path, {**settings, "vae_steps": 30}, resume=True)
    (tmp_path / "dit.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="dit_steps"):
        _check_settings(tmp_path, {**settings, "dit_steps": 80}, resume=True)
    tuned = {**settings, "dit_steps": 40, "cond_prob": 0.5}  # as the last resume wrote them
    _check_settings(tmp_path, {**tuned, "guidance": 3.0}, resume=True)  # a sampling default: free any time


def test_a_run_made_before_a_setting_existed_resumes_with_the_value_it_used(tmp_path):
    from framecast.train.recipe import _check_settings
    old = {"preset": "tiny", "seed": 0, "vae_steps": 20, "decoder_steps": 4}  # its train.json: no motion weight
    _check_settings(tmp_path, old, resume=False)
    (tmp_path / "vae.ckpt").write_bytes(b"")
    (tmp_path / "decoder.ckpt").write_bytes(b"")
    _check_settings(tmp_path, {**old, "decoder_motion_weight": 0.0}, resume=True, write=False)  # what it used
    with pytest.raises(ValueError, match="decoder_motion_weight"):
        _check_settings(tmp_path, {**old, "decoder_motion_weight": 1.0}, resume=True)


def test_export_writes_the_model_folder_from_the_checkpoints(trained, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    shutil.rmtree(run_dir / "model")
    res = run("train", "--preset", "tiny", "--steps", "6", "--seed", "1", "--out", run_dir, "--stage", "export")
    assert res.returncode == 0, res.stderr
    assert (run_dir / "model" / "model.safetensors").read_bytes() == (trained / "model" / "model.safetensors").read_bytes()
    assert json.loads((run_dir / "model" / "recipe.json").read_text())["dit_step"] == 6
    empty = tmp_path / "empty"
    res = run("train", "--preset", "tiny", "--out", empty, "--stage", "export")
    assert res.returncode == 2 and "no checkpoint" in res.stderr


def test_the_decoder_is_fine_tuned_on_the_frozen_encoder(trained):
    import torch
    from safetensors.torch import load_file
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["stage"] == "decoder"][-1] == 4
    shipped = load_file(trained / "model" / "model.safetensors")
    vae = torch.load(trained / "vae.ckpt", weights_only=False)["ema"]
    enc = [k for k in vae if k.startswith("encoder.")]
    dec = [k for k in vae if k.startswith("decoder.") and k.endswith("weight")]
    # the DiT's latents come from the VAE stage's encoder, untouched; the decoder moved on
    assert all(torch.equal(shipped[f"vae.{k}"].float(), vae[k].half().float()) for k in enc)
    assert any(not torch.equal(shipped[f"vae.{k}"].float(), vae[k].half().float()) for k in dec)
    assert "decoder_eval" in json.loads((trained / "model" / "recipe.json").read_text())


def test_a_run_continues_from_a_model_folder(trained, tmp_path):
    import torch
    from safetensors.torch import load_file
    out = tmp_path / "more"
    res = run("train", "--preset", "tiny", "--init", trained / "model", "--steps", "4", "--decoder-steps", "0",
              "--lr", "1e-4", "--seed", "3", "--out", out)
    assert res.returncode == 0, res.stderr
    base, more = (load_file(d / "model" / "model.safetensors") for d in (trained, out))
    assert all(torch.equal(base[k], more[k]) for k in base if k.startswith("vae."))  # the VAE is kept
    dit = [k for k in base if k.startswith("dit.") and base[k].is_floating_point()]
    moved = max((base[k].float() - more[k].float()).abs().max().item() for k in dit)
    assert 0 < moved < 0.02  # a few small steps on from the folder's DiT, not a fresh start
    cfg = [json.loads((d / "model" / "config.json").read_text())["meta"] for d in (trained, out)]
    assert cfg[0]["latent_mean"] == cfg[1]["latent_mean"] and cfg[0]["latent_std"] == cfg[1]["latent_std"]
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert recipe["dit_step"] == 4 and recipe["dit_step_total"] == 6 + 4
    assert recipe["train"]["lr"] == 1e-4 and recipe["init"]["recipe"]["train"]["lr"] > 1e-4  # --lr, not the preset's
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"dit"} and not (out / "vae.ckpt").exists()
    assert 0 < max(r["lr"] for r in log) <= 1e-4


def test_a_model_folders_decoder_alone_is_fine_tuned_with_zero_dit_steps(trained, tmp_path):
    import torch
    from safetensors.torch import load_file
    out = tmp_path / "decoder"
    args = ("train", "--preset", "tiny", "--init", trained / "model", "--steps", "0", "--decoder-steps", "3",
            "--seed", "3", "--out", out)
    res = run(*args)
    assert res.returncode == 0, res.stderr
    base, more = (load_file(d / "model" / "model.safetensors") for d in (trained, out))
    kept = [k for k in base if not k.startswith("vae.decoder.")]  # the DiT and the encoder the DiT's latents need
    assert all(torch.equal(base[k], more[k]) for k in kept)
    assert any(not torch.equal(base[k], more[k]) for k in base if k.startswith("vae.decoder."))
    cfg = [json.loads((d / "model" / "config.json").read_text())["meta"] for d in (trained, out)]
    assert cfg[0]["latent_mean"] == cfg[1]["latent_mean"] and cfg[0]["latent_std"] == cfg[1]["latent_std"]
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert recipe["dit_step"] == 0 and recipe["dit_step_total"] == 6 and recipe["decoder_eval"]["steps"] == 3
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"decoder"} and not (out / "dit.ckpt").exists()
    shipped = (out / "model" / "model.safetensors").read_bytes()
    res = run(*args, "--stage", "export")  # the same folder again from its checkpoint
    assert res.returncode == 0, res.stderr
    assert (out / "model" / "model.safetensors").read_bytes() == shipped
    res = run("train", "--preset", "tiny", "--init", trained / "model", "--steps", "0", "--decoder-steps", "0",
              "--out", tmp_path / "nothing")
    assert res.returncode == 2 and "nothing to train" in res.stderr


def test_a_decoder_fine_tuned_on_the_dits_denoising_keeps_the_dit_and_encoder(trained, tmp_path):
    import torch
    from safetensors.torch import load_file
    out = tmp_path / "denoise"
    res = run("train", "--preset", "tiny", "--init", trained / "model", "--steps", "0", "--decoder-steps", "3",
              "--decoder-denoise", "0.3", "--seed", "3", "--out", out)
    assert res.returncode == 0, res.stderr
    base, more = (load_file(d / "model" / "model.safetensors") for d in (trained, out))
    assert all(torch.equal(base[k], more[k]) for k in base if not k.startswith("vae.decoder."))
    assert any(not torch.equal(base[k], more[k]) for k in base if k.startswith("vae.decoder."))
    recipe = json.loads((out / "model" / "recipe.json").read_text())
    assert recipe["train"]["decoder_denoise"] == 0.3 and recipe["decoder_eval"]["steps"] == 3
    clean = tmp_path / "clean"  # the same run on the encoder's clean latents makes another decoder
    res = run("train", "--preset", "tiny", "--init", trained / "model", "--steps", "0", "--decoder-steps", "3",
              "--seed", "3", "--out", clean)
    assert res.returncode == 0, res.stderr
    assert (clean / "model" / "model.safetensors").read_bytes() != (out / "model" / "model.safetensors").read_bytes()


def test_a_model_folder_of_another_architecture_cannot_be_continued(trained, tmp_path):
    res = run("train", "--preset", "default", "--init", trained / "model", "--out", tmp_path / "x")
    assert res.returncode == 2 and "another architecture" in res.stderr and "Traceback" not in res.stderr


def test_training_needs_no_video_codec_library(tmp_path):
    # a training node renders world data and trains without PyAV (ffmpeg): only mp4 files need it
    code = ("import sys; sys.modules['av'] = None\n"
            "from framecast.train.recipe import train\n"
            "from framecast.world.dataset import WorldDataConfig, write_world_shards\n"
            f"write_world_shards({str(tmp_path / 'w')!r}, WorldDataConfig(n=2, seconds=0.5, fps=8, width=32, height=32,"
            " shard_size=2), workers=1, progress=False)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "w" / "index.json").is_file()


def test_a_model_folder_without_the_presets_head_grows_one_and_trains_on_your_folders(tmp_path):
    # runs 1-7 of the default model had no convolutional head; continuing such a folder grows the
    # head at zero, so the run starts from exactly the folder's model. Your own shard folders
    # (--data) train with equal weights, not the preset's weights of its world buckets.
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from framecast.config import PRESETS
    from framecast.models.text import TextEncoder
    from framecast.pipeline import Framecast, ModelMeta
    from framecast.world.dataset import WorldDataConfig, write_world_shards

    default = PRESETS["default"]
    assert default.dit.head_channels > 0
    headless = dataclasses.replace(default, dit=dataclasses.replace(default.dit, head_channels=0))
    torch.manual_seed(0)
    meta = ModelMeta(fps=12.0, width=64, height=64, steps=2, latent_mean=[0.0] * 8, latent_std=[1.0] * 8)
    base = Framecast(headless, meta, text=TextEncoder())
    base.save(tmp_path / "base")
    write_world_shards(tmp_path / "data", WorldDataConfig(n=4, seconds=17 / 12, fps=12, width=64, height=64,
                                                          frames=17, shard_size=4), workers=1, progress=False)
    out = tmp_path / "grown"
    res = run("train", "--preset", "default", "--init", tmp_path / "base", "--data", tmp_path / "data",
              "--steps", "2", "--batch-size", "2", "--decoder-steps", "0", "--out", out)
    assert res.returncode == 0, res.stderr
    assert Framecast.load(out / "model").config == default
    before, after = (load_file(d / "model.safetensors") for d in (tmp_path / "base", out / "model"))
    assert all(k in after for k in before) and all(torch.equal(before[k], after[k]) for k in before if k.startswith("vae."))
    head = [k for k in after if k.startswith("dit.head.")]
    assert head and not any(k in before for k in head)
    assert after["dit.head.net.4.weight"].abs().max() > 0  # grown at zero, then trained
    assert json.loads((out / "train.json").read_text())["dit_weights"] is None
