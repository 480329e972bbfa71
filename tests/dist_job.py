"""A small training job for tests/test_distributed.py, run alone or under torchrun:

    python tests/dist_job.py DATA OUT --stop K [--fsdp]

Trains a tiny VAE on DATA/frames (random crops, foreground weights) and a tiny DiT on
DATA/latents (per-frame conditioning, caption dropout, an uneven batch of 3) for 6 steps of
schedule, stopping after step K with a checkpoint; resumes from OUT when it holds one.
Rank 0 appends each step's logs to OUT/steps.jsonl.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from framecast.config import PRESETS
from framecast.data.shards import FORMAT, FORMAT_VERSION, ShardWriter, sample_key, shard_name, write_index
from framecast.models.dit import DiT
from framecast.models.vae import VideoVAE
from framecast.train import distributed
from framecast.train.data import ShardStream
from framecast.train.losses import dit_loss_fn, vae_loss_fn
from framecast.train.trainer import LoopConfig, Trainer
from framecast.world.dataset import WorldDataConfig, write_world_shards

STEPS = 6
TINY = PRESETS["tiny"]
EMPTY = (torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool))


def make_data(root: Path) -> None:
    """8 world clips (4 shards) and 10 clips of random latents with text tokens (5 shards)."""
    write_world_shards(root / "frames", WorldDataConfig(n=8, seconds=5 / 8, fps=8, width=32, height=32, frames=5,
                                                        shard_size=2), workers=1, progress=False)
    rng = np.random.default_rng(0)
    out = root / "latents"
    out.mkdir(parents=True)
    shards = []
    for i in range(5):
        with ShardWriter(out / shard_name(i)) as w:
            for k in (2 * i, 2 * i + 1):
                tokens = {f"{f}_tokens": rng.standard_normal((int(rng.integers(2, 7)), 384)).astype(np.float16)
                          for f in ("caption", "prompt")}
                w.write(sample_key(k), {"json": {"caption": f"clip {k}", "prompt": f"{k}"},
                                        "latents": rng.standard_normal((4, 3, 4, 4)).astype(np.float16), **tokens})
        shards.append({"name": shard_name(i), "clips": 2, "shape": [4, 3, 4, 4]})
    write_index(out, {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "clips": 10,
                      "shards": shards})


def jobs(data: Path, device: torch.device):
    yield ("vae", lambda: VideoVAE(TINY.vae), vae_loss_fn(1e-6, device, (5, 16, 16), 5.0), data / "frames", 4)
    yield ("dit", lambda: DiT(TINY.dit), dit_loss_fn(lambda z: z, EMPTY, device, 0.3, 0.2, 0.5), data / "latents", 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--stop", type=int, default=STEPS)
    ap.add_argument("--fsdp", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with distributed.session() as d:
        device = d.device()
        for name, build, loss, root, batch in jobs(args.data, device):
            torch.manual_seed(0)
            stream = ShardStream(root, batch, seed=1, part=(d.rank, d.world_size), shuffle_buffer=3)
            loop = LoopConfig(steps=STEPS, lr=3e-3, warmup=2, ema_decay=0.5, seed=0)
            tr = Trainer(name, build(), loss, stream, loop, args.out, device, progress=False, dist=d, fsdp=args.fsdp)
            tr.resume()
            while tr.step < args.stop:
                logs = tr.train_step()
                if d.main:
                    with open(args.out / "steps.jsonl", "a") as f:
                        f.write(json.dumps({"stage": name, "step": tr.step, "loss": logs["loss"],
                                            "processes": d.world_size}) + "\n")
            tr.save()


if __name__ == "__main__":
    main()
