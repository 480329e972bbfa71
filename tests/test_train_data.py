"""Training data sources: buckets, world clips on the fly, shard folders, cached latents; exact resume."""

import json

import numpy as np
import pytest
import torch

from framecast.config import PRESETS
from framecast.data.shards import iter_shard, read_index, shard_name, write_index
from framecast.models.text import TextEncoder
from framecast.models.vae import VideoVAE
from framecast.train.data import (Bucket, LatentStream, ShardStream, WorldStream, cache_latents, latent_stats,
                                  parse_buckets, vae_fingerprint)
from framecast.train.trainer import bf16_autocast
from framecast.world.clip import make_clip
from framecast.world.dataset import WorldDataConfig, write_world_shards

BUCKETS = "32x32x5@8,48x32x9@8*2"


def take(stream, n):
    return [stream.next() for _ in range(n)]


def same(a: dict, b: dict) -> bool:
    """Batches equal bit for bit (tensors) and value for value (everything else)."""
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


def clip_ids(batches):
    return [(m["shard"], m["key"]) for b in batches for m in b["meta"]]


# ---------------------------------------------------------------------------- buckets

def test_parse_buckets():
    bs = parse_buckets(" 64x64x17@12, 96x64x17@12*2.5 ,64x96x9@7.5")
    assert bs == [Bucket(64, 64, 17, 12.0), Bucket(96, 64, 17, 12.0, 2.5), Bucket(64, 96, 9, 7.5)]
    assert parse_buckets(",".join(map(str, bs))) == bs  # str() writes the syntax back
    assert bs[0].seconds == pytest.approx(17 / 12)


@pytest.mark.parametrize("text, message", [
    ("", "no buckets given"),
    ("64x64", "expected WIDTHxHEIGHTxFRAMES@FPS"),
    ("64x64x17", "expected WIDTHxHEIGHTxFRAMES@FPS"),
    ("64x64x17@12,", "no buckets given|expected WIDTHxHEIGHTxFRAMES@FPS"),
    ("64x64x17@twelve", "expected WIDTHxHEIGHTxFRAMES@FPS"),
    ("64x64x-1@12", "expected WIDTHxHEIGHTxFRAMES@FPS"),
    ("0x64x17@12", "size must be between"),
    ("64x64x0@12", "at least 1 frame"),
    ("64x64x17@0", "fps must be positive"),
    ("64x64x17@12*0", "weight must be positive"),
    ("64x64x17@12,64x64x17@12*3", "given twice"),
])
def test_bad_bucket_strings(text, message):
    with pytest.raises(ValueError, match=message):
        parse_buckets(text)


# ---------------------------------------------------------------------------- world clips

def test_world_stream_batches():
    stream = WorldStream(BUCKETS, batch_size=2, seed=0)
    batches = take(stream, 8)
    shapes = {tuple(b["video"].shape) for b in batches}
    assert shapes == {(2, 3, 5, 32, 32), (2, 3, 9, 32, 48)}
    for b in batches:
        v = b["video"]
        assert v.dtype == torch.float32 and -1 <= v.min() and v.max() <= 1
        assert len(b["caption"]) == len(b["prompt"]) == 2 and all(b["caption"]) and all(b["prompt"])
    # batch 0 is exactly the clips its plan names
    bucket, seeds = stream.plan(0)
    clip = make_clip(seeds[1], bucket.seconds, bucket.fps, bucket.width, bucket.height)
    assert torch.equal(batches[0]["video"][1], torch.from_numpy(clip.frames).permute(3, 0, 1, 2).float() / 127.5 - 1)
    assert batches[0]["caption"][1] == clip.caption and batches[0]["prompt"][1] == clip.prompt

    again = take(WorldStream(BUCKETS, batch_size=2, seed=0), 8)
    assert all(same(a, b) for a, b in zip(batches, again))
    other = take(WorldStream(BUCKETS, batch_size=2, seed=1), 8)
    pairs = [(a["video"], b["video"]) for a, b in zip(batches, other) if a["video"].shape == b["video"].shape]
    assert pairs and not any(torch.equal(a, b) for a, b in pairs)
    assert [b["caption"] for b in batches] != [b["caption"] for b in other]


