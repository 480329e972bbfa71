"""Requests -> jobs: OpenAI's video parameters checked and mapped onto framecast's SampleOptions.

Sizes and durations follow the model rather than Sora's short list: any WxH the model can make
("64x64", "96x96", "112x64") and any duration up to the server's limit ("2", "4", "2.5"). Sora's
own sizes (720x1280 ...) are scaled to the model's resolution with their aspect ratio kept, so a
client written for Sora works unchanged; the Video object then shows the size actually made.
"""

from __future__ import annotations

import io
import math
import secrets
from dataclasses import dataclass
from typing import Any

from .. import pipeline
from ..safety import PolicyViolation, enforce
from ..pipeline import frame_count, snap_size
from .settings import ModelInfo, ServerSettings

SORA_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SORA_MODELS = "sora-2"  # every sora-2* name is taken to mean "this server's model"
DEFAULT_SECONDS = "4"  # as OpenAI's
MAX_PROMPT_CHARS = 10_000
SNAP_TOLERANCE = 0.25  # a requested side may move this much when rounded to the model's multiple
# framecast's own create fields, beyond OpenAI's (the openai client sends them with extra_body)
EXTRA_FIELDS = ("seed", "steps", "guidance", "negative_prompt", "expand")


class ApiError(Exception):
    """An error the client caused or must hear of, in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Upload:
    """A file part of a form, read (up to the size limit) before checking."""

    filename: str
    content_type: str
    data: bytes
    too_large: bool


@dataclass(frozen=True)
class JobSpec:
    prompt: str
    model: str
    seconds: str  # as the API shows it
    size: str  # as made
    options: dict[str, Any]  # SampleOptions fields


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param, code)


def prompt_of(fields: dict[str, Any]) -> str:
    prompt = fields.get("prompt")
    if prompt is None:
        raise bad("prompt is required", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("prompt is empty", "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise bad(f"prompt is longer than {MAX_PROMPT_CHARS} characters", "prompt")
    return prompt.strip()


def resolve_model(value: Any, info: ModelInfo) -> str:
    if value is None or value == info.name or (isinstance(value, str) and value.startswith(SORA_MODELS)):
        return info.name
    raise bad(f"model {value!r} is not served here; this server serves {info.name!r}", "model", "model_not_found")


def resolve_size(value: Any, info: ModelInfo) -> tuple[int, int]:
    """'WxH' -> the (width, height) the model will make, or a 400 that says what it can make."""
    if value is None:
        return info.width, info.height
    try:
        w, h = (int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise bad(f"size must look like WIDTHxHEIGHT (e.g. {info.size}), got {value!r}", "size") from None
    if w < 1 or h < 1:
        raise bad(f"size must be at least 1x1, got {value!r}", "size")
    if str(value) in SORA_SIZES:  # the model's resolution at Sora's aspect ratio
        scale = math.sqrt(info.width * info.height / (w * h))
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    elif w * h > info.max_pixels:
        raise bad(f"size {value} is too large for {info.name}: at most {info.max_pixels} pixels a frame "
                  f"(its own size is {info.size})", "size")
    sw, sh, _ = snap_size(w, h, info.multiple)
    if str(value) not in SORA_SIZES and (abs(sw - w) > SNAP_TOLERANCE * w or abs(sh - h) > SNAP_TOLERANCE * h):
        raise bad(f"size {value} is too far from a size {info.name} makes (multiples of "
                  f"{info.multiple[0]}x{info.multiple[1]}, e.g. {info.size})", "size")
    return sw, sh


def resolve_seconds(value: Any, info: ModelInfo, max_seconds: float) -> tuple[float, str]:
    text = DEFAULT_SECONDS if value is None else str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        raise bad(f"seconds must be a number of seconds such as \"4\", got {value!r}", "seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= max_seconds):
        raise bad(f"seconds must be more than 0 and at most {max_seconds:g}, got {text}", "seconds")
    try:
        frame_count(seconds, info.fps)
    except ValueError as e:
        raise bad(str(e), "seconds") from None
    return seconds, f"{seconds:g}"


def _number(fields: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    value = fields.get(name)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise bad(f"{name} must be a {kind.__name__}, got {value!r}", name) from None
    if isinstance(value, bool) or not (math.isfinite(number) and low <= number <= high):
        raise bad(f"{name} must be between {low:g} and {high:g}, got {value!r}", name)
    return number


def check_reference(value: Any, settings: ServerSettings) -> None:
    """input_reference: checked so a bad upload gets the right message, then refused, because the
    pipeline cannot condition on an image yet."""
    if value is None or value == "" or (isinstance(value, Upload) and not value.data and not value.filename):
        return  # absent; a browser sends an empty file part for an empty file input
    if isinstance(value, Upload):
        if value.too_large:
            raise bad(f"input_reference is larger than {settings.max_upload_bytes // 2**20} MB", "input_reference")
        from PIL import Image, UnidentifiedImageError

        try:
            Image.open(io.BytesIO(value.data)).verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise bad(f"input_reference ({value.filename or 'the upload'}) is not an image", "input_reference") from None
    raise bad("input_reference (image-to-video) is not supported by this server's model yet", "input_reference",
              "unsupported_parameter")


def create_spec(fields: dict[str, Any], info: ModelInfo, settings: ServerSettings) -> JobSpec:
    """The fields of POST /v1/videos -> a job, or an ApiError naming the first bad field."""
    known = {"prompt", "model", "seconds", "size", "input_reference", *EXTRA_FIELDS}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r}", unknown[0], "unknown_parameter")
    prompt = prompt_of(fields)
    try:
        enforce(prompt, "server")
    except PolicyViolation as e:
        raise bad(str(e), "prompt", "content_policy_violation") from None
    check_reference(fields.get("input_reference"), settings)
    model = resolve_model(fields.get("model"), info)
    w, h = resolve_size(fields.get("size"), info)
    seconds, seconds_text = resolve_seconds(fields.get("seconds"), info, settings.max_seconds)
    seed = _number(fields, "seed", int, 0, 2**63 - 1)
    negative = fields.get("negative_prompt") or ""
    if not isinstance(negative, str):
        raise bad("negative_prompt must be a string", "negative_prompt")
    expand = fields.get("expand", True)
    if isinstance(expand, str) and expand.lower() in ("true", "false"):  # multipart form fields are text
        expand = expand.lower() == "true"
    if not isinstance(expand, bool):
        raise bad("expand must be true or false", "expand")
    seed = secrets.randbelow(2**31) if seed is None else seed  # kept, so a remix reuses it
    options = {
        "seconds": seconds, "fps": info.fps, "width": w, "height": h, "seed": seed, "expand": expand,
        "steps": _number(fields, "steps", int, 1, settings.max_steps),
        "guidance": _number(fields, "guidance", float, 0, 100),
        "negative_prompt": negative,
    }
    if expand:  # a prompt expansion cannot make is refused now, not failed later in a worker
        try:
            pipeline.expand(prompt, seed, w / h, frame_count(seconds, info.fps) / info.fps)
        except ValueError as e:
            raise bad(str(e), "prompt") from None
    return JobSpec(prompt, model, seconds_text, f"{w}x{h}", options)
