"""A generic training loop: AdamW, warm-up, EMA, clipping, accumulation, bf16 on GPU,
checkpoints with bit-exact resume, a progress bar and `log.jsonl`.

The loop knows nothing about VAEs or DiTs: a stage hands it a module, a loss function and a
resumable data source (anything with `next()`, `state_dict()` and `load_state_dict()`).

Under torchrun (see framecast.train.distributed) the same loop runs data-parallel: the model
is wrapped in DDP, or sharded with FSDP2 (`fsdp=True`); batches carry "rows" = (start, stop,
total), this rank's rows of the global batch, and the loss function then returns this rank's
share of the global loss. Checkpoints are then written with torch.distributed.checkpoint (a
folder OUT/NAME.ckpt/); one process writes a torch.save file OUT/NAME.ckpt as it always has.
Either resumes on any number of processes. Only rank 0 writes log.jsonl and shows progress.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .distributed import Dist

DCP_STATE = "trainer.pt"  # in a DCP checkpoint folder: step, scheduler, data position, RNG states


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


def ema_decay_at(step: int, warmup: int, decay: float) -> float:
    """The EMA's decay at a step: 0 while the learning rate warms up (the EMA is the model), then
    (1 + n) / (10 + n) after n more steps, up to `decay`. A fixed 0.999 from the start would
    still hold 37% of the first weights 1000 steps on: a short run's EMA would mostly be the
    model it was, not the model it is."""
    if step <= warmup:
        return 0.0
    n = step - warmup
    return min(decay, (1 + n) / (10 + n))


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


class _Inputs:
    """The loss function's inputs in a box DDP and FSDP2 do not open: they would move the
    batch to the GPU, and the loss functions move what they need themselves."""

    def __init__(self, batch, generator):
        self.batch, self.generator = batch, generator


class LossModule(torch.nn.Module):
    """model + loss function as one module, so that the whole loss (which may call
    model.encode and model.decode rather than forward) runs inside DDP's or FSDP's forward."""

    def __init__(self, model: torch.nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, inputs: _Inputs):
        return self.loss_fn(self.model, inputs.batch, inputs.generator)


def _shard(module: torch.nn.Module, root: torch.nn.Module) -> None:
    """FSDP2: each block in the model's ModuleLists (DiTBlock, the VAE's ResBlock) is its own
    all-gather unit; the rest (embeddings, resamplers, heads) goes with the root."""
    from torch.distributed.fsdp import fully_shard

    for m in list(module.modules()):
        if isinstance(m, torch.nn.ModuleList):
            for child in m:
                if type(child).__name__.endswith("Block"):
                    fully_shard(child)
    fully_shard(root)


def _replace(tmp: Path, dst: Path) -> None:
    """Put tmp (a file or a folder) under dst's name. A file replaces a file atomically;
    otherwise dst steps aside to dst.old first (resume falls back to it after a crash)."""
    if tmp.is_file() and not dst.is_dir():
        tmp.replace(dst)
        return
    old = dst.with_name(dst.name + ".old")
    _remove(old)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def existing_checkpoint(path: Path) -> Path | None:
    """path if it holds a checkpoint (a file or a DCP folder), else its .old left by a crash."""
    path = Path(path)
    for p in (path, path.with_name(path.name + ".old")):
        if p.is_file() or (p / ".metadata").is_file():
            return p
    return None


def _dcp_load(state: dict, path: Path, alone: bool) -> None:
    """torch.distributed.checkpoint.load in place; alone: in this process only, with no word
    about it (DCP warns that it assumes so)."""
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        if alone:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=path, no_dist=alone)


def load_ema_weights(model: torch.nn.Module, ckpt: Path) -> int:
    """Load a trainer checkpoint's EMA weights (either format) into model; return its step."""
    path = existing_checkpoint(ckpt)
    if path is None:
        raise FileNotFoundError(f"no checkpoint at {ckpt}: train this stage first")
    device = next(model.parameters()).device
    if path.is_file():
        state = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(state["ema"])
        return int(state["step"])
    state = {"ema": model.state_dict()}
    _dcp_load(state, path, alone=True)  # any rank may read it on its own
    model.load_state_dict(state["ema"])
    return int(torch.load(path / DCP_STATE, weights_only=False)["step"])


