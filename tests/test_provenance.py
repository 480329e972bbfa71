"""Provenance: the watermark (payload, invisibility, robustness, no false alarms), C2PA signing
and reading, and `framecast generate` / `framecast verify` through the installed entry point."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from framecast.config import PRESETS
from framecast.pipeline import Framecast, ModelMeta
from framecast.provenance import (
    Generation,
    ecc,
    read_manifest,
    verify_file,
    watermark,
    write_marked_mp4,
)
from framecast.video.io import h264_round_trip, read_mp4, write_mp4
from framecast.video.metrics import psnr, seam_ratio
from framecast.world.clip import make_clip

FRAMECAST = Path(sys.executable).with_name("framecast")
IDENT = 0x5EED1D05


@pytest.fixture(autouse=True)
def config_dir(tmp_path_factory, monkeypatch):
    """Every test signs with a local chain of its own session, never the user's."""
    folder = tmp_path_factory.getbasetemp() / "framecast-config"
    monkeypatch.setenv("FRAMECAST_CONFIG_DIR", str(folder))
    for name in ("FRAMECAST_C2PA_CERT", "FRAMECAST_C2PA_KEY", "FRAMECAST_C2PA_TRUST_ANCHORS"):
        monkeypatch.delenv(name, raising=False)
    return folder


def reencode(frames: np.ndarray, crf: int, fps: float = 12) -> np.ndarray:
    return h264_round_trip(frames, fps, crf)


def resize(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def clip():
    return make_clip(1003, 4, 12, 64, 64).frames


@pytest.fixture(scope="module")
def marked(clip):
    return watermark.embed(clip, IDENT)


# --- payload coding ---------------------------------------------------------------------------

def test_payload_round_trips_through_the_code():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, watermark.PAYLOAD_BITS).astype(np.uint8)
    coded = ecc.conv_encode(bits)
    assert len(coded) == watermark.CODED_BITS
    soft = 2.0 * coded - 1 + rng.normal(0, 0.4, len(coded))
    soft[::16] *= -1  # one coded bit in 16 arrives flipped, the rest noisy: the code corrects them
    assert np.array_equal(ecc.viterbi_decode(soft, len(bits)), bits)
    ident = ecc.to_bits(IDENT, 32)
    assert ecc.from_bits(ident) == IDENT
    flipped = ident.copy()
    flipped[5] ^= 1
    assert not np.array_equal(ecc.crc16(flipped), ecc.crc16(ident))


def test_list_decoder_finds_the_payload_behind_the_likeliest():
    rng = np.random.default_rng(7)  # a noise draw where the likeliest path is wrong
    bits = rng.integers(0, 2, watermark.PAYLOAD_BITS).astype(np.uint8)
    soft = 2.0 * ecc.conv_encode(bits) - 1 + rng.normal(0, 1.1, watermark.CODED_BITS)
    paths = ecc.list_viterbi_decode(soft, len(bits), 16)
    assert paths.shape == (16, len(bits)) and len({p.tobytes() for p in paths}) == 16
    assert np.array_equal(paths[0], ecc.viterbi_decode(soft, len(bits)))
    assert not np.array_equal(paths[0], bits) and any(np.array_equal(p, bits) for p in paths[1:])


# --- the watermark ----------------------------------------------------------------------------

def test_mark_is_invisible_and_carries_the_id(clip, marked):
    assert marked.shape == clip.shape and marked.dtype == np.uint8
    assert psnr(marked, clip) >= 38.0
    d = watermark.detect(marked)
    assert d.detected and d.id == IDENT and d.p_value < 1e-9
    assert watermark.video_id(clip) == watermark.video_id(clip.copy()) != watermark.video_id(marked)


@pytest.mark.parametrize("attack", ["crf30", "half", "half_of_128", "crop80", "every_other_frame", "trim"])
def test_mark_survives(marked, attack):
    if attack == "crf30":
        video = reencode(marked, 30)
    elif attack == "half":  # the default model's 64 pixels down to 32, encoded there
        video = reencode(resize(marked, 32, 32), 23)
    elif attack == "half_of_128":  # down to 0.5x, encoded there, and back up
        big = make_clip(1003, 4, 12, 128, 128).frames
        video = resize(reencode(resize(watermark.embed(big, IDENT), 64, 64), 23), 128, 128)
    elif attack == "crop80":  # the central 80%, at its own size
        video = reencode(np.ascontiguousarray(marked[:, 6:58, 6:58]), 23)
    elif attack == "every_other_frame":
        video = reencode(np.ascontiguousarray(marked[::2]), 23, fps=6)
    else:  # the first second only
        video = reencode(np.ascontiguousarray(marked[:12]), 23)
    d = watermark.detect(video)
    assert d.detected and d.id == IDENT, d


def test_mark_survives_half_size_of_a_wide_clip():
    clip = make_clip(1005, 4, 12, 112, 64).frames  # the default model's landscape size, read at 56x32
    d = watermark.detect(reencode(resize(watermark.embed(clip, IDENT), 32, 56), 23))
    assert d.detected and d.id == IDENT, d


