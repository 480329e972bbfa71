"""Typed configuration: model presets in one registry.

A preset names a VAE and a DiT configuration; `PRESETS["tiny"]` is for tests and smoke runs,
`default` is the shipped CPU-trainable model, `large` is for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 8
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 4)  # len - 1 spatial 2x downsamples
    temporal_down: tuple[bool, ...] = (True, True, False)  # which downsamples also halve time
    num_res_blocks: int = 1
    # ResBlocks, counted from the middle of the network outward, whose convolutions see past
    # frames (kernel 3 in time); the others, and the latent-rate convolutions into and out of
    # the latent, see one frame. None: every convolution does, and the receptive field then
    # spans about 18 latent frames, far more than the short windows a VAE trains on.
    time_blocks: int | None = None


@dataclass(frozen=True)
class DiTConfig:
    latent_channels: int = 8
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) latent cells per token
    dim: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384  # all-MiniLM-L6-v2 token embeddings
    rope_theta: float = 10000.0
    head_channels: int = 0  # hidden channels of the convolutional head at latent resolution (0: none)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Head channels rotated by the t, h and w positions (even, summing to <= head_dim)."""
        d = self.head_dim
        t = (d // 4) // 2 * 2
        hw = ((d - t) // 2) // 2 * 2
        return t, hw, hw


@dataclass(frozen=True)
class ModelConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        def tuples(x: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in x.items()}
        return cls(VAEConfig(**tuples(d["vae"])), DiTConfig(**tuples(d["dit"])))


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        VAEConfig(latent_channels=4, base_channels=8, channel_mults=(1, 2, 2, 2)),
        DiTConfig(latent_channels=4, dim=64, depth=2, heads=2),
    ),
    # 4x spatial compression (a small 8-pixel object spans 2x2 latent cells, its shape survives),
    # a receptive field of 5 latent frames that the VAE's 17-frame training windows cover, and
    # the DiT on 4x4-cell patches (208 tokens for a 4 s 64x64 clip) with a convolutional head
    # that refines each latent cell from its neighbourhood (models/dit.py ConvHead)
    "default": ModelConfig(
        VAEConfig(latent_channels=8, base_channels=24, channel_mults=(1, 2, 4), temporal_down=(True, True),
                  time_blocks=1),
        DiTConfig(latent_channels=8, patch_size=(1, 4, 4), dim=256, depth=6, heads=4, head_channels=64),
    ),  # 10.9M parameters (DiT 9.3M, VAE 1.6M): about 22 MB as fp16, under the shipped model's 30 MB
    # the first CPU run (8x spatial, long temporal receptive field): shapes blur into balls
    "default-v3": ModelConfig(
        VAEConfig(latent_channels=8, base_channels=24, channel_mults=(1, 2, 4, 4)),
        DiTConfig(latent_channels=8, dim=256, depth=6, heads=4),
    ),
    "large": ModelConfig(
        VAEConfig(latent_channels=16, base_channels=64, channel_mults=(1, 2, 4, 4), num_res_blocks=2),
        DiTConfig(latent_channels=16, dim=768, depth=16, heads=12),
    ),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe of a preset: data, the VAE stage, the DiT stage."""

    buckets: str = "64x64x17@12"  # WIDTHxHEIGHTxFRAMES@FPS[*WEIGHT], comma-separated
    world_clips: int = 4096  # world clips rendered per bucket when no --data is given
    shard_size: int = 256
    vae_steps: int = 2000
    vae_batch_size: int = 8
    vae_lr: float = 3e-4
    kl_weight: float = 1e-6
    vae_crop: tuple[int, int, int] | None = None  # (frames 1+4k, height, width) windows the VAE trains on
    vae_fg_weight: float = 0.0  # extra weight of foreground pixels in the VAE's reconstruction loss
    decoder_steps: int = 0  # fine-tuning of the VAE decoder alone on the frozen encoder's latents (0: none)
    decoder_lr: float = 2e-4
    decoder_crop: tuple[int, int, int] | None = None  # windows the decoder fine-tunes on (uniformly drawn)
    decoder_edge_weight: float = 0.0  # weight of the L1 between spatial gradients while fine-tuning the decoder
    decoder_motion_weight: float = 0.0  # weight of the L1 between frame-to-frame changes while fine-tuning it
    # The decoder fine-tunes on the DiT's one-step denoising of its latents noised to flow times
    # U(0, this), as the sampler's last step hands it (train/losses.py dit_denoiser); 0: clean latents
    decoder_denoise: float = 0.0
    dit_steps: int = 10000
    dit_weights: tuple[float, ...] | None = None  # the buckets' weights in the DiT stage (default: as in `buckets`)
    dit_clips: int | None = None  # clips per bucket whose latents the DiT trains on (None: all; caching costs)
    cond_prob: float = 0.2  # share of DiT samples given some frames clean (image-to-video, extension, loops)
    batch_size: int = 32
    lr: float = 3e-4
    warmup: int = 200
    ema_decay: float = 0.999
    grad_accum: int = 1
    caption_dropout: float = 0.1
    prompt_prob: float = 0.3  # share of batches captioned by the short prompt instead of the caption
    # The DiT's flow times: logit-normal shifted toward noise by resolution_shift(tokens, time_shift),
    # a share time_uniform uniform. A small, flat-backgrounded video is so redundant that a
    # little signal gives its layout away: with the unshifted times (1.0) the DiT never learnt to
    # lay a clip out from pure noise (its t = 1 estimate was worse than the data's mean).
    time_shift: float = 3.0
    time_uniform: float = 0.1
    log_every: int = 10
    ckpt_every: int = 200
    sample_steps: int = 20  # defaults written into the model folder
    guidance: float = 4.0
    sampler: str = "euler"  # the ODE solver: "euler" or "heun" (two model calls a step)
    best_of: int = 1  # candidates per generation, the best by the world's checks kept (world data only)

    def to_dict(self) -> dict:
        return asdict(self)


MAX_BEST_OF = 16  # the most candidates one generation may make (SampleOptions.best_of)
EDITS = ("flowedit", "sdedit")  # how an edit is made (pipeline.Given.edit, flow/editing.py)

# Settings only the model folder reads (sampling defaults): a resumed run may change them any time.
MODEL_FOLDER_SETTINGS = ("sample_steps", "guidance", "sampler", "best_of")
# Settings only the decoder fine-tuning reads: a run may change them until that stage starts.
DECODER_SETTINGS = ("decoder_steps", "decoder_lr", "decoder_crop", "decoder_edge_weight", "decoder_motion_weight",
                    "decoder_denoise")
# Settings added to the recipe after runs were made, with the value those runs used (their
# train.json lacks them): such a run resumes as it was.
LATER_SETTINGS = {"decoder_motion_weight": 0.0, "decoder_denoise": 0.0}
# Settings only the DiT stage reads: a run may change them until its DiT starts.
DIT_SETTINGS = ("dit_steps", "dit_weights", "dit_clips", "cond_prob", "batch_size", "lr", "grad_accum", "caption_dropout",
                "prompt_prob", "time_shift", "time_uniform")


_DEFAULT_TRAIN = TrainConfig(buckets="64x64x17@12*3,112x64x17@12,64x112x17@12,64x64x49@12", world_clips=8192,
                             vae_steps=4000, vae_crop=(17, 32, 32),  # 5 latent frames: the whole receptive field
                             vae_fg_weight=5.0, decoder_steps=3000, decoder_crop=(17, 48, 48),
                             decoder_edge_weight=1.0,  # small boxes and triangles kept from rounding into balls
                             dit_steps=20000,
                             dit_weights=(1, 1, 1, 3),  # the DiT sees mostly whole 4 s clips
                             guidance=2.5,  # held-out runs 5 and 6: 2-3 pass as often as 4 or more, motion more often
                             # held-out, run 7, seed 0, 1 -> 8: alignment 0.27 -> 0.36, motion 0.43 -> 0.62; run 10,
                             # seeds 0 and 1000, 8 -> 16: alignment 43 -> 48 clips of 112, permanence 34 -> 44
                             best_of=16)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(buckets="32x32x9@8,48x32x5@8", world_clips=32, shard_size=16, vae_steps=20, decoder_steps=4,
                        decoder_edge_weight=1.0, decoder_motion_weight=1.0,
                        vae_batch_size=4, dit_steps=20, batch_size=8, warmup=5, ema_decay=0.9, log_every=5,
                        ckpt_every=10, sample_steps=4, best_of=2),
    "default": _DEFAULT_TRAIN,
    "default-v3": replace(_DEFAULT_TRAIN, vae_crop=(9, 32, 32), decoder_steps=6000,
                          decoder_crop=(9, 48, 48),  # wider, uniform windows: whole flat backgrounds too
                          decoder_edge_weight=0.0),
    "large": TrainConfig(buckets="128x128x49@24*2,224x128x49@24,128x224x49@24", world_clips=65536,
                         shard_size=512, vae_steps=20000, vae_batch_size=16, vae_crop=(17, 128, 128), vae_fg_weight=5.0,
                         dit_steps=100000, batch_size=64,
                         lr=2e-4, warmup=1000, ckpt_every=1000, sample_steps=30),
}
