"""The training recipe: world data -> VAE -> cached latents -> DiT -> a model folder.

Every stage resumes from what the last run left in the output folder, so `framecast train ...
--resume` after any interruption finishes the job:

    OUT/train.json             the recipe's settings (a resumed run must match them)
    OUT/data/world-<bucket>/   world clips as shards (unless --data names shards)
    OUT/vae.ckpt, OUT/dit.ckpt trainer checkpoints (model, EMA, optimiser, data position, RNG):
                               a torch.save file from one process, a torch.distributed.checkpoint
                               folder from several; either resumes on any number of processes
    OUT/latents/<name>/        clips encoded by the trained VAE, with text embeddings
    OUT/log.jsonl              one line per logged step of either stage
    OUT/model/                 the result: config.json + model.safetensors (EMA weights)

Under torchrun every process runs this recipe: rank 0 alone renders data, caches latents and
writes files; all ranks train together (see framecast.train.distributed), each on its rows of
every global batch, so --batch-size is the global batch whatever the number of processes.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import (DECODER_SETTINGS, DIT_SETTINGS, LATER_SETTINGS, MODEL_FOLDER_SETTINGS, TRAIN_PRESETS,
                      DiTConfig, TrainConfig, VAEConfig, preset)
from ..data.shards import INDEX_NAME
from ..models.dit import DiT
from ..models.text import TextEncoder
from ..models.vae import VideoVAE
from ..pipeline import Framecast, ModelMeta
from ..world.dataset import WorldDataConfig, write_world_shards
from ..world.clip import make_clip
from ..world.export import clip_seed
from . import distributed
from .data import Bucket, LatentStream, MixedStream, ShardStream, cache_latents, latent_stats, parse_buckets
from .distributed import Dist
from .losses import dit_denoiser, dit_loss_fn, vae_loss_fn
from .trainer import LoopConfig, Trainer, existing_checkpoint, load_ema_weights


STAGES = ("all", "vae", "decoder", "export")
SINGLE = Dist()  # one process, no torchrun


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_settings(out: Path, settings: dict, resume: bool, write: bool = True) -> None:
    """A resumed run must keep the settings its checkpoints were made with; the DiT's own may
    still change while no DiT checkpoint exists (tune the DiT after the VAE is done)."""
    path = out / "train.json"
    has_ckpt = any(existing_checkpoint(out / f"{name}.ckpt") for name in ("vae", "dit", "decoder"))
    if has_ckpt and not resume:
        raise ValueError(f"{out} holds a training run; pass --resume to continue it, or choose a new --out")
    if path.exists() and resume:
        old = json.loads(path.read_text())
        free = MODEL_FOLDER_SETTINGS + (DIT_SETTINGS if existing_checkpoint(out / "dit.ckpt") is None else ()) + (
            DECODER_SETTINGS if existing_checkpoint(out / "decoder.ckpt") is None else ())
        diff = [k for k in settings if old.get(k, LATER_SETTINGS.get(k)) != settings[k] and k not in free]
        if diff:
            raise ValueError(f"{out} was trained with other settings ({', '.join(diff)}); "
                             "resume with the same arguments or choose a new --out")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2) + "\n")


def world_data_roots(out: Path, tc: TrainConfig) -> tuple[list[Path], list[float]]:
    """The shard folders of world clips a run renders, one per bucket, and the buckets' weights."""
    buckets = parse_buckets(tc.buckets)
    roots = [out / "data" / f"world-{b.width}x{b.height}x{b.frames}@{b.fps:g}" for b in buckets]
    return roots, [b.weight for b in buckets]


def world_data(out: Path, tc: TrainConfig, seed: int, progress: bool) -> tuple[list[Path], list[float]]:
    """Render (or finish rendering) one shard folder of world clips per bucket."""
    roots, weights = world_data_roots(out, tc)
    for i, (b, root) in enumerate(zip(parse_buckets(tc.buckets), roots)):
        cfg = WorldDataConfig(n=tc.world_clips, seconds=b.seconds, fps=b.fps, width=b.width, height=b.height,
                              frames=b.frames, seed=seed * 1000 + i, shard_size=tc.shard_size)
        write_world_shards(root, cfg, progress=progress)
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


