"""Shards of video clips: WebDataset-style tar files, a writer, a reader and a torch loader.

A data set is a folder of `shard-000000.tar`, `shard-000001.tar`, ... plus `index.json`.
Each shard is a POSIX tar whose members are grouped by sample key (WebDataset layout):

    000000017.json        metadata: prompt, caption, scene, fps, seconds, seed, ...
    000000017.frames.npz  np.savez_compressed uint8 frames (T, H, W, 3), one array "frames"

A member `KEY.FIELD.npz` / `KEY.FIELD.npy` is an array field (later: `KEY.latents.npz`, cached
VAE latents); `KEY.json` is the metadata. Every shard holds clips of one frame shape (one
bucket), recorded per shard in `index.json`:

    {"format": "framecast-shards", "format_version": 1, "clips": N, "complete": true,
     "shards": [{"name": "shard-000000.tar", "clips": 64, "shape": [T, H, W, 3], "bytes": B}, ...],
     ...producer fields (e.g. the world config)}

Shards are written under a temporary name and renamed when closed, so a shard under its
real name is always complete. Tar headers carry no time or owner, so the same samples give
byte-identical shards.

Importing this module does not import torch: shard writers run in worker processes that
never need it. `ShardDataset` (a torch IterableDataset) is built on first access.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

FORMAT = "framecast-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
FRAMES = "frames"  # the array field holding (T, H, W, 3) uint8 video


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def sample_key(i: int) -> str:
    """The key of clip i of a data set; keys hold no dot (the field separator)."""
    return f"{i:09d}"


# ---------------------------------------------------------------------------- encoding

def encode_array(name: str, a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{name: a})
    return buf.getvalue()


def _decode(ext: str, data: bytes):
    """Member payload -> (field, value) by extension: json, *.npz, *.npy, else raw bytes."""
    if ext == "json":
        return "json", json.loads(data)
    field, _, codec = ext.rpartition(".")
    if codec == "npz":
        with np.load(io.BytesIO(data)) as z:
            arrays = {k: z[k] for k in z.files}
        return field, arrays[field] if list(arrays) == [field] else arrays
    if codec == "npy":
        return field, np.load(io.BytesIO(data))
    return ext, data


def decode_sample(raw: dict[str, bytes]) -> dict:
    """{"__key__": k, ext: bytes, ...} -> {"__key__": k, "json": dict, "frames": array, ...}."""
    out = {"__key__": raw["__key__"]}
    for ext, data in raw.items():
        if ext != "__key__":
            field, value = _decode(ext, data)
            out[field] = value
    return out


# ---------------------------------------------------------------------------- writing

class ShardWriter:
    """Write samples to one tar shard; the shard appears under `path` only when closed.

        with ShardWriter(out / shard_name(0)) as w:
            w.write(sample_key(0), {"json": meta, "frames": frames})

    On an exception inside the block the partial file is deleted. A crash (kill) leaves a
    hidden `.shard-*.tmp` file that no reader picks up.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.count = 0
        self.shape: tuple[int, ...] | None = None  # of the frames field: one bucket per shard
        self._keys: set[str] = set()
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)

    def write(self, key: str, fields: dict) -> None:
        """fields: "json" -> JSON-able dict; NAME -> np.ndarray (stored as KEY.NAME.npz); bytes."""
        if not key or "." in key or "/" in key:
            raise ValueError(f"a sample key must be non-empty with no '.' or '/', got {key!r}")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r} in {self.path.name}")
        frames = fields.get(FRAMES)
        if frames is not None:
            frames = np.asarray(frames)
            if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
            if self.shape is None:
                self.shape = tuple(frames.shape)
            elif tuple(frames.shape) != self.shape:
                raise ValueError(f"a shard holds clips of one shape: {self.shape}, got {tuple(frames.shape)}")
        members = []  # encode every field before writing any, so a bad field leaves no half sample
        for field, value in fields.items():
            if not field or "/" in field or (field != "json" and field.endswith((".json", ".npz", ".npy"))):
                raise ValueError(f"bad field name {field!r}")
            if field == "json":
                members.append((f"{key}.json", json.dumps(value, sort_keys=True).encode()))
            elif isinstance(value, np.ndarray):
                members.append((f"{key}.{field}.npz", encode_array(field, value)))
            elif isinstance(value, bytes):
                members.append((f"{key}.{field}", value))
            else:
                raise TypeError(f"field {field!r}: expected an array or bytes, got {type(value).__name__}")
        for name, data in members:
            self._add(name, data)
        self._keys.add(key)
        self.count += 1

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # no time, owner: reproducible bytes
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        """Finish the tar, flush it to disk and rename it to its real name."""
        if self._file.closed:
            return
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextmanager
def folder_lock(out: Path):
    """One writer per folder: a second run on it would delete the first one's temp files."""
    with open(out / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another process is writing shards to {out}; wait for it or stop it") from None
        yield


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Delete the temp files that interrupted writers left behind."""
    stale = sorted(Path(root).glob(".shard-*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------------- reading

def iter_raw(path: str | os.PathLike) -> Iterator[dict[str, bytes]]:
    """Undecoded samples of a shard: {"__key__": key, ext: bytes}, in stored order."""
    sample: dict = {}
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)[-1]
            key, dot, ext = base.partition(".")
            if not dot:
                continue
            if sample and key != sample["__key__"]:
                yield sample
                sample = {}
            sample["__key__"] = key
            sample[ext] = tar.extractfile(info).read()
    if sample:
        yield sample


def iter_raw_at(path: str | os.PathLike, positions) -> Iterator[tuple[int, dict[str, bytes]]]:
    """(position, undecoded sample) for the samples at the given positions (0-based, in stored
    order) of a shard; the bytes of the others are skipped, not read."""
    wanted = set(positions)
    if not wanted:
        return
    last = max(wanted)
    pos, key, sample = -1, None, None
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:  # reading headers seeks past the data of members not extracted
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)[-1]
            k, dot, ext = base.partition(".")
            if not dot:
                continue
            if k != key:
                if sample is not None:
                    yield pos, sample
                pos, key = pos + 1, k
                if pos > last:
                    return
                sample = {"__key__": k} if pos in wanted else None
            if sample is not None:
                sample[ext] = tar.extractfile(info).read()
    if sample is not None:
        yield pos, sample


def iter_shard(path: str | os.PathLike) -> Iterator[dict]:
    """Decoded samples of a shard: {"__key__": key, "json": meta, "frames": (T, H, W, 3) uint8, ...}."""
    for raw in iter_raw(path):
        yield decode_sample(raw)


def write_index(root: str | os.PathLike, index: dict) -> None:
    """Write index.json atomically (temp file + rename)."""
    root = Path(root)
    tmp = root / f".{INDEX_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, root / INDEX_NAME)


def read_index(root: str | os.PathLike) -> dict:
    path = Path(root) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{root} holds no {INDEX_NAME}: not a shard data set")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} index")
    if index.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {index['format_version']}; this framecast reads {FORMAT_VERSION}")
    return index


def _load_shards(root: Path) -> list[dict]:
    index = read_index(root)
    if not index.get("complete", False):
        done = sum((root / s["name"]).is_file() for s in index["shards"])
        raise ValueError(f"the data set in {root} is incomplete ({done} of {len(index['shards'])} shards); "
                         "re-run the command that wrote it to finish it")
    missing = [s["name"] for s in index["shards"] if not (root / s["name"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} misses {len(missing)} shard(s) listed in {INDEX_NAME}: {', '.join(missing[:3])}")
    return index["shards"]


# ---------------------------------------------------------------------------- torch loader

def frames_to_tensor(frames: np.ndarray, normalize: bool = True):
    """(T, H, W, 3) uint8 -> (C, T, H, W) float32 in [-1, 1] (or uint8 with normalize=False)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).contiguous()  # (C, T, H, W) uint8
    return normalize_video(x) if normalize else x