class Trainer:
    """Trains `model` on `loss_fn(model, batch, generator) -> (loss, logs)` over `data`.

    dist: this process's place in a torchrun job (default: alone). fsdp: shard parameters,
    gradients and optimiser state over the ranks (FSDP2) instead of replicating them (DDP).
    """

    def __init__(self, name: str, model: torch.nn.Module, loss_fn, data: DataSource, cfg: LoopConfig,
                 out: Path, device: torch.device, progress: bool = True, dist: Dist | None = None,
                 fsdp: bool = False):
        self.name, self.model, self.loss_fn, self.data, self.cfg = name, model.to(device), loss_fn, data, cfg
        self.dist = dist or Dist()
        self.fsdp = fsdp and self.dist.active
        self.out, self.device, self.progress = Path(out), device, progress and self.dist.main
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self._engine = None  # the wrapped model + loss when data-parallel
        if self.fsdp:
            self._arch = copy.deepcopy(self.model).to("meta")  # to rebuild a whole EMA (ema_module)
            self._engine = LossModule(self.model, loss_fn)
            _shard(self.model, self._engine)
            _shard(self.ema, self.ema)
        elif self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self._engine = DDP(LossModule(self.model, loss_fn))
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

    def ema_module(self) -> torch.nn.Module:
        """The EMA weights as a plain, whole module (with FSDP: gathered from the shards)."""
        if not self.fsdp:
            return self.ema
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.ema, options=StateDictOptions(full_state_dict=True))
        module = copy.deepcopy(self._arch).to_empty(device=self.device)
        module.load_state_dict(full)
        return module.requires_grad_(False)

    # --- checkpoints ------------------------------------------------------------------------
    def _loop_state(self) -> dict:
        return {"step": self.step, "sched": self.sched.state_dict(), "data": self.data.state_dict(),
                "generator": self.generator.get_state(), "rng": rng_state(), "world_size": self.dist.world_size}

    def _set_loop_state(self, state: dict) -> None:
        self.sched.load_state_dict(state["sched"])
        self.data.load_state_dict(state["data"])
        self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        self.step = state["step"]

    def state_dict(self) -> dict:
        """The single-process checkpoint (torch.save): model, EMA, optimiser and loop state."""
        state = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                 **self._loop_state()}
        del state["world_size"]  # the format single-process runs have always written
        return state

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.active:
            self._save_dcp()
            return
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        _replace(tmp, self.ckpt_path)  # never a half-written checkpoint under the real name

    def resume(self) -> bool:
        path = existing_checkpoint(self.ckpt_path)
        if path is None:
            return False
        if path.is_dir():
            self._load_dcp(path)
        else:
            self._load_file(path)
        return True

    def _load_file(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if self.fsdp:  # whole tensors in, each rank keeps its shard
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)
            full = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=full)
            set_model_state_dict(self.ema, state["ema"], options=full)
            set_optimizer_state_dict(self.model, self.opt, self._named_optim_state(state["opt"]), options=full)
        else:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
        self._set_loop_state(state)

    def _named_optim_state(self, osd: dict) -> dict:
        """A torch.optim state dict keyed by parameter index -> keyed by parameter name (the
        form torch.distributed.checkpoint.state_dict reads)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        order = [names[id(p)] for g in self.opt.param_groups for p in g["params"]]
        state = {order[i]: v for i, v in osd["state"].items()}
        groups = [{**g, "params": [order[i] for i in g["params"]]} for g in osd["param_groups"]]
        return {"state": state, "param_groups": groups}

    def _dcp_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        return {"model": get_model_state_dict(self.model), "ema": get_model_state_dict(self.ema),
                "opt": get_optimizer_state_dict(self.model, self.opt)}

    def _save_dcp(self) -> None:
        import torch.distributed.checkpoint as dcp

        tmp = self.ckpt_path.with_name(f".{self.ckpt_path.name}.tmp")
        if self.dist.main:
            _remove(tmp)
        distributed.barrier()
        dcp.save(self._dcp_state(), checkpoint_id=tmp)
        if self.dist.main:  # the loop state is the same on every rank: one copy
            torch.save(self._loop_state(), tmp / DCP_STATE)
            _replace(tmp, self.ckpt_path)
        distributed.barrier()

    def _load_dcp(self, path: Path) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        state = self._dcp_state()
        _dcp_load(state, path, alone=not distributed.initialized())
        set_model_state_dict(self.model, state["model"])
        set_model_state_dict(self.ema, state["ema"])
        set_optimizer_state_dict(self.model, self.opt, state["opt"])
        self._set_loop_state(torch.load(path / DCP_STATE, map_location="cpu", weights_only=False))

    # --- the loop ---------------------------------------------------------------------------
    @torch.no_grad()
    def _update_ema(self) -> None:
        d = ema_decay_at(self.step, self.cfg.warmup, self.cfg.ema_decay)
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)

    def _log(self, record: dict) -> None:
        if not self.dist.main:
            return
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _sync(self, last: bool):
        """Reduce gradients only on the last micro-batch of an accumulated step."""
        if last or self._engine is None:
            return contextlib.nullcontext()
        if self.fsdp:
            return _no_fsdp_sync(self._engine)
        return self._engine.no_sync()

    def _forward(self, batch) -> tuple[torch.Tensor, dict]:
        if self._engine is None:
            return self.loss_fn(self.model, batch, self.generator)
        return self._engine(_Inputs(batch, self.generator))

    def train_step(self) -> dict:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        items = 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16_autocast(self.device))
        for i in range(self.cfg.grad_accum):
            batch = self.data.next()
            split = isinstance(batch, dict) and "rows" in batch
            with self._sync(i == self.cfg.grad_accum - 1):
                with autocast:
                    loss, extra = self._forward(batch)
                # DDP and FSDP average gradients over ranks; a share of the global loss wants their sum
                scale = self.dist.world_size if split and self.dist.active else 1
                (loss * scale / self.cfg.grad_accum if scale != 1 else loss / self.cfg.grad_accum).backward()
            items += extra.pop("items", 0)
            for k, v in {"loss": self._loss_value(loss, split), **self._extra_values(extra, split)}.items():
                logs[k] = logs.get(k, 0.0) + v / self.cfg.grad_accum
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        self._update_ema()
        return {**logs, "grad_norm": float(distributed.local_tensor(norm)), "lr": self.sched.get_last_lr()[0],
                "items": items}

    def _loss_value(self, loss: torch.Tensor, split: bool) -> float:
        if not self.dist.active:
            return loss.item()
        total = distributed.global_sum(loss.float())  # shares add up; whole losses are averaged
        return total.item() if split else total.item() / self.dist.world_size

    def _extra_values(self, extra: dict, split: bool) -> dict:
        """Loss functions report global values for split batches; other batches are averaged."""
        if split or not self.dist.active or not extra:
            return extra
        values = distributed.global_sum(torch.tensor(list(extra.values()), dtype=torch.float64, device=self.device))
        return {k: float(v) / self.dist.world_size for k, v in zip(extra, values)}

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
                if self.dist.active:
                    record["processes"] = self.dist.world_size
                self._log(record)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", clips_s=f"{record['clips_per_s']}")
            if self.step % self.cfg.ckpt_every == 0 or self.step == self.cfg.steps:
                self.save()
        bar.close()


@contextlib.contextmanager
def _no_fsdp_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)
