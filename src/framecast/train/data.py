"""Resumable data sources for the trainer: world clips on the fly, shard folders, cached latents.

Every source has `next() -> batch`, `state_dict()` and `load_state_dict(state)`; a source
restored from a state yields exactly the batches the original would have yielded next, which
is what bit-exact resume of training rests on. All clips of a batch share one bucket (frame
shape), so batches stack.

- `WorldStream`: world clips rendered on the fly; batch b depends only on (seed, b).
- `ShardStream`: batches from a shard folder (framecast.data.shards), epoch after epoch.
- `cache_latents` turns a frame shard set into a latent shard set (VAE posterior means plus the
  text encoder's token embeddings of caption and prompt), read by `LatentStream`, so DiT
  training never runs the VAE encoder or the text encoder.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import re
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .trainer import bf16_autocast
from ..data.shards import (FORMAT, FORMAT_VERSION, FRAMES, INDEX_NAME, ShardDataset, ShardWriter, _buffer_shuffle,
                           bucket_batches, collate, decode_sample, folder_lock, frames_to_tensor, iter_raw,
                           iter_raw_at, iter_shard, normalize_video, read_index, remove_stale_temps, split_shards,
                           to_training_sample, write_index)
from ..world.clip import FRAME_SIZE_LIMIT, make_clip
from ..world.export import derive_seed

LATENTS = "latents"  # (C, T', H', W') float16 posterior mean per clip
TEXT_FIELDS = ("caption", "prompt")  # each cached as "<name>_tokens" (M, D) float16, unpadded


# ---------------------------------------------------------------------------- buckets

@dataclass(frozen=True)
class Bucket:
    """One clip shape: width x height pixels, frames at fps; weight = relative share of batches."""

    width: int
    height: int
    frames: int
    fps: float
    weight: float = 1.0

    def __post_init__(self):
        if not (0 < self.width <= FRAME_SIZE_LIMIT and 0 < self.height <= FRAME_SIZE_LIMIT):
            raise ValueError(f"bucket size must be between 1x1 and {FRAME_SIZE_LIMIT}x{FRAME_SIZE_LIMIT}, "
                             f"got {self.width}x{self.height}")
        if self.frames < 1:
            raise ValueError(f"a bucket needs at least 1 frame, got {self.frames}")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"bucket fps must be positive, got {self.fps}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"bucket weight must be positive, got {self.weight}")

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def __str__(self) -> str:  # the syntax parse_buckets reads
        weight = "" if self.weight == 1 else f"*{self.weight:g}"
        return f"{self.width}x{self.height}x{self.frames}@{self.fps:g}{weight}"


BUCKET_SYNTAX = "WIDTHxHEIGHTxFRAMES@FPS[*WEIGHT]"
_BUCKET_RE = re.compile(r"(\d+)x(\d+)x(\d+)@(\d+(?:\.\d*)?)(?:\*(\d+(?:\.\d*)?|\.\d+))?")


def parse_buckets(text: str) -> list[Bucket]:
    """Comma-separated WIDTHxHEIGHTxFRAMES@FPS[*WEIGHT] -> buckets.

    "64x64x17@12,96x64x17@12*2" is 64x64 and 96x64 clips of 17 frames at 12 fps, the second
    drawn for twice as many batches. The weight defaults to 1.
    """
    items = [s.strip() for s in text.split(",")]
    if not any(items):
        raise ValueError(f"no buckets given; expected {BUCKET_SYNTAX}, e.g. 64x64x17@12")
    buckets: list[Bucket] = []
    for item in items:
        m = _BUCKET_RE.fullmatch(item.replace(" ", "").lower())
        if not m:
            raise ValueError(f"bad bucket {item!r}: expected {BUCKET_SYNTAX}, e.g. 64x64x17@12 or 96x64x17@12*2")
        w, h, f, fps, weight = m.groups()
        try:
            b = Bucket(int(w), int(h), int(f), float(fps), float(weight) if weight else 1.0)
        except ValueError as e:
            raise ValueError(f"bad bucket {item!r}: {e}") from None
        if any((o.width, o.height, o.frames, o.fps) == (b.width, b.height, b.frames, b.fps) for o in buckets):
            raise ValueError(f"bucket {item!r} is given twice; use a weight (e.g. {b}*2) to draw it more often")
        buckets.append(b)
    return buckets


# ---------------------------------------------------------------------------- world clips

class WorldStream:
    """World clips rendered on the fly: {"video": (B, 3, T, H, W) float32 in [-1, 1], "caption", "prompt"}.

    Batch b (of this rank) is global batch g = b * world_size + rank; its bucket is drawn from
    the bucket weights by an RNG seeded with (seed, g), its clip j is seeded with (seed, g, j).
    A batch depends only on its index, so workers > 0 render ahead in spawned processes while
    the order stays exact; prefetch is the number of batches each worker keeps queued. A
    64x64x17 clip takes about 10 ms of one core, so workers pay off only where cores are spare
    (a GPU machine); a CPU-trained model wants them for itself. State: {"batch": b}.
    """

    def __init__(self, buckets: list[Bucket] | str, batch_size: int, seed: int = 0, workers: int = 0,
                 prefetch: int = 2, rank: int = 0, world_size: int = 1):
        self.buckets = parse_buckets(buckets) if isinstance(buckets, str) else list(buckets)
        if not self.buckets:
            raise ValueError("WorldStream needs at least one bucket")
        if batch_size < 1 or workers < 0 or prefetch < 1:
            raise ValueError(f"need batch_size >= 1, workers >= 0, prefetch >= 1; "
                             f"got {batch_size}, {workers}, {prefetch}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        self.batch_size, self.seed, self.workers, self.prefetch = batch_size, seed, workers, prefetch
        self.rank, self.world_size = rank, world_size
        weights = np.array([b.weight for b in self.buckets], dtype=np.float64)
        self._p = weights / weights.sum()
        self.batch = 0  # the index of the next batch this source returns
        self._pool: ProcessPoolExecutor | None = None
        self._ahead: deque = deque()  # (batch index, bucket, [Future of Clip]) in order

    def plan(self, b: int) -> tuple[Bucket, list[int]]:
        """The bucket and the clip seeds of batch b of this rank."""
        g = b * self.world_size + self.rank
        k = int(np.random.default_rng([self.seed, 0, g]).choice(len(self.buckets), p=self._p))
        return self.buckets[k], [derive_seed(self.seed, 1, g, j) for j in range(self.batch_size)]

    def next(self) -> dict:
        if self.workers == 0:
            bucket, seeds = self.plan(self.batch)
            clips = [make_clip(s, bucket.seconds, bucket.fps, bucket.width, bucket.height) for s in seeds]
        else:
            self._fill()
            b, bucket, futures = self._ahead.popleft()
            assert b == self.batch
            self._fill()  # keep the workers busy while this batch is collected
            try:
                clips = [f.result() for f in futures]
            except BaseException:
                self.close()  # a retry renders batch b again, in a fresh pool
                raise
        self.batch += 1
        return _world_batch(clips, bucket)

    def _fill(self) -> None:
        if self._pool is None:  # spawned, not forked: the parent holds torch's threads
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        while len(self._ahead) < self.workers * self.prefetch:
            b = self._ahead[-1][0] + 1 if self._ahead else self.batch
            bucket, seeds = self.plan(b)
            futures = [self._pool.submit(make_clip, s, bucket.seconds, bucket.fps, bucket.width, bucket.height)
                       for s in seeds]
            self._ahead.append((b, bucket, futures))

    def state_dict(self) -> dict:
        return {"batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self._drop_ahead()
        self.batch = int(state["batch"])

    def _drop_ahead(self) -> None:
        for _, _, futures in self._ahead:
            for f in futures:
                f.cancel()
        self._ahead.clear()

    def close(self) -> None:
        """Stop the worker processes (a later next() starts new ones)."""
        self._drop_ahead()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> WorldStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean up
            pass


def _world_batch(clips: list, bucket: Bucket) -> dict:
    frames = np.stack([c.frames for c in clips])  # (B, T, H, W, 3) uint8
    if frames.shape[1:] != (bucket.frames, bucket.height, bucket.width, 3):
        raise RuntimeError(f"bucket {bucket} rendered clips of shape {frames.shape[1:]}")
    video = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W) uint8
    return {"video": normalize_video(video), "caption": [c.caption for c in clips],
            "prompt": [c.prompt for c in clips]}


# ---------------------------------------------------------------------------- shard folders

def collate_padded(samples: list[dict]) -> dict:
    """`collate`, plus NAME_tokens (M_i, D) fields padded to (B, M, D) float32 with NAME_mask (B, M)
    bool, and cached float16 latents as float32."""
    text = {f for f in samples[0] if f.endswith("_tokens")}
    out = collate([{k: v for k, v in s.items() if k not in text} for s in samples])
    for field in sorted(text):
        seqs = [s[field].float() for s in samples]  # (M_i, D)
        m = max(x.shape[0] for x in seqs)
        out[field] = torch.stack([F.pad(x, (0, 0, 0, m - x.shape[0])) for x in seqs])  # (B, M, D)
        lengths = torch.tensor([x.shape[0] for x in seqs])
        out[field.removesuffix("_tokens") + "_mask"] = torch.arange(m)[None] < lengths[:, None]  # (B, M)
    if LATENTS in out:
        out[LATENTS] = out[LATENTS].float()
    return out


class ShardStream:
    """Batches from a shard folder, one bucket per batch, epoch after epoch.

    Frame shards give {"video": (B, 3, T, H, W) float32 in [-1, 1], "caption", "prompt", "meta"};
    latent shards (see cache_latents) give {"latents": (B, C, T', H', W') float32,
    "caption_tokens"/"prompt_tokens": (B, M, D) float32, "caption_mask"/"prompt_mask": (B, M) bool,
    "caption", "prompt", "meta"}. Shards are split over ranks and shuffled per epoch as
    `ShardDataset` does (seeded); drop_last drops each epoch's incomplete batches.

    Two ways to share the data among data-parallel processes:
    - rank/world_size: each rank reads its own shards and makes its own batches (the batches
      depend on the world size);
    - part=(p, n): the batches are those of the whole stream, whatever n, and this process
      gets rows [start, stop) of each (`Dist.rows`), under "rows" = (start, stop, batch_size).
      The order is planned from index.json alone, so a process opens only the shards that hold
      its rows and reads only those clips' bytes. This is what training uses: N processes see
      the global batches one process would, and resume from each other's checkpoints.

    State: {"epoch", "batch_in_epoch"}; restoring re-reads the epoch up to that batch.
    """

    def __init__(self, root, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, *,
                 part: tuple[int, int] = (0, 1), shuffle: bool = True, drop_last: bool = True,
                 shuffle_buffer: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        p, n = part
        if not 0 <= p < n:
            raise ValueError(f"part must be (p, n) with 0 <= p < n, got {part}")
        if n > 1 and (world_size > 1 or not drop_last):
            raise ValueError("part splits the whole stream's batches: use it with world_size 1 and drop_last")
        if batch_size < n:
            raise ValueError(f"a batch of {batch_size} clips cannot be split over {n} processes: "
                             f"use a batch size of at least {n}")
        self.root = Path(root)
        self.dataset = ShardDataset(self.root, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                                    shuffle_buffer=shuffle_buffer)
        if len(self.dataset.shards) < world_size:
            raise ValueError(f"{self.root} holds {len(self.dataset.shards)} shard(s), fewer than the "
                             f"{world_size} ranks: every rank needs at least one; write smaller shards")
        self.batch_size, self.drop_last, self.part = batch_size, drop_last, (p, n)
        self.epoch, self.batch_in_epoch = 0, 0
        self._it = None

    def next(self) -> dict:
        empty = 0
        while True:
            if self._it is None:
                self._it = self._batches(self.epoch, self.batch_in_epoch)  # resume: skip what was served
            batch = next(self._it, None)
            if batch is not None:
                self.batch_in_epoch += 1
                return batch
            empty = 0 if self.batch_in_epoch else empty + 1
            if empty >= 8:
                raise ValueError(f"{self.root} gave rank {self.dataset.rank} no full batch of {self.batch_size} "
                                 f"in {empty} epochs: a bucket needs at least batch_size clips per rank "
                                 "(lower the batch size, or drop_last=False)")
            self.epoch, self.batch_in_epoch, self._it = self.epoch + 1, 0, None

    def _batches(self, epoch: int, skip: int):
        if self.part[1] > 1:
            yield from self._part_batches(epoch, skip)
            return
        self.dataset.set_epoch(epoch)
        batches = bucket_batches(self.dataset, self.batch_size, self.drop_last, collate_padded)
        for _ in range(skip):
            if next(batches, None) is None:
                self._short_epoch(epoch, skip)
        yield from batches

    def _short_epoch(self, epoch: int, skip: int):
        raise ValueError(f"epoch {epoch} of {self.root} has fewer than {skip} "
                         "batches: this state came from another data set, batch size or rank")

    def plan(self, epoch: int) -> list[list[int]]:
        """The epoch's batches as clip ids (offset of the shard in index.json + position in it),
        drawn from index.json alone exactly as ShardDataset draws the clips themselves."""
        ds = self.dataset
        sizes = [s["clips"] for s in ds.shards]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        order = split_shards(len(sizes), epoch=epoch, seed=ds.seed, shuffle=ds.shuffle, rank=0, world_size=1,
                             worker=0, num_workers=1)
        ids = [offsets[i] + j for i in order for j in range(sizes[i])]
        if ds.shuffle:
            ids = list(_buffer_shuffle(ids, ds.shuffle_buffer, np.random.default_rng([ds.seed, epoch, 0, 0])))
        shard_of = np.repeat(np.arange(len(sizes)), sizes)
        shapes = [tuple(s["shape"]) for s in ds.shards]
        return list(bucket_batches(ids, self.batch_size, self.drop_last, list, key=lambda g: shapes[shard_of[g]]))

    def _part_batches(self, epoch: int, skip: int):
        ds = self.dataset
        plan = self.plan(epoch)
        if len(plan) < skip:
            self._short_epoch(epoch, skip)
        p, n = self.part
        lo, hi = self.batch_size * p // n, self.batch_size * (p + 1) // n
        mine = [ids[lo:hi] for ids in plan[skip:]]
        sizes = [s["clips"] for s in ds.shards]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        wanted: dict[int, list[int]] = {}
        for g in sorted(g for ids in mine for g in ids):
            i = bisect.bisect_right(offsets, g) - 1
            wanted.setdefault(i, []).append(g - offsets[i])
        order = split_shards(len(sizes), epoch=epoch, seed=ds.seed, shuffle=ds.shuffle, rank=0, world_size=1,
                             worker=0, num_workers=1)
        reader = ((offsets[i] + j, raw, ds.shards[i]["name"]) for i in order if i in wanted
                  for j, raw in iter_raw_at(ds.root / ds.shards[i]["name"], wanted[i]))
        read: dict[int, tuple] = {}  # clips read ahead of their batch
        for ids in mine:
            for g in ids:
                while g not in read:
                    got = next(reader, None)
                    if got is None:
                        raise ValueError(f"{self.root} changed while reading it: clip {g} is missing")
                    read[got[0]] = got[1:]
            samples = [to_training_sample(decode_sample(raw), shard, ds.normalize)
                       for raw, shard in (read.pop(g) for g in ids)]
            yield {**collate_padded(samples), "rows": (lo, hi, self.batch_size)}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch_in_epoch, self._it = int(state["epoch"]), int(state["batch_in_epoch"]), None


class MixedStream:
    """Batches drawn from several streams (e.g. one per bucket folder) by seeded weights.

    Batch n comes from the stream that RNG([seed, 2, n]) picks, so the mix is fixed by the seed
    and a restored state (n and every stream's own state) continues it exactly.
    """

    def __init__(self, streams: list, weights: list[float], seed: int = 0):
        if not streams or len(streams) != len(weights) or min(weights) <= 0:
            raise ValueError("MixedStream needs one positive weight per stream")
        self.streams, self.seed, self.n = streams, seed, 0
        self.p = np.asarray(weights, dtype=np.float64) / sum(weights)

    def next(self) -> dict:
        k = int(np.random.default_rng([self.seed, 2, self.n]).choice(len(self.streams), p=self.p))
        self.n += 1
        return self.streams[k].next()

    def state_dict(self) -> dict:
        return {"n": self.n, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        self.n = int(state["n"])
        for s, st in zip(self.streams, state["streams"], strict=True):
            s.load_state_dict(st)


# ---------------------------------------------------------------------------- cached latents

def module_fingerprint(module: torch.nn.Module, dtype: torch.dtype | None = None) -> str:
    """A short hash of a module's state dict (names, dtypes, shapes, values): its identity.
    Given `dtype`, floating weights are hashed as rounded to it, and -0 as 0 (an EMA of a frozen
    weight can flip a zero's sign): equal values, equal hash."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype) + 0  # -0 + 0 = +0
        t = t.contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def vae_fingerprint(vae) -> str:
    """The identity of the latents a VAE makes: its encoder's weights (a fine-tuned decoder
    reads the same latents, so it does not make a cache stale), as rounded to float16, the
    precision a model folder stores them in: a run's cache serves `--init` from its own export."""
    return module_fingerprint(vae.encoder, torch.float16)


def _source_digest(index: dict) -> str:
    shards = [{k: s.get(k) for k in ("name", "clips", "shape", "bytes")} for s in index["shards"]]
    data = json.dumps({"shards": shards, "config": index.get("config")}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


class LatentStream(ShardStream):
    """ShardStream over a latent shard set (see cache_latents). Given `vae` (a VideoVAE or its
    vae_fingerprint), a cache made with other VAE encoder weights is refused."""

    def __init__(self, root, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1, *,
                 vae: torch.nn.Module | str | None = None, **kw):
        index = read_index(root)
        if LATENTS not in index:
            raise ValueError(f"{root} holds frames, not cached latents; run cache_latents on it first")
        if vae is not None:
            want = vae if isinstance(vae, str) else vae_fingerprint(vae)
            if index[LATENTS]["vae"] != want:
                raise ValueError(f"{root} holds latents of another VAE encoder ({index[LATENTS]['vae']}, this "
                                 f"one is {want}): the cache is stale; re-run cache_latents into a new folder")
        super().__init__(root, batch_size, seed, rank, world_size, **kw)


def cache_latents(vae, text_encoder, src_root, out_root, batch_size: int = 16, device="cpu",
                  progress: bool = True, max_clips: int | None = None) -> dict:
    """Encode a frame shard set into a latent shard set with the same shards and keys; return its index.

    Per clip: `latents` = the VAE posterior mean (C, T', H', W') float16, `caption_tokens` and
    `prompt_tokens` = unpadded (M, D) float16 token embeddings, and the source JSON. Resumable:
    complete shards in out_root are kept, provided they came from the same source, VAE encoder
    and text encoder (index.json records their fingerprints); anything else is refused. Both
    modules are moved to `device` and run in eval mode (their train/eval modes are restored).
    `max_clips` caches only the fewest leading shards that hold that many clips (None: all); a
    later call with more finishes the shards it adds.
    """
    src, out = Path(src_root), Path(out_root)
    src_index = read_index(src)
    if LATENTS in src_index:
        raise ValueError(f"{src} already holds cached latents; give the folder of frames it was made from")
    shards = ShardDataset(src, shuffle=False).shards  # checks the set is complete
    if max_clips is not None:
        counts = itertools.accumulate(s["clips"] for s in shards)
        shards = shards[:next((i + 1 for i, c in enumerate(counts) if c >= max_clips), len(shards))]
    for s in shards:
        _latent_shape(vae, s["shape"])  # a bad frame shape fails now, not after hours
    ident = {"vae": vae_fingerprint(vae), "vae_config": asdict(vae.cfg),
             "text_encoder": module_fingerprint(text_encoder), "dtype": "float16",
             "source": {"root": str(src.resolve()), "digest": _source_digest(src_index)}}
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        _check_cache(out, ident)
        remove_stale_temps(out)
        index = _cache_index(src_index, shards, vae, ident, out, complete=False)
        todo = [i for i, s in enumerate(shards) if not (out / s["name"]).is_file()]
        if todo:
            write_index(out, index)
        n_todo = sum(shards[i]["clips"] for i in todo)
        t0 = time.perf_counter()
        modes = vae.training, text_encoder.training
        vae.to(device).eval()
        text_encoder.to(device).eval()
        try:
            with tqdm(total=index["clips"], initial=index["clips"] - n_todo, unit="clip", desc="caching latents",
                      disable=not progress, dynamic_ncols=True) as bar:
                for i in todo:
                    _cache_shard(vae, text_encoder, src / shards[i]["name"], out / shards[i]["name"], batch_size,
                                 device, bar.update)
        finally:
            vae.train(modes[0])
            text_encoder.train(modes[1])
        seconds = time.perf_counter() - t0
        index = _cache_index(src_index, shards, vae, ident, out, complete=True)
        write_index(out, index)
    if progress and todo:
        print(f"cached {n_todo} clips in {seconds:.1f} s ({n_todo / max(seconds, 1e-9):.1f} clips/s) to {out}")
    return index


def _latent_shape(vae, frame_shape) -> list[int]:
    t, h, w, _ = frame_shape
    f = vae.spatial_factor
    if h % f or w % f:
        raise ValueError(f"the VAE needs a width and height divisible by {f}, got clips of {w}x{h}")
    return [vae.cfg.latent_channels, vae.latent_frames(t), h // f, w // f]


_OWN_INDEX_KEYS = ("format", "format_version", "complete", "clips", "bytes", "shards")


def _cache_index(src_index: dict, shards: list[dict], vae, ident: dict, out: Path, complete: bool) -> dict:
    new = []
    for s in shards:
        entry = {"name": s["name"], "clips": s["clips"], "shape": _latent_shape(vae, s["shape"]),
                 "frames_shape": s["shape"]}
        if complete:
            entry["bytes"] = (out / s["name"]).stat().st_size
        new.append(entry)
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": complete,
             "clips": sum(s["clips"] for s in shards),
             "source": LATENTS, LATENTS: ident, "shards": new,
             "source_index": {k: v for k, v in src_index.items() if k not in _OWN_INDEX_KEYS}}
    if complete:
        index["bytes"] = sum(s["bytes"] for s in new)
    return index


def _check_cache(out: Path, ident: dict) -> None:
    """A folder may be resumed only with the source, VAE and text encoder it was started with."""
    if not (out / INDEX_NAME).exists():
        if any(out.glob("shard-*.tar")):
            raise ValueError(f"{out} holds shards but no {INDEX_NAME}; cache the latents to a new folder")
        return
    old = read_index(out).get(LATENTS)
    if old is None:
        raise ValueError(f"{out} holds a data set of frames, not latents; cache the latents to a new folder")
    for key, what in (("vae", "VAE encoder weights"), ("text_encoder", "text encoder")):
        if old[key] != ident[key]:
            raise ValueError(f"{out} holds latents made with other {what} ({old[key]} there, {ident[key]} now): "
                             "the cache is stale; cache to a new folder or delete it")
    if old["source"]["digest"] != ident["source"]["digest"]:
        raise ValueError(f"{out} holds latents of another data set ({old['source']['root']}); "
                         "cache to a new folder")


@torch.inference_mode()
def _cache_shard(vae, text_encoder, src: Path, dst: Path, batch_size: int, device, on_clips) -> None:
    samples = iter_shard(src)
    with ShardWriter(dst) as w:
        while group := [s for _, s in zip(range(batch_size), samples)]:
            video = torch.stack([frames_to_tensor(s[FRAMES]) for s in group]).to(device)  # (B, 3, T, H, W)
            # the VAE in bf16 where the hardware has it, as it trained (latents are stored as fp16 anyway);
            # the text encoder in fp32, as generation runs it
            dev = torch.device(device)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16_autocast(dev)):
                latents = vae.encode(video).mean.half().cpu().numpy()  # (B, C, T', H', W')
            texts = [s["json"].get(name, "") for name in TEXT_FIELDS for s in group]  # captions, then prompts
            tokens, mask = text_encoder(texts)  # (2B, M, D), (2B, M): one call for both
            tokens, mask = tokens.half().cpu(), mask.cpu()
            for j, s in enumerate(group):
                text = {f"{name}_tokens": tokens[k * len(group) + j][mask[k * len(group) + j]].numpy()  # (M_j, D)
                        for k, name in enumerate(TEXT_FIELDS)}
                w.write(s["__key__"], {"json": s["json"], LATENTS: latents[j], **text})
            on_clips(len(group))


def latent_stats(root, max_clips: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (C,) of the cached latents of the first max_clips clips."""
    index = read_index(root)
    if LATENTS not in index:
        raise ValueError(f"{root} holds frames, not cached latents; run cache_latents on it first")
    raws = (raw for s in index["shards"] for raw in iter_raw(Path(root) / s["name"]))
    total = total_sq = 0.0
    n = count = 0
    for raw in itertools.islice(raws, max_clips):
        z = decode_sample({"__key__": raw["__key__"], f"{LATENTS}.npz": raw[f"{LATENTS}.npz"]})[LATENTS]
        z = z.astype(np.float64).reshape(z.shape[0], -1)  # (C, T' H' W')
        total, total_sq = total + z.sum(1), total_sq + (z * z).sum(1)
        n, count = n + 1, count + z.shape[1]
    if n == 0:
        raise ValueError(f"{root} holds no clips")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()
