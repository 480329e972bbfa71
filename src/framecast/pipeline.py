"""Load a model folder and generate videos from text.

A model folder is self-describing: `config.json` (architecture, video format, sampling
defaults, latent normalisation, text encoder by name) and `model.safetensors` (EMA weights of
the VAE under `vae.` and the DiT under `dit.`). The text encoder is referenced, not copied.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import windows
from .config import EDITS, MAX_BEST_OF, PRESETS, ModelConfig
from .evaluate import CATEGORIES, evaluate_clip
from .flow.samplers import SAMPLERS
from .models.dit import DiT
from .models.text import DEFAULT_ENCODER, TextEncoder
from .models.vae import VideoVAE
from .render import Job, render, window_times
from .video.inputs import resize
from .video.metrics import LOOP_SEAM, seam_ratio
from .world.expand import expand_prompt
from .world.parse import parse_prompt
from .world.scene import PromptSpec, SceneError

FORMAT = "framecast-model"
FORMAT_VERSION = 1


@dataclass
class SampleOptions:
    """What one generation asks for; None means the model folder's default."""

    seconds: float = 4.0
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str = ""
    sampler: str | None = None
    expand: bool = True  # expand a short prompt into the detailed caption style the model trained on
    context: int | None = None  # latent frames a window is given from the one before (None: the model's)
    best_of: int | None = None  # candidates made; the best by the world's checks is kept (None: the model's)


@dataclass
class Given:
    """What a generation is given besides the prompt; frames are uint8 arrays or tensors (T, H, W, 3).

    The output is image/before + the new frames + after: given images and clips are kept as
    they are, resized (with a notice) only to a size the model makes, cropped evenly where that
    size has another aspect ratio. The new frames number round(seconds x fps); image-to-video
    counts the image as the first frame of its seconds, a short connecting transition is rounded
    to 4k - 1 frames (with a notice), and an edit makes as many frames as its source.
    """

    image: Any = None  # (H, W, 3): the first frame (image-to-video)
    before: Any = None  # the new frames continue this clip (extend forward; the first clip of connect)
    after: Any = None  # the new frames lead into this clip (extend backward; the second clip of connect)
    source: Any = None  # a clip to edit: the output replaces it, frame for frame
    # the flow time an edit starts at: 0 keeps the source, 1 ignores it. Recolouring with the default
    # model, 0.9 passes the most checks (0.8 mostly keeps the old colour; benchmarks/README.md, prompting)
    strength: float = 0.9
    # how an edit is made: "flowedit" (flow/editing.py) steps the source by the difference between
    # the prompt's flow and the empty prompt's, so what the prompt does not change stays; "sdedit"
    # noises the source to the strength and makes it afresh from there
    edit: str = "flowedit"
    loop: bool = False  # the last frame flows back into the first
    fps: float | None = None  # the given clips' frame rate (None or 0: the model's)

    @classmethod
    def from_files(cls, image: str | Path | None = None, before: str | Path | None = None,
                   after: str | Path | None = None, source: str | Path | None = None,
                   strength: float | None = None, loop: bool = False, edit: str = "flowedit") -> Given:
        """What the files given to a generation hold (the CLI's arguments, the server's stored
        inputs): an image file, video files. The clips' frame rate is theirs; two clips must
        share one. Unreadable files raise FileNotFoundError or a ValueError naming the file."""
        from .video.inputs import read_clip, read_image

        paths = {"before": before, "after": after, "source": source}
        clips = {k: read_clip(p) for k, p in paths.items() if p is not None}  # name -> (frames, fps)
        rates = {k: fps for k, (_, fps) in clips.items() if fps}
        if len(rates) == 2:
            (a, fa), (b, fb) = rates.items()
            if abs(fa - fb) > 0.01 * max(fa, fb):
                raise ValueError(f"{paths[a]} is {fa:g} fps but {paths[b]} is {fb:g} fps; "
                                 "connect needs two clips of one frame rate")
        extra = {} if strength is None else {"strength": strength}
        return cls(image=None if image is None else read_image(image), loop=loop, fps=next(iter(rates.values()), None),
                   edit=edit, **{k: frames for k, (frames, _) in clips.items()}, **extra)

    def frames(self) -> dict[str, np.ndarray]:
        """The given images and clips by field name, as (T, H, W, 3) uint8 arrays."""
        out = {}
        for name in ("image", "before", "after", "source"):
            value = getattr(self, name)
            if value is None:
                continue
            array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if name == "image":
                if array.ndim != 3:
                    raise ValueError(f"the image must be (height, width, 3), got {array.shape}")
                array = array[None]
            if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
                raise ValueError(f"{_MEDIA_NAMES[name]} must be uint8 frames (T, H, W, 3), got {array.shape} {array.dtype}")
            if min(array.shape[:3]) < 1:
                raise ValueError(f"{_MEDIA_NAMES[name]} holds no frames" if array.shape[0] < 1 else
                                 f"{_MEDIA_NAMES[name]} has no pixels")
            out[name] = array
        return out


