"""Images and clips given to generation: read with clear errors, resized to the size made.

Inputs are only ever read. Every way a file can be wrong is a FileNotFoundError or a
ValueError that names the file and says what to do.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_MODES = ("RGB", "L")  # 8-bit colour or grey; other modes are refused rather than guessed at


def _readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")


def read_image(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """An 8-bit RGB (or greyscale) image, from a file or its bytes (an upload), -> (H, W, 3) uint8.
    name: what the messages call it (default: the path, or "the image").

    Transparency (RGBA, LA), palettes and 16-bit or float images are refused: converting them
    silently would change what the first frame shows.
    """
    if isinstance(source, bytes):
        name, source = name or "the image", io.BytesIO(source)
    else:
        source = Path(source)
        name = name or str(source)
        _readable(source)
    try:
        with Image.open(source) as im:
            mode, tile = im.mode, im.tile
            if mode not in IMAGE_MODES:
                raise ValueError(f"{name} {_describe(mode)}; framecast takes 8-bit RGB (or grey) images")
            if any(";16" in str(t[3]) for t in tile if len(t) > 3):  # 16-bit PNGs open as RGB or L
                raise ValueError(f"{name} is a 16-bit image; framecast takes 8-bit RGB (or grey) images: "
                                 "convert it first")
            im.load()
            array = np.array(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError(f"{name} is not an image file framecast can read (PNG, JPEG, WebP ...)") from None
    except Image.DecompressionBombError as e:  # not an OSError: a small file that would decode to gigabytes
        raise ValueError(f"{name} is too large an image: {e}") from None
    except OSError as e:
        raise ValueError(f"{name} could not be read as an image: {e}") from None
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} has no pixels")
    return array


def _describe(mode: str) -> str:
    """What is wrong with an image mode, and what to do."""
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return f"has transparency (mode {mode}): flatten it onto a background first"
    if mode == "P":
        return "is a palette image (mode P): convert it to RGB first"
    if mode.startswith("I;16") or mode in ("I", "F"):
        return f"is a 16/32-bit image (mode {mode}): convert it to 8-bit RGB first"
    return f"is a {mode} image: convert it to RGB first"


def read_clip(path: str | Path) -> tuple[np.ndarray, float]:
    """A video file -> (T, H, W, 3) uint8 RGB frames (T >= 1) and its frame rate (0 if unknown)."""
    import av  # here, not at the top: the pipeline (and training, which reads no files) imports this module

    path = Path(path)
    _readable(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} holds no video frames (no video stream)")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except av.FFmpegError as e:
        raise ValueError(f"{path} is not a video file framecast can read ({e.strerror or type(e).__name__})") from None
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    return np.stack(frames), fps


def resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames -> (T, height, width, 3) with a Lanczos filter, the aspect ratio kept:
    what overflows the new aspect ratio is cropped evenly from both sides. Unchanged if the size fits."""
    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS,
                                                          box=crop_box(w, h, width, height))) for f in frames])


def crop_box(w: int, h: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The centred (left, top, right, bottom) of a w x h frame with the aspect ratio of width x height."""
    cw, ch = min(w, h * width / height), min(h, w * height / width)
    return (w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2
