"""End-to-end generation time of a model folder on this machine, with its breakdown.

    python benchmarks/generate_speed.py [--model models/default] [--seconds 4] [--runs 3] [--threads 2]

Times what `framecast generate` does for one clip: prompt expansion and text encoding, the
sampler's DiT calls, VAE decoding and mp4 writing (model loading is reported apart: a server
pays it once). Each part is timed by wrapping the model's own modules, so the figures are
those of the library's real code path. The best of --runs is reported.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from framecast.pipeline import Framecast, SampleOptions, generate
from framecast.video.io import write_mp4

PROMPT = "a red ball falls and bounces while a blue box spins clockwise"


def timed(fn, totals: dict, key: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[key] += time.perf_counter() - start
        return out
    return wrapper


def one_run(model: Framecast, opts: SampleOptions, out: Path) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    text_fwd, dit_fwd, decode = model.text.forward, model.dit.forward, model.vae.decode
    model.text.forward = timed(text_fwd, totals, "text encoding")
    model.dit.forward = timed(dit_fwd, totals, "sampling (DiT)")
    model.vae.decode = timed(decode, totals, "VAE decoding")
    try:
        start = time.perf_counter()
        frames, fps, _ = generate(model, PROMPT, opts)
        t0 = time.perf_counter()
        write_mp4(out, frames.numpy(), fps)
        totals["mp4 writing"] = time.perf_counter() - t0
        totals["total"] = time.perf_counter() - start
    finally:
        del model.text.forward, model.dit.forward, model.vae.decode  # back to the class methods
    named = sum(v for k, v in totals.items() if k != "total")
    totals["other (expansion, noise, glue)"] = totals["total"] - named
    totals["frames"] = frames.shape[0]
    return dict(totals)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "default")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=None, help="default: the model's")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model = Framecast.load(args.model)
    load = time.perf_counter() - start
    opts = SampleOptions(seconds=args.seconds, steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(model, opts, Path(tmp) / "clip.mp4") for _ in range(args.runs)]
    best = min(runs, key=lambda r: r["total"])
    m = model.meta
    print(f"{args.model}: {args.seconds:g} s clip, {int(best['frames'])} frames of {m.width}x{m.height} at "
          f"{m.fps:g} fps, {args.steps or m.steps} steps, guidance {m.guidance:g}, {args.threads} threads")
    print(f"model loading (once per process): {load:.2f} s")
    for key, value in best.items():
        if key != "frames":
            print(f"  {key:<32} {value:7.2f} s")
    totals = ", ".join(f"{r['total']:.2f}" for r in runs)
    print(f"all runs' totals: {totals} s")


if __name__ == "__main__":
    main()