def normalize_video(x):
    """uint8 video (any layout) -> float32 in [-1, 1]; on the training device it saves the loader
    4x the bytes of float batches (see ShardDataset(normalize=False))."""
    return x.float().div_(127.5).sub_(1.0)  # convert contiguous uint8: 3x faster than strided


def to_training_sample(sample: dict, shard: str, normalize: bool = True) -> dict:
    """A decoded sample -> {"video": (C, T, H, W), "caption", "prompt", "meta", other arrays as tensors}."""
    import torch

    meta = dict(sample.get("json", {}), key=sample["__key__"], shard=shard)
    out = {"caption": meta.get("caption", ""), "prompt": meta.get("prompt", ""), "meta": meta}
    for field, value in sample.items():
        if field == FRAMES:
            out["video"] = frames_to_tensor(value, normalize)
        elif isinstance(value, np.ndarray):
            out[field] = torch.from_numpy(value)
    return out


def collate(samples: list[dict]) -> dict:
    """Stack tensors (equal shapes: one bucket per batch) and list everything else."""
    import torch

    if not samples:
        raise ValueError("cannot collate an empty batch")
    out = {}
    for field in samples[0]:
        values = [s[field] for s in samples]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"a batch mixes {field} shapes {sorted(shapes)}; batch within one bucket "
                                 "(ShardDataset(batch_size=...) does)")
            out[field] = torch.stack(values)
        else:
            out[field] = values
    return out


def sample_shape(sample: dict) -> tuple[int, ...]:
    """The bucket of a sample: the shape of its video, or of its cached latents."""
    return tuple((sample["video"] if "video" in sample else sample["latents"]).shape)


def bucket_batches(samples, batch_size: int, drop_last: bool, collate_fn, key=sample_shape):
    """Group samples into batches of one shape (key) each, in order of completion; leftovers at
    the end form smaller batches unless drop_last."""
    pending: dict[tuple, list[dict]] = {}
    for s in samples:
        group = pending.setdefault(key(s), [])
        group.append(s)
        if len(group) == batch_size:
            yield collate_fn(group)
            group.clear()
    if not drop_last:
        for group in pending.values():
            if group:
                yield collate_fn(group)


