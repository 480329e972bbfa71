"""The default model's held-out evaluation: generate every held-out prompt with the default
settings, with and without prompt expansion, and score the clips with `framecast eval`.

    python benchmarks/heldout_eval.py --model models/default --out eval/heldout [--jobs 2] [--steps N] [--sampler heun]
    python benchmarks/heldout_eval.py --seconds 60 --no-no-expand-too --out eval/minute   # issue 5's minute

With `--seconds 60` every clip is a minute long (generated window by window, as `framecast
generate --seconds 60` does), and the permanence column is issue 5's "objects keep identity,
colour and size for the whole clip" over the whole minute.

For each prompt file (benchmarks/prompts/heldout_*.txt) and expansion setting the clips land in
OUT/<set>-<expand|no-expand>/ (NAME.mp4 + NAME.json), made by `framecast generate --prompts-file`
(one process each; `--jobs` at a time, one thread each). OUT/summary.json holds the pass rates
per category, failures counted by category, and the generation time per clip; a Markdown
table is printed for the model card.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from framecast.evaluate import evaluate_dir
from framecast.evaluate.checks import CATEGORIES

PROMPTS = Path(__file__).resolve().parent / "prompts"
SETS = {"world": PROMPTS / "heldout_world.txt", "paraphrases": PROMPTS / "heldout_paraphrases.txt"}
FRAMECAST = Path(sys.executable).with_name("framecast")


def make(name: str, prompts: Path, expand: bool, out: Path, args) -> tuple[str, float]:
    folder = out / f"{name}-{'expand' if expand else 'no-expand'}"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(FRAMECAST), "generate", "--prompts-file", str(prompts), "-o", str(folder), "--model", str(args.model),
           "--seed", str(args.seed)]
    cmd += [] if expand else ["--no-expand"]
    cmd += [] if args.seconds is None else ["--seconds", str(args.seconds)]
    cmd += [] if args.steps is None else ["--steps", str(args.steps)]
    cmd += [] if args.guidance is None else ["--guidance", str(args.guidance)]
    cmd += [] if args.sampler is None else ["--sampler", args.sampler]
    cmd += [] if args.best_of is None else ["--best-of", str(args.best_of)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return folder.name, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument("--out", type=Path, default=Path("eval/heldout"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the first prompt; each next prompt takes the next")
    ap.add_argument("--seconds", type=float, default=None, help="clip length (default: generate's, 4 s)")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None, help="guidance (default: the model's)")
    ap.add_argument("--sampler", choices=("euler", "heun"), default=None, help="ODE solver (default: the model's)")
    ap.add_argument("--best-of", type=int, default=None,
                    help="candidates per clip, the best by the world checks kept (default: the model's; "
                         "1: the model alone)")
    ap.add_argument("--jobs", type=int, default=2, help="generating processes at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--no-expand-too", action=argparse.BooleanOptionalAction, default=True,
                    help="also evaluate with --no-expand (default: yes)")
    args = ap.parse_args()
    runs = [(name, path, expand) for expand in ((True, False) if args.no_expand_too else (True,))
            for name, path in SETS.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        times = dict(pool.map(lambda r: make(*r, args.out, args), runs))
    summary = {}
    for name, _, expand in runs:
        key = f"{name}-{'expand' if expand else 'no-expand'}"
        report = evaluate_dir(args.out / key)
        clips = report["clips"]
        summary[key] = {"clips": len(clips), "pass_rates": {c: round(v, 3) for c, v in report["summary"].items()},
                        "failures": {c: sum(not r["passed"][c] for r in clips) for c in CATEGORIES},
                        "seconds_per_clip": round(times[key] / len(clips), 2)}
    for expand in ("expand", "no-expand"):  # both sets together: the model card's headline
        parts = [summary[f"{name}-{expand}"] for name in SETS if f"{name}-{expand}" in summary]
        if len(parts) == len(SETS):
            n = sum(p["clips"] for p in parts)
            summary[f"all-{expand}"] = {
                "clips": n,
                "pass_rates": {c: round(sum(p["pass_rates"][c] * p["clips"] for p in parts) / n, 3) for c in CATEGORIES},
                "failures": {c: sum(p["failures"][c] for p in parts) for c in CATEGORIES}}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"| set | clips | {' | '.join(CATEGORIES)} |")
    print(f"|---|---|{'---|' * len(CATEGORIES)}")
    for key, s in summary.items():
        print(f"| {key} | {s['clips']} | " + " | ".join(f"{s['pass_rates'][c]:.2f}" for c in CATEGORIES) + " |")


if __name__ == "__main__":
    main()
