"""`framecast data index`: a folder of real videos -> scene-split, bucketed training shards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from framecast.data.shards import iter_shard, read_index
from framecast.data.videos import IndexConfig, read_captions
from framecast.train.data import ShardStream

FRAMECAST = Path(sys.executable).with_name("framecast")
SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
INDEX = ["--sizes", "32x32,48x32,32x48", "--frames", "9,17", "--fps", "8", "--workers", "1"]


def scene(w, h, n, bg, fg, speed=2, start=0):
    """n frames (n, h, w, 3): a square of colour fg sliding over a plain bg (speed 0: still)."""
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = bg
    s = max(4, min(w, h) // 5)
    for i in range(n):
        x = (start + speed * i) % (w - s)
        frames[i, h // 3:h // 3 + s, x:x + s] = fg
    return frames


def encode(path: Path, frames: np.ndarray, fps: int = 16) -> None:
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[path.suffix]
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Clips at 16:9, 9:16 and 1:1, one with a hard cut, one static, one too short, one corrupt."""
    src = tmp_path_factory.mktemp("videos")
    red, blue, grey, yellow = (200, 40, 40), (40, 60, 200), (128, 128, 128), (230, 220, 40)
    encode(src / "wide.mp4", scene(96, 54, 64, grey, red))  # 4 s at 16 fps
    encode(src / "tall.mkv", scene(54, 96, 32, grey, blue))  # 2 s
    encode(src / "square.mov", scene(64, 64, 80, blue, yellow))  # 5 s
    encode(src / "cut.mp4", np.concatenate([scene(64, 64, 40, red, yellow), scene(64, 64, 40, blue, grey, 3)]))
    encode(src / "static.mp4", scene(64, 64, 48, grey, red, speed=0))
    encode(src / "short.mp4", scene(64, 64, 16, grey, red))  # 1 s: 8 frames at 8 fps, under 9
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (src / "sub").mkdir()
    (src / "sub" / "stray.webm").write_bytes(b"not a video at all")
    rows = ["path,caption", "wide.mp4,a red square slides right", "tall.mkv,\"a blue square, sliding\"",
            "cut.mp4,two scenes", "static.mp4,nothing moves", "short.mp4,too short", "broken.mp4,broken",
            "sub/stray.webm,stray"]
    (src / "captions.csv").write_text("\n".join(rows) + "\n")
    (src / "square.txt").write_text("a yellow square on blue\n")  # a sidecar caption
    return src


@pytest.fixture(scope="module")
def indexed(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("indexed") / "set"
    res = subprocess.run([str(FRAMECAST), "data", "index", str(videos), "--out", str(out), *INDEX],
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 0, res.stderr
    return out, res


def clips(out: Path) -> list[dict]:
    index = read_index(out)
    got = []
    for s in index["shards"]:
        for sample in iter_shard(out / s["name"]):
            assert list(sample["frames"].shape) == s["shape"]  # one bucket per shard
            got.append({**sample["json"], "shape": sample["frames"].shape})
    return got


def test_index_buckets_splits_cuts_and_drops(indexed):
    out, res = indexed
    got = clips(out)
    by_source = {}
    for c in got:
        by_source.setdefault(c["source"], []).append(c)
    assert sorted(by_source) == ["cut.mp4", "square.mov", "tall.mkv", "wide.mp4"]
    # aspect ratio -> size bucket; duration -> the longest clip length that fits, greedily
    assert sorted(c["shape"] for c in by_source["wide.mp4"]) == [(9, 32, 48, 3), (17, 32, 48, 3)]
    assert [c["shape"] for c in by_source["tall.mkv"]] == [(9, 48, 32, 3)]
    assert [c["shape"] for c in by_source["square.mov"]] == [(17, 32, 32, 3)] * 2
    assert by_source["square.mov"][0]["caption"] == "a yellow square on blue"  # from the sidecar
    assert by_source["tall.mkv"][0]["caption"] == "a blue square, sliding"
    # the hard cut at 2.5 s splits the video: one clip per scene, the second starting at the cut
    cut = sorted(by_source["cut.mp4"], key=lambda c: c["start"])
    assert [c["scene"] for c in cut] == [0, 1]
    assert cut[0]["start"] == 0 and cut[1]["start"] == pytest.approx(2.5, abs=0.07)
    assert cut[0]["end"] <= cut[1]["start"]
    report = json.loads((out / "report.json").read_text())
    assert report["videos"] == 8 and report["indexed"] == 6 and report["clips"] == len(got) == 7
    assert report["dropped"] == {"too_short": 1, "static": 1}
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"broken.mp4", "sub/stray.webm"} and all("unreadable" in r for r in skipped.values())
    assert "skipped broken.mp4" in res.stderr and "7 clips" in res.stdout
    assert report["buckets"] == {"32x32x17@8": 4, "48x32x17@8": 1, "48x32x9@8": 1, "32x48x9@8": 1}
    index = read_index(out)
    assert index["complete"] and index["clips"] == 7 and index["shards"][0]["shape"] == [17, 32, 32, 3]


def test_indexed_clips_load_as_training_batches(indexed):
    out, _ = indexed
    stream = ShardStream(out, 4, seed=0)  # only the 1:1 bucket holds 4 clips
    batch = stream.next()
    assert batch["video"].shape == (4, 3, 17, 32, 32) and batch["video"].min() >= -1
    assert all(c in ("a yellow square on blue", "two scenes") for c in batch["caption"])


def test_train_on_indexed_videos(indexed, tmp_path):
    out, _ = indexed
    res = subprocess.run([str(FRAMECAST), "train", "--preset", "tiny", "--data", str(out), "--steps", "2",
                          "--batch-size", "2", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=600, env=ENV)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert (cfg["meta"]["width"], cfg["meta"]["height"], cfg["meta"]["fps"]) == (32, 32, 8)
    assert cfg["meta"]["best_of"] == 1  # the world's checks say nothing of your own videos: one candidate


def test_an_indexed_folder_is_not_overwritten(indexed, videos):
    out, _ = indexed
    res = subprocess.run([str(FRAMECAST), "data", "index", str(videos), "--out", str(out)], capture_output=True,
                         text=True, timeout=60, env=ENV)
    assert res.returncode == 2 and "already holds a data set" in res.stderr


def test_caption_files(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"path": "a.mp4", "caption": "one"}\n\n{"video": "b/c.mov", "text": "two"}\n')
    (tmp_path / "c.csv").write_text("a.mp4,one, with a comma\nb.mp4,\n")
    assert read_captions(tmp_path / "c.jsonl", tmp_path) == {tmp_path / "a.mp4": "one", tmp_path / "b/c.mov": "two"}
    assert read_captions(tmp_path / "c.csv", tmp_path) == {tmp_path / "a.mp4": "one, with a comma"}
    with pytest.raises(ValueError, match="sizes"):
        IndexConfig(sizes=())
