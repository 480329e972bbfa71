"""Data-parallel training throughput (clips/s) at 1, 2, ... processes under torchrun.

    python benchmarks/train_distributed.py [--presets tiny,default] [--procs 1,2] [--steps 6] [--fsdp]

Each run is framecast's real Trainer (DDP, or FSDP2 with --fsdp; gloo on CPU, NCCL on GPU)
training the VAE and then the DiT of a preset at its first bucket and its batch sizes, which
are global batches: N processes share each batch, as `torchrun -m framecast.train` does. The
data are random tensors of the right shapes held in memory (throughput does not depend on the
values), so the figures are compute and gradient communication, not decoding. One process runs
without torchrun, exactly as `framecast train` does. Each process gets cores/N threads unless
--threads says otherwise; on a GPU machine each process takes one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


class RandomRows:
    """The same random global batch every step; with several processes, this rank's rows."""

    def __init__(self, batch: dict, rows: tuple[int, int] | None):
        total = next(iter(batch.values())).shape[0]
        if rows is None:
            self.batch = batch
        else:
            self.batch = {k: v[rows[0]:rows[1]] for k, v in batch.items()} | {"rows": (*rows, total)}

    def next(self) -> dict:
        return dict(self.batch)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def worker(args) -> None:
    from framecast.config import PRESETS, TRAIN_PRESETS
    from framecast.models.dit import DiT
    from framecast.models.vae import VideoVAE
    from framecast.train import distributed
    from framecast.train.data import parse_buckets
    from framecast.train.losses import dit_loss_fn, vae_loss_fn
    from framecast.train.trainer import LoopConfig, Trainer

    with distributed.session() as d:
        device = d.device()
        cfg, tc = PRESETS[args.preset], TRAIN_PRESETS[args.preset]
        b = parse_buckets(tc.buckets)[0]
        g = torch.Generator().manual_seed(0)
        video = torch.rand(tc.vae_batch_size, 3, b.frames, b.height, b.width, generator=g) * 2 - 1
        torch.manual_seed(0)
        vae = VideoVAE(cfg.vae)
        with torch.no_grad():
            lat = vae.encode(video[:1]).mean.shape[1:]
        n, m = tc.batch_size, 40
        latents = {"latents": torch.randn(n, *lat, generator=g), "caption_tokens": torch.randn(n, m, 384, generator=g),
                   "caption_mask": torch.ones(n, m, dtype=torch.bool),
                   "prompt_tokens": torch.randn(n, 12, 384, generator=g),
                   "prompt_mask": torch.ones(n, 12, dtype=torch.bool)}
        empty = (torch.zeros(1, 2, 384), torch.ones(1, 2, dtype=torch.bool))
        stages = [("vae", vae, vae_loss_fn(tc.kl_weight, device, tc.vae_crop, tc.vae_fg_weight), {"video": video}),
                  ("dit", DiT(cfg.dit), dit_loss_fn(lambda z: z, empty, device, cond_prob=tc.cond_prob), latents)]
        result = {"preset": args.preset, "processes": d.world_size, "fsdp": args.fsdp, "device": str(device.type),
                  "threads": torch.get_num_threads(), "bucket": str(b)}
        for name, model, loss, batch in stages:
            size = next(iter(batch.values())).shape[0]
            data = RandomRows(batch, d.rows(size) if d.active else None)
            loop = LoopConfig(steps=args.steps + 1, warmup=1, log_every=10**9, ckpt_every=10**9)
            tr = Trainer(name, model, loss, data, loop, Path(args.tmp) / f"{name}-{d.rank}", device, progress=False,
                         dist=d, fsdp=args.fsdp)
            tr.train_step()  # warm-up
            distributed.barrier()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tr.train_step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            distributed.barrier()
            seconds = (time.perf_counter() - t0) / args.steps
            result[name] = {"batch": size, "s_per_step": round(seconds, 4), "clips_per_s": round(size / seconds, 2)}
        if d.main:
            print("RESULT " + json.dumps(result), flush=True)


def launch(args, preset: str, procs: int) -> dict:
    threads = args.threads or max(1, (os.cpu_count() or 1) // procs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    cmd = [__file__, "--worker", "--preset", preset, "--steps", str(args.steps), "--tmp", args.tmp,
           *(["--fsdp"] if args.fsdp else [])]
    if procs > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", *cmd]
    res = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env)
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"{procs} process(es) failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,default")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per stage (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=None, help="threads per process (default: cores / processes)")
    ap.add_argument("--fsdp", action="store_true", help="shard with FSDP2 instead of DDP")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="tiny", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        print(f"torch {torch.__version__}, {os.cpu_count()} cores, "
              f"{'cuda' if torch.cuda.is_available() else 'cpu'}, {'FSDP2' if args.fsdp else 'DDP'}")
        for preset in args.presets.split(","):
            for procs in map(int, args.procs.split(",")):
                r = launch(args, preset, procs)
                results.append(r)
                print(f"{preset} ({r['bucket']}), {procs} process(es) x {r['threads']} thread(s): "
                      f"VAE {r['vae']['clips_per_s']} clips/s (batch {r['vae']['batch']}), "
                      f"DiT {r['dit']['clips_per_s']} clips/s (batch {r['dit']['batch']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