def test_clean_videos_are_not_flagged():
    rng = np.random.default_rng(1)
    videos = [make_clip(seed, 2, 12, 64, 64).frames for seed in range(2000, 2006)]
    videos += [rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8), np.full((6, 48, 64, 3), 128, np.uint8)]
    for video in videos:
        d = watermark.detect(reencode(video, 23))
        assert not d.detected and d.id is None and d.p_value > 1e-4, d


def test_embed_and_detect_reject_bad_frames(clip):
    with pytest.raises(ValueError, match="uint8"):
        watermark.embed(clip.astype(np.float32), 1)
    with pytest.raises(ValueError, match="32 bits"):
        watermark.embed(clip, 2 ** 32)
    with pytest.raises(ValueError, match="frames must be"):
        watermark.detect(clip[0])


# --- C2PA -------------------------------------------------------------------------------------

@pytest.fixture()
def signed(tmp_path, clip):
    path = tmp_path / "signed.mp4"
    record = write_marked_mp4(path, clip, 12, Generation("tiny", settings={"seed": 3}, prompt=None))
    return path, record


def test_sign_then_read_round_trip(signed, config_dir):
    path, record = signed
    assert record["credentials"] == str(config_dir / "c2pa")
    m = read_manifest(path)
    assert m["status"] == "valid" and "trust list" in m["reason"]  # the local chain is intact, not trusted
    assert m["claim_generator"] == "framecast"
    assert {"action": "c2pa.created", "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/"
            "trainedAlgorithmicMedia"} in m["actions"]
    assert m["framecast"]["model"] == "tiny" and m["framecast"]["watermark_id"] == record["watermark_id"]
    assert "prompt" not in m["framecast"]  # not unless the user opts in
    frames, fps = read_mp4(path)
    assert watermark.detect(frames).id == int(record["watermark_id"], 16) and fps == pytest.approx(12)
    key = config_dir / "c2pa" / "signer.key"
    assert key.stat().st_mode & 0o077 == 0


def test_trusted_with_the_root_as_anchor(signed, config_dir, monkeypatch):
    monkeypatch.setenv("FRAMECAST_C2PA_TRUST_ANCHORS", str(config_dir / "c2pa" / "root.pem"))
    assert read_manifest(signed[0])["status"] == "trusted"


def test_one_changed_byte_of_video_makes_c2pa_invalid(signed, tmp_path):
    data = bytearray(signed[0].read_bytes())
    data[data.index(b"mdat") + 64] ^= 0xFF
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(data)
    m = read_manifest(tampered)
    assert m["status"] == "invalid" and "mismatch" in m["reason"]


def test_supplied_certificate_and_key(signed, config_dir, monkeypatch, tmp_path, clip):
    folder = config_dir / "c2pa"
    monkeypatch.setenv("FRAMECAST_C2PA_CERT", str(folder / "chain.pem"))
    monkeypatch.setenv("FRAMECAST_C2PA_KEY", str(folder / "signer.key"))
    record = write_marked_mp4(tmp_path / "env.mp4", clip[:4], 12, Generation("tiny", prompt="a red ball"))
    assert record["credentials"] == "environment"
    assert read_manifest(tmp_path / "env.mp4")["framecast"]["prompt"] == "a red ball"
    monkeypatch.delenv("FRAMECAST_C2PA_KEY")
    with pytest.raises(ValueError, match="FRAMECAST_C2PA_KEY"):
        write_marked_mp4(tmp_path / "half.mp4", clip[:4], 12, Generation("tiny"))


def test_verify_reads_both_witnesses(signed, tmp_path, clip):
    report = verify_file(signed[0])
    assert report["framecast"] and report["c2pa"]["status"] == "valid"
    assert report["watermark"]["detected"] and report["watermark"]["id"] == signed[1]["watermark_id"]
    write_mp4(tmp_path / "plain.mp4", clip, 12)
    plain = verify_file(tmp_path / "plain.mp4")
    assert not plain["framecast"] and plain["c2pa"]["status"] == "absent" and not plain["watermark"]["detected"]
    assert plain["verdict"].startswith("no framecast provenance")


def test_a_mark_the_encoder_loses_is_made_again_stronger(tmp_path, signed):
    """Busy 32x32 frames (what an untrained model makes) can lose the standard mark to H.264; every
    file written still verifies, and clips that keep it are not marked any harder."""
    busy = np.clip(np.random.default_rng(0).normal(128, 30, (8, 32, 32, 3)), 0, 255).astype(np.uint8)
    write_mp4(tmp_path / "standard.mp4", watermark.embed(busy, 7), 8)
    assert not watermark.detect(read_mp4(tmp_path / "standard.mp4")[0]).detected  # the case this is for
    record = write_marked_mp4(tmp_path / "busy.mp4", busy, 8, Generation("tiny"))
    assert record["watermark_read"] and record["watermark_strength"] > watermark.STRENGTH
    mark = verify_file(tmp_path / "busy.mp4")["watermark"]
    assert mark["detected"] and mark["id"] == record["watermark_id"]
    assert signed[1]["watermark_read"] and signed[1]["watermark_strength"] == watermark.STRENGTH


