"""A generic training loop: AdamW, warm-up, EMA, clipping, accumulation, bf16 on GPU,
checkpoints with bit-exact resume, a progress bar and `log.jsonl`.

The loop knows nothing about VAEs or DiTs: a stage hands it a module, a loss function and a
resumable data source (anything with `next()`, `state_dict()` and `load_state_dict()`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm


class DataSource(Protocol):
    def next(self) -> Any: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class LoopConfig:
    steps: int
    lr: float = 3e-4
    warmup: int = 50
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.999
    log_every: int = 10
    ckpt_every: int = 100
    seed: int = 0


def lr_lambda(warmup: int, steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return f


def bf16_autocast(device: torch.device) -> bool:
    """Whether to train under bf16 autocast: on CUDA, and on CPUs with native bf16 (AVX512-BF16,
    AMX), where matmuls and convolutions run about 1.5-3x faster than fp32 (weights, optimiser
    and norms stay fp32). FRAMECAST_BF16=0 turns it off."""
    if os.environ.get("FRAMECAST_BF16", "1") == "0":
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains `model` on `loss_fn(model, batch, generator) -> (loss, logs)` over `data`."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn, data: DataSource, cfg: LoopConfig,
                 out: Path, device: torch.device, progress: bool = True):
        self.name, self.model, self.loss_fn, self.data, self.cfg = name, model.to(device), loss_fn, data, cfg
        self.out, self.device, self.progress = Path(out), device, progress
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg.warmup, cfg.steps))
        self.generator = torch.Generator().manual_seed(cfg.seed)  # noise and times of the loss
        self.step = 0
        torch.manual_seed(cfg.seed)

    @property
    def ckpt_path(self) -> Path:
        return self.out / f"{self.name}.ckpt"

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "data": self.data.state_dict(),
                "generator": self.generator.get_state(), "rng": rng_state()}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(self.ckpt_path)  # never a half-written checkpoint under the real name

    def resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.data.load_state_dict(state["data"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        return True

    # --- the loop ---------------------------------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.ema_decay if self.step > self.cfg.warmup else 0.0  # track closely while warming up
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    def _log(self, record: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_step(self) -> dict:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        items = 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16_autocast(self.device))
        for _ in range(self.cfg.grad_accum):
            batch = self.data.next()
            with autocast:
                loss, extra = self.loss_fn(self.model, batch, self.generator)
            (loss / self.cfg.grad_accum).backward()
            items += extra.pop("items", 0)
            for k, v in {"loss": loss.item(), **extra}.items():
                logs[k] = logs.get(k, 0.0) + v / self.cfg.grad_accum
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        self._update_ema()
        return {**logs, "grad_norm": float(norm), "lr": self.sched.get_last_lr()[0], "items": items}

    def run(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.name, unit="step", disable=not self.progress)
        t0, items = time.perf_counter(), 0
        while self.step < self.cfg.steps:
            logs = self.train_step()
            items += logs.pop("items")
            bar.update(1)
            if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                elapsed = time.perf_counter() - t0
                record = {"stage": self.name, "step": self.step, **{k: round(v, 6) for k, v in logs.items()},
                          "clips_per_s": round(items / elapsed, 3) if elapsed > 0 else None}
                self._log(record)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", clips_s=f"{record['clips_per_s']}")
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save()
        bar.close()