_MEDIA_NAMES = {"image": "the image", "before": "the clip", "after": "the clip", "source": "the source clip"}
MEDIA_AREA = (0.5, 4.0)  # a given image or clip keeps its size within these multiples of the model's own area


@dataclass
class ModelMeta:
    """Everything in config.json besides the architecture."""

    fps: float = 12.0
    width: int = 64
    height: int = 64
    steps: int = 20
    guidance: float = 4.0
    sampler: str = "euler"
    time_shift: float = 1.0  # the flow-time shift at 256 tokens the DiT trained with (resolution_shift)
    latent_mean: list[float] = field(default_factory=list)  # per channel
    latent_std: list[float] = field(default_factory=list)
    text_encoder: str = DEFAULT_ENCODER
    decode_chunk: int = 4  # latent frames decoded at a time: memory stays flat for long clips
    window: int = 13  # latent frames the DiT makes at once (its training clips'); longer clips go window by window
    context: int = 2  # latent frames each window is given from the one before (and from a clip it leads into)
    best_of: int = 1  # candidates per generation, ranked by the world's checks (models of the built-in world)


_NO_TEXT = torch.nn.Identity()  # stands in for the text encoder while load() checks the weights


class Framecast(torch.nn.Module):
    """A loaded model: VAE, DiT, text encoder and their settings."""

    def __init__(self, config: ModelConfig, meta: ModelMeta, text: TextEncoder | None = None):
        super().__init__()
        self.config, self.meta = config, meta
        self.vae = VideoVAE(config.vae)
        self.dit = DiT(config.dit)
        self.text = text if text is not None else TextEncoder()

    # --- latent normalisation -----------------------------------------------------------
    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = z.shape[1]
        mean = torch.tensor(self.meta.latent_mean or [0.0] * c, dtype=z.dtype, device=z.device)
        std = torch.tensor(self.meta.latent_std or [1.0] * c, dtype=z.dtype, device=z.device)
        return mean.view(1, c, 1, 1, 1), std.view(1, c, 1, 1, 1)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    # --- folder I/O -----------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "version": FORMAT_VERSION, "model": self.config.to_dict(), "meta": asdict(self.meta)}
        # fp16 on disk halves the folder; weights are used in fp32 (or the device's dtype)
        weights = {f"{name}.{k}": (v.half() if v.is_floating_point() else v).detach().contiguous()
                   for name, module in (("vae", self.vae), ("dit", self.dit)) for k, v in module.state_dict().items()}
        save_file(weights, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path, text: TextEncoder | None = None) -> Framecast:
        """Read a model folder; every way it can be wrong is a FileNotFoundError or a ValueError
        that names the file and the problem."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no model folder at {folder}")
        cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise FileNotFoundError(f"model folder {folder} has no {p.name}")
        config, meta = _read_config(cfg_path)
        try:
            weights = load_file(str(w_path))
        except SafetensorError as e:
            raise ValueError(f"{w_path} is not a readable safetensors file: {e}") from None
        # build on the meta device: the weights are checked before the text encoder loads, and the
        # random initialisation they replace is never computed
        try:
            with torch.device("meta"):
                model = cls(config, meta, text=_NO_TEXT)
        except (TypeError, ValueError, AssertionError) as e:
            raise ValueError(f"{cfg_path} describes a model that cannot be built: {e}") from None
        for name, module in (("vae", model.vae), ("dit", model.dit)):
            part = {k[len(name) + 1:]: v.float() for k, v in weights.items() if k.startswith(name + ".")}
            problem = _mismatch(module.state_dict(), part)
            if problem:
                raise ValueError(f"{w_path}: the {name} weights do not match config.json ({problem}); "
                                 f"{_which_preset(name, part)}")
            module.load_state_dict(part, strict=True, assign=True)
        if text is None:
            text = TextEncoder(None if meta.text_encoder == DEFAULT_ENCODER else meta.text_encoder)
        if text.dim != config.dit.text_dim:
            raise ValueError(f"{cfg_path}: the DiT expects {config.dit.text_dim}-dim text tokens but the text encoder "
                             f"{meta.text_encoder} gives {text.dim}")
        model.text = text
        return model.eval()


def read_model_config(folder: str | Path) -> tuple[ModelConfig, ModelMeta]:
    """A model folder's config.json, checked, without loading any weights: for callers (the HTTP
    service) that validate requests against the model before a worker has loaded it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"model folder {folder} has no {name}")
    return _read_config(folder / "config.json")