@pytest.mark.parametrize("workers", [0, 2])
def test_world_stream_resumes_exactly(workers):
    ref = WorldStream(BUCKETS, batch_size=2, seed=5)
    take(ref, 3)
    state = ref.state_dict()
    assert json.loads(json.dumps(state)) == state == {"batch": 3}
    expected = take(ref, 2)
    with WorldStream(BUCKETS, batch_size=2, seed=5, workers=workers) as fresh:
        fresh.load_state_dict(state)
        assert all(same(a, b) for a, b in zip(expected, take(fresh, 2)))
        fresh.load_state_dict(state)  # rewinding drops what the workers rendered ahead
        assert same(fresh.next(), expected[0])


def test_world_stream_ranks_interleave():
    single = take(WorldStream(BUCKETS, batch_size=1, seed=2), 4)
    ranks = [take(WorldStream(BUCKETS, batch_size=1, seed=2, rank=r, world_size=2), 2) for r in range(2)]
    assert all(same(a, b) for a, b in zip(single, [ranks[0][0], ranks[1][0], ranks[0][1], ranks[1][1]]))


# ---------------------------------------------------------------------------- shard folders

def _world_set(out, frames, n, seed):
    cfg = WorldDataConfig(n=n, seconds=frames / 8, fps=8, width=32, height=32, frames=frames, seed=seed,
                          shard_size=2)
    return write_world_shards(out, cfg, workers=1, progress=False)


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory):
    """12 clips in 6 shards of 2, in two buckets (32x32, 5 and 9 frames), in one folder."""
    root = tmp_path_factory.mktemp("frames")
    shards = []
    for frames, seed in ((5, 0), (9, 1)):
        part = root / f"part{frames}"
        for s in _world_set(part, frames, 6, seed)["shards"]:
            name = shard_name(len(shards))
            (part / s["name"]).rename(root / name)
            shards.append({**s, "name": name})
    write_index(root, {"format": "framecast-shards", "format_version": 1, "complete": True, "clips": 12,
                       "source": "world", "shards": shards})
    return root


def test_shard_stream_resumes_across_epochs(frames_root):
    ref = ShardStream(frames_root, batch_size=2, seed=3)
    first_epoch = take(ref, 6)  # 6 clips of each bucket: 3 full batches each
    assert len(set(clip_ids(first_epoch))) == 12
    assert {tuple(b["video"].shape) for b in first_epoch} == {(2, 3, 5, 32, 32), (2, 3, 9, 32, 32)}
    assert ref.state_dict() == {"epoch": 0, "batch_in_epoch": 6}

    ref = ShardStream(frames_root, batch_size=2, seed=3)
    take(ref, 5)
    state = json.loads(json.dumps(ref.state_dict()))
    expected = take(ref, 3)  # the last batch of epoch 0, then two of epoch 1
    assert ref.state_dict() == {"epoch": 1, "batch_in_epoch": 2}
    assert clip_ids(expected[1:]) != clip_ids(first_epoch[:2])  # epoch 1 is shuffled anew
    fresh = ShardStream(frames_root, batch_size=2, seed=3)
    fresh.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(expected, take(fresh, 3)))


def test_shard_stream_splits_ranks(frames_root):
    seen = []
    for rank in range(2):
        s = ShardStream(frames_root, batch_size=1, seed=0, rank=rank, world_size=2)
        batches = []
        while s.state_dict()["epoch"] == 0:
            batches.append(s.next())
        seen.append(clip_ids(batches[:-1]))  # the last one opened epoch 1
    assert len(seen[0]) == len(seen[1]) == 6
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 12
    with pytest.raises(ValueError, match="fewer than the 7 ranks"):
        ShardStream(frames_root, batch_size=1, world_size=7, rank=0)
    with pytest.raises(ValueError, match="no full batch of 7"):
        ShardStream(frames_root, batch_size=7).next()


