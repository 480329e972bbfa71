"""Your own videos as a training set: `framecast data index SRC --out DIR`.

SRC is a folder of videos (mp4, mov, webm, mkv; subfolders too) with captions from a CSV or
JSONL file of path and caption (`--captions FILE`, or SRC/captions.csv or SRC/captions.jsonl),
or from a sidecar NAME.txt beside each video. Each video is probed and decoded once with PyAV,
frame by frame:

- scene cuts: the mean absolute difference of consecutive frames (RGB 32x32 thumbnails, 0-255)
  above `cut_threshold` and `cut_ratio` times the recent mean difference starts a new scene
  (a fast pan raises every difference, a cut only one);
- each scene, sampled at `fps`, is cut into clips greedily, each as long as the longest duration
  bucket (`frames`) that still fits; a scene shorter than the shortest bucket is dropped (too
  short), and so is a clip whose frames hardly change (mean absolute frame difference below
  `min_motion`: static);
- each clip is scaled to cover the size bucket nearest its aspect ratio and centre-cropped.

DIR is a shard folder in the format of framecast.data.shards (every shard holds one bucket, so
`framecast train --data DIR` and ShardStream batch by bucket); each clip's JSON holds its caption
(also as its prompt), source file, start and end in seconds, scene number and fps.
DIR/report.json lists what was indexed, dropped and skipped: unreadable files and files without
a caption are reported and skipped, never fatal.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .shards import (FORMAT, FORMAT_VERSION, INDEX_NAME, ShardWriter, folder_lock, read_index, remove_stale_temps,
                     sample_key, shard_name, write_index)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv")
CAPTION_FILES = ("captions.csv", "captions.jsonl")
REPORT_NAME = "report.json"
THUMB = 32  # cut detection looks at THUMB x THUMB RGB thumbnails (colour: a cut may keep the brightness)


@dataclass(frozen=True)
class IndexConfig:
    """How videos become clips. sizes: (width, height) buckets; frames: clip lengths (1 + 4k
    suits the video VAE); sizes should be multiples of 16 for framecast's models."""

    sizes: tuple[tuple[int, int], ...] = ((64, 64), (112, 64), (64, 112))
    frames: tuple[int, ...] = (17, 49)
    fps: float = 12.0
    cut_threshold: float = 30.0
    cut_ratio: float = 3.0
    min_motion: float = 0.5
    shard_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "sizes", tuple((int(w), int(h)) for w, h in self.sizes))
        object.__setattr__(self, "frames", tuple(sorted({int(f) for f in self.frames})))
        if not self.sizes or any(w < 2 or h < 2 for w, h in self.sizes):
            raise ValueError(f"sizes must be at least 2x2, got {self.sizes}")
        if not self.frames or self.frames[0] < 2:
            raise ValueError(f"clip lengths must be at least 2 frames, got {self.frames}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.shard_size < 1:
            raise ValueError(f"shard size must be at least 1, got {self.shard_size}")

    def size_for(self, aspect: float) -> tuple[int, int]:
        """The size bucket whose aspect ratio is nearest (in log ratio) to width / height = aspect."""
        return min(self.sizes, key=lambda s: abs(math.log(s[0] / s[1] / aspect)))


@dataclass
class VideoResult:
    """What one video gave: clips as (frames (T, H, W, 3) uint8, meta), and what was not kept."""

    path: str
    clips: list = field(default_factory=list)
    scenes: int = 0
    too_short: int = 0
    static: int = 0
    error: str | None = None  # unreadable: nothing kept
    damaged: str | None = None  # decoding stopped part way: the clips before it are kept


# ---------------------------------------------------------------------------- captions

def _pick(row: dict, names: tuple[str, ...]):
    for n in names:
        if row.get(n) not in (None, ""):
            return row[n]
    return None


def read_captions(path: Path, src: Path) -> dict[Path, str]:
    """A CSV (with a header naming path and caption columns, or two columns path,caption) or a
    JSONL file ({"path": ..., "caption": ...} per line) -> {resolved video path: caption}.
    Paths are relative to src unless absolute."""
    rows: list[tuple[str, str]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
            rows.append((_pick(obj, ("path", "video", "file")), _pick(obj, ("caption", "text", "prompt"))))
    else:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
        header = [h.strip().lower() for h in table[0]] if table else []
        if {"path", "video", "file"} & set(header) and {"caption", "text", "prompt"} & set(header):
            rows = [(_pick(dict(zip(header, r)), ("path", "video", "file")),
                     _pick(dict(zip(header, r)), ("caption", "text", "prompt"))) for r in table[1:]]
        else:
            rows = [(r[0], ",".join(r[1:])) for r in table if len(r) >= 2]
    out = {}
    for p, caption in rows:
        if p and caption and caption.strip():
            out[(src / p).resolve()] = caption.strip()
    return out


def find_videos(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(src).parts))


def caption_for(video: Path, captions: dict[Path, str]) -> str | None:
    caption = captions.get(video.resolve())
    if caption is None and video.with_suffix(".txt").is_file():
        caption = video.with_suffix(".txt").read_text().strip() or None
    return caption


# ---------------------------------------------------------------------------- one video

def motion(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames (0-255): 0 for a still picture."""
    if len(frames) < 2:
        return 0.0
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())


def _cover(w: int, h: int, size: tuple[int, int]) -> tuple[int, int]:
    """The frame size that covers `size` at the source's aspect ratio (then centre-cropped)."""
    scale = max(size[0] / w, size[1] / h)
    return max(size[0], round(w * scale)), max(size[1], round(h * scale))


def _crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = frame.shape[:2]
    y, x = (h - size[1]) // 2, (w - size[0]) // 2
    return frame[y:y + size[1], x:x + size[0]]


class _Scenes:
    """Cut detection over a stream of thumbnails: feed() says whether a frame starts a scene."""

    def __init__(self, threshold: float, ratio: float):
        self.threshold, self.ratio = threshold, ratio
        self.prev: np.ndarray | None = None
        self.recent: deque = deque(maxlen=8)

    def feed(self, thumb: np.ndarray) -> bool:
        thumb = thumb.astype(np.float32)
        cut = False
        if self.prev is not None:
            d = float(np.abs(thumb - self.prev).mean())
            base = float(np.mean(self.recent)) if self.recent else 0.0
            cut = d >= self.threshold and d >= self.ratio * base
            if cut:
                self.recent.clear()
            else:
                self.recent.append(d)
        self.prev = thumb
        return cut


def index_video(path: str, caption: str, cfg: IndexConfig, rel: str | None = None) -> VideoResult:
    """Decode one video into clips (see the module's notes); errors become the result's error."""
    import av

    result = VideoResult(rel or path)
    try:
        container = av.open(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported, never fatal
        result.error = f"unreadable: {_reason(e)}"
        return result
    with container:
        if not container.streams.video:
            result.error = "no video stream"
            return result
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        sar = float(stream.sample_aspect_ratio or ctx.sample_aspect_ratio or 1) or 1.0
        if not (ctx.width and ctx.height):
            result.error = "unreadable: no frame size"
            return result
        aspect = ctx.width * sar / ctx.height
        size = cfg.size_for(aspect)
        cover = _cover(round(ctx.height * aspect), ctx.height, size)
        scenes = _Scenes(cfg.cut_threshold, cfg.cut_ratio)
        scene: list[np.ndarray] = []
        scene_start, t0, next_t, last_t = 0.0, None, 0.0, 0.0
        step = 1.0 / cfg.fps
        try:
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else i / float(stream.average_rate or cfg.fps)
                t0 = t if t0 is None else t0
                t, last_t = t - t0, t - t0
                if scenes.feed(frame.to_ndarray(width=THUMB, height=THUMB, format="rgb24")):
                    _flush(scene, scene_start, result, caption, size, cfg)
                    scene, scene_start, next_t = [], t, t
                while next_t <= t + 1e-6:  # each sample time gets the first frame at or after it
                    rgb = frame.to_ndarray(width=cover[0], height=cover[1], format="rgb24", interpolation="AREA")
                    scene.append(np.ascontiguousarray(_crop(rgb, size)))
                    next_t += step
        except Exception as e:  # noqa: BLE001 - a damaged stream keeps what decoded before it
            if t0 is None:
                result.error = f"unreadable: {_reason(e)}"
                return result
            result.damaged = f"decoding stopped at {last_t:.1f} s: {_reason(e)}"
        if t0 is None:
            result.error = "unreadable: no frames"
            return result
        _flush(scene, scene_start, result, caption, size, cfg)
    return result


def _reason(e: Exception) -> str:
    return f"{type(e).__name__}: {e}".strip()[:300]


def _flush(scene: list, start: float, result: VideoResult, caption: str, size: tuple[int, int],
           cfg: IndexConfig) -> None:
    """Cut one scene (frames at cfg.fps from `start` seconds) into clips."""
    if not scene:
        return
    result.scenes += 1
    if len(scene) < cfg.frames[0]:
        result.too_short += 1
        return
    pos = 0
    while len(scene) - pos >= cfg.frames[0]:
        n = max(f for f in cfg.frames if f <= len(scene) - pos)
        frames = np.stack(scene[pos:pos + n])  # (T, H, W, 3)
        begin = start + pos / cfg.fps
        pos += n
        if motion(frames) < cfg.min_motion:
            result.static += 1
            continue
        meta = {"caption": caption, "prompt": caption, "source": result.path, "scene": result.scenes - 1,
                "start": round(begin, 3), "end": round(begin + n / cfg.fps, 3), "fps": cfg.fps,
                "seconds": round(n / cfg.fps, 6), "width": size[0], "height": size[1]}
        result.clips.append((frames, meta))


# ---------------------------------------------------------------------------- the folder

class _BucketShards:
    """One open shard per bucket; a full shard is closed and listed, in order of completion."""

    def __init__(self, out: Path, shard_size: int):
        self.out, self.shard_size = out, shard_size
        self.open: dict[tuple, ShardWriter] = {}
        self.done: list[dict] = []
        self.clips = 0

    def write(self, frames: np.ndarray, meta: dict) -> None:
        key = frames.shape
        w = self.open.get(key)
        if w is None:
            w = self.open[key] = ShardWriter(self.out / shard_name(len(self.done) + len(self.open)))
        w.write(sample_key(self.clips), {"json": {**meta, "index": self.clips}, "frames": frames})
        self.clips += 1
        if w.count >= self.shard_size:
            self._close(key)

    def _close(self, key) -> None:
        w = self.open.pop(key)
        w.close()
        self.done.append({"name": w.path.name, "clips": w.count, "shape": list(w.shape),
                          "bytes": w.path.stat().st_size})

    def close(self) -> list[dict]:
        for key in list(self.open):
            self._close(key)
        return self.done

    def abort(self) -> None:
        for w in self.open.values():
            w.abort()


def _prepare(out: Path) -> None:
    """An empty folder, or the leftovers of an interrupted index run (started over)."""
    if (out / INDEX_NAME).exists():
        index = read_index(out)
        if index.get("complete") or index.get("source") != "videos":
            raise ValueError(f"{out} already holds a data set; choose a new --out")
        for p in out.glob("shard-*.tar"):
            p.unlink()
    elif any(out.glob("shard-*.tar")):
        raise ValueError(f"{out} holds shards but no {INDEX_NAME}; choose a new --out")
    remove_stale_temps(out)


def index_videos(src: str | os.PathLike, out: str | os.PathLike, cfg: IndexConfig = IndexConfig(),
                 captions: str | os.PathLike | None = None, workers: int | None = None, progress: bool = True,
                 log=print) -> dict:
    """Index the videos in src into shards in out (see the module's notes); returns the report
    (also written to out/report.json). log(message) reports skipped and damaged files."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of videos")
    if captions is None:
        captions = next((src / n for n in CAPTION_FILES if (src / n).is_file()), None)
    elif not Path(captions).is_file():
        raise FileNotFoundError(f"no captions file at {captions}")
    table = read_captions(Path(captions), src) if captions else {}
    videos = find_videos(src)
    if not videos:
        raise FileNotFoundError(f"{src} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        _prepare(out)
        write_index(out, {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False, "clips": 0,
                          "source": "videos", "config": _config_json(cfg), "shards": []})
        return _index(src, out, cfg, table, videos, workers, progress, log, captions)


def _config_json(cfg: IndexConfig) -> dict:
    return {**asdict(cfg), "sizes": [list(s) for s in cfg.sizes], "frames": list(cfg.frames)}


def _index(src, out, cfg, table, videos, workers, progress, log, captions) -> dict:
    from tqdm import tqdm

    report = {"source": str(src), "captions": str(captions) if captions else "sidecar .txt", "videos": len(videos),
              "indexed": 0, "scenes": 0, "clips": 0, "dropped": {"too_short": 0, "static": 0}, "skipped": [],
              "damaged": [], "buckets": {}}
    jobs = []
    for v in videos:
        rel = str(v.relative_to(src))
        caption = caption_for(v, table)
        if caption is None:
            report["skipped"].append({"path": rel, "reason": "no caption"})
            log(f"skipped {rel}: no caption")
        else:
            jobs.append((str(v), caption, cfg, rel))
    t0 = time.perf_counter()
    shards = _BucketShards(out, cfg.shard_size)

    def say(message: str) -> None:  # above the progress bar, not through it
        with tqdm.external_write_mode(file=sys.stderr):
            log(message)

    try:
        with tqdm(total=len(jobs), unit="video", desc="indexing", disable=not progress, dynamic_ncols=True) as bar:
            for r in _results(jobs, workers):
                bar.update(1)
                _tally(report, r, say)
                for frames, meta in r.clips:
                    shards.write(frames, meta)
                    bucket = f"{frames.shape[2]}x{frames.shape[1]}x{frames.shape[0]}@{cfg.fps:g}"
                    report["buckets"][bucket] = report["buckets"].get(bucket, 0) + 1
    except BaseException:
        shards.abort()
        raise
    done = shards.close()
    counts = {tuple(s["shape"]): 0 for s in done}
    for s in done:
        counts[tuple(s["shape"])] += s["clips"]
    done.sort(key=lambda s: -counts[tuple(s["shape"])])  # the commonest bucket first: the model's default size
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "clips": shards.clips,
             "source": "videos", "config": _config_json(cfg), "shards": done,
             "bytes": sum(s["bytes"] for s in done)}
    write_index(out, index)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _tally(report: dict, r: VideoResult, log) -> None:
    if r.error is not None:
        report["skipped"].append({"path": r.path, "reason": r.error})
        log(f"skipped {r.path}: {r.error}")
        return
    if r.damaged is not None:
        report["damaged"].append({"path": r.path, "reason": r.damaged, "clips_kept": len(r.clips)})
        log(f"damaged {r.path}: {r.damaged}; kept {len(r.clips)} clips before it")
    report["indexed"] += 1
    report["scenes"] += r.scenes
    report["clips"] += len(r.clips)
    report["dropped"]["too_short"] += r.too_short
    report["dropped"]["static"] += r.static


def _results(jobs: list, workers: int | None):
    """index_video over the jobs, in order; workers > 1 decode in spawned processes, a few
    videos ahead (each result holds a video's clips in memory)."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if workers == 1:
        for job in jobs:
            yield index_video(*job)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        ahead: deque = deque()
        todo = iter(jobs)
        for job in todo:
            ahead.append(pool.submit(index_video, *job))
            if len(ahead) >= 2 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