def _read_config(path: Path) -> tuple[ModelConfig, ModelMeta]:
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a framecast model config (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version!r}; this framecast reads up to {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(doc["model"])
        meta = ModelMeta(**doc.get("meta", {}))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: malformed model config ({type(e).__name__}: {e})") from None
    c = config.vae.latent_channels
    if config.dit.latent_channels != c:
        raise ValueError(f"{path}: the VAE makes {c} latent channels but the DiT takes {config.dit.latent_channels}")
    if not (isinstance(meta.decode_chunk, int) and meta.decode_chunk >= 1):
        raise ValueError(f"{path}: meta.decode_chunk must be a whole number of at least 1, got {meta.decode_chunk!r}")
    check_windows(meta.window, meta.context, f"{path}: meta.")
    if isinstance(meta.best_of, bool) or not isinstance(meta.best_of, int) or not 1 <= meta.best_of <= MAX_BEST_OF:
        raise ValueError(f"{path}: meta.best_of must be a whole number from 1 to {MAX_BEST_OF}, got {meta.best_of!r}")
    if not (isinstance(meta.time_shift, (int, float)) and meta.time_shift > 0):
        raise ValueError(f"{path}: meta.time_shift must be a number above 0, got {meta.time_shift!r}")
    for name in ("latent_mean", "latent_std"):
        if len(getattr(meta, name)) not in (0, c):
            raise ValueError(f"{path}: meta.{name} has {len(getattr(meta, name))} values for {c} latent channels")
    return config, meta


def check_windows(window: object, context: object, where: str = "") -> None:
    """A window of latent frames must hold a head and a tail context with a frame to make between them."""
    for name, value in (("window", window), ("context", context)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}{name} must be a whole number of at least 1, got {value!r}")
    if 2 * context + 1 > window:
        raise ValueError(f"{where}window ({window}) must be at least 2 x context + 1 ({2 * context + 1}) latent frames")


def _which_preset(name: str, weights: dict[str, torch.Tensor]) -> str:
    """A hint naming the preset whose architecture the weights fit, if one does."""
    build = {"vae": lambda c: VideoVAE(c.vae), "dit": lambda c: DiT(c.dit)}[name]
    for preset_name, config in PRESETS.items():
        with torch.device("meta"):
            if _mismatch(build(config).state_dict(), weights) is None:
                return f"they fit the {preset_name!r} preset"
    return "were they saved from another configuration?"


def _mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str | None:
    """A short description of how a weight dict differs from a module's, or None."""
    missing = sorted(expected.keys() - given.keys())
    extra = sorted(given.keys() - expected.keys())
    shapes = [f"{k}: {tuple(given[k].shape)} in the file, {tuple(v.shape)} expected"
              for k, v in expected.items() if k in given and given[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts) or None


def frame_count(seconds: float, fps: float) -> int:
    """round(seconds * fps), at least one frame."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    n = round(seconds * fps)
    if n < 1:
        raise ValueError(f"{seconds:g} s at {fps:g} fps holds no frame")
    return n


def snap_size(width: int, height: int, multiple: int | tuple[int, int]) -> tuple[int, int, str | None]:
    """Round a size to the model's multiple (one, or (width's, height's)); returns the size and a
    notice if it changed."""
    if width < 1 or height < 1:
        raise ValueError(f"size must be at least 1x1, got {width}x{height}")
    mw, mh = (multiple, multiple) if isinstance(multiple, int) else multiple
    w = max(mw, math.floor(width / mw + 0.5) * mw)
    h = max(mh, math.floor(height / mh + 0.5) * mh)
    note = None
    if (w, h) != (width, height):
        note = f"size {width}x{height} rounded to {w}x{h} (the model needs multiples of {mw}x{mh})"
    return w, h, note


EXPANDED = "prompt expanded to: "  # the notice that carries the caption a prompt was expanded to


def expanded_caption(notes: list[str]) -> str | None:
    """The caption generate() expanded the prompt to, from its notices (None: used as written)."""
    return next((n[len(EXPANDED):] for n in notes if n.startswith(EXPANDED)), None)


def expand(prompt: str, seed: int, aspect: float, seconds: float) -> str:
    """The detailed caption of a short prompt (Sora's recaptioning, run at generation time): what
    the prompt leaves open is drawn, seeded, from the world's distribution.

    A clip too short for the events its prompt asks for (two objects that must meet) is laid out
    over the shortest doubling of its length that holds them, up to the default length: the clip
    shows the start of that scene."""
    longest = max(seconds, SampleOptions.seconds)
    layout_seconds, first = seconds, None
    while True:
        try:
            return expand_prompt(prompt, seed, aspect, layout_seconds).caption
        except SceneError as e:
            first = first or e
            if layout_seconds >= longest:
                raise SceneError(f"{first} (prompt expansion knows the built-in world; turn it off to pass the "
                                 "prompt to the model as written)") from None
            layout_seconds = min(2 * layout_seconds, longest)


def _check(prompt: str, opts: SampleOptions, steps: int, scale: float, sampler: str, empty_ok: bool = False) -> None:
    if not isinstance(prompt, str) or not (prompt.strip() or empty_ok):
        raise ValueError("the prompt is empty")
    n = opts.best_of
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BEST_OF):
        raise ValueError(f"best_of must be a whole number from 1 to {MAX_BEST_OF}, got {n}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps}")
    if not math.isfinite(scale):
        raise ValueError(f"guidance must be a finite number, got {scale}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not -2**63 <= opts.seed < 2**64:
        raise ValueError(f"seed must fit in 64 bits, got {opts.seed}")


def _check_given(given: Given, media: dict[str, np.ndarray]) -> None:
    if given.source is not None and len(media) > 1:
        raise ValueError("an edit starts from its source clip alone: no image, clip before or after, or loop")
    if given.source is not None and given.loop:
        raise ValueError("an edit cannot also loop")
    if given.image is not None and given.before is not None:
        raise ValueError("give an image or a clip to continue, not both")
    if given.loop and (given.before is not None or given.after is not None):
        raise ValueError("a loop is made from text or from an image, not from clips")
    if not (isinstance(given.strength, (int, float)) and 0.0 <= given.strength <= 1.0):
        raise ValueError(f"strength must be between 0 and 1, got {given.strength}")
    if given.edit not in EDITS:
        raise ValueError(f"unknown edit method {given.edit!r}; choose from {', '.join(EDITS)}")
    if given.fps is not None and not (given.fps >= 0 and math.isfinite(given.fps)):
        raise ValueError(f"the given clips' fps must be a positive number, got {given.fps}")


def media_size(meta: ModelMeta, multiple: tuple[int, int], width: int, height: int) -> tuple[int, int]:
    """The size to make for a given image or clip of width x height: its own if the model makes it
    well (a multiple of the model's, within MEDIA_AREA times its area), else the model's area at
    its aspect ratio. meta: anything with the model's own .width and .height (the server passes
    what it read of the model folder)."""
    mw, mh = multiple
    area = meta.width * meta.height
    low, high = MEDIA_AREA
    if width % mw == 0 and height % mh == 0 and low * area <= width * height <= high * area:
        return width, height
    scale = math.sqrt(area / (width * height))
    w, h, _ = snap_size(max(1, round(width * scale)), max(1, round(height * scale)), multiple)
    return w, h


def _plan(model: Framecast, given: Given, n: int, context: int, before: int, after: int) -> list[windows.Window]:
    """The windows that make n new frames between `before` and `after` given frames."""
    tf, window = model.vae.temporal_factor, model.meta.window
    if given.loop:
        return windows.loop(n, window, context, tf, before)
    if after and before:
        return windows.connect(n, window, context, tf, before, after)
    if after:
        return windows.backward(n, window, context, tf, after)
    plan = windows.forward(n, window, context, tf, before)
    pt = model.config.dit.patch_size[0]
    if pt > 1 and len(plan) == 1 and not before:  # one window of whole temporal patches; the extra frames are cut
        w = plan[0]
        plan = [replace(w, new=math.ceil(w.new / pt) * pt)]
    return plan


def prepare(model: Framecast, prompt: str, opts: SampleOptions, given: Given | None = None) -> Job:
    """Check a request and plan it: the size, frame rate, windows and text of what generate() makes."""
    meta = model.meta
    given = given or Given()
    notes: list[str] = []
    media = given.frames()
    _check_given(given, media)
    steps = meta.steps if opts.steps is None else opts.steps
    scale = float(meta.guidance if opts.guidance is None else opts.guidance)
    sampler_name = opts.sampler or meta.sampler
    _check(prompt, opts, steps, scale, sampler_name, empty_ok=bool(media))
    context = meta.context if opts.context is None else opts.context
    check_windows(meta.window, context)
    clips = [k for k in ("before", "after", "source") if k in media]
    fps = (given.fps or meta.fps) if clips else (meta.fps if opts.fps is None else opts.fps)
    if clips and abs(fps - meta.fps) > 0.01 * meta.fps:
        notes.append(f"the clip is {fps:g} fps but the model makes {meta.fps:g} fps: the new frames keep the "
                     f"clip's rate, and their motion may run at the model's pace")
    sf, tf = model.vae.spatial_factor, model.vae.temporal_factor
    pt, ph, pw = model.config.dit.patch_size
    multiple = (sf * pw, sf * ph)
    if opts.width is not None or opts.height is not None or not media:
        w, h, note = snap_size(meta.width if opts.width is None else opts.width,
                               meta.height if opts.height is None else opts.height, multiple)
        if note:
            notes.append(note)
    else:
        first = next(iter(media.values()))
        w, h = media_size(meta, multiple, first.shape[2], first.shape[1])
    names = dict(_MEDIA_NAMES, before="the first clip", after="the second clip") if len(clips) == 2 else _MEDIA_NAMES
    for name, array in media.items():
        if array.shape[1:3] != (h, w):
            ah, aw = array.shape[1:3]
            cropped = ", cropped evenly to keep its aspect ratio" if aw * h != ah * w else ""
            notes.append(f"{names[name]} was resized from {aw}x{ah} to {w}x{h}{cropped} (a size the model "
                         f"makes: multiples of {multiple[0]}x{multiple[1]} near {meta.width}x{meta.height})")
            media[name] = resize(array, w, h)
    frames = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in media.items()}  # ours: inputs stay untouched
    before = frames.get("image", frames.get("before"))
    after = frames.get("after")
    if "source" in frames:
        n = len(frames["source"])
    else:
        n = frame_count(opts.seconds, fps) - ("image" in frames)
    plan = _plan(model, given, n, context, len(before) if before is not None else 0,
                 len(after) if after is not None else 0)
    if pt > 1 and (len(plan) > 1 or media or given.loop):
        raise ValueError(f"this model's DiT patches {pt} latent frames together; windows, given frames and "
                         "loops need 1")
    made = windows.frames_made(plan)
    if made != n:
        what = "the loop" if plan[0].cyclic else "the transition"
        notes.append(f"{what} is {made} frames ({made / fps:.2f} s), not {n}: a short one is made in steps of {tf} "
                     "frames")
    total = made + sum(len(x) for x in (before, after) if x is not None)
    text = prompt
    if opts.expand and prompt.strip():
        # a still is the first moment of the scene its prompt describes: laid out as a clip of the
        # default length, since some events (two objects that collide) need time to happen
        seconds = total / fps if total > 1 else SampleOptions.seconds
        text = expand(prompt, opts.seed, w / h, seconds)
        if text != prompt:
            notes.append(EXPANDED + text)
    param = next(model.dit.parameters())
    # the negative prompt is encoded only when guidance uses it, so it can never change an unguided video
    prompts = [text, opts.negative_prompt] if scale != 1.0 else [text]
    tokens, mask = model.text(prompts)  # (B, M, D), (B, M)
    tokens, mask = tokens.to(param.device, param.dtype), mask.to(param.device)
    source_text = None
    if "source" in frames and given.edit == "flowedit":  # the source's flow: the empty prompt's
        src_tokens, src_mask = model.text([""])
        source_text = (src_tokens.to(param.device, param.dtype), src_mask.to(param.device))
    return Job(plan=plan, fps=fps, width=w, height=h, seed=opts.seed, steps=steps, scale=scale,
               sampler=SAMPLERS[sampler_name], text=((tokens[:1], mask[:1]), (tokens[1:], mask[1:])),
               before=before, after=after, source=frames.get("source"), strength=float(given.strength),
               edit=given.edit, source_text=source_text, loop=given.loop, notes=notes)


_SEED_STRIDE = 0x9E3779B97F4A7C15  # 2**64 / the golden ratio: candidates' seeds land far from its neighbours


def candidate_seed(seed: int, k: int) -> int:
    """The seed of best-of candidate k = 0, 1, ...: the first is the asked seed itself, so best_of 1
    is the plain generation, and any candidate can be made alone with its own seed."""
    return seed if k == 0 else (seed + k * _SEED_STRIDE) % 2**64


def world_target(job: Job, prompt: str) -> PromptSpec | None:
    """What a job's clip must show by the world's rules: its expanded caption (or the prompt as
    written), parsed; None where that names nothing the world's checks can see."""
    spec = parse_prompt(expanded_caption(job.notes) or prompt)
    return spec if spec.objects else None


def world_score(frames: torch.Tensor, fps: float, target: PromptSpec,
                loop: bool = False) -> tuple[bool, bool, int, int]:
    """(alignment passed, seamless, categories passed, minus reasons failed) of frames (T, H, W, 3)
    uint8 against a target: the higher, the better the clip shows it. Showing what was asked
    comes first: a clip of the wrong objects is no use however well they move. A loop must also
    close: its last-to-first step at most LOOP_SEAM ordinary steps (always true of other clips)."""
    report = evaluate_clip(frames.numpy(), fps, target)
    seamless = not loop or seam_ratio(frames.numpy()) <= LOOP_SEAM
    return report["passed"]["alignment"], seamless, sum(report["passed"].values()), -len(report["failed"])


@torch.no_grad()
def generate(model: Framecast, prompt: str, opts: SampleOptions,
             progress: Callable[[int, int], None] | None = None,
             given: Given | None = None) -> tuple[torch.Tensor, float, list[str]]:
    """Text (and any given image or clips) -> video frames (T, H, W, 3) uint8, the frame rate, and
    notices for the user.

    Best of n (opts.best_of, else the model folder's; a model of the built-in world makes
    several): n candidates, from the seed and n - 1 seeds drawn from it (each with its own
    prompt expansion), each scored by the world's checks (evaluate.evaluate_clip) against what
    it was asked to show; the best by world_score (alignment first) is kept, the earliest on a
    tie. A prompt that names nothing the checks can see makes one. A clip made forward window by
    window (a long one) is ranked on its first window, where the scene is laid out, and only the
    kept candidate goes on; other clips are ranked whole. The kept clip is the one its seed
    makes alone.

    progress(i, n) is called after each of the n sampling steps (of all windows and candidates),
    i = 1..n.
    """
    n = model.meta.best_of if opts.best_of is None else opts.best_of
    job = prepare(model, prompt, opts, given)
    target = world_target(job, prompt) if n > 1 else None
    if target is None:
        return torch.cat(list(render(model, job, progress))), job.fps, job.notes
    by_head = len(job.plan) > 1 and not job.loop and job.after is None and not any(w.backward for w in job.plan)
    head_chunks = (job.before is not None) + 1 if by_head else None  # render yields the given clip, then windows
    ranked_windows = job.plan[:1] if by_head else job.plan
    head = sum(len(window_times(model, job, w)) - 1 for w in ranked_windows)  # sampler steps each candidate ranks on

    def step(k: int):  # candidate k's steps on one bar: every candidate's ranked part, then the kept one's rest
        if progress is None:
            return None
        return lambda i, m: progress(k * head + i if i <= head else (n - 1) * head + i, (n - 1) * head + m)

    best = None
    for k in range(n):
        if k:
            job = prepare(model, prompt, replace(opts, seed=candidate_seed(opts.seed, k)), given)
            target = world_target(job, prompt) or target
        chunks = render(model, job, step(k))
        frames = torch.cat(list(itertools.islice(chunks, head_chunks)))
        score = world_score(frames, job.fps, target, job.loop)
        if best is None or score > best[0]:
            if best is not None:
                best[3].close()
            best = (score, k, frames, chunks, job)
        else:
            chunks.close()
    (_, _, passed, _), k, ranked, chunks, job = best
    frames = torch.cat([ranked, *chunks])  # the kept candidate's windows after the first, if it was ranked on it
    on = f" in its first {len(ranked) / job.fps:.1f} s" if by_head else ""
    note = (f"best of {n}: kept candidate {k + 1} (seed {job.seed}), which passes {passed} of the world's "
            f"{len(CATEGORIES)} checks{on}")
    return frames, job.fps, [*job.notes, note]


def generate_image(model: Framecast, prompt: str, opts: SampleOptions,
                   progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, list[str]]:
    """Text -> an image (H, W, 3) uint8: a one-frame video (the frame after the lone first latent
    frame, as every clip made from nothing starts; see windows.py)."""
    fps = model.meta.fps
    frames, _, notes = generate(model, prompt, replace(opts, seconds=1 / fps, fps=fps), progress)
    return frames[0], notes
