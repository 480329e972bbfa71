"""World clips rendered per second on one core: simulation + rendering + captions, and with mp4.

    taskset -c 0 python benchmarks/world_throughput.py --size 64x64 --n 50
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from framecast.cli import parse_size
from framecast.video.io import write_mp4
from framecast.world.clip import make_clip
from framecast.world.export import clip_seed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=parse_size, default=(64, 64))
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    w, h = args.size
    render_s = encode_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            t0 = time.perf_counter()
            clip = make_clip(clip_seed(0, i), args.seconds, args.fps, w, h)
            t1 = time.perf_counter()
            write_mp4(Path(tmp) / "c.mp4", clip.frames, clip.fps)
            t2 = time.perf_counter()
            render_s += t1 - t0
            encode_s += t2 - t1
    print(f"{w}x{h}, {args.seconds:g} s at {args.fps:g} fps, {args.n} clips, cpus allowed: {len(os.sched_getaffinity(0))}")
    print(f"  simulate+render+caption: {args.n / render_s:.1f} clips/s")
    print(f"  + mp4 encode:            {args.n / (render_s + encode_s):.1f} clips/s")


if __name__ == "__main__":
    main()
