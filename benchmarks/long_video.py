"""Long clips: time and peak memory of a 4 s clip against a 60 s one (the targets of issue 5:
time <= 16x, peak memory <= 1.3x).

    python benchmarks/long_video.py [--model models/default] [--seconds 4 60] [--steps N] [--threads 1]

Each length runs in a fresh process (so each peak is its own): it loads the model folder,
generates the clip the way `framecast generate --seconds S` does (window by window past the
model's window, each given the tail of the one before) and writes the mp4. Reported per
length: windows, latent frames through the DiT, DiT calls, seconds to generate (wall clock and
CPU time, the best of --runs; model loading and mp4 writing apart),
peak resident memory of the process (ru_maxrss) and the part of it generation added after
loading. Ratios are against the first length. On a busy machine the CPU-time ratio is the
steadier one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red ball falls and bounces while a blue box spins clockwise"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def worker(args) -> None:
    import torch

    from framecast import windows
    from framecast.pipeline import Framecast, SampleOptions, generate, prepare
    from framecast.video.io import write_mp4

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = Framecast.load(args.model)
    load_s, load_mb = time.perf_counter() - start, peak_mb()
    calls = []
    model.dit.register_forward_hook(lambda *_: calls.append(1))
    opts = SampleOptions(seconds=args.seconds, steps=args.steps, context=args.context)
    plan = prepare(model, PROMPT, opts).plan
    gen_s = cpu_s = mp4_s = float("inf")
    for _ in range(args.runs):  # the best of a few runs: a busy machine only ever adds time
        calls.clear()
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), time.process_time()
            frames, fps, _ = generate(model, PROMPT, opts)
            gen_s, cpu_s = min(gen_s, time.perf_counter() - start), min(cpu_s, time.process_time() - cpu)
            start = time.perf_counter()
            write_mp4(Path(tmp) / "clip.mp4", frames.numpy(), fps)
            mp4_s = min(mp4_s, time.perf_counter() - start)
            del frames
    print(json.dumps({"seconds": args.seconds, "frames": windows.frames_made(plan), "windows": len(plan),
                      "latent_frames": sum(w.latents for w in plan),
                      "dit_calls": len(calls), "load_s": load_s, "generate_s": gen_s, "cpu_s": cpu_s, "mp4_s": mp4_s,
                      "load_peak_mb": load_mb, "peak_mb": peak_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "default")
    ap.add_argument("--seconds", type=float, nargs="+", default=[4.0, 60.0])
    ap.add_argument("--steps", type=int, default=None, help="default: the model's")
    ap.add_argument("--context", type=int, default=None, help="latent frames each window is given (default: the model's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2, help="generations per length; the best is reported")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        args.seconds = args.seconds[0]
        return worker(args)

    rows = []
    for s in args.seconds:
        cmd = [sys.executable, __file__, "--worker", "--model", str(args.model), "--seconds", str(s),
               "--threads", str(args.threads), "--runs", str(args.runs)]
        for name in ("steps", "context"):
            if getattr(args, name) is not None:
                cmd += [f"--{name}", str(getattr(args, name))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]
    print(f"{args.model}: steps {args.steps or 'default'}, context {args.context or 'default'}, "
          f"{args.threads} thread(s), best of {args.runs} run(s)")
    print(f"{'clip':>6} {'frames':>6} {'windows':>7} {'DiT lat.':>8} {'DiT calls':>9} {'generate':>9} {'CPU':>8} "
          f"{'mp4':>6} {'peak RSS':>9} {'gen. extra':>10} {'work x':>7} {'time x':>7} {'CPU x':>6} {'peak x':>7}")
    for r in rows:
        extra = r["peak_mb"] - r["load_peak_mb"]
        print(f"{r['seconds']:>5g}s {r['frames']:>6} {r['windows']:>7} {r['latent_frames']:>8} {r['dit_calls']:>9} "
              f"{r['generate_s']:>8.2f}s {r['cpu_s']:>7.2f}s {r['mp4_s']:>5.2f}s {r['peak_mb']:>7.0f}MB "
              f"{extra:>8.1f}MB {r['latent_frames'] / base['latent_frames']:>7.2f} "
              f"{r['generate_s'] / base['generate_s']:>7.2f} {r['cpu_s'] / base['cpu_s']:>6.2f} "
              f"{r['peak_mb'] / base['peak_mb']:>7.3f}")
    print("work x: latent frames through the DiT (given ones included), the ratio the sampling time follows")


if __name__ == "__main__":
    main()