# ---------------------------------------------------------------------------- cached latents

@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder()


def tiny_vae(seed):
    torch.manual_seed(seed)
    return VideoVAE(PRESETS["tiny"].vae)


@pytest.fixture(scope="module")
def latents_root(frames_root, text_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("latents")
    cache_latents(tiny_vae(0), text_encoder, frames_root, out, batch_size=3, progress=False)
    return out


def test_cache_latents_layout(frames_root, latents_root, text_encoder):
    index = read_index(latents_root)
    assert index["complete"] and index["clips"] == 12 and index["latents"]["dtype"] == "float16"
    assert [s["shape"] for s in index["shards"]] == [[4, 2, 4, 4]] * 3 + [[4, 3, 4, 4]] * 3
    vae = tiny_vae(0)
    src, got = next(iter_shard(frames_root / shard_name(3))), next(iter_shard(latents_root / shard_name(3)))
    assert got["__key__"] == src["__key__"] and got["json"] == src["json"]
    z = got["latents"]
    assert z.dtype == np.float16 and z.shape == (4, 3, 4, 4)
    # the cache runs the VAE under the same autocast as training (bf16 where the CPU has it)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast(torch.device("cpu")))
    with torch.no_grad(), autocast:
        video = torch.from_numpy(src["frames"]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        want = vae.encode(video).mean[0].float()
    torch.testing.assert_close(torch.from_numpy(z).float(), want, atol=2e-3, rtol=2e-3)
    for name in ("caption", "prompt"):
        tokens, mask = text_encoder([src["json"][name]])
        t = got[f"{name}_tokens"]
        assert t.dtype == np.float16 and t.shape == (int(mask.sum()), 384)
        torch.testing.assert_close(torch.from_numpy(t).float(), tokens[0], atol=2e-3, rtol=2e-3)


def test_cache_latents_of_the_leading_shards_then_of_all(frames_root, latents_root, text_encoder, tmp_path):
    index = cache_latents(tiny_vae(0), text_encoder, frames_root, tmp_path, batch_size=3, progress=False, max_clips=3)
    assert index["complete"] and index["clips"] == 4 and len(index["shards"]) == 2  # 2 clips a shard
    stream = LatentStream(tmp_path, batch_size=2, seed=0, vae=tiny_vae(0))
    assert {m["shard"] for _ in range(6) for m in stream.next()["meta"]} <= {shard_name(0), shard_name(1)}
    first = (tmp_path / shard_name(0)).stat().st_mtime_ns
    index = cache_latents(tiny_vae(0), text_encoder, frames_root, tmp_path, batch_size=3, progress=False)
    assert index["clips"] == 12 and (tmp_path / shard_name(0)).stat().st_mtime_ns == first  # kept, not redone
    assert all((tmp_path / s["name"]).read_bytes() == (latents_root / s["name"]).read_bytes() for s in index["shards"])


def test_latent_stream_batches_and_resume(latents_root):
    ref = LatentStream(latents_root, batch_size=3, seed=1, vae=tiny_vae(0))
    batches = take(ref, 3)
    for b in batches:
        assert b["latents"].dtype == torch.float32 and b["latents"].shape[:2] == (3, 4)
        assert b["latents"].shape[2:] in {(2, 4, 4), (3, 4, 4)}
        assert len(b["caption"]) == len(b["prompt"]) == 3
        for name in ("caption", "prompt"):
            tokens, mask = b[f"{name}_tokens"], b[f"{name}_mask"]
            assert tokens.dtype == torch.float32 and mask.dtype == torch.bool
            assert tokens.shape == (3, mask.shape[1], 384) and mask.any(1).all()
            assert mask[:, 0].all() and mask.sum(1).max() == mask.shape[1]  # padded to the longest
            assert (tokens[~mask] == 0).all() and (tokens[mask].abs().sum(-1) > 0).all()
    state = ref.state_dict()
    expected = take(ref, 3)  # crosses into epoch 1 (4 batches of 3 per epoch)
    fresh = LatentStream(latents_root, batch_size=3, seed=1)
    fresh.load_state_dict(state)
    assert all(same(a, b) for a, b in zip(expected, take(fresh, 3)))


def test_stale_or_wrong_caches_are_refused(frames_root, latents_root, text_encoder, tmp_path):
    other = tiny_vae(1)
    with pytest.raises(ValueError, match="stale"):
        LatentStream(latents_root, batch_size=2, vae=other)
    with pytest.raises(ValueError, match="stale"):
        cache_latents(other, text_encoder, frames_root, latents_root, progress=False)
    tuned = tiny_vae(0)
    with torch.no_grad():
        next(tuned.decoder.parameters()).add_(0.1)  # a fine-tuned decoder reads the same latents
    LatentStream(latents_root, batch_size=2, vae=tuned)
    exported = tiny_vae(0)  # as a model folder stores it: float16 weights, used in float32
    with torch.no_grad():
        for p in exported.parameters():
            p.copy_(p.half().float())
    LatentStream(latents_root, batch_size=2, vae=exported)  # so `--init` from a run's export reuses its cache
    signed = [tiny_vae(0) for _ in range(2)]  # a zero and a negative zero are the same weight
    with torch.no_grad():
        for vae, zero in zip(signed, (0.0, -0.0)):
            next(vae.encoder.parameters()).view(-1)[0] = zero
    assert vae_fingerprint(signed[0]) == vae_fingerprint(signed[1])
    nudged = tiny_vae(0)
    with torch.no_grad():
        next(nudged.encoder.parameters()).add_(1e-2)
    with pytest.raises(ValueError, match="stale"):
        LatentStream(latents_root, batch_size=2, vae=nudged)
    with pytest.raises(ValueError, match="holds frames, not cached latents"):
        LatentStream(frames_root, batch_size=2)
    with pytest.raises(ValueError, match="already holds cached latents"):
        cache_latents(other, text_encoder, latents_root, tmp_path / "x", progress=False)
    _world_set(tmp_path / "six", 6, 1, 0)
    with pytest.raises(ValueError, match="1 \\+ 4k frames"):
        cache_latents(other, text_encoder, tmp_path / "six", tmp_path / "y", progress=False)


def test_cache_latents_resumes_per_shard(frames_root, text_encoder, tmp_path):
    part = tmp_path / "part"  # a two-shard copy keeps this quick
    part.mkdir()
    shards = read_index(frames_root)["shards"][4:]
    for i, s in enumerate(shards):
        (part / shard_name(i)).write_bytes((frames_root / s["name"]).read_bytes())
    write_index(part, {"format": "framecast-shards", "format_version": 1, "complete": True, "clips": 4,
                       "shards": [{**s, "name": shard_name(i)} for i, s in enumerate(shards)]})
    out, vae = tmp_path / "lat", tiny_vae(0)
    cache_latents(vae, text_encoder, part, out, progress=False)
    kept, lost = out / shard_name(0), out / shard_name(1)
    mtime, data = kept.stat().st_mtime_ns, lost.read_bytes()
    lost.unlink()
    (out / ".shard-000001.tar.123.tmp").write_bytes(b"half")  # what a killed run leaves
    index = cache_latents(vae, text_encoder, part, out, progress=False)
    assert kept.stat().st_mtime_ns == mtime and lost.read_bytes() == data  # rebuilt alone, identically
    assert index["complete"] and not list(out.glob(".shard-*.tmp"))
    assert vae.training  # the caller's train/eval modes are restored


def test_latent_stats(latents_root):
    mean, std = latent_stats(latents_root)
    zs = [torch.from_numpy(s["latents"]).float().flatten(1) for i in range(6)
          for s in iter_shard(latents_root / shard_name(i))]
    z = torch.cat(zs, 1)  # (C, N)
    assert mean.shape == std.shape == (4,)
    torch.testing.assert_close(mean, z.mean(1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(std, z.std(1, correction=0), atol=1e-4, rtol=1e-4)
    m1, _ = latent_stats(latents_root, max_clips=1)
    assert not torch.equal(m1, mean)
