"""How fast this device makes video: `framecast bench`, all figures from one run.

- peak_flops: the limit, the best dense square matmul through torch (fp32 on CPU, bf16 on GPU), FLOP/s.
- dit_flops: FLOPs of the DiT calls while sampling the first clip length (4 s by default),
  counted from the config and each call's shapes (matmuls only: see `dit_forward_flops`);
  dit_flops_per_s = dit_flops / the time inside those calls; mfu = dit_flops_per_s / peak_flops.
- diffusers_ratio: our DiT's forward time over diffusers' WanTransformer3DModel's, built from
  config (random weights, nothing downloaded) at the same shape, dtype and threads (< 1: ours is faster).
- breakdown: seconds per stage of that clip, on the library's own code path (generate, best of
  the model's candidates included, + write_marked_mp4, as `framecast generate` runs them), after
  a 1-step warm-up.
- scaling: per clip length, seconds from prompt to signed mp4 and peak RSS, each length in a
  fresh process (run as `python -m framecast.bench`) so each peak is its own.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from .config import TRAIN_PRESETS, DiTConfig, preset
from . import pipeline
from .pipeline import Framecast, ModelMeta, SampleOptions
from .provenance import Generation, write_marked_mp4

PROMPT = "a red ball falls and bounces while a blue box spins clockwise"
TIMED_STAGES = ("text encoding", "sampling", "VAE decoding", "world checks", "mp4 writing", "provenance")


@dataclass
class BenchOptions:
    model: str | None = None  # a model folder; None: random weights of `preset` (weights don't change speed)
    preset: str = "default"
    seconds: tuple[float, ...] = (4.0, 16.0, 60.0)  # clip lengths; the first one is also broken down
    steps: int | None = None  # sampling steps (None: the model's)
    size: tuple[int, int] | None = None  # (width, height) (None: the model's)
    threads: int | None = None  # torch threads (None: torch's default, i.e. OMP_NUM_THREADS)
    matmul: int | None = None  # side of the peak matmul (None: grown until one takes about 0.1 s)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    name = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {name}, {torch.get_num_threads()} thread(s) of {os.cpu_count()} cores, torch {torch.__version__}"


# --- the limit ------------------------------------------------------------------------------

def peak_flops(device: torch.device, n: int | None = None, repeats: int = 5) -> tuple[float, int]:
    """Best FLOP/s of n x n matmuls (2 n^3 each) and n; n = None grows it until one takes 0.1 s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    def best(side: int, times: int) -> float:
        a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
        torch.mm(a, b)  # warm-up
        fastest = float("inf")
        for _ in range(times):
            _sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    if n is None:
        n = 256
        while best(n, 1) < 0.1 and n < (16384 if device.type == "cuda" else 4096):
            n *= 2
    return 2 * n**3 / best(n, repeats), n


# --- the DiT's work -------------------------------------------------------------------------

