"""Shards of world clips: writer -> loader round trip, resuming, determinism, splitting, CLI."""

import fcntl
import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from framecast.cli import main
from framecast.data.shards import (ShardDataset, ShardWriter, collate, iter_shard, normalize_video, read_index,
                                   shard_name, split_shards, write_index)
from framecast.world import dataset as world_dataset
from framecast.world.clip import make_clip
from framecast.world.dataset import WorldDataConfig, write_world_shards
from framecast.world.export import clip_seed

TINY = dict(seconds=1.0, fps=8.0, width=32, height=32)


def write(out, n=5, shard_size=2, seed=0, workers=1, **kw):
    cfg = WorldDataConfig(n=n, seed=seed, shard_size=shard_size, **{**TINY, **kw})
    return cfg, write_world_shards(out, cfg, workers=workers, progress=False)


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*.tar"))}


def test_round_trip_matches_make_clip(tmp_path):
    cfg, index = write(tmp_path, n=5, shard_size=2, seed=3)
    assert [s["clips"] for s in index["shards"]] == [2, 2, 1]
    assert index["complete"] and index["clips"] == 5 and index["config"] == cfg.to_json()
    assert all(s["shape"] == [8, 32, 32, 3] for s in index["shards"])
    samples = [s for i in range(3) for s in iter_shard(tmp_path / shard_name(i))]
    assert [s["__key__"] for s in samples] == [f"{k:09d}" for k in range(5)]
    for k, s in enumerate(samples):
        clip = make_clip(clip_seed(3, k), 1, 8, 32, 32)
        assert s["frames"].dtype == np.uint8 and np.array_equal(s["frames"], clip.frames)
        assert {key: s["json"][key] for key in clip.meta()} == json.loads(json.dumps(clip.meta()))
        assert s["json"]["index"] == k and s["json"]["caption"] and s["json"]["prompt"]

    ds = ShardDataset(tmp_path, shuffle=False)
    assert ds.buckets == {(8, 32, 32, 3): 5} and ds.num_clips == 5
    items = list(ds)
    assert [it["meta"]["index"] for it in items] == list(range(5))
    for it, s in zip(items, samples):
        v = it["video"]
        assert v.shape == (3, 8, 32, 32) and v.dtype == torch.float32
        assert -1 <= v.min() and v.max() <= 1
        assert torch.equal(((v + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0), torch.from_numpy(s["frames"]))
        assert it["caption"] == s["json"]["caption"] and it["prompt"] == s["json"]["prompt"]

    raw = next(iter(ShardDataset(tmp_path, shuffle=False, normalize=False)))["video"]
    assert raw.dtype == torch.uint8 and torch.equal(normalize_video(raw), items[0]["video"])
    assert pickle.loads(pickle.dumps(ds)).num_clips == 5  # spawned DataLoader workers get a pickled copy

    batches = list(DataLoader(ds, batch_size=2, collate_fn=collate))
    assert [b["video"].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0]["video"].shape == (2, 3, 8, 32, 32) and len(batches[0]["caption"]) == 2


def test_given_frame_count_is_rendered_and_reproducible(tmp_path):
    cfg, index = write(tmp_path, n=2, frames=9)
    assert index["shards"][0]["shape"] == [9, 32, 32, 3]
    s = next(iter_shard(tmp_path / shard_name(0)))
    meta = s["json"]
    assert meta["seconds"] == pytest.approx(9 / 8)
    assert np.array_equal(make_clip(meta["seed"], meta["seconds"], meta["fps"], 32, 32).frames, s["frames"])
    with pytest.raises(ValueError, match="pass seconds of about"):
        WorldDataConfig(n=1, frames=40, **TINY)


def test_resume_rebuilds_only_missing_shards(tmp_path, monkeypatch):
    write(tmp_path, n=6, shard_size=2)
    before = shard_bytes(tmp_path)
    stamps = {n: (tmp_path / n).stat().st_mtime_ns for n in before}
    (tmp_path / shard_name(1)).unlink()
    (tmp_path / f".{shard_name(2)}.4242.tmp").write_bytes(b"half a shard")  # a killed writer's leftover
    built = []
    real = world_dataset.build_shard
    monkeypatch.setattr(world_dataset, "build_shard", lambda out, cfg, i, cb=None: built.append(i) or real(out, cfg, i, cb))
    write(tmp_path, n=6, shard_size=2)
    assert built == [1]
    assert shard_bytes(tmp_path) == before
    assert all((tmp_path / n).stat().st_mtime_ns == stamps[n] for n in before if n != shard_name(1))
    assert not list(tmp_path.glob(".*tmp"))
    write(tmp_path, n=6, shard_size=2)  # complete: nothing to do
    assert built == [1]


def test_interrupted_run_leaves_no_half_shard_and_resumes(tmp_path, monkeypatch):
    real = world_dataset.build_shard

    def crash_on_second(out, cfg, i, cb=None):
        if i == 1:
            with ShardWriter(out / shard_name(i)) as w:
                w.write("000000002", {"json": {}, "frames": np.zeros((8, 32, 32, 3), np.uint8)})
                raise KeyboardInterrupt
        return real(out, cfg, i, cb)

    monkeypatch.setattr(world_dataset, "build_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, n=6, shard_size=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["index.json", shard_name(0)]
    assert not read_index(tmp_path)["complete"]
    with pytest.raises(ValueError, match="incomplete"):
        ShardDataset(tmp_path)
    monkeypatch.setattr(world_dataset, "build_shard", real)
    write(tmp_path, n=6, shard_size=2)
    assert len(ShardDataset(tmp_path).shards) == 3 and read_index(tmp_path)["complete"]


def test_other_config_in_existing_folder_is_an_error(tmp_path):
    write(tmp_path, n=3)
    with pytest.raises(ValueError, match=r"another config \(seed 0 there vs 1 now\)"):
        write(tmp_path, n=3, seed=1)
    with pytest.raises(ValueError, match="n 3 there vs 4 now"):
        write(tmp_path, n=4)
    with open(tmp_path / ".lock") as f:  # as a second run writing to the folder would find it
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another process is writing"):
            write(tmp_path, n=3)


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    write(tmp_path / "a", n=5, shard_size=2, seed=7, workers=1)
    write(tmp_path / "b", n=5, shard_size=2, seed=7, workers=2)
    write(tmp_path / "c", n=5, shard_size=2, seed=8, workers=1)
    a, b, c = (shard_bytes(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 3
    assert a != c


def test_ranks_and_workers_cover_every_clip_once(tmp_path):
    write(tmp_path, n=11, shard_size=2)  # 6 shards, the last one short
    for epoch in (0, 1):
        keys = []
        for rank in range(2):
            ds = ShardDataset(tmp_path, shuffle=True, seed=5, rank=rank, world_size=2, epoch=epoch, shuffle_buffer=4)
            got = [m["key"] for b in DataLoader(ds, batch_size=None, num_workers=2) for m in [b["meta"]]]
            assert len(got) == ds.clips_for_rank()
            keys += got
        assert sorted(keys) == [f"{k:09d}" for k in range(11)]
    for ws, nw in ((3, 1), (2, 3), (4, 2)):
        parts = [split_shards(6, epoch=1, seed=0, shuffle=True, rank=r, world_size=ws, worker=w, num_workers=nw)
                 for r in range(ws) for w in range(nw)]
        assert sorted(i for p in parts for i in p) == list(range(6))


def test_shuffle_is_seeded_per_epoch(tmp_path):
    write(tmp_path, n=12, shard_size=2)

    def order(**kw):
        return [it["meta"]["index"] for it in ShardDataset(tmp_path, shuffle=True, shuffle_buffer=5, **kw)]

    assert order(seed=1, epoch=0) == order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) != order(seed=1, epoch=1)
    assert sorted(order(seed=2, epoch=3)) == list(range(12))
    ds = ShardDataset(tmp_path, shuffle=True, seed=1, shuffle_buffer=5, repeat=True)
    two = [it["meta"]["index"] for _, it in zip(range(24), ds)]
    assert two[:12] == order(seed=1, epoch=0) and two[12:] == order(seed=1, epoch=1)


def test_buckets_batch_uniformly(tmp_path):
    shapes = [(4, 8, 8, 3), (2, 8, 16, 3), (4, 8, 8, 3)]
    entries = []
    for i, shape in enumerate(shapes):
        with ShardWriter(tmp_path / shard_name(i)) as w:
            for j in range(3):
                w.write(f"{i}x{j}", {"json": {"caption": f"c{i}{j}", "prompt": "p"}, "frames": np.full(shape, 9 * i + j, np.uint8)})
            with pytest.raises(ValueError, match="one shape"):
                w.write("odd", {"frames": np.zeros((1, 8, 8, 3), np.uint8)})
        entries.append({"name": shard_name(i), "clips": w.count, "shape": list(w.shape)})
    write_index(tmp_path, {"format": "framecast-shards", "format_version": 1, "complete": True, "clips": 9, "shards": entries})
    ds = ShardDataset(tmp_path, shuffle=True, seed=0, batch_size=2, shuffle_buffer=9)
    assert ds.buckets == {(4, 8, 8, 3): 6, (2, 8, 16, 3): 3}
    batches = list(ds)
    assert sum(len(b["caption"]) for b in batches) == 9
    assert all(b["video"].shape[0] == len(b["caption"]) for b in batches)
    with pytest.raises(ValueError, match="mixes video shapes"):
        collate(list(ShardDataset(tmp_path, shuffle=False))[2:4])


def test_cli_writes_shards_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["world", "shards", "--n", "3", "--out", str(out), "--size", "32x32", "--seconds", "1", "--fps", "8",
            "--shard-size", "2", "--workers", "1", "--seed", "4"]
    assert main(args) == 0
    assert "3 clips in 2 shards" in capsys.readouterr().out
    assert ShardDataset(out).num_clips == 3
    assert main(args) == 0  # resumes: nothing to do
    for bad, message in ((["--n", "0"], "--n must be at least 1"), (["--shard-size", "0"], "shard size must be at least 1"),
                         (["--seed", "5"], "another config"), (["--workers", "0"], "workers must be at least 1")):
        assert main(args + bad) == 2
        assert message in capsys.readouterr().err
