"""Provenance on every video framecast makes: an invisible watermark in the pixels and signed
C2PA content credentials, and `verify` to read both back."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .manifest import Generation, read_manifest, sign_mp4
from .verify import format_report, verify_file
from .watermark import detect, embed, video_id

__all__ = ["Generation", "detect", "embed", "format_report", "read_manifest", "sign_mp4", "verify_file",
           "video_id", "write_marked_mp4", "write_marked_png"]


def write_marked_mp4(path: str | Path, frames: np.ndarray, fps: float, gen: Generation, loop: bool = False) -> dict:
    """Watermark the frames, encode them as mp4 (a loop as video.io.write_mp4 codes one) and sign
    it: the one way framecast writes a generated video (the CLI and the server both call this).
    Returns what was done: {"watermark_id", "credentials" (where the signing key came from),
    "embed_s", "sign_s"}."""
    from ..video.io import write_mp4

    return _write_marked(path, frames, lambda p, marked: write_mp4(p, marked, fps, loop=loop), "video/mp4", gen)


def write_marked_png(path: str | Path, frame: np.ndarray, gen: Generation) -> dict:
    """A generated still (H, W, 3) as PNG, watermarked and signed like a video."""
    from PIL import Image

    return _write_marked(path, np.asarray(frame)[None],
                         lambda p, marked: Image.fromarray(marked[0]).save(p, format="PNG"), "image/png", gen)


def _write_marked(path: str | Path, frames: np.ndarray, write, mime: str, gen: Generation) -> dict:
    frames = np.asarray(frames)  # (T, H, W, 3) uint8
    path = Path(path)
    t0 = time.perf_counter()
    ident = video_id(frames)
    marked = embed(frames, ident)
    t1 = time.perf_counter()
    unsigned = path.with_name(path.name + ".unsigned")
    signed = path.with_name(path.name + ".signed")
    try:
        write(unsigned, marked)
        t2 = time.perf_counter()
        gen = Generation(gen.model, f"{ident:08x}", gen.settings, gen.prompt)
        source = sign_mp4(unsigned, signed, gen, mime)
        os.replace(signed, path)  # a crash never leaves an unsigned or half-signed file under the name
        t3 = time.perf_counter()
    finally:
        for p in (unsigned, signed):
            p.unlink(missing_ok=True)
    return {"watermark_id": f"{ident:08x}", "credentials": source, "embed_s": t1 - t0, "sign_s": t3 - t2}