def dit_forward_flops(cfg: DiTConfig, x_shape: tuple[int, ...], text_tokens: int, frame_groups: int = 1) -> int:
    """FLOPs of one DiT.forward on latents (B, C, T, H, W) with text_tokens text tokens, counting
    the matmuls (2 per multiply-add) as dit.py computes them: patch embed/unembed, timestep MLP,
    text projection, and per block the adaLN modulation, self-attention (q, kv, out projections;
    QK^T and AV over all token pairs), cross-attention (q and out on the video tokens, kv on the
    text tokens, QK^T and AV against every text token: the mask removes none of that work) and
    the MLP; and the convolutional head's three 3x3x3 convolutions over every latent cell. Norms,
    RoPE, softmax, GELU, biases and residuals are left out, as MFU counts do.
    frame_groups: 1, or latent frames / pt when times are given per frame (conditioning)."""
    b, c, t, h, w = x_shape
    pt, ph, pw = cfg.patch_size
    n, m, d = (t // pt) * (h // ph) * (w // pw), text_tokens, cfg.dim
    patch_dim, hidden, f = c * pt * ph * pw, int(d * cfg.mlp_ratio), frame_groups
    block = (2 * f * d * 6 * d  # modulation
             + 2 * n * d * 4 * d + 4 * n * n * d  # self-attention: q, kv, out; QK^T, AV
             + 2 * n * d * 2 * d + 2 * m * d * 2 * d + 4 * n * m * d  # cross: q, out; text kv; QK^T, AV
             + 4 * n * d * hidden)  # MLP
    rest = (2 * n * patch_dim * d * 2  # patch in and out
            + 2 * f * d * d * 2 + 2 * f * d * 2 * d  # timestep MLP, output modulation
            + 2 * m * cfg.text_dim * d)  # text projection
    k = cfg.head_channels
    head = 2 * 27 * t * h * w * ((2 * c + 1) * k + k * k + k * c)  # ConvHead: velocity, latents, time -> k -> k -> c
    return b * (cfg.depth * block + rest + head)


class Timer:
    """Seconds spent in wrapped functions, by stage; the DiT's calls also add up their FLOPs."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.flops, self.calls = device, defaultdict(float), 0, 0
        self.last_call: tuple = ()  # the DiT's last arguments: the shape diffusers is compared at

    def wrap(self, fn, stage: str):
        def timed(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(self.device)
            self.seconds[stage] += time.perf_counter() - start
            return out
        return timed

    def wrap_dit(self, dit):
        timed = self.wrap(dit.forward, "dit")

        def counted(x, t, text, text_mask=None):
            groups = 1 if t.dim() == 1 else t.shape[1] // dit.cfg.patch_size[0]
            self.flops += dit_forward_flops(dit.cfg, tuple(x.shape), text.shape[1], groups)
            self.calls += 1
            self.last_call = (x, t, text, text_mask)
            return timed(x, t, text, text_mask)
        return counted


# --- one clip, timed by stage ---------------------------------------------------------------

def random_model(preset_name: str) -> Framecast:
    """Random weights of a preset, with the sampling defaults and video format its recipe writes."""
    from .train.data import parse_buckets

    tc = TRAIN_PRESETS[preset_name]
    first = parse_buckets(tc.buckets)[0]
    meta = ModelMeta(fps=first.fps, width=first.width, height=first.height, steps=tc.sample_steps,
                     guidance=tc.guidance, sampler=tc.sampler, best_of=tc.best_of)
    torch.manual_seed(0)
    return Framecast(preset(preset_name), meta).eval()


def load_model(opts: BenchOptions, device: torch.device) -> Framecast:
    model = Framecast.load(opts.model) if opts.model else random_model(opts.preset)
    return model.to(device)


def sample_options(opts: BenchOptions, seconds: float, **kw) -> SampleOptions:
    w, h = opts.size or (None, None)
    return replace(SampleOptions(seconds=seconds, width=w, height=h, steps=opts.steps), **kw)


@contextmanager
def timed(model: Framecast, timer: Timer | None):
    """Time generation's stages while inside: the model's own modules, each job's sampler and
    the world's checks of best-of candidates, wrapped where generate() finds them."""
    if timer is None:
        yield
        return
    wraps = {model.text: timer.wrap(model.text.forward, "text encoding"), model.dit: timer.wrap_dit(model.dit),
             model.vae: timer.wrap(model.vae.decode, "VAE decoding")}
    model.text.forward, model.dit.forward = wraps[model.text], wraps[model.dit]
    model.vae.decode = wraps[model.vae]
    plain_prepare, plain_score = pipeline.prepare, pipeline.world_score

    def prepare(*args, **kwargs):
        job = plain_prepare(*args, **kwargs)
        job.sampler = timer.wrap(job.sampler, "sampling")
        return job
    pipeline.prepare, pipeline.world_score = prepare, timer.wrap(plain_score, "world checks")
    try:
        yield
    finally:
        pipeline.prepare, pipeline.world_score = plain_prepare, plain_score
        for module in wraps:  # back to the class methods
            for name in ("forward", "decode"):
                module.__dict__.pop(name, None)


def make_clip(model: Framecast, sample: SampleOptions, out: Path, timer: Timer | None = None) -> dict:
    """Prompt to signed, watermarked mp4 as `framecast generate` makes it (best of the model's
    candidates included); with a timer, each stage is timed. Returns the job's facts and the
    seconds from prompt to mp4."""
    job = pipeline.prepare(model, PROMPT, sample)  # the facts of the job, before the clock starts
    start = time.perf_counter()
    with timed(model, timer):
        with tqdm(desc="sampling", unit="step", leave=False, disable=None, file=sys.stderr) as bar:
            frames, fps, _ = pipeline.generate(model, PROMPT, sample, lambda i, n: bar.update(i - bar.n))
        gen = Generation("bench", settings={"seed": sample.seed, "steps": job.steps})
        written = time.perf_counter()
        marks = write_marked_mp4(out, frames.numpy(), fps, gen)
        if timer:
            provenance = marks["embed_s"] + marks["check_s"] + marks["sign_s"]
            timer.seconds["provenance"] += provenance
            timer.seconds["mp4 writing"] += time.perf_counter() - written - provenance
    took = time.perf_counter() - start
    text_tokens = job.text[0][0].shape[1]
    best_of = model.meta.best_of if sample.best_of is None else sample.best_of
    return {"frames": int(frames.shape[0]), "width": job.width, "height": job.height, "fps": job.fps,
            "steps": job.steps, "guidance": job.scale, "windows": len(job.plan), "text_tokens": int(text_tokens),
            "batch": 2 if job.scale != 1.0 else 1,  # guidance runs the prompt and the negative as one batch
            "best_of": best_of, "seconds_to_make": took}


def warm_up(model: Framecast, opts: BenchOptions, seconds: float, out: Path) -> None:
    """A 1-step clip of at most 4 s (one window): kernels picked, text encoder and signing key loaded."""
    make_clip(model, sample_options(opts, min(seconds, 4.0), steps=1, best_of=1), out)


def breakdown(model: Framecast, opts: BenchOptions, device: torch.device, tmp: Path) -> tuple[dict, Timer, dict]:
    timer = Timer(device)
    facts = make_clip(model, sample_options(opts, opts.seconds[0]), tmp / "clip.mp4", timer)
    total = facts.pop("seconds_to_make")
    stages = {k: timer.seconds[k] for k in TIMED_STAGES}
    stages["other"] = max(0.0, total - sum(stages.values()))  # expansion, noise, VAE encoding, glue
    stages["total"] = total
    return stages, timer, facts


# --- side by side with diffusers ------------------------------------------------------------

def diffusers_ratio(dit, call: tuple, device: torch.device, repeats: int = 5) -> tuple[float | None, str]:
    """Our DiT's forward time / diffusers' WanTransformer3DModel's, on the arguments of a sampling
    call (x, t, text, text_mask) of ours."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from config: nothing to fetch
    try:
        from diffusers import WanTransformer3DModel
    except ImportError:
        return None, "diffusers is not installed (pip install 'framecast[bench]')"
    cfg = dit.cfg
    theirs = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.latent_channels, out_channels=cfg.latent_channels, text_dim=cfg.text_dim, freq_dim=cfg.dim,
        ffn_dim=int(cfg.dim * cfg.mlp_ratio), num_layers=cfg.depth, cross_attn_norm=True,
    )
    x, t, text, mask = call
    t = t if t.dim() == 1 else t[:, -1]  # one time per clip: Wan reads a 2-d timestep as one per token
    theirs = theirs.to(device).eval()
    if x.dtype != torch.float32:
        theirs = theirs.to(x.dtype)
    runs = {"ours": lambda: dit(x, t, text, mask),  # Wan takes no text mask: its text is padded with zeros
            "theirs": lambda: theirs(x, t * 1000, text, return_dict=False)}
    best = dict.fromkeys(runs, float("inf"))
    with torch.no_grad():
        for i in range(repeats + 1):  # interleaved, so a busy moment hits both; the first is warm-up
            for name, fn in runs.items():
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                if i:
                    best[name] = min(best[name], time.perf_counter() - start)
    note = (f"forward at batch {x.shape[0]}, {x.shape[2]}x{x.shape[3]}x{x.shape[4]} latents, {text.shape[1]} text "
            f"tokens, {x.dtype}: ours {best['ours'] * 1e3:.1f} ms, diffusers {best['theirs'] * 1e3:.1f} ms")
    return best["ours"] / best["theirs"], note


# --- scaling: each length in a fresh process ------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, not ru_maxrss, which a child started
    with vfork + exec (as subprocess does) inherits from its parent's high-water mark."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def scale_point(opts: BenchOptions, seconds: float) -> dict:
    """Time from prompt to signed mp4 (after a warm-up) and the process's peak RSS, in this process."""
    device = _device()
    model = load_model(opts, device)
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(model, opts, seconds, Path(tmp) / "warm.mp4")
        facts = make_clip(model, sample_options(opts, seconds), Path(tmp) / "clip.mp4")
    point = {"time": facts["seconds_to_make"], "peak_rss_mb": peak_rss_mb(), "frames": facts["frames"], "windows": facts["windows"]}
    if device.type == "cuda":
        point["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return point


def scaling(opts: BenchOptions) -> dict[str, dict]:
    out = {}
    for seconds in opts.seconds:
        log(f"scaling: a {seconds:g} s clip in a fresh process")
        doc = json.dumps({**asdict(opts), "seconds": [seconds]})
        res = subprocess.run([sys.executable, "-m", "framecast.bench", doc], check=False,
                             stdout=subprocess.PIPE, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"the {seconds:g} s scaling run failed (exit {res.returncode})")
        point = out[f"{seconds:g}"] = json.loads(res.stdout.strip().splitlines()[-1])
        log(f"  {point['time']:.2f} s, peak RSS {point['peak_rss_mb']:.0f} MB, {point['windows']} window(s)")
    return out


# --- all of it ------------------------------------------------------------------------------

def bench(opts: BenchOptions) -> dict:
    """Every figure of `framecast bench`, as a JSON-ready dict."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    device = _device()
    log("peak matmul FLOP/s")
    peak, side = peak_flops(device, opts.matmul)
    log(f"  {peak / 1e9:.1f} GFLOP/s ({side}x{side})")
    model = load_model(opts, device)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"warm-up and a {opts.seconds[0]:g} s clip, timed by stage")
        warm_up(model, opts, opts.seconds[0], Path(tmp) / "warm.mp4")
        stages, timer, facts = breakdown(model, opts, device, Path(tmp))
    log(f"  {stages['total']:.2f} s")
    log("side by side with diffusers")
    ratio, note = diffusers_ratio(model.dit, timer.last_call, device)
    achieved = timer.flops / timer.seconds["dit"]
    return {"device": describe_device(device), "model": opts.model or f"random weights of the {opts.preset!r} preset",
            "peak_flops": peak, "peak_matmul_size": side, "dit_flops": timer.flops, "dit_flops_per_s": achieved,
            "dit_seconds": timer.seconds["dit"], "dit_calls": timer.calls, "mfu": achieved / peak,
            "diffusers_ratio": ratio, "diffusers_note": note, "clip": {"seconds": opts.seconds[0], **facts},
            "breakdown": stages, "scaling": scaling(opts)}


def format_report(r: dict) -> str:
    c = r["clip"]
    ratio = "n/a" if r["diffusers_ratio"] is None else f"{r['diffusers_ratio']:.2f}"
    lines = [f"device           {r['device']}", f"model            {r['model']}",
             (f"clip             {c['seconds']:g} s: {c['frames']} frames {c['width']}x{c['height']} at {c['fps']:g} "
              f"fps, {c['steps']} steps, guidance {c['guidance']:g} (batch {c['batch']}), {c['windows']} window(s), "
              f"best of {c.get('best_of', 1)}"),
             f"peak matmul      {r['peak_flops'] / 1e9:10.1f} GFLOP/s ({r['peak_matmul_size']}^2)",
             (f"DiT sampling     {r['dit_flops_per_s'] / 1e9:10.1f} GFLOP/s ({r['dit_flops'] / 1e9:.1f} GFLOP in "
              f"{r['dit_calls']} calls, {r['dit_seconds']:.2f} s)"),
             f"MFU              {r['mfu']:10.2f}",
             f"ours / diffusers {ratio:>10} ({r['diffusers_note']})", "", "stage               seconds"]
    lines += [f"  {k:<16} {v:9.2f}" for k, v in r["breakdown"].items()]
    lines += ["", "clip     seconds  peak RSS MB  windows"]
    for length, s in r["scaling"].items():
        lines.append(f"{length + ' s':>6} {s['time']:9.2f} {s['peak_rss_mb']:9.0f} {s['windows']:8}")
    return "\n".join(lines)


if __name__ == "__main__":  # one scaling point: options as JSON in, one JSON line out
    options = BenchOptions(**json.loads(sys.argv[1]))
    options.size = tuple(options.size) if options.size else None
    options.seconds = tuple(options.seconds)
    if options.threads:
        torch.set_num_threads(options.threads)
    print(json.dumps(scale_point(options, options.seconds[0])))
