"""How much of a clip survives the video VAE: reconstruction PSNR (whole frame and objects),
the error of its frame-to-frame changes (at latent boundaries and inside latents), and
`framecast eval`'s pass rates on reconstructions of held-out world clips.

The evaluator's pass rates on reconstructions bound what any DiT on these latents can reach:
a box whose corners the VAE rounds reads as a ball whatever the DiT makes. A clip is
reconstructed as generation makes frames: every frame from a 4-frame latent, none from the
lone first latent frame (the clip's frame 0 is repeated in front of it, then its decoded copy
dropped; see windows.py), so output frames 4m..4m+3 share a latent and the change from frame
4m+3 to 4m+4 crosses a latent boundary. A decoder that errs differently on the two sides of a
boundary makes objects jump there every 4 frames, however good its PSNR.

    OMP_NUM_THREADS=1 python benchmarks/vae_reconstruction.py --model models/default --clips 12
    OMP_NUM_THREADS=1 python benchmarks/vae_reconstruction.py --run runs/default --preset default
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from framecast.config import preset
from framecast.evaluate.checks import CATEGORIES
from framecast.evaluate.clip import evaluate_clip
from framecast.models.vae import VideoVAE
from framecast.pipeline import Framecast
from framecast.render import to_frames, to_video
from framecast.train.trainer import load_ema_weights
from framecast.video.metrics import psnr
from framecast.world.clip import make_clip
from framecast.world.export import clip_seed

FPS, SIZE, FRAMES = 12.0, 64, 48  # a default 4 s clip
SEED = 999  # no training run draws clip_seed(999, i)


def load_vae(args: argparse.Namespace) -> VideoVAE:
    if args.model:
        return Framecast.load(args.model).vae.float().eval()
    vae = VideoVAE(preset(args.preset).vae)
    run = Path(args.run)
    ckpt = run / "decoder.ckpt" if (run / "decoder.ckpt").exists() and not args.no_decoder else run / "vae.ckpt"
    step = load_ema_weights(vae, ckpt)
    print(f"{ckpt} (EMA weights, step {step})")
    return vae.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a model folder")
    ap.add_argument("--run", help="a training run folder (its decoder.ckpt, else vae.ckpt)")
    ap.add_argument("--preset", default="default", help="the run's preset (with --run)")
    ap.add_argument("--no-decoder", action="store_true", help="with --run: the VAE's own decoder, not the fine-tuned one")
    ap.add_argument("--clips", type=int, default=12)
    args = ap.parse_args()
    if bool(args.model) == bool(args.run):
        ap.error("give one of --model and --run")
    vae = load_vae(args)
    passed = {c: 0 for c in CATEGORIES}
    whole, objects, changes = [], [], []
    for i in range(args.clips):
        clip = make_clip(clip_seed(SEED, i), FRAMES / FPS, FPS, SIZE, SIZE)
        with torch.no_grad():
            padded = np.concatenate([clip.frames[:1], clip.frames])  # 1 + 4k frames
            frames = to_frames(vae.decode(vae.encode(to_video(torch.from_numpy(padded))).mean)).numpy()[1:]
        bg = np.median(clip.frames.reshape(-1, 3), axis=0)
        fg = np.abs(clip.frames.astype(np.float64) - bg).max(-1) > 25  # (T, H, W): object pixels
        whole.append(psnr(frames, clip.frames))
        objects.append(psnr(frames, clip.frames, fg))
        changes.append(np.abs(np.diff(frames.astype(np.float64), axis=0)
                              - np.diff(clip.frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3)))  # (T-1,)
        result = evaluate_clip(frames, FPS, clip.scene)
        for c in CATEGORIES:
            passed[c] += result["passed"][c]
        for reason in result["failed"]:
            print(f"  {i:03d} {reason}")
    print(f"\n{args.clips} held-out {SIZE}x{SIZE} clips of {FRAMES} frames: PSNR {np.mean(whole):.2f} dB, "
          f"objects {np.mean(objects):.2f} dB")
    f = vae.temporal_factor  # output frames f m .. f m + f - 1 share a latent
    boundary = np.arange(FRAMES - 1) % f == f - 1
    err = np.mean(changes, axis=0)
    print(f"frame-to-frame change error (mean |d recon - d clip|, 8-bit levels): across latent boundaries "
          f"{err[boundary].mean():.2f}, inside latents {err[~boundary].mean():.2f}")
    print("eval on reconstructions: " + ", ".join(f"{c} {passed[c] / args.clips:.2f}" for c in CATEGORIES))


if __name__ == "__main__":
    main()
