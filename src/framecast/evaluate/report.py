"""Score a folder of clips (NAME.mp4 + NAME.json) and format the report."""

from __future__ import annotations

import json
from pathlib import Path

from .checks import CATEGORIES
from .clip import evaluate_clip


def _target(meta: dict):
    """The scene a clip's JSON names, else its prompt parsed; raises ValueError if neither."""
    from ..world.scene import Scene, SceneError

    if not isinstance(meta, dict):
        raise ValueError("the JSON is not an object")
    if meta.get("scene") is not None:
        try:
            scene = Scene.from_json(meta["scene"])
            scene.validate()
        except (KeyError, TypeError, ValueError, AttributeError, SceneError) as e:
            raise ValueError(f"unusable scene: {e}") from None
        return scene
    prompt = meta.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('the JSON has neither a "scene" nor a "prompt"')
    from ..world.parse import parse_prompt  # lazily: the parser is only needed for prompts

    try:
        target = parse_prompt(prompt)
    except Exception as e:  # a prompt the parser chokes on is one unusable clip, not a crash
        raise ValueError(f"cannot read the prompt ({e})") from None
    if not target.objects:
        raise ValueError(f"the prompt names no object: {prompt!r}")
    return target


def _failed_all(reason: str) -> dict:
    return {"passed": {c: False for c in CATEGORIES}, "failed": [f"{c}: {reason}" for c in CATEGORIES]}


def evaluate_file(mp4: Path, meta_path: Path) -> dict:
    """One clip's entry of the report; never raises for a bad clip, it fails it."""
    from ..video.io import read_mp4

    prompt = None
    try:
        meta = json.loads(meta_path.read_text())
        prompt = meta.get("prompt") if isinstance(meta, dict) else None
        prompt = prompt if isinstance(prompt, str) else None
        target = _target(meta)
    except (OSError, ValueError) as e:
        result = _failed_all(f"unusable JSON ({e})")
    else:
        try:
            frames, fps = read_mp4(mp4)
            if not fps > 0:  # a stream without a rate: the JSON may still say
                fps = float(meta.get("fps") or 0)
            if not fps > 0:
                raise ValueError("no frame rate")
        except Exception as e:  # PyAV raises many kinds; any undecodable file is a failed clip
            result = _failed_all(f"cannot decode {mp4.name} ({e})")
        else:
            try:
                result = evaluate_clip(frames, fps, target)
            except Exception as e:  # a clip that breaks the checks is reported, never fatal
                result = _failed_all(f"cannot evaluate ({type(e).__name__}: {e})")
    return {"name": mp4.stem, "prompt": prompt, **result}


def evaluate_dir(path) -> dict:
    """Score every NAME.mp4 that has a NAME.json beside it in the folder `path`."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    pairs = [(p, p.with_suffix(".json")) for p in sorted(folder.glob("*.mp4"))]
    pairs = [(m, j) for m, j in pairs if j.is_file()]
    if not pairs:
        raise ValueError(f"{folder} holds no clips to evaluate (NAME.mp4 with NAME.json beside it)")
    clips = [evaluate_file(m, j) for m, j in pairs]
    summary = {c: sum(r["passed"][c] for r in clips) / len(clips) for c in CATEGORIES}
    return {"summary": summary, "clips": clips}


def format_report(report: dict) -> str:
    """Per-category pass rates, then every failing clip with its reasons."""
    clips = report["clips"]
    lines = [f"{len(clips)} clip{'s' if len(clips) != 1 else ''} evaluated", "",
             f"{'category':<12} {'pass rate':>9}  {'passed':>9}"]
    for c in CATEGORIES:
        n = sum(r["passed"][c] for r in clips)
        lines.append(f"{c:<12} {report['summary'][c]:>9.1%}  {n:>5}/{len(clips)}")
    failing = [r for r in clips if r["failed"]]
    lines.append("")
    if not failing:
        lines.append("every clip passes every check")
    else:
        lines.append(f"failing clips ({len(failing)}):")
        for r in failing:
            head = r["name"] + (f'  "{r["prompt"]}"' if r.get("prompt") else "")
            lines.append(f"  {head}")
            lines += [f"    - {f}" for f in r["failed"]]
    return "\n".join(lines)