@torch.no_grad()
def vae_psnr(vae: VideoVAE, bucket: Bucket, clips: int = 16, seed: int = 10**6) -> float:
    """Mean reconstruction PSNR (dB, 8-bit frames) on world clips no training batch contains."""
    device = next(vae.parameters()).device
    total = 0.0
    for i in range(clips):
        clip = make_clip(clip_seed(seed, i), bucket.seconds, bucket.fps, bucket.width, bucket.height)
        video = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1).to(device)
        recon = vae.decode(vae.encode(video).mean).clamp(-1, 1)
        frames = ((recon + 1) * 127.5).round()
        mse = (frames - (video + 1) * 127.5).pow(2).mean().item()
        total += 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))
    return total / clips


def settings_for(preset_name: str, steps: int | None, batch_size: int | None, vae_steps: int | None = None,
                 decoder_steps: int | None = None, dit_clips: int | None = None, init: bool = False,
                 decoder_denoise: float | None = None, lr: float | None = None) -> TrainConfig:
    """The preset's recipe with the step counts, batch size, DiT learning rate and decoder denoising
    a run overrides (None: the preset's).
    A run that continues a model folder (`init`) may train its DiT 0 steps: its decoder alone."""
    tc = TRAIN_PRESETS[preset_name]
    given = {"dit_steps": steps, "batch_size": batch_size, "vae_steps": vae_steps, "decoder_steps": decoder_steps,
             "dit_clips": dit_clips, "decoder_denoise": decoder_denoise, "lr": lr}
    tc = replace(tc, **{k: v for k, v in given.items() if v is not None})
    if tc.batch_size < 1 or tc.vae_steps < 1 or (tc.dit_clips is not None and tc.dit_clips < 1):
        raise ValueError("VAE steps, DiT clips and batch size must be at least 1")
    if not 0.0 < tc.lr < 1.0:
        raise ValueError(f"the DiT's learning rate must be between 0 and 1, got {tc.lr}")
    if tc.dit_steps < (0 if init else 1):
        raise ValueError("DiT steps must be at least 1 (0 only with --init, to keep its DiT as it is)")
    if tc.decoder_steps < 0:
        raise ValueError("decoder steps must be at least 0")
    if not 0.0 <= tc.decoder_denoise <= 1.0:
        raise ValueError(f"decoder denoising is a flow time in [0, 1], got {tc.decoder_denoise}")
    if tc.dit_steps == 0 and tc.decoder_steps == 0:
        raise ValueError("nothing to train: with --steps 0 (the DiT kept as it is) give --decoder-steps")
    return tc


def _streams(cls, roots: list[Path], batch_size: int, seed: int, d: Dist, **kw) -> list:
    """One stream per shard folder; with several processes each serves its rows of every batch."""
    return [cls(r, batch_size, seed, part=(d.rank, d.world_size), **kw) for r in roots]


def _train_autoencoder(name: str, model: VideoVAE, loss, steps: int, lr: float, tc: TrainConfig, roots: list[Path],
                       weights: list[float], out: Path, seed: int, device: torch.device, progress: bool,
                       d: Dist = SINGLE, fsdp: bool = False) -> VideoVAE:
    """Train a VAE stage over the frame shards, then score its EMA weights on held-out clips
    (OUT/<name>_eval.json); returns the EMA weights."""
    stream = MixedStream(_streams(ShardStream, roots, tc.vae_batch_size, seed, d), weights, seed)
    loop = LoopConfig(steps=steps, lr=lr, warmup=tc.warmup, ema_decay=tc.ema_decay, log_every=tc.log_every,
                      ckpt_every=tc.ckpt_every, seed=seed)
    trainer = Trainer(name, model, loss, stream, loop, out, device, progress, dist=d, fsdp=fsdp)
    trainer.resume()
    trainer.run()
    vae = trainer.ema_module().eval()
    if d.main:
        report = write_vae_eval(vae, tc, out / f"{name}_eval.json", steps=trainer.step)
        if progress:
            print(f"{name}: reconstruction PSNR on held-out world clips ({report['bucket']}): {report['psnr_db']} dB")
    return vae


