"""`framecast verify`: what a video file says about where it came from.

Two independent witnesses: the C2PA manifest (signed, but lost to any re-encode or metadata
strip) and the watermark in the pixels (survives those, carries only an id).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import watermark
from .manifest import GENERATOR, read_manifest


def still_luma_of_file(path: str | Path) -> np.ndarray:
    """The watermark detector's input, decoded frame by frame: a long video never sits in memory."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            step = max(1, math.ceil((stream.frames or 0) / watermark.STILL_FRAMES))
            kept = [watermark.luma(f.to_ndarray(format="rgb24").astype(np.float32))
                    for i, f in enumerate(container.decode(stream)) if i % step == 0]
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable video: {e}") from None
    if not kept:
        raise ValueError(f"{path}: no video frames")
    frames = np.stack(kept)  # (T, H, W) luma
    return np.median(frames[watermark.still_frames(len(frames))], axis=0).astype(np.float64)


def verify_file(path: str | Path) -> dict:
    """{"file", "c2pa": {"status", "reason", ...}, "watermark": {"detected", "id", "confidence", ...},
    "framecast": bool, "verdict": str}. Raises FileNotFoundError or ValueError on bad input."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    mark = watermark.detect_still(still_luma_of_file(path)).to_json()
    c2pa = read_manifest(path)
    verdict, ours = _verdict(c2pa, mark)
    return {"file": str(path), "c2pa": c2pa, "watermark": mark, "framecast": ours, "verdict": verdict}


def _verdict(c2pa: dict, mark: dict) -> tuple[str, bool]:
    status = c2pa["status"]
    signed = status in ("valid", "trusted") and GENERATOR in (c2pa.get("claim_generator") or "")
    trust = "a trusted signer" if status == "trusted" else "a signer not on any trust list here"
    ident = f"id {mark['id']}" if mark["id"] else "id unreadable"
    marked = f"the framecast watermark ({ident}, confidence {mark['confidence']:.6f})"
    if signed and mark["detected"]:
        recorded = (c2pa.get("framecast") or {}).get("watermark_id")
        clash = (f"; note: the credentials record watermark id {recorded}, the pixels carry {mark['id']}"
                 if recorded and mark["id"] and recorded != mark["id"] else "")
        return f"made by framecast: intact content credentials from {trust}, and {marked}{clash}", True
    if signed:
        return (f"made by framecast: intact content credentials from {trust}; no watermark found "
                "(the pixels were changed heavily, or the video was not marked)"), True
    if mark["detected"]:
        why = {"absent": "its content credentials were stripped (re-encoded or metadata removed)",
               "invalid": f"its content credentials are invalid ({c2pa['reason']}): changed after signing",
               }.get(status, f"its content credentials name another generator ({c2pa.get('claim_generator')})")
        return f"made by framecast: {marked}; {why}", True
    if status == "absent":
        return "no framecast provenance: no C2PA manifest and no framecast watermark", False
    if status == "invalid":
        return f"no framecast provenance: no framecast watermark, and the C2PA manifest is invalid ({c2pa['reason']})", False
    return f"no framecast provenance: no framecast watermark; C2PA credentials from {c2pa.get('claim_generator')}", False


def format_report(report: dict) -> str:
    c, w = report["c2pa"], report["watermark"]
    lines = [report["file"], f"  C2PA:      {c['status']} - {c['reason']}"]
    if c["status"] != "absent" and c.get("claim_generator"):
        lines.append(f"             generator {c['claim_generator']}, signer {c.get('signer')}")
        for a in c.get("actions", []):
            lines.append(f"             action {a.get('action')} ({a.get('digitalSourceType', 'no source type')})")
    found = "detected" if w["detected"] else "not detected"
    lines.append(f"  watermark: {found}, id {w['id'] or '-'}, confidence {w['confidence']:.6f} (p = {w['p_value']:.2g})")
    lines.append(f"  verdict:   {report['verdict']}")
    return "\n".join(lines)