def split_shards(n_shards: int, *, epoch: int, seed: int, shuffle: bool, rank: int, world_size: int,
                 worker: int, num_workers: int) -> list[int]:
    """The shard indices one worker of one rank reads in an epoch.

    The order is one permutation per (seed, epoch), the same on every rank; rank r takes
    every world_size-th shard of it, and worker w of that rank every num_workers-th of those,
    so every shard is read exactly once per epoch across all ranks and workers.
    """
    order = np.arange(n_shards)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n_shards)
    return [int(i) for i in order[rank::world_size][worker::num_workers]]


def _worker_info() -> tuple[int, int]:
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class _ShardDatasetBase:
    """The logic of `ShardDataset`, free of torch so that importing this module stays light
    (shard writers run in worker processes that never need torch); `ShardDataset` adds
    torch's IterableDataset on first use.

    Clips from a shard folder as {"video": (C, T, H, W) float in [-1, 1], "caption", "prompt", "meta"}.

    Shards are split across distributed ranks (each rank reads its own) and across DataLoader
    workers. With shuffle, the shard order is a fresh permutation each epoch (`set_epoch`, or
    automatically with `repeat=True`), and samples pass through a buffer of `shuffle_buffer`
    compressed samples that mixes neighbouring shards; all of it is seeded, so (seed, epoch,
    world_size, num_workers) fix the order.

    normalize=False yields "video" as uint8 (C, T, H, W), for `normalize_video` on the training
    device: a quarter of the bytes through worker processes and host-to-device copies.

    batch_size=None yields single samples (batch them with DataLoader(batch_size=B,
    collate_fn=collate) when the data set has one bucket). batch_size=B yields batches already
    collated, each from one bucket; use it with DataLoader(batch_size=None) when shapes differ.
    """

    def __init__(self, root: str | os.PathLike, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, *, batch_size: int | None = None, drop_last: bool = False,
                 shuffle_buffer: int = 256, repeat: bool = False, epoch: int = 0, normalize: bool = True):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.root = Path(root)
        self.shards = _load_shards(self.root)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.batch_size, self.drop_last = batch_size, drop_last
        self.shuffle_buffer, self.repeat, self.epoch = max(1, shuffle_buffer), repeat, epoch
        self.normalize = normalize

    @property
    def buckets(self) -> dict[tuple[int, ...], int]:
        """Frame shape (T, H, W, 3) -> number of clips of that shape in the whole data set."""
        out: dict[tuple[int, ...], int] = {}
        for s in self.shards:
            shape = tuple(s["shape"])
            out[shape] = out.get(shape, 0) + s["clips"]
        return out

    @property
    def num_clips(self) -> int:
        return sum(s["clips"] for s in self.shards)

    def clips_for_rank(self, epoch: int | None = None) -> int:
        """Clips this rank reads in an epoch (ranks differ when shards do not divide evenly)."""
        idx = self._shard_indices(self.epoch if epoch is None else epoch, 0, 1)
        return sum(self.shards[i]["clips"] for i in idx)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        worker, num_workers = _worker_info()
        epoch = self.epoch
        if not self._shard_indices(epoch, worker, num_workers):
            return  # more readers than shards: this one idles (and never spins when repeating)
        while True:
            yield from self._epoch(epoch, worker, num_workers)
            if not self.repeat:
                return
            epoch += 1

    def _epoch(self, epoch: int, worker: int, num_workers: int):
        samples = self._samples(epoch, worker, num_workers)
        if self.batch_size is None:
            yield from samples
            return
        yield from bucket_batches(samples, self.batch_size, self.drop_last, collate)

    def _shard_indices(self, epoch: int, worker: int, num_workers: int) -> list[int]:
        return split_shards(len(self.shards), epoch=epoch, seed=self.seed, shuffle=self.shuffle,
                            rank=self.rank, world_size=self.world_size, worker=worker, num_workers=num_workers)

    def _samples(self, epoch: int, worker: int, num_workers: int):
        idx = self._shard_indices(epoch, worker, num_workers)
        raws = ((raw, self.shards[i]["name"]) for i in idx for raw in iter_raw(self.root / self.shards[i]["name"]))
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
            raws = _buffer_shuffle(raws, self.shuffle_buffer, rng)
        for raw, shard in raws:
            yield to_training_sample(decode_sample(raw), shard, self.normalize)


def _buffer_shuffle(items, size: int, rng: np.random.Generator):
    """WebDataset-style shuffle: fill a buffer, emit a random element, refill its slot."""
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


_dataset_class = None


def __getattr__(name: str):
    """`ShardDataset` is built on first access, so that only its users import torch."""
    global _dataset_class
    if name != "ShardDataset":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _dataset_class is None:
        import torch.utils.data

        class ShardDataset(_ShardDatasetBase, torch.utils.data.IterableDataset):
            __doc__ = _ShardDatasetBase.__doc__

        ShardDataset.__module__, ShardDataset.__qualname__ = __name__, "ShardDataset"  # picklable by name
        _dataset_class = ShardDataset
    return _dataset_class
