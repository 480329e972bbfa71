"""Text-to-image on the held-out prompts: does the still show what its prompt asks?

    python benchmarks/text_to_image.py [--model DIR] [--seed 0] [--best-of N] [--out eval/text_to_image]

Each held-out prompt (benchmarks/prompts/, both sets; prompt i at seed + i, as heldout_eval.py
seeds them) becomes a still through `framecast image`'s own function (`generate_image`: a
one-frame video, best of the model's n candidates unless --best-of says otherwise). The still
(a PNG holds these exact pixels) is judged by `framecast eval`'s alignment against the prompt as
written: objects, colours, shapes and sizes it names, its background if it names one, and a
floor if something falls or is thrown. Motion cannot be seen in a still and is not asked.

Writes OUT/NNN.png and OUT/summary.json, and prints pass rates by set and the commonest reasons.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import time
from pathlib import Path

from heldout_eval import SETS  # benchmarks/, beside this script
from PIL import Image

from framecast.cli import read_prompts
from framecast.evaluate import evaluate_clip
from framecast.pipeline import Framecast, SampleOptions, generate_image
from framecast.world.parse import parse_prompt


def reason(failure: str) -> str:
    """A failure with its object and numbers taken out, to count alike ones together."""
    text = re.sub(r"[\d.]+", "N", failure.split(": ", 1)[1])
    return re.sub(r"^(small |large )?\w+ (ball|box|triangle) ", "the object ", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/default"))
    ap.add_argument("--seed", type=int, default=0, help="seed of the first prompt; each next prompt takes the next")
    ap.add_argument("--best-of", type=int, default=None, help="candidates per still (default: the model's)")
    ap.add_argument("--out", type=Path, default=Path("eval/text_to_image"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = Framecast.load(args.model)
    rows, start, i = [], time.perf_counter(), 0
    for name, path in SETS.items():
        for prompt in read_prompts(path):
            still, _ = generate_image(model, prompt, SampleOptions(seed=args.seed + i, best_of=args.best_of))
            Image.fromarray(still.numpy()).save(args.out / f"{i:03d}.png")
            report = evaluate_clip(still[None].numpy(), model.meta.fps, parse_prompt(prompt))
            rows.append({"set": name, "prompt": prompt, "aligned": bool(report["passed"]["alignment"]),
                         "failed": [f for f in report["failed"] if f.startswith("alignment")]})
            i += 1
    seconds = time.perf_counter() - start
    summary = {name: {"stills": sum(r["set"] == name for r in rows),
                      "aligned": sum(r["aligned"] for r in rows if r["set"] == name)} for name in SETS}
    summary["all"] = {"stills": len(rows), "aligned": sum(r["aligned"] for r in rows)}
    reasons = collections.Counter(reason(f) for r in rows for f in r["failed"])
    (args.out / "summary.json").write_text(json.dumps(
        {"summary": summary, "seconds_per_still": round(seconds / len(rows), 2), "rows": rows,
         "reasons": dict(reasons.most_common())}, indent=2) + "\n")
    print("| set | stills | alignment |\n|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['stills']} | {s['aligned'] / s['stills']:.2f} ({s['aligned']}/{s['stills']}) |")
    print(f"\n{seconds / len(rows):.2f} s a still; commonest reasons a still fails:")
    for text, n in reasons.most_common(6):
        print(f"  {n:4d}  {text}")


if __name__ == "__main__":
    main()
