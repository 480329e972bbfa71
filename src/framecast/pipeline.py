"""Load a model folder and generate videos from text.

A model folder is self-describing: `config.json` (architecture, video format, sampling
defaults, latent normalisation, text encoder by name) and `model.safetensors` (EMA weights of
the VAE under `vae.` and the DiT under `dit.`). The text encoder is referenced, not copied.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import PRESETS, ModelConfig
from .flow.guidance import cfg as guided
from .flow.samplers import SAMPLERS
from .flow.schedules import resolution_shift, sampling_times
from .models.dit import DiT
from .models.text import DEFAULT_ENCODER, TextEncoder
from .models.vae import VideoVAE
from .world.expand import expand_prompt
from .world.scene import SceneError

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


@dataclass
class ModelMeta:
    """Everything in config.json besides the architecture."""

    fps: float = 12.0
    width: int = 64
    height: int = 64
    steps: int = 20
    guidance: float = 4.0
    sampler: str = "euler"
    latent_mean: list[float] = field(default_factory=list)  # per channel
    latent_std: list[float] = field(default_factory=list)
    text_encoder: str = DEFAULT_ENCODER
    decode_chunk: int = 4  # latent frames decoded at a time: memory stays flat for long clips


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
    for name in ("latent_mean", "latent_std"):
        if len(getattr(meta, name)) not in (0, c):
            raise ValueError(f"{path}: meta.{name} has {len(getattr(meta, name))} values for {c} latent channels")
    return config, meta


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
    the prompt leaves open is drawn, seeded, from the world's distribution."""
    try:
        return expand_prompt(prompt, seed, aspect, seconds).caption
    except SceneError as e:
        raise SceneError(f"{e} (prompt expansion knows the built-in world; turn it off to pass the prompt "
                         "to the model as written)") from None


def _check(prompt: str, opts: SampleOptions, steps: int, scale: float, sampler: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps}")
    if not math.isfinite(scale):
        raise ValueError(f"guidance must be a finite number, got {scale}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not -2**63 <= opts.seed < 2**64:
        raise ValueError(f"seed must fit in 64 bits, got {opts.seed}")


@torch.no_grad()
def generate(model: Framecast, prompt: str, opts: SampleOptions,
             progress: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, float, list[str]]:
    """Text -> video frames (T, H, W, 3) uint8, the frame rate, and notices for the user.

    progress(i, n) is called after each of the n sampling steps, i = 1..n.
    """
    meta = model.meta
    notes: list[str] = []
    steps = meta.steps if opts.steps is None else opts.steps
    scale = float(meta.guidance if opts.guidance is None else opts.guidance)
    sampler = SAMPLERS.get(opts.sampler or meta.sampler)
    _check(prompt, opts, steps, scale, opts.sampler or meta.sampler)
    fps = meta.fps if opts.fps is None else opts.fps
    n_frames = frame_count(opts.seconds, fps)
    sf, tf = model.vae.spatial_factor, model.vae.temporal_factor
    pt, ph, pw = model.config.dit.patch_size
    w, h, note = snap_size(meta.width if opts.width is None else opts.width,
                           meta.height if opts.height is None else opts.height, (sf * pw, sf * ph))
    if note:
        notes.append(note)
    text = expand(prompt, opts.seed, w / h, n_frames / fps) if opts.expand else prompt
    if text != prompt:
        notes.append(EXPANDED + text)
    latent_t = 1 + math.ceil((n_frames - 1) / tf)  # decode makes 1 + tf (T' - 1) >= n_frames; the rest is cut
    latent_t = math.ceil(latent_t / pt) * pt
    param = next(model.dit.parameters())
    device, dtype = param.device, param.dtype
    shape = (1, model.config.dit.latent_channels, latent_t, h // sf, w // sf)
    gen = torch.Generator().manual_seed(opts.seed)  # CPU noise: same seed, same video on any device
    x = torch.randn(shape, generator=gen).to(device)  # the sampler state stays fp32

    # the negative prompt is encoded only when guidance uses it, so it can never change an unguided video
    prompts = [text, opts.negative_prompt] if scale != 1.0 else [text]
    tokens, mask = model.text(prompts)  # (B, M, D), (B, M)
    tokens, mask = tokens.to(device, dtype), mask.to(device)
    pos, neg = (tokens[:1], mask[:1]), (tokens[1:], mask[1:])

    def model_fn(x, t, cond):
        text, text_mask = cond
        return model.dit(x.to(dtype), t, text, text_mask).float()

    grid = model.dit.grid(shape)
    times = sampling_times(steps, resolution_shift(grid[0] * grid[1] * grid[2]))
    cb = (lambda i, n, _: progress(i + 1, n)) if progress else None
    z = sampler(guided(model_fn, scale), x, times, (pos, neg), callback=cb)
    vae_dtype = next(model.vae.parameters()).dtype
    video = model.vae.decode(model.denormalize(z).to(vae_dtype), chunk=meta.decode_chunk)  # (1, 3, T, H, W)
    frames = ((video[0, :, :n_frames].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (3, T, H, W)
    return frames.permute(1, 2, 3, 0).cpu(), fps, notes