def test_a_mark_no_strength_keeps_is_written_at_the_standard_one(tmp_path):
    still_noise = np.repeat(np.random.default_rng(0).normal(128, 30, (1, 32, 32, 3)), 8, 0)
    with pytest.warns(UserWarning, match="could not be read back"):
        record = write_marked_mp4(tmp_path / "noise.mp4", np.clip(still_noise, 0, 255).astype(np.uint8), 8,
                                  Generation("tiny"))
    assert not record["watermark_read"] and record["watermark_strength"] == watermark.STRENGTH
    assert read_manifest(tmp_path / "noise.mp4")["status"] == "valid"  # the credentials still say what it is


def _circling_ball(steps: int = 48) -> np.ndarray:
    """A loop: a ball going once round a small circle, (steps, 64, 64, 3) uint8."""
    yy, xx = np.mgrid[:64, :64]
    frames = np.empty((steps, 64, 64, 3), np.uint8)
    for t in range(steps):
        a = 2 * np.pi * t / steps
        frames[t] = (20, 20, 60)
        frames[t][(xx - 32 - 3 * np.cos(a)) ** 2 + (yy - 40 - 3 * np.sin(a)) ** 2 < 36] = (220, 40, 40)
    return frames


def test_a_loop_is_encoded_without_a_seam_and_keeps_its_provenance(tmp_path):
    frames = _circling_ball()
    record = write_marked_mp4(tmp_path / "loop.mp4", frames, 12, Generation("tiny"), loop=True)
    written, _ = read_mp4(tmp_path / "loop.mp4")
    assert seam_ratio(frames) < 1.1  # the source closes like any other step
    assert seam_ratio(written) < 1.5  # at crf 18 the finer keyframe made this seam 1.97 steps
    write_marked_mp4(tmp_path / "clip.mp4", frames, 12, Generation("tiny"))
    assert psnr(written, frames) > psnr(read_mp4(tmp_path / "clip.mp4")[0], frames) - 0.3  # no worse than a clip
    report = verify_file(tmp_path / "loop.mp4")
    assert report["c2pa"]["status"] == "valid" and report["watermark"]["id"] == record["watermark_id"]


# --- the command line -------------------------------------------------------------------------

def run(*args, env=None):
    cmd = [str(FRAMECAST)] if FRAMECAST.exists() else [sys.executable, "-m", "framecast"]
    return subprocess.run(cmd + [str(a) for a in args], check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One `framecast generate` with a tiny model (64x64, 2 s at 8 fps), shared by the CLI tests."""
    folder = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = Framecast(PRESETS["tiny"], dataclasses.replace(ModelMeta(fps=8.0, width=64, height=64, steps=2)),
                      text=nn.Identity())  # the text encoder is not part of the folder
    model.save(folder / "model")
    out = folder / "out.mp4"
    env = {"FRAMECAST_CONFIG_DIR": str(folder / "config")}
    res = run("generate", "a red ball moves to the right", "--model", folder / "model", "--seconds", 2, "-o", out,
              "--include-prompt", env=env)
    assert res.returncode == 0, res.stderr
    return out, res, env


def test_generate_writes_credentials_and_watermark(generated):
    out, res, env = generated
    assert "watermark" in res.stdout and "C2PA signed" in res.stdout
    v = run("verify", out, "--json", env=env)
    assert v.returncode == 0, v.stderr
    report = json.loads(v.stdout)
    assert set(report) >= {"c2pa", "watermark", "verdict"}
    assert report["c2pa"]["status"] == "valid" and report["c2pa"]["claim_generator"] == "framecast"
    assert report["c2pa"]["framecast"]["prompt"] == "a red ball moves to the right"
    assert report["watermark"]["detected"] and report["watermark"]["id"] == report["c2pa"]["framecast"]["watermark_id"]
    assert report["watermark"]["confidence"] > 0.999999


def test_stripped_copy_still_verifies_by_watermark(generated, tmp_path):
    out, _, env = generated
    frames, fps = read_mp4(out)
    write_mp4(tmp_path / "copy.mp4", frames, fps, crf=23)  # re-encoded: the manifest is gone
    v = run("verify", tmp_path / "copy.mp4", env=env)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "C2PA:      absent" in v.stdout and "watermark: detected" in v.stdout and "stripped" in v.stdout


def test_verify_exit_codes(tmp_path):
    write_mp4(tmp_path / "plain.mp4", make_clip(5, 2, 12, 64, 64).frames, 12)
    v = run("verify", tmp_path / "plain.mp4")
    assert v.returncode == 1 and "no framecast provenance" in v.stdout
    (tmp_path / "notes.txt").write_text("not a video")
    for path, message in ((tmp_path / "missing.mp4", "no such file"), (tmp_path / "notes.txt", "not a readable video")):
        v = run("verify", path)
        assert v.returncode == 2 and message in v.stderr and "Traceback" not in v.stderr
