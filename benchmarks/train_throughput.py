"""Parameter counts and training throughput (clips/s, tokens/s) of each preset on this machine.

    python benchmarks/train_throughput.py [--presets tiny,default] [--steps 3]

One optimiser step of the VAE and of the DiT at each preset's first bucket and batch size,
on random data of the right shape (throughput does not depend on the values).
"""

from __future__ import annotations

import argparse
import time

import torch

from framecast.config import PRESETS, TRAIN_PRESETS
from framecast.models.dit import DiT
from framecast.models.vae import VideoVAE
from framecast.train.data import parse_buckets
from framecast.train.losses import dit_loss_fn, vae_loss_fn


def timed_steps(model, loss_fn, batch, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad()
        loss, _ = loss_fn(model, batch, g)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,default")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.presets.split(","):
        cfg, tc = PRESETS[name], TRAIN_PRESETS[name]
        b = parse_buckets(tc.buckets)[0]
        vae, dit = VideoVAE(cfg.vae), DiT(cfg.dit)
        n_vae, n_dit = (sum(p.numel() for p in m.parameters()) for m in (vae, dit))
        video = torch.rand(tc.vae_batch_size, 3, b.frames, b.height, b.width) * 2 - 1
        s_vae = timed_steps(vae, vae_loss_fn(1e-6, cpu, tc.vae_crop, tc.vae_fg_weight), {"video": video}, args.steps)
        lat_shape = vae.encode(video[:1]).mean.shape[1:]
        tokens = (lat_shape[1] // cfg.dit.patch_size[0]) * (lat_shape[2] // cfg.dit.patch_size[1]) * (lat_shape[3] // cfg.dit.patch_size[2])
        bs, m = tc.batch_size, 40
        batch = {"latents": torch.randn(bs, *lat_shape), "caption_tokens": torch.randn(bs, m, 384),
                 "caption_mask": torch.ones(bs, m, dtype=torch.bool), "prompt_tokens": torch.randn(bs, 12, 384),
                 "prompt_mask": torch.ones(bs, 12, dtype=torch.bool)}
        empty = (torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool))
        s_dit = timed_steps(dit, dit_loss_fn(lambda z: z, empty, cpu), batch, args.steps)
        print(f"{name}: VAE {n_vae / 1e6:.2f}M params, DiT {n_dit / 1e6:.2f}M params "
              f"({(n_vae + n_dit) * 2 / 1e6:.1f} MB as fp16); bucket {b}")
        print(f"  VAE step (batch {tc.vae_batch_size}, crop {tc.vae_crop or 'none'}): {s_vae:.2f} s -> {tc.vae_batch_size / s_vae:.1f} clips/s")
        print(f"  DiT step (batch {bs}, {tokens} tokens/clip): {s_dit:.2f} s -> {bs / s_dit:.1f} clips/s, "
              f"{bs * tokens / s_dit:.0f} tokens/s")


if __name__ == "__main__":
    main()
