"""Prompting with images and videos: the targets of issue 5, measured through the CLI a user runs.

    python benchmarks/prompting.py [--model DIR] [--cases 8] [--out eval/prompting]

For each held-out world scene (derive_seed(777002, i): seeds no training run draws) the scene is
rendered at the model's size and frame rate, and then:

- image-to-video: `framecast generate PROMPT --image FRAME0.png`; PSNR of the mp4's first frame
  against the image (target >= 30 dB), and `framecast eval` of the clip against the scene;
- extend: `framecast extend IN.mp4 --seconds S` (and `--backward`) of the scene's first S seconds;
  PSNR of the kept frames against IN.mp4's (target >= 35 dB), and the joined clip's motion and
  physics against the scene;
- loop: `framecast generate PROMPT --loop`; the last-to-first frame difference over the mean
  frame-to-frame difference (target <= 2);
- edit: `framecast edit IN.mp4 PROMPT'` where PROMPT' gives the first object another colour; the
  edited clip against PROMPT' (target: passes), and how far the object's path strays from the
  source's (its centre in the new colour against the old, in frame heights: "same motion");
- text-to-image: `framecast image PROMPT`; alignment of the still against the prompt as written
  (target: passes; the scene's other attributes, a background the prompt does not name, are not asked).

Every output is the CLI's own file (mp4 with provenance, or png), decoded as a user would.
Writes OUT/summary.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from framecast.evaluate import CATEGORIES, evaluate_clip
from framecast.evaluate.track import path_drift
from framecast.pipeline import read_model_config
from framecast.video.io import read_mp4, write_mp4
from framecast.video.metrics import LOOP_SEAM, psnr, seam_ratio
from framecast.world.clip import make_clip
from framecast.world.export import derive_seed
from framecast.world.parse import parse_prompt
from framecast.world.spec import OBJECT_COLORS

HELD_OUT = 777002


def recoloured(prompt: str, scene) -> str | None:
    """The prompt with its first object's colour swapped for one the scene does not use."""
    used = {o.color for o in scene.objects}
    old = scene.objects[0].color
    new = next(c for c in OBJECT_COLORS if c not in used)
    edited = re.sub(rf"\b{old}\b", new, prompt, count=1)
    edited = re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", edited)  # "a orange ball" -> "an orange ball"
    return edited if edited != prompt else None


def cli(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "framecast", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"framecast {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-500:]}")


def passed(frames: np.ndarray, fps: float, target, categories=CATEGORIES) -> dict[str, bool]:
    result = evaluate_clip(frames, fps, target)
    return {c: result["passed"][c] for c in categories}


def one_case(i: int, model: list[str], size: tuple[int, int], fps: float, seconds: float, out: Path,
             edit_args: list[str]) -> dict:
    w, h = size
    clip = make_clip(derive_seed(HELD_OUT, i), 2 * seconds, fps, w, h)
    d = out / f"{i:03d}"
    d.mkdir(parents=True, exist_ok=True)
    n_in = round(seconds * fps)
    write_mp4(d / "in.mp4", clip.frames[:n_in], fps)
    write_mp4(d / "in4.mp4", clip.frames, fps)
    for name in ("in", "in4"):
        (d / f"{name}.json").write_text(json.dumps({"prompt": clip.prompt}))
    Image.fromarray(clip.frames[0]).save(d / "frame0.png")
    seed = ["--seed", str(i)]
    row: dict = {"case": i, "prompt": clip.prompt}

    cli("generate", clip.prompt, "--image", str(d / "frame0.png"), "-o", str(d / "i2v.mp4"), *seed, *model)
    frames, got_fps = read_mp4(d / "i2v.mp4")
    row["i2v_psnr"] = psnr(frames[0], clip.frames[0])
    row["i2v_eval"] = passed(frames, got_fps, clip.scene)

    given, _ = read_mp4(d / "in.mp4")
    for direction, flag in (("forward", []), ("backward", ["--backward"])):
        path = d / f"extend_{direction}.mp4"
        cli("extend", str(d / "in.mp4"), "--seconds", f"{seconds:g}", "-o", str(path), *flag, *seed, *model)
        frames, got_fps = read_mp4(path)
        kept = frames[: len(given)] if direction == "forward" else frames[-len(given):]
        row[f"extend_{direction}_psnr"] = psnr(kept, given)
        row[f"extend_{direction}_frames"] = int(len(frames))
        if direction == "forward":
            row["extend_eval"] = passed(frames, got_fps, clip.scene, ("motion", "physics"))

    cli("generate", clip.prompt, "--loop", "-o", str(d / "loop.mp4"), *seed, *model)
    row["loop_seam_ratio"] = seam_ratio(read_mp4(d / "loop.mp4")[0])

    edited = recoloured(clip.prompt, clip.scene)
    if edited is not None:
        cli("edit", str(d / "in4.mp4"), edited, "-o", str(d / "edit.mp4"), *seed, *model, *edit_args)
        frames, got_fps = read_mp4(d / "edit.mp4")
        target = parse_prompt(edited)
        row["edit_prompt"] = edited
        row["edit_eval"] = passed(frames, got_fps, target)
        drift = path_drift(clip.frames, frames, fps, clip.scene.objects[0].color, target.objects[0].color)
        if drift is not None:
            row["edit_drift"] = drift

    cli("image", clip.prompt, "-o", str(d / "still.png"), *seed, *model)
    still = np.asarray(Image.open(d / "still.png").convert("RGB"))[None]
    # judged against the prompt: the still cannot know what the scene has and the prompt does not say
    row["t2i_alignment"] = passed(still, fps, parse_prompt(clip.prompt), ("alignment",))["alignment"]
    return row