def write_vae_eval(vae: VideoVAE, tc: TrainConfig, path: Path, **about) -> dict:
    """Score a VAE on held-out clips of the recipe's first bucket and write the report to path."""
    bucket = parse_buckets(tc.buckets)[0]
    report = {"psnr_db": round(vae_psnr(vae, bucket), 2), "clips": 16, "bucket": str(bucket), **about}
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def latent_normalisation(latent_root: Path, init: Framecast | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel latent mean and std (C,): a continued model keeps its own, else the cache's."""
    if init is None:
        return latent_stats(latent_root)
    return torch.tensor(init.meta.latent_mean), torch.tensor(init.meta.latent_std)


def train_vae(cfg: VAEConfig, tc: TrainConfig, roots: list[Path], weights: list[float], out: Path, seed: int,
              device: torch.device, progress: bool, d: Dist = SINGLE, fsdp: bool = False) -> VideoVAE:
    """Stage 1: the video VAE on frames; returns its EMA weights, evaluated on held-out clips."""
    loss = vae_loss_fn(tc.kl_weight, device, tc.vae_crop, tc.vae_fg_weight)
    torch.manual_seed(seed)  # the VAE's first weights: torch seeds itself at random at start-up
    return _train_autoencoder("vae", VideoVAE(cfg), loss, tc.vae_steps, tc.vae_lr, tc, roots, weights, out, seed,
                              device, progress, d, fsdp)


DENOISE_NEEDS_DIT = ("decoder_denoise fine-tunes the decoder on the DiT's denoising: train it after the DiT "
                     "(not with --stage decoder)")


def train_decoder(vae: VideoVAE, tc: TrainConfig, roots: list[Path], weights: list[float], out: Path, seed: int,
                  device: torch.device, progress: bool, d: Dist = SINGLE, fsdp: bool = False,
                  dit: DiT | None = None, text: TextEncoder | None = None,
                  stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> VideoVAE:
    """Fine-tune the VAE decoder alone, the encoder frozen (as Stable Diffusion's ft-MSE decoder):
    sharper frames from the very latents the DiT models, so it can run beside or after the DiT
    stage without invalidating it. With tc.decoder_denoise the latents are the DiT's one-step
    denoising of them (losses.dit_denoiser), so it needs the trained DiT, its text encoder and
    latent normalisation (mean, std). Returns the VAE with the decoder's EMA weights."""
    model = copy.deepcopy(vae).train()
    model.decoder.requires_grad_(True)
    model.encoder.requires_grad_(False)
    refine = None
    if tc.decoder_denoise > 0:
        if dit is None or text is None or stats is None:
            raise ValueError(DENOISE_NEEDS_DIT)
        mean, std = (s.view(1, -1, 1, 1, 1).float().to(device) for s in stats)
        dit = dit.to(device).eval().requires_grad_(False)
        refine = dit_denoiser(dit, text, lambda z: (z - mean) / std, lambda z: z * std + mean, tc.decoder_denoise,
                              tc.guidance, device)
    loss = vae_loss_fn(0.0, device, tc.decoder_crop, tc.vae_fg_weight, decoder_only=True, crop_tries=1,
                       edge_weight=tc.decoder_edge_weight, motion_weight=tc.decoder_motion_weight, refine=refine)
    return _train_autoencoder("decoder", model, loss, tc.decoder_steps, tc.decoder_lr, tc, roots, weights, out,
                              seed + 1, device, progress, d, fsdp)


def train_dit(cfg: DiTConfig, tc: TrainConfig, vae: VideoVAE, text: TextEncoder, roots: list[Path],
              weights: list[float], out: Path, seed: int, device: torch.device, progress: bool, d: Dist = SINGLE,
              fsdp: bool = False, init: Framecast | None = None):
    """Stages 2 and 3: cache latents and text embeddings (the DiT never runs the encoders), then
    train the DiT on normalised latents. Returns the DiT's EMA weights and the latent stats.
    Given `init` (a model folder's model with this VAE), the DiT starts from its weights and keeps
    its latent normalisation."""
    latent_roots = [out / "latents" / r.name for r in roots]

    def cache() -> None:
        for src, dst in zip(roots, latent_roots):
            cache_latents(vae, text, src, dst, device=device, progress=progress, max_clips=tc.dit_clips)

    distributed.main_first(d, cache)
    mean, std = latent_normalisation(latent_roots[0], init)
    mean_b, std_b = mean.view(1, -1, 1, 1, 1).float(), std.view(1, -1, 1, 1, 1).float()
    if tc.dit_weights is not None:
        if len(tc.dit_weights) != len(roots):
            raise ValueError(f"dit_weights names {len(tc.dit_weights)} weights for {len(roots)} buckets")
        weights = list(tc.dit_weights)
    stream = MixedStream(_streams(LatentStream, latent_roots, tc.batch_size, seed, d, vae=vae), weights, seed)
    loop = LoopConfig(steps=tc.dit_steps, lr=tc.lr, warmup=tc.warmup, ema_decay=tc.ema_decay,
                      grad_accum=tc.grad_accum, log_every=tc.log_every, ckpt_every=tc.ckpt_every, seed=seed)
    loss = dit_loss_fn(lambda z: (z - mean_b) / std_b, text([""]), device, tc.prompt_prob, tc.caption_dropout,
                       tc.cond_prob, tc.time_shift, tc.time_uniform)
    dit = DiT(cfg)
    if init is not None:  # a head the model folder lacks (load_init allows only that) starts at zero
        missing, unexpected = dit.load_state_dict(init.dit.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    trainer = Trainer("dit", dit, loss, stream, loop, out, device, progress, dist=d, fsdp=fsdp)
    trainer.resume()
    trainer.run()
    return trainer.ema_module().eval(), mean, std


def load_ema(model: torch.nn.Module, ckpt: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """A stage's EMA weights and step from its trainer checkpoint (a file or a DCP folder)."""
    if existing_checkpoint(ckpt) is None:
        raise FileNotFoundError(f"no checkpoint at {ckpt}: train this stage first")
    model = model.to(device)
    step = load_ema_weights(model, ckpt)
    return model.eval(), step


def train(preset_name: str, out: str | Path, steps: int | None = None, batch_size: int | None = None,
          vae_steps: int | None = None, decoder_steps: int | None = None, dit_clips: int | None = None,
          decoder_denoise: float | None = None, lr: float | None = None, seed: int = 0,
          resume: bool = False, data: str | Path | None = None, stage: str = "all",
          progress: bool = True, fsdp: bool = False, init: str | Path | None = None) -> Path:
    """Run a preset's recipe (stage "all", or "vae" alone); returns the model folder or, for
    the VAE stage, the run folder. Stage "export" trains nothing: it writes the model folder
    from the checkpoints as they are, to evaluate or ship a run before it ends.

    Under torchrun the processes train data-parallel (DDP; FSDP2 with fsdp=True), each on its
    rows of every global batch of batch_size clips.

    `init` names a model folder of this preset to continue from (say the shipped model, for more
    steps or on your own videos): its VAE is kept as it is (no VAE stage; its latents are the
    ones the DiT knows) and the DiT starts from its weights and latent normalisation. With 0 DiT
    steps its DiT is kept as it is and only its decoder is fine-tuned (decoder_steps more)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if init is not None and stage in ("vae", "decoder"):
        raise ValueError(f"--init continues from a trained VAE: there is no --stage {stage} to run")
    model_cfg = preset(preset_name)
    tc = settings_for(preset_name, steps, batch_size, vae_steps, decoder_steps, dit_clips, init=init is not None,
                      decoder_denoise=decoder_denoise, lr=lr)
    if stage == "decoder" and tc.decoder_denoise > 0:  # before any data is rendered
        raise ValueError(DENOISE_NEEDS_DIT)
    with distributed.session() as d:
        for what, size in (("--batch-size", tc.batch_size), ("the VAE batch size", tc.vae_batch_size)):
            if size < d.world_size:
                raise ValueError(f"{what} ({size}) is the global batch: it needs at least one clip "
                                 f"for each of the {d.world_size} processes")
        return _train(preset_name, model_cfg, tc, Path(out), seed, resume, data, stage,
                      progress and d.main, fsdp, d, Path(init) if init is not None else None)


def load_init(folder: Path, model_cfg, text: TextEncoder, device: torch.device) -> tuple[Framecast, dict]:
    """The model folder a run continues from, checked against the preset, and its recipe.json.
    A folder whose DiT lacks the preset's convolutional head is continued with the head grown at
    zero (train_dit), so the run starts from exactly the folder's model."""
    base = Framecast.load(folder, text=text)
    headless = replace(model_cfg, dit=replace(model_cfg.dit, head_channels=0))
    if base.config not in (model_cfg, headless):
        raise ValueError(f"--init {folder} holds a model of another architecture than the preset's; "
                         "continue it with the preset it was trained with")
    recipe_path = folder / "recipe.json"
    recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
    return base.to(device), recipe


def _train(preset_name, model_cfg, tc: TrainConfig, out: Path, seed: int, resume: bool, data, stage: str,
           progress: bool, fsdp: bool, d: Dist, init: Path | None = None) -> Path:
    if data is not None:  # the preset's DiT weights name its world buckets; your folders weigh the same
        tc = replace(tc, dit_weights=None)
    settings = {"preset": preset_name, "seed": seed, "data": str(data) if data else None,
                "init": str(init) if init else None, **tc.to_dict()}
    settings = json.loads(json.dumps(settings))  # as train.json holds them (tuples become lists)
    _check_settings(out, settings, resume or stage == "export", write=d.main)  # every rank checks
    device = d.device() if d.active else pick_device()
    base, base_recipe = None, {}
    if init is not None:  # checked before any data is rendered
        base, base_recipe = load_init(init, model_cfg, TextEncoder(), device)
    if data is None:
        distributed.main_first(d, world_data, out, tc, seed, progress)
        roots, weights = world_data_roots(out, tc)
    else:
        roots = shard_roots(Path(data))
        weights = [1.0] * len(roots)

    if base is not None and d.main and not (out / "vae_eval.json").is_file():
        write_vae_eval(base.vae, tc, out / "vae_eval.json", **{"from": str(init)})

    if stage == "export":
        if not d.main:  # rank 0 reads the checkpoints and writes the folder
            distributed.barrier()
            return out / "model"
        text = TextEncoder() if base is None else base.text
        vae = base.vae if base is not None else load_ema(VideoVAE(model_cfg.vae), out / "vae.ckpt", device)[0]
        if existing_checkpoint(out / "decoder.ckpt") is not None:
            vae, _ = load_ema(vae, out / "decoder.ckpt", device)
        if tc.dit_steps == 0:  # a decoder-only continuation: the DiT is the model folder's
            dit, dit_step = base.dit, 0
        else:
            dit, dit_step = load_ema(DiT(model_cfg.dit), out / "dit.ckpt", device)
        mean, std = latent_normalisation(out / "latents" / roots[0].name, base)
    else:
        vae = (base.vae if base is not None else
               train_vae(model_cfg.vae, tc, roots, weights, out, seed, device, progress, d, fsdp))
        if stage == "vae":
            distributed.barrier()
            return out
        if stage == "decoder":
            if tc.decoder_steps < 1:
                raise ValueError(f"the {preset_name} recipe has no decoder fine-tuning (decoder_steps is 0)")
            train_decoder(vae, tc, roots, weights, out, seed, device, progress, d, fsdp)
            distributed.barrier()
            return out
        text = TextEncoder() if base is None else base.text  # only the DiT stage and the model folder need it
        if tc.dit_steps == 0:  # a decoder-only continuation: the model folder's DiT and latent normalisation
            dit, (mean, std) = base.dit, latent_normalisation(out / "latents" / roots[0].name, base)
        else:
            dit, mean, std = train_dit(model_cfg.dit, tc, vae, text, roots, weights, out, seed, device, progress, d,
                                       fsdp, init=base)
        dit_step = tc.dit_steps
        if tc.decoder_steps > 0:  # after the DiT, which never reads the decoder
            vae = train_decoder(vae, tc, roots, weights, out, seed, device, progress, d, fsdp, dit, text, (mean, std))
        if not d.main:
            distributed.barrier()
            return out / "model"

    # The model folder: EMA weights of both, and what generation needs to know.
    fps, width, height = video_format(roots[0])
    # best of n needs the world's rules to check candidates by: a model of your own videos makes one
    meta = ModelMeta(fps=fps, width=width, height=height, steps=tc.sample_steps, guidance=tc.guidance,
                     sampler=tc.sampler, best_of=tc.best_of if data is None else 1, time_shift=tc.time_shift,
                     latent_mean=mean.tolist(), latent_std=std.tolist())
    model = Framecast(model_cfg, meta, text)
    model.vae.load_state_dict(vae.state_dict())
    model.dit.load_state_dict(dit.state_dict())
    folder = out / "model"
    model.save(folder)
    recipe = {"preset": preset_name, "seed": seed, "dit_step": dit_step, "train": asdict(tc),
              "vae_eval": json.loads((out / "vae_eval.json").read_text())}
    if init is not None:  # the steps before this run's, and the runs they came from
        recipe["init"] = {"from": str(init), "recipe": base_recipe or None}
        recipe["dit_step_total"] = base_recipe.get("dit_step_total", base_recipe.get("dit_step", 0)) + dit_step
    if (out / "decoder_eval.json").is_file():
        recipe["decoder_eval"] = json.loads((out / "decoder_eval.json").read_text())
    (folder / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")
    distributed.barrier()  # the other ranks end when the model folder is there
    return folder
