"""Provenance on every video framecast makes: an invisible watermark in the pixels and signed
C2PA content credentials, and `verify` to read both back."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np

from .manifest import Generation, read_manifest, sign_mp4
from .verify import format_report, still_luma_of_file, verify_file
from .watermark import STRENGTH, detect, detect_still, embed, video_id

MARK_TRIES = 3  # embeddings tried before a file is written whose mark cannot be read back
MARK_GAIN = 1.5  # each try's strength over the last's: PSNR -3.5 dB a try

__all__ = ["Generation", "detect", "embed", "format_report", "read_manifest", "sign_mp4", "verify_file",
           "video_id", "write_marked_mp4", "write_marked_png"]


def write_marked_mp4(path: str | Path, frames: np.ndarray, fps: float, gen: Generation, loop: bool = False) -> dict:
    """Watermark the frames, encode them as mp4 (a loop as video.io.write_mp4 codes one) and sign
    it: the one way framecast writes a generated video (the CLI and the server both call this).
    Returns what was done: {"watermark_id", "watermark_strength" (RMS luma levels), "watermark_read"
    (whether the mark was read back from the file), "credentials" (where the signing key came from),
    "embed_s", "check_s" (reading the file back and detecting), "sign_s"}."""
    from ..video.io import write_mp4

    return _write_marked(path, frames, lambda p, marked: write_mp4(p, marked, fps, loop=loop), "video/mp4", gen)


def write_marked_png(path: str | Path, frame: np.ndarray, gen: Generation) -> dict:
    """A generated still (H, W, 3) as PNG, watermarked and signed like a video."""
    from PIL import Image

    return _write_marked(path, np.asarray(frame)[None],
                         lambda p, marked: Image.fromarray(marked[0]).save(p, format="PNG"), "image/png", gen)


def _write_marked(path: str | Path, frames: np.ndarray, write, mime: str, gen: Generation) -> dict:
    """Embed, write, and detect in the file as `framecast verify` reads it: the encoder quantises
    the mark away on some content (busy frames at 32x32 lost it in 3 of 60 clips at the standard
    strength), so until the file as written carries it, embed again a little stronger (MARK_GAIN
    a try). Then sign."""
    frames = np.asarray(frames)  # (T, H, W, 3) uint8
    path = Path(path)
    ident = video_id(frames)
    unsigned = path.with_name(path.name + ".unsigned")
    signed = path.with_name(path.name + ".signed")
    embed_s = check_s = 0.0
    try:
        for attempt in range(MARK_TRIES):
            strength = STRENGTH * MARK_GAIN ** attempt
            t0 = time.perf_counter()
            marked = embed(frames, ident, strength)
            t1 = time.perf_counter()
            write(unsigned, marked)
            written = time.perf_counter()
            found = detect_still(still_luma_of_file(unsigned))
            embed_s, check_s = embed_s + t1 - t0, check_s + time.perf_counter() - written
            if read_back := (found.detected and found.id == ident):
                break
        else:  # content no mark survives (e.g. still noise): a stronger one would only cost PSNR
            warnings.warn(f"{path.name}: the watermark could not be read back from the file at up to {strength:.1f} "
                          f"levels RMS; it is written at the standard {STRENGTH} with its C2PA credentials", stacklevel=3)
            strength = STRENGTH
            write(unsigned, embed(frames, ident, strength))
        t2 = time.perf_counter()
        gen = Generation(gen.model, f"{ident:08x}", gen.settings, gen.prompt)
        source = sign_mp4(unsigned, signed, gen, mime)
        os.replace(signed, path)  # a crash never leaves an unsigned or half-signed file under the name
        t3 = time.perf_counter()
    finally:
        for p in (unsigned, signed):
            p.unlink(missing_ok=True)
    return {"watermark_id": f"{ident:08x}", "watermark_strength": strength, "watermark_read": read_back,
            "credentials": source, "embed_s": embed_s, "check_s": check_s, "sign_s": t3 - t2}
