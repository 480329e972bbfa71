"""A training data set of world clips, written as shards (see framecast.data.shards).

Clip k of a data set is `make_clip(clip_seed(cfg.seed, k), cfg.clip_seconds, cfg.fps, W, H)`,
so any clip can be rebuilt from its JSON. Shard i holds clips [i * shard_size, (i + 1) *
shard_size). Worker processes each build one shard at a time, a clip at a time, so memory
stays flat however many clips there are; re-running the same command finishes what an
interrupted run left (complete shards are kept, temp files are dropped).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue as queue_lib
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from ..data.shards import (FORMAT, FORMAT_VERSION, INDEX_NAME, ShardWriter, folder_lock, read_index,
                           remove_stale_temps, sample_key, shard_name, write_index)
from . import spec
from .clip import Clip, check_clip_args, make_clip
from .export import clip_seed

# A given frame count may differ from seconds * fps by up to one latent frame of the 4x
# temporal VAE (e.g. 4 s at 12 fps -> 49 frames); a bigger gap is a mistake in the arguments.
FRAMES_SLACK = 4


@dataclass(frozen=True)
class WorldDataConfig:
    """What a world data set holds. frames (when given) fixes the clip length to frames / fps."""

    n: int
    seconds: float
    fps: float
    width: int
    height: int
    frames: int | None = None
    seed: int = 0
    shard_size: int = 64

    def __post_init__(self):
        for name in ("n", "width", "height", "seed", "shard_size"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "seconds", float(self.seconds))
        object.__setattr__(self, "fps", float(self.fps))
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.shard_size < 1:
            raise ValueError(f"shard size must be at least 1, got {self.shard_size}")
        check_clip_args(self.seconds, self.fps, self.width, self.height)
        if self.frames is not None:
            object.__setattr__(self, "frames", int(self.frames))
            if self.frames < 1:
                raise ValueError(f"frames must be at least 1, got {self.frames}")
            nominal = round(self.seconds * self.fps)
            if abs(self.frames - nominal) > FRAMES_SLACK:
                raise ValueError(f"{self.frames} frames at {self.fps:g} fps last {self.frames / self.fps:.3g} s, "
                                 f"but seconds is {self.seconds:g} ({nominal} frames); "
                                 f"pass seconds of about {self.frames / self.fps:.3g}")

    @property
    def num_frames(self) -> int:
        return self.frames if self.frames is not None else round(self.seconds * self.fps)

    @property
    def clip_seconds(self) -> float:
        """The simulated length: exactly num_frames frames at t = k / fps fall inside it."""
        return self.num_frames / self.fps if self.frames is not None else self.seconds

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.num_frames, self.height, self.width, 3)

    @property
    def num_shards(self) -> int:
        return math.ceil(self.n / self.shard_size)

    def shard_clips(self, i: int) -> range:
        return range(i * self.shard_size, min(self.n, (i + 1) * self.shard_size))

    def to_json(self) -> dict:
        return asdict(self)


def world_clip(cfg: WorldDataConfig, k: int) -> Clip:
    """Clip k of the data set `cfg` describes."""
    clip = make_clip(clip_seed(cfg.seed, k), cfg.clip_seconds, cfg.fps, cfg.width, cfg.height)
    if clip.frames.shape != cfg.shape:  # frames / fps * fps must round back to frames
        raise RuntimeError(f"clip {k} has shape {clip.frames.shape}, expected {cfg.shape}")
    return clip


def clip_record(clip: Clip, k: int) -> dict:
    """The JSON stored with clip k: the clip's meta plus its index and the world version."""
    return {**clip.meta(), "index": k, "world_version": spec.WORLD_VERSION}


def build_shard(out: Path, cfg: WorldDataConfig, i: int, on_clip=None) -> Path:
    """Render shard i clip by clip into its tar (temp name, renamed when complete)."""
    path = Path(out) / shard_name(i)
    with ShardWriter(path) as w:
        for k in cfg.shard_clips(i):
            clip = world_clip(cfg, k)
            w.write(sample_key(k), {"json": clip_record(clip, k), "frames": clip.frames})
            if on_clip is not None:
                on_clip(1)
    return path


def _index(cfg: WorldDataConfig, out: Path, complete: bool) -> dict:
    shards = []
    for i in range(cfg.num_shards):
        s = {"name": shard_name(i), "clips": len(cfg.shard_clips(i)), "shape": list(cfg.shape)}
        if complete:
            s["bytes"] = (out / s["name"]).stat().st_size
        shards.append(s)
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": complete, "clips": cfg.n,
             "source": "world", "world_version": spec.WORLD_VERSION, "config": cfg.to_json(), "shards": shards}
    if complete:
        index["bytes"] = sum(s["bytes"] for s in shards)
    return index


