"""Requests -> jobs: OpenAI's video parameters checked and mapped onto framecast's SampleOptions.

Sizes and durations follow the model rather than Sora's short list: any WxH the model can make
("64x64", "96x96", "112x64") and any duration up to the server's limit ("2", "4", "2.5"). Sora's
own sizes (720x1280 ...) are scaled to the model's resolution with their aspect ratio kept, so a
client written for Sora works unchanged; the Video object then shows the size actually made.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import pipeline
from ..config import EDITS, MAX_BEST_OF
from ..pipeline import frame_count, snap_size
from ..safety import PolicyViolation, enforce
from ..video.inputs import read_image
from .inputs import IMAGE, SOURCE, given_files, job_inputs
from .settings import ModelInfo, ServerSettings
from .store import Job

SORA_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SORA_MODELS = "sora-2"  # every sora-2* name is taken to mean "this server's model"
DEFAULT_SECONDS = "4"  # as OpenAI's
MAX_PROMPT_CHARS = 10_000
SNAP_TOLERANCE = 0.25  # a requested side may move this much when rounded to the model's multiple
# framecast's own create fields, beyond OpenAI's (the openai client sends them with extra_body)
EXTRA_FIELDS = ("seed", "steps", "guidance", "negative_prompt", "expand", "best_of")


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
    seconds: str  # as the API shows it: an extension's is the whole video's
    size: str  # as made
    options: dict[str, Any]  # SampleOptions fields
    given: dict[str, Any] | None = None  # Given.from_files' arguments, files named in the job's inputs folder
    files: dict[str, Any] = field(default_factory=dict)  # what that folder gets: name -> an image array or a file


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


def read_reference(value: Any, info: ModelInfo, settings: ServerSettings) -> np.ndarray | None:
    """input_reference (an uploaded image, or {"image_url": a data URL}) -> the image (H, W, 3), or
    None when absent; a 400 that says what is wrong otherwise."""
    if value is None or value == "" or (isinstance(value, Upload) and not value.data and not value.filename):
        return None  # absent; a browser sends an empty file part for an empty file input
    if not info.given_frames:
        raise bad("input_reference (image-to-video) is not supported by this server's model: its DiT patches "
                  "several frames together", "input_reference", "unsupported_parameter")
    limit = f"input_reference is larger than {settings.max_upload_bytes // 2**20} MB"
    if isinstance(value, Upload):
        if value.too_large:
            raise bad(limit, "input_reference")
        data, name = value.data, f"input_reference ({value.filename or 'the upload'})"
    else:
        data, name = _image_url_bytes(value), "input_reference"
        if len(data) > settings.max_upload_bytes:
            raise bad(limit, "input_reference")
    try:
        return read_image(data, name)
    except ValueError as e:
        raise bad(str(e), "input_reference") from None


def _image_url_bytes(value: Any) -> bytes:
    """{"image_url": a base64 data URL} (or the URL alone) -> the image file's bytes. A data URL is
    the one kind of image_url taken: the server fetches nothing from the network."""
    url = value.get("image_url") if isinstance(value, dict) else value
    if isinstance(value, dict) and url is None and "file_id" in value:
        raise bad("input_reference file_id: this server has no Files API; upload the image itself",
                  "input_reference", "unsupported_parameter")
    if not isinstance(url, str):
        raise bad("input_reference must be an image file, or {\"image_url\": a data URL}", "input_reference")
    head, comma, payload = url.partition(",")
    if not (head.startswith("data:") and head.endswith(";base64") and comma):
        raise bad("input_reference image_url must be a base64 data URL (data:image/png;base64,...), as this "
                  "server fetches nothing from the network; or upload the image itself", "input_reference",
                  "unsupported_parameter")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad("input_reference image_url holds invalid base64", "input_reference") from None


def _known(fields: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(fields) - known)
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r}", unknown[0], "unknown_parameter")


def _allowed_prompt(fields: dict[str, Any]) -> str:
    """The request's prompt, checked, and allowed by the content policy."""
    prompt = prompt_of(fields)
    try:
        enforce(prompt, "server")
    except PolicyViolation as e:
        raise bad(str(e), "prompt", "content_policy_violation") from None
    return prompt


def _check_expansion(prompt: str, options: dict[str, Any], info: ModelInfo) -> None:
    """A prompt expansion cannot make is refused now, not failed later in a worker."""
    if options["expand"]:
        try:
            pipeline.expand(prompt, options["seed"], options["width"] / options["height"],
                            frame_count(options["seconds"], info.fps) / info.fps)
        except ValueError as e:
            raise bad(str(e), "prompt") from None


