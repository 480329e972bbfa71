"""The training recipe: world data -> VAE -> cached latents -> DiT -> a model folder.

Every stage resumes from what the last run left in the output folder, so `framecast train ...
--resume` after any interruption finishes the job:

    OUT/train.json             the recipe's settings (a resumed run must match them)
    OUT/data/world-<bucket>/   world clips as shards (unless --data names shards)
    OUT/vae.ckpt, OUT/dit.ckpt trainer checkpoints (model, EMA, optimiser, data position, RNG)
    OUT/latents/<name>/        clips encoded by the trained VAE, with text embeddings
    OUT/log.jsonl              one line per logged step of either stage
    OUT/model/                 the result: config.json + model.safetensors (EMA weights)
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import TRAIN_PRESETS, TrainConfig, preset
from ..data.shards import INDEX_NAME
from ..models.dit import DiT
from ..models.text import TextEncoder
from ..models.vae import VideoVAE
from ..pipeline import Framecast, ModelMeta
from ..world.dataset import WorldDataConfig, write_world_shards
from .data import LatentStream, MixedStream, ShardStream, cache_latents, latent_stats, parse_buckets
from .losses import dit_loss_fn, vae_loss_fn
from .trainer import LoopConfig, Trainer


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_settings(out: Path, settings: dict, resume: bool) -> None:
    path = out / "train.json"
    has_ckpt = any(out.glob("*.ckpt"))
    if has_ckpt and not resume:
        raise ValueError(f"{out} holds a training run; pass --resume to continue it, or choose a new --out")
    if path.exists() and resume:
        old = json.loads(path.read_text())
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            raise ValueError(f"{out} was trained with other settings ({', '.join(diff)}); "
                             "resume with the same arguments or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def world_data(out: Path, tc: TrainConfig, seed: int, progress: bool) -> tuple[list[Path], list[float]]:
    """Render (or finish rendering) one shard folder of world clips per bucket."""
    roots, weights = [], []
    for i, b in enumerate(parse_buckets(tc.buckets)):
        root = out / "data" / f"world-{b.width}x{b.height}x{b.frames}@{b.fps:g}"
        cfg = WorldDataConfig(n=tc.world_clips, seconds=b.seconds, fps=b.fps, width=b.width, height=b.height,
                              frames=b.frames, seed=seed * 1000 + i, shard_size=tc.shard_size)
        write_world_shards(root, cfg, progress=progress)
        roots.append(root)
        weights.append(b.weight)
    return roots, weights


def shard_roots(data: Path) -> list[Path]:
    """A shard folder, or a folder of shard folders."""
    if (data / INDEX_NAME).is_file():
        return [data]
    roots = sorted(p.parent for p in data.glob(f"*/{INDEX_NAME}"))
    if not roots:
        raise FileNotFoundError(f"{data} holds no shard data set ({INDEX_NAME} missing)")
    return roots


def video_format(root: Path) -> tuple[float, int, int]:
    """(fps, width, height) of a shard folder: the model's default output format."""
    index = json.loads((root / INDEX_NAME).read_text())
    _, height, width, _ = index["shards"][0]["shape"]
    return float(index.get("config", {}).get("fps", 12.0)), int(width), int(height)


def train(preset_name: str, out: str | Path, steps: int | None = None, batch_size: int | None = None,
          seed: int = 0, resume: bool = False, data: str | Path | None = None, progress: bool = True) -> Path:
    """Run the whole recipe of a preset; returns the model folder."""
    model_cfg = preset(preset_name)
    tc = TRAIN_PRESETS[preset_name]
    if steps is not None:
        tc = replace(tc, dit_steps=steps)
    if batch_size is not None:
        tc = replace(tc, batch_size=batch_size)
    if tc.dit_steps < 1 or tc.batch_size < 1:
        raise ValueError("steps and batch size must be at least 1")
    out = Path(out)
    settings = {"preset": preset_name, "seed": seed, "data": str(data) if data else None, **tc.to_dict()}
    _check_settings(out, settings, resume)
    device = pick_device()

    if data is None:
        frame_roots, weights = world_data(out, tc, seed, progress)
    else:
        frame_roots = shard_roots(Path(data))
        weights = [1.0] * len(frame_roots)

    # Stage 1: the video VAE on frames.
    vae_stream = MixedStream([ShardStream(r, tc.vae_batch_size, seed) for r in frame_roots], weights, seed)
    vae_loop = LoopConfig(steps=tc.vae_steps, lr=tc.vae_lr, warmup=tc.warmup, ema_decay=tc.ema_decay,
                          grad_accum=1, log_every=tc.log_every, ckpt_every=tc.ckpt_every, seed=seed)
    vae_trainer = Trainer("vae", VideoVAE(model_cfg.vae), vae_loss_fn(tc.kl_weight, device), vae_stream,
                          vae_loop, out, device, progress)
    vae_trainer.resume()
    vae_trainer.run()
    vae = vae_trainer.ema.eval()

    # Stage 2: cache latents and text embeddings, so the DiT never runs the encoders.
    text = TextEncoder()
    latent_roots = [out / "latents" / r.name for r in frame_roots]
    for src, dst in zip(frame_roots, latent_roots):
        cache_latents(vae, text, src, dst, device=device, progress=progress)
    mean, std = latent_stats(latent_roots[0])

    # Stage 3: the DiT on normalised latents.
    mean_b, std_b = mean.view(1, -1, 1, 1, 1).float(), std.view(1, -1, 1, 1, 1).float()
    empty = text([""])
    dit_stream = MixedStream([LatentStream(r, tc.batch_size, seed, vae=vae) for r in latent_roots], weights, seed)
    dit_loop = LoopConfig(steps=tc.dit_steps, lr=tc.lr, warmup=tc.warmup, ema_decay=tc.ema_decay,
                          grad_accum=tc.grad_accum, log_every=tc.log_every, ckpt_every=tc.ckpt_every, seed=seed)
    loss = dit_loss_fn(lambda z: (z - mean_b) / std_b, empty, device, tc.prompt_prob, tc.caption_dropout)
    dit_trainer = Trainer("dit", DiT(model_cfg.dit), loss, dit_stream, dit_loop, out, device, progress)
    dit_trainer.resume()
    dit_trainer.run()

    # The model folder: EMA weights of both, and what generation needs to know.
    fps, width, height = video_format(frame_roots[0])
    meta = ModelMeta(fps=fps, width=width, height=height, steps=tc.sample_steps, guidance=tc.guidance,
                     latent_mean=mean.tolist(), latent_std=std.tolist())
    model = Framecast(model_cfg, meta, text)
    model.vae.load_state_dict(vae.state_dict())
    model.dit.load_state_dict(dit_trainer.ema.state_dict())
    folder = out / "model"
    model.save(folder)
    (folder / "recipe.json").write_text(json.dumps({"preset": preset_name, "seed": seed, "train": asdict(tc),
                                                    "vae_steps": vae_trainer.step, "dit_steps": dit_trainer.step},
                                                   indent=2) + "\n")
    return folder