def _check_existing(out: Path, cfg: WorldDataConfig) -> None:
    """A folder may be resumed only with the config (and world version) it was started with."""
    if not (out / INDEX_NAME).exists():
        if any(out.glob("shard-*.tar")):
            raise ValueError(f"{out} holds shards but no {INDEX_NAME}; write the data set to a new folder")
        return
    index = read_index(out)
    if index.get("source") != "world":
        raise ValueError(f"{out} holds a data set that is not of world clips; write to a new folder")
    if index.get("world_version") != spec.WORLD_VERSION:
        raise ValueError(f"{out} holds world version {index.get('world_version')} clips; this framecast "
                         f"renders version {spec.WORLD_VERSION}; write to a new folder")
    old, new = index.get("config", {}), cfg.to_json()
    if old != new:
        diff = ", ".join(f"{k} {old.get(k)!r} there vs {new.get(k)!r} now" for k in new if old.get(k) != new.get(k))
        raise ValueError(f"{out} holds a data set written with another config ({diff}); "
                         "re-run with the same arguments to resume it, or write to a new folder")


def write_world_shards(out: str | os.PathLike, cfg: WorldDataConfig, workers: int | None = None,
                       progress: bool = True) -> dict:
    """Write cfg.n world clips into ceil(n / shard_size) shards plus index.json; return the index.

    Resumable: shards already complete in `out` are kept. workers: processes (default all cores).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _write(out, cfg, workers, progress)


def _write(out: Path, cfg: WorldDataConfig, workers: int | None, progress: bool) -> dict:
    _check_existing(out, cfg)
    remove_stale_temps(out)
    todo = [i for i in range(cfg.num_shards) if not (out / shard_name(i)).is_file()]
    if todo:  # claims the folder for this config before any shard appears; readers wait for "complete"
        write_index(out, _index(cfg, out, complete=False))
    todo_clips = sum(len(cfg.shard_clips(i)) for i in todo)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    t0 = time.perf_counter()
    with tqdm(total=cfg.n, initial=cfg.n - todo_clips, unit="clip", desc="world shards",
              disable=not progress, dynamic_ncols=True) as bar:
        if workers == 1:
            for i in todo:
                build_shard(out, cfg, i, bar.update)
        else:
            _build_in_pool(out, cfg, todo, workers, bar.update)
        bar.update(cfg.n - bar.n)
    seconds = time.perf_counter() - t0
    index = _index(cfg, out, complete=True)
    write_index(out, index)
    if progress:
        kept = cfg.num_shards - len(todo)
        work = (f"rendered {todo_clips} clips in {seconds:.1f} s ({todo_clips / max(seconds, 1e-9):.1f} clips/s, "
                f"{workers} worker{'s' if workers > 1 else ''})" if todo else "nothing left to render")
        print(f"{cfg.n} clips in {cfg.num_shards} shards, {index['bytes'] / 1e6:.1f} MB "
              f"({index['bytes'] / cfg.n / 1e3:.1f} kB/clip) in {out}: {work}"
              + (f", kept {kept} complete shards" if kept and todo else ""))
    return index


# Worker processes are spawned (not forked): the parent may hold threads (torch, tqdm), and
# spawning a process that imports only the world code costs about 0.1 s.
_progress: mp.Queue | None = None


def _init_worker(progress_queue) -> None:
    global _progress
    _progress = progress_queue


def _build_task(out: str, cfg: WorldDataConfig, i: int) -> int:
    build_shard(Path(out), cfg, i, _progress.put if _progress is not None else None)
    return i


def _build_in_pool(out: Path, cfg: WorldDataConfig, todo: list[int], workers: int, update) -> None:
    # A process pool executor, not multiprocessing.Pool: a worker killed (e.g. out of memory)
    # raises BrokenProcessPool here instead of hanging forever.
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(progress_queue,))
    try:
        pending = {pool.submit(_build_task, str(out), cfg, i) for i in todo}
        while pending:
            try:
                update(progress_queue.get(timeout=0.1))
            except queue_lib.Empty:
                pass
            done = {f for f in pending if f.done()}
            for f in done:
                f.result()  # re-raises a worker's error
            pending -= done
    finally:
        # on an error, queued shards are dropped; shards in flight finish (they stay valid)
        pool.shutdown(wait=True, cancel_futures=True)