def sampling_options(fields: dict[str, Any], prompt: str, seconds: float, size: tuple[int, int], info: ModelInfo,
                     settings: ServerSettings, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """framecast's own fields (EXTRA_FIELDS) -> SampleOptions fields; what a field leaves out comes
    from defaults (the source video's, for an extension or edit), else the model's."""
    defaults = defaults or {}
    seed = _number(fields, "seed", int, 0, 2**63 - 1)
    negative = fields.get("negative_prompt", defaults.get("negative_prompt")) or ""
    if not isinstance(negative, str):
        raise bad("negative_prompt must be a string", "negative_prompt")
    expand = fields.get("expand", defaults.get("expand", True))
    if isinstance(expand, str) and expand.lower() in ("true", "false"):  # multipart form fields are text
        expand = expand.lower() == "true"
    if not isinstance(expand, bool):
        raise bad("expand must be true or false", "expand")
    steps, guidance = _number(fields, "steps", int, 1, settings.max_steps), _number(fields, "guidance", float, 0, 100)
    best_of = _number(fields, "best_of", int, 1, MAX_BEST_OF)
    options = {
        "seconds": seconds, "fps": info.fps, "width": size[0], "height": size[1], "expand": expand,
        "seed": secrets.randbelow(2**31) if seed is None else seed,  # kept, so a remix reuses it
        "steps": defaults.get("steps") if steps is None else steps,
        "guidance": defaults.get("guidance") if guidance is None else guidance,
        "negative_prompt": negative,
        "best_of": defaults.get("best_of") if best_of is None else best_of,
    }
    _check_expansion(prompt, options, info)
    return options


def create_spec(fields: dict[str, Any], info: ModelInfo, settings: ServerSettings) -> JobSpec:
    """The fields of POST /v1/videos -> a job, or an ApiError naming the first bad field. With an
    image (input_reference) the video starts with it, cropped and resized to the size asked for, or
    to a size of its own aspect ratio when none is."""
    _known(fields, {"prompt", "model", "seconds", "size", "input_reference", *EXTRA_FIELDS})
    prompt = _allowed_prompt(fields)
    image = read_reference(fields.get("input_reference"), info, settings)
    model = resolve_model(fields.get("model"), info)
    if image is not None and fields.get("size") is None:
        w, h = pipeline.media_size(info, info.multiple, image.shape[1], image.shape[0])
    else:
        w, h = resolve_size(fields.get("size"), info)
    seconds, seconds_text = resolve_seconds(fields.get("seconds"), info, settings.max_seconds)
    if image is not None and frame_count(seconds, info.fps) < 2:
        raise bad(f"seconds must hold a frame after the image: at least {2 / info.fps:g}", "seconds")
    options = sampling_options(fields, prompt, seconds, (w, h), info, settings)
    if image is None:
        return JobSpec(prompt, model, seconds_text, f"{w}x{h}", options)
    return JobSpec(prompt, model, seconds_text, f"{w}x{h}", options, {"image": IMAGE}, {IMAGE: image})


def remix_spec(fields: dict[str, Any], source: Job, info: ModelInfo, settings: ServerSettings) -> JobSpec:
    """POST /v1/videos/{id}/remix: the source's job again, with a new prompt (same size, duration,
    seed and settings, and the same image or video given, if any)."""
    _known(fields, {"prompt"})
    prompt = _allowed_prompt(fields)
    _check_expansion(prompt, source.options, info)
    files = given_files(job_inputs(settings.inputs_dir, source.id), source.given)
    return JobSpec(prompt, info.name, source.seconds, source.size, dict(source.options), source.given, files)


def source_id(fields: dict[str, Any]) -> str:
    """The id in an extension's or edit's `video` ({"id": ...}, as the openai client sends it)."""
    video = fields.get("video")
    if isinstance(video, dict) and set(video) == {"id"}:
        video = video["id"]
    if video is None:
        raise bad("video is required: {\"id\": the id of a completed video}", "video", "missing_required_parameter")
    if isinstance(video, Upload):
        raise bad("uploading a video is not supported here: give {\"id\": ...} of a completed video of this "
                  "server", "video", "unsupported_parameter")
    if not isinstance(video, str) or not video.strip():
        raise bad("video must be {\"id\": the id of a completed video}", "video")
    return video.strip()


def extension_spec(fields: dict[str, Any], source: Job, source_mp4: Path, info: ModelInfo,
                   settings: ServerSettings) -> JobSpec:
    """POST /v1/videos/extensions: the source video, unchanged, then `seconds` more of it. Its
    Video object shows the whole video's duration, as OpenAI's does."""
    _known(fields, {"prompt", "seconds", "video", *EXTRA_FIELDS})
    prompt = _allowed_prompt(fields)
    _given_frames(info, "extending a video")
    seconds, _ = resolve_seconds(fields.get("seconds"), info, settings.max_seconds)
    total = float(source.seconds) + seconds
    if total > settings.max_video_seconds:
        raise bad(f"the extended video would be {total:g} s; a video may be at most "
                  f"{settings.max_video_seconds:g} s (the source is {source.seconds} s)", "seconds")
    options = sampling_options(fields, prompt, seconds, _size(source), info, settings, source.options)
    return JobSpec(prompt, info.name, f"{total:g}", source.size, options, {"before": SOURCE}, {SOURCE: source_mp4})


def edit_spec(fields: dict[str, Any], source: Job, source_mp4: Path, info: ModelInfo,
              settings: ServerSettings) -> JobSpec:
    """POST /v1/videos/edits: the source video remade to a new prompt, frame for frame;
    framecast's `strength` (0 keeps the source, 1 ignores it) says how far, and `method` how
    (flowedit, the default, or sdedit)."""
    _known(fields, {"prompt", "video", "strength", "method", *EXTRA_FIELDS})
    prompt = _allowed_prompt(fields)
    _given_frames(info, "editing a video")
    strength = _number(fields, "strength", float, 0, 1)
    method = fields.get("method")
    if method is not None and method not in EDITS:
        raise bad(f"method must be one of {', '.join(EDITS)}, got {method!r}", "method")
    options = sampling_options(fields, prompt, float(source.seconds), _size(source), info, settings, source.options)
    given = ({"source": SOURCE} | ({} if strength is None else {"strength": strength})
             | ({} if method is None else {"edit": method}))
    return JobSpec(prompt, info.name, source.seconds, source.size, options, given, {SOURCE: source_mp4})


def _given_frames(info: ModelInfo, what: str) -> None:
    if not info.given_frames:
        raise bad(f"{what} is not supported by this server's model: its DiT patches several frames together",
                  None, "unsupported")


def _size(job: Job) -> tuple[int, int]:
    w, h = (int(v) for v in job.size.split("x"))
    return w, h
