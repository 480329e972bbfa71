"""Write world clips to a folder as NAME.mp4 + NAME.json, the layout `framecast eval` reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .clip import Clip, check_clip_args, make_clip


def derive_seed(*words: int) -> int:
    """A 32-bit seed derived from a run's seed and indices (independent streams)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip `index` in a run seeded with `seed`."""
    return derive_seed(seed, index)


def save_clip(clip: Clip, out: Path, name: str) -> Path:
    from ..video.io import write_mp4  # PyAV only where mp4s are written: training data needs none

    write_mp4(out / f"{name}.mp4", clip.frames, clip.fps)
    (out / f"{name}.json").write_text(json.dumps(clip.meta(), indent=2) + "\n")
    return out / f"{name}.mp4"


def write_samples(out: Path, n: int, seconds: float, fps: float, width: int, height: int,
                  seed: int = 0, progress: bool = True) -> list[Path]:
    """Render n clips into `out`; clip i is reproducible from the seed in its JSON."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    check_clip_args(seconds, fps, width, height)
    if width % 2 or height % 2:
        raise ValueError(f"mp4 (H.264, yuv420p) needs an even width and height, got {width}x{height}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(n), desc="rendering", unit="clip", disable=not progress):
        clip = make_clip(clip_seed(seed, i), seconds, fps, width, height)
        paths.append(save_clip(clip, out, f"clip_{i:05d}"))
    return paths