def rate(rows: list[dict], key: str, category: str | None = None) -> str:
    vals = [r[key] if category is None else r[key][category] for r in rows if key in r]
    return f"{np.mean(vals):.2f} ({sum(vals)}/{len(vals)})" if vals else "n/a"


def summarise(rows: list[dict]) -> dict:
    def stats(key):
        v = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))} if len(v) else None

    s = {k: stats(k) for k in ("i2v_psnr", "extend_forward_psnr", "extend_backward_psnr", "loop_seam_ratio",
                               "edit_drift")}
    s["i2v_eval"] = {c: float(np.mean([r["i2v_eval"][c] for r in rows])) for c in CATEGORIES}
    s["extend_eval"] = {c: float(np.mean([r["extend_eval"][c] for r in rows])) for c in ("motion", "physics")}
    edits = [r for r in rows if "edit_eval" in r]
    s["edit_eval"] = {c: float(np.mean([r["edit_eval"][c] for r in edits])) for c in CATEGORIES} if edits else None
    s["t2i_alignment"] = float(np.mean([r["t2i_alignment"] for r in rows]))
    s["loop_within_target"] = float(np.mean([r["loop_seam_ratio"] <= LOOP_SEAM for r in rows]))
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--cases", type=int, default=8, help="held-out scenes")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of given clip, and seconds to extend by")
    ap.add_argument("--strength", type=float, default=None, help="the edit's strength (default: framecast edit's)")
    ap.add_argument("--method", default=None, help="the edit's method, flowedit or sdedit (default: framecast edit's)")
    ap.add_argument("--out", type=Path, default=Path("eval/prompting"))
    args = ap.parse_args()
    folder = args.model or str(Path(__file__).resolve().parents[1] / "models" / "default")
    _, meta = read_model_config(folder)
    model = ["--model", folder]
    start = time.time()
    rows = []
    edit_args = [] if args.strength is None else ["--strength", str(args.strength)]
    edit_args += [] if args.method is None else ["--method", args.method]
    for i in range(args.cases):
        rows.append(one_case(i, model, (meta.width, meta.height), meta.fps, args.seconds, args.out, edit_args))
        print(f"case {i + 1}/{args.cases} done ({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    summary = {"model": folder, "cases": args.cases, "seconds": args.seconds, "summary": summarise(rows), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    s = summary["summary"]
    print(f"## prompting with images and videos: {folder}, {args.cases} held-out scenes, "
          f"{meta.width}x{meta.height} at {meta.fps:g} fps; edits: {' '.join(edit_args) or 'the defaults'}\n")
    print("| task | measure | result | target |\n|---|---|---|---|")
    print(f"| image-to-video | first frame PSNR vs the image (mean, min) | {s['i2v_psnr']['mean']:.2f} dB, "
          f"{s['i2v_psnr']['min']:.2f} dB | >= 30 dB |")
    print("| image-to-video | eval vs the scene: " + ", ".join(CATEGORIES) + " | "
          + ", ".join(f"{s['i2v_eval'][c]:.2f}" for c in CATEGORIES) + " | |")
    for direction in ("forward", "backward"):
        v = s[f"extend_{direction}_psnr"]
        print(f"| extend {direction} | kept frames PSNR (mean, min) | {v['mean']:.2f} dB, {v['min']:.2f} dB | >= 35 dB |")
    print(f"| extend forward | joined clip: motion, physics | {rate(rows, 'extend_eval', 'motion')}, "
          f"{rate(rows, 'extend_eval', 'physics')} | passes |")
    lr = s["loop_seam_ratio"]
    print(f"| loop | seam / mean step difference (mean, max) | {lr['mean']:.2f}, {lr['max']:.2f} | <= {LOOP_SEAM:g} |")
    if s["edit_eval"]:
        print("| edit (new colour) | eval vs the edited prompt: " + ", ".join(CATEGORIES) + " | "
              + ", ".join(f"{s['edit_eval'][c]:.2f}" for c in CATEGORIES) + " | passes |")
    if s["edit_drift"]:
        n = sum("edit_drift" in r for r in rows)
        print(f"| edit (new colour) | the object's path vs the source's, frame heights (mean, max; {n} tracked) | "
              f"{s['edit_drift']['mean']:.3f}, {s['edit_drift']['max']:.3f} | same motion |")
    print(f"| text-to-image | alignment of the still | {rate(rows, 't2i_alignment')} | passes |")
    print(f"\n(ran {time.time() - start:.0f} s; per-case rows in {args.out / 'summary.json'})")


if __name__ == "__main__":
    main()
