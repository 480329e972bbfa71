"""The `framecast` command: parses arguments, fills options, calls the library.

Exit codes: 0 success, 1 failed work (e.g. a clip that fails evaluation with --strict, or a
video without framecast provenance for `verify`), 2 bad input, 3 a prompt the content policy
refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .config import EDITS, MAX_BEST_OF

DEFAULT_SECONDS = 4.0
DEFAULT_FPS = 12.0
DEFAULT_SIZE = "96x96"


class UsageError(ValueError):
    """Bad input from the command line."""


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both positive."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 96x96 (WIDTHxHEIGHT), got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be at least 1x1, got {text!r}")
    return w, h


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _whole(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value
    return parse


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=_positive(float), default=DEFAULT_SECONDS, help="clip length (default 4)")
    p.add_argument("--fps", type=_positive(float), default=DEFAULT_FPS, help="frames per second (default 12)")
    p.add_argument("--size", type=parse_size, default=parse_size(DEFAULT_SIZE), metavar="WxH",
                   help="frame size in pixels (default 96x96); the aspect ratio follows from it")
    p.add_argument("--seed", type=int, default=0, help="same seed, same clips")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast", description="Open text-to-video.")
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the built-in physics world").add_subparsers(dest="world_command", required=True)
    p = world.add_parser("sample", help="render world clips: DIR/NAME.mp4 + DIR/NAME.json")
    p.add_argument("--n", type=int, default=4, help="number of clips")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _clip_args(p)
    p.set_defaults(func=cmd_world_sample)

    p = world.add_parser("shards", help="write a training data set of world clips as shards")
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumes if it exists)")
    _clip_args(p)
    p.add_argument("--frames", type=int, default=None,
                   help="frames per clip (default seconds*fps; 1+4k suits the video VAE)")
    p.add_argument("--shard-size", type=int, default=64, help="clips per shard")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=cmd_world_shards)

    p = world.add_parser("expand", help="expand a short prompt into a detailed caption and a scene")
    p.add_argument("prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=parse_size, default=parse_size(DEFAULT_SIZE), metavar="WxH")
    p.add_argument("--seconds", type=_positive(float), default=DEFAULT_SECONDS)
    p.set_defaults(func=cmd_world_expand)

    data = sub.add_parser("data", help="prepare training data").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("index", help="a folder of videos with captions -> training shards (for train --data)")
    p.add_argument("src", type=Path, help="folder of videos (mp4, mov, webm, mkv), searched recursively")
    p.add_argument("--out", type=Path, required=True, help="new shard folder")
    p.add_argument("--captions", type=Path, default=None,
                   help="CSV or JSONL of path,caption (default: SRC/captions.csv or .jsonl, else NAME.txt beside each video)")
    p.add_argument("--sizes", default="64x64,112x64,64x112", metavar="WxH,...",
                   help="frame size buckets; each clip takes the nearest aspect ratio (default 64x64,112x64,64x112)")
    p.add_argument("--frames", default="17,49", metavar="N,...",
                   help="clip length buckets in frames, 1+4k for the video VAE (default 17,49)")
    p.add_argument("--fps", type=_positive(float), default=DEFAULT_FPS, help="frame rate of the clips (default 12)")
    p.add_argument("--cut-threshold", type=_positive(float), default=30.0,
                   help="mean absolute frame difference (0-255) that marks a scene cut (default 30)")
    p.add_argument("--min-motion", type=float, default=0.5,
                   help="clips whose frames change less than this on average (0-255) are dropped as static (default 0.5)")
    p.add_argument("--shard-size", type=int, default=64, help="clips per shard")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.set_defaults(func=cmd_data_index)

    p = sub.add_parser("train", help="train a model (world data, VAE, DiT) with a preset's recipe")
    p.add_argument("--preset", default="default", help="tiny, default, default-v3 or large (default: default)")
    p.add_argument("--out", type=Path, required=True, help="run folder; the model lands in OUT/model")
    p.add_argument("--steps", type=int, default=None,
                   help="DiT training steps (default: the preset's); 0 with --init keeps its DiT as it is")
    p.add_argument("--batch-size", type=int, default=None, help="DiT batch size (default: the preset's)")
    p.add_argument("--vae-steps", type=int, default=None, help="VAE training steps (default: the preset's)")
    p.add_argument("--decoder-steps", type=int, default=None,
                   help="decoder fine-tuning steps, 0 for none (default: the preset's)")
    p.add_argument("--decoder-denoise", type=float, default=None, metavar="T",
                   help="fine-tune the decoder on the DiT's one-step denoising of latents noised to flow times "
                        "up to T (what sampling hands it), 0 for clean latents (default: the preset's)")
    p.add_argument("--lr", type=float, default=None,
                   help="the DiT's peak learning rate, reached after the warm-up and decayed by a cosine to 10%% "
                        "(default: the preset's; a run that continues a trained model may want less)")
    p.add_argument("--dit-clips", type=int, default=None, metavar="N",
                   help="clips per bucket whose latents are cached for the DiT (default: all the VAE saw)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, metavar="MODEL_DIR",
                   help="continue from a model folder of this preset (e.g. models/default): its VAE is kept, "
                        "its DiT trains --steps more steps, its decoder --decoder-steps more")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its checkpoints")
    p.add_argument("--data", type=Path, default=None, help="shard folder(s) to train on (default: render world clips)")
    p.add_argument("--stage", choices=["all", "vae", "decoder", "export"], default="all",
                   help="all (VAE, DiT, decoder fine-tuning, then the model folder); vae: the video VAE alone; "
                        "decoder: fine-tune the VAE decoder on the frozen encoder (may run beside the DiT "
                        "stage); export: write OUT/model from the checkpoints as they are")
    p.add_argument("--fsdp", action="store_true",
                   help="under torchrun: shard parameters, gradients and optimiser state over the processes "
                        "(FSDP2) instead of replicating the model in each (DDP)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="text to video")
    p.add_argument("prompt", nargs="?", default=None)
    p.add_argument("-o", "--out", type=Path, default=Path("out.mp4"),
                   help="output mp4 (default out.mp4); with --prompts-file, a folder")
    p.add_argument("--prompts-file", type=Path, default=None, metavar="FILE",
                   help="one prompt per line: clip i (seed --seed + i) goes to OUT/iii.mp4 with OUT/iii.json, "
                        "ready for `framecast eval OUT`")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    p.add_argument("--seconds", type=_positive(float), default=DEFAULT_SECONDS, help="duration (default 4)")
    p.add_argument("--fps", type=_positive(float), default=None, help="frame rate (default: the model's)")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH", help="frame size (default: the model's)")
    _sampler_args(p, "video")
    p.add_argument("--include-prompt", action="store_true",
                   help="record the prompt in the video's C2PA content credentials (off by default)")
    p.add_argument("--image", type=Path, default=None, metavar="IMG",
                   help="image-to-video: the clip starts with this image (8-bit RGB; resized to a size the model makes)")
    p.add_argument("--loop", action="store_true", help="a seamless loop: the last frame flows into the first")
    p.set_defaults(func=cmd_generate)
    _media_parsers(sub)

    p = sub.add_parser("serve", help="HTTP service: OpenAI's Videos API, a job queue and a web studio")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data", type=Path, default=None, help="jobs and videos folder (default ./framecast-data)")
    p.add_argument("--workers", type=int, default=1, help="generation processes, each with the model (default 1)")
    p.add_argument("--api-key", action="append", default=None, metavar="KEY",
                   help="require this bearer key (repeat for several; each key sees only its own videos); "
                        "default: the comma-separated keys in $FRAMECAST_API_KEY, else none")
    p.add_argument("--device", default="auto", help="where workers run the model: auto, cpu, cuda (default auto)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("bench", help="how fast this device makes video: peak FLOP/s, DiT MFU, diffusers, "
                                     "time per stage, long clips")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder (default: the shipped model, else random weights of the default preset)")
    p.add_argument("--preset", default=None,
                   help="random weights of this preset instead of a model folder (tiny, default, default-v3, large): "
                        "weights do not change speed")
    p.add_argument("--seconds-list", default="4,16,60", metavar="S,...",
                   help="clip lengths for the scaling runs; the first is also timed by stage (default 4,16,60)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH", help="frame size (default: the model's)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, from OMP_NUM_THREADS)")
    p.add_argument("--matmul", type=int, default=None, metavar="N",
                   help="side of the square matmul that measures peak FLOP/s (default: grown to about 0.1 s each)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the JSON report to FILE")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("verify", help="check a video for framecast's content credentials and watermark")
    p.add_argument("file", type=Path, help="a video file")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("eval", help="score clips against their prompts by the world's rules")
    p.add_argument("dir", type=Path, help="folder of NAME.mp4 + NAME.json (prompt and/or scene)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 if any clip fails any check")
    p.set_defaults(func=cmd_eval)
    return parser


def cmd_world_sample(args) -> int:
    from .world.export import write_samples

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    w, h = args.size
    paths = write_samples(args.out, args.n, args.seconds, args.fps, w, h, args.seed)
    print(f"wrote {len(paths)} clips to {args.out}")
    return 0


def cmd_world_shards(args) -> int:
    from .world.dataset import WorldDataConfig, write_world_shards

    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    w, h = args.size
    cfg = WorldDataConfig(n=args.n, seconds=args.seconds, fps=args.fps, width=w, height=h,
                          frames=args.frames, seed=args.seed, shard_size=args.shard_size)
    write_world_shards(args.out, cfg, workers=args.workers)
    return 0


def cmd_world_expand(args) -> int:
    from .world.expand import expand_prompt

    w, h = args.size
    ex = expand_prompt(args.prompt, seed=args.seed, aspect=w / h, seconds=args.seconds)
    print(json.dumps({"prompt": args.prompt, "caption": ex.caption, "scene": ex.scene.to_json()}, indent=2))
    return 0


def cmd_data_index(args) -> int:
    from .data.videos import IndexConfig, index_videos

    try:
        sizes = tuple(parse_size(s) for s in args.sizes.split(","))
        frames = tuple(int(f) for f in args.frames.split(","))
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise UsageError(f"bad --sizes or --frames: {e}") from None
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    cfg = IndexConfig(sizes=sizes, frames=frames, fps=args.fps, cut_threshold=args.cut_threshold,
                      min_motion=args.min_motion, shard_size=args.shard_size)
    report = index_videos(args.src, args.out, cfg, captions=args.captions, workers=args.workers,
                          log=lambda m: print(f"framecast: {m}", file=sys.stderr))
    dropped = report["dropped"]
    print(f"indexed {report['indexed']} of {report['videos']} videos: {report['scenes']} scenes -> {report['clips']} clips "
          f"({', '.join(f'{k} {v}' for k, v in sorted(report['buckets'].items())) or 'none'}); dropped "
          f"{dropped['too_short']} too short, {dropped['static']} static; skipped {len(report['skipped'])} "
          f"(see {args.out / 'report.json'})")
    if not report["clips"]:
        print("framecast: error: no clips to train on", file=sys.stderr)
        return 1
    return 0


def cmd_train(args) -> int:
    from .config import preset
    from .train.recipe import train

    preset(args.preset)  # unknown preset: a clear error before any work
    for name in ("steps", "batch_size", "vae_steps", "decoder_steps", "dit_clips"):
        keep = name == "decoder_steps" or (name == "steps" and args.init is not None)  # 0: none
        value, least = getattr(args, name), 0 if keep else 1
        if value is not None and value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if args.lr is not None and not 0.0 < args.lr < 1.0:
        raise UsageError(f"--lr must be a learning rate between 0 and 1, got {args.lr}")
    if args.decoder_denoise is not None and not 0.0 <= args.decoder_denoise <= 1.0:
        raise UsageError(f"--decoder-denoise is a flow time in [0, 1], got {args.decoder_denoise}")
    folder = train(args.preset, args.out, steps=args.steps, batch_size=args.batch_size, vae_steps=args.vae_steps,
                   decoder_steps=args.decoder_steps, dit_clips=args.dit_clips, decoder_denoise=args.decoder_denoise,
                   lr=args.lr, init=args.init, seed=args.seed,
                   resume=args.resume, data=args.data, stage=args.stage, fsdp=args.fsdp)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one report
        print(f"{args.stage.upper() if args.stage == 'vae' else args.stage} trained in {folder}"
              if args.stage in ("vae", "decoder") else f"model written to {folder}")
    return 0


def default_model_dir() -> Path:
    """$FRAMECAST_MODEL if set, else the shipped model: models/default of a source checkout
    (an editable install), or the copy a wheel installs under <prefix>/share/framecast."""
    import os

    if os.environ.get("FRAMECAST_MODEL"):
        return Path(os.environ["FRAMECAST_MODEL"])
    source = Path(__file__).resolve().parents[2] / "models" / "default"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "framecast" / "models" / "default"


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read prompts from {path}: {e.strerror or e}") from None
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError(f"{path} holds no prompts (one per line)")
    return prompts


def _generate_jobs(args) -> list[tuple[str, Path, int]]:
    """(prompt, mp4 path, seed) for one prompt, or for each line of --prompts-file into a folder."""
    if (args.prompt is None) == (args.prompts_file is None):
        raise UsageError("give a prompt, or --prompts-file FILE (one prompt per line), not both")
    if args.prompts_file is None:
        if not args.prompt.strip():
            raise UsageError("the prompt is empty")
        if args.out.is_dir():
            raise UsageError(f"-o {args.out} is a folder; give a file name such as {args.out / 'out.mp4'}")
        if not args.out.parent.is_dir():
            raise UsageError(f"the output folder {args.out.parent} does not exist")
        return [(args.prompt, args.out, args.seed)]
    prompts = read_prompts(args.prompts_file)
    if args.out.suffix == ".mp4" or (args.out.exists() and not args.out.is_dir()):
        raise UsageError(f"with --prompts-file, -o names a folder for the clips, got {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    return [(p, args.out / f"{i:03d}.mp4", args.seed + i) for i, p in enumerate(prompts)]


class StepBar:
    """The sampling progress bar, opened at the first step: a request refused while it is checked
    (a prompt the world cannot lay out) shows its error without an empty bar, and a job of no
    steps (an edit at strength 0) shows none. Called as progress(i, n) after step i of n."""

    def __init__(self, desc: str):
        self.desc, self.bar, self.started = desc, None, 0.0

    def __call__(self, i: int, n: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(desc=self.desc, unit="step", total=n)
            self.bar.start_t = self.bar.last_print_t = self.started  # the first step's time counts
        self.bar.total = n
        self.bar.update(i - self.bar.n)

    def __enter__(self) -> StepBar:
        from time import time  # tqdm's clock

        self.started = time()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_generate(args) -> int:
    import dataclasses
    import time
    import warnings

    _check_options(args)
    jobs = _generate_jobs(args)
    from .safety import PolicyViolation, enforce

    allowed = []
    for prompt, out, seed in jobs:  # before any model loads
        try:
            enforce(prompt, "framecast generate")
        except PolicyViolation as e:
            if args.prompts_file is None:
                print(f"framecast: {e}", file=sys.stderr)
                return 3
            print(f"framecast: skipped {out.name}: {e}", file=sys.stderr)
            continue
        allowed.append((prompt, out, seed))
    model_dir = _model_dir(args)
    given = _generate_given(args)  # None for plain text-to-video
    # heavy imports after the cheap checks: bad input fails at once
    from .pipeline import Framecast, SampleOptions, expanded_caption, generate
    from .provenance import Generation, write_marked_mp4

    model = Framecast.load(model_dir)
    w, h = args.size or (None, None)
    base = SampleOptions(seconds=args.seconds, fps=args.fps, width=w, height=h, seed=args.seed, steps=args.steps,
                         guidance=args.guidance, negative_prompt=args.negative_prompt, sampler=args.sampler,
                         expand=args.expand, best_of=args.best_of)
    batch = args.prompts_file is not None
    for prompt, out, seed in allowed:
        opts = dataclasses.replace(base, seed=seed)
        start = time.perf_counter()
        with StepBar(out.name if batch else "sampling") as progress, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                frames, fps, notes = generate(model, prompt, opts, progress, given=given)
            except ValueError as e:
                if not batch:
                    raise
                print(f"framecast: skipped {out.name} ({prompt!r}): {e}", file=sys.stderr)
                continue
        for note in [*notes, *(str(c.message) for c in caught if issubclass(c.category, UserWarning))]:
            print(f"framecast: note: {note}", file=sys.stderr)
        settings = {"seed": seed, "seconds": args.seconds, "fps": fps, "size": f"{frames.shape[2]}x{frames.shape[1]}",
                    "steps": opts.steps or model.meta.steps, "sampler": opts.sampler or model.meta.sampler,
                    "guidance": model.meta.guidance if opts.guidance is None else opts.guidance,
                    "best_of": opts.best_of or model.meta.best_of}
        gen = Generation(model_dir.resolve().name, settings=settings, prompt=prompt if args.include_prompt else None)
        marks = write_marked_mp4(out, frames.numpy(), fps, gen, loop=args.loop)
        seconds = time.perf_counter() - start
        if batch:  # beside each clip what `framecast eval` needs to score it
            # the seed asked for remakes the whole request; the notes name the kept candidate's own
            meta = {"prompt": prompt, "caption": expanded_caption(notes), "seed": seed, "fps": fps, "model": str(model_dir),
                    "seconds_to_generate": round(seconds, 3), "notes": notes}
            out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, {fps:g} fps; "
              f"watermark {marks['watermark_id']}, C2PA signed) in {seconds:.1f} s")
    return 0


# --- prompting with images and videos: extend, connect, edit, image -------------------------

def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _sampling_args(p: argparse.ArgumentParser, out: str) -> None:
    """The options every generating command shares."""
    p.add_argument("-o", "--out", type=Path, default=Path(out), help=f"output file (default {out})")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    _sampler_args(p, "output")


def _sampler_args(p: argparse.ArgumentParser, what: str) -> None:
    """How the sampler runs: the options of every command that samples."""
    p.add_argument("--seed", type=int, default=0, help=f"same seed, same {what}")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the model's; 1 turns it off)")
    p.add_argument("--negative-prompt", default="", help=f"what the {what} should not show")
    p.add_argument("--sampler", choices=["euler", "heun"], default=None, help="ODE solver (default: the model's)")
    p.add_argument("--best-of", type=_whole(1, MAX_BEST_OF), default=None, metavar="N",
                   help="make N candidates and keep the one the world's checks rank best, alignment first "
                        f"(1 to {MAX_BEST_OF}; default: the model's; 1 makes one)")
    p.add_argument("--no-expand", dest="expand", action="store_false",
                   help="pass the prompt to the model as written, instead of expanding it into a detailed caption")


def _media_parsers(sub) -> None:
    p = sub.add_parser("extend", help="continue a clip forward (or precede it, --backward) by --seconds")
    p.add_argument("input", type=Path, metavar="IN.mp4", help="the clip; the output holds it unchanged")
    p.add_argument("prompt", nargs="?", default=None,
                   help="what happens next (default: the caption in IN.json beside the clip, if any)")
    p.add_argument("--seconds", type=_positive(float), default=DEFAULT_SECONDS, help="seconds to add (default 4)")
    p.add_argument("--backward", action="store_true", help="make what comes before the clip")
    _sampling_args(p, "out.mp4")
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("connect", help="a transition from the end of one clip to the start of another")
    p.add_argument("first", type=Path, metavar="A.mp4")
    p.add_argument("second", type=Path, metavar="B.mp4")
    p.add_argument("prompt", nargs="?", default=None, help="what happens in between (default: A.json's caption, if any)")
    p.add_argument("--seconds", type=_positive(float), default=1.0, help="length of the transition (default 1)")
    _sampling_args(p, "out.mp4")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("edit", help="video-to-video: remake a clip to a new prompt, keeping its motion")
    p.add_argument("input", type=Path, metavar="IN.mp4")
    p.add_argument("prompt", help="what the edited clip shows, e.g. the clip's description with a new colour")
    p.add_argument("--strength", type=_unit_interval, default=None,
                   help="how much to change, 0 (keep the clip) to 1 (ignore it) (default 0.9)")
    p.add_argument("--method", choices=EDITS, default="flowedit",
                   help="flowedit (default): change what the prompt asks for and keep the rest, in first-order "
                        "steps whatever --sampler says; sdedit: noise the clip to the strength and remake it "
                        "from there with --sampler")
    _sampling_args(p, "out.mp4")
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("image", help="text to image (a one-frame video)")
    p.add_argument("prompt")
    p.add_argument("--size", type=parse_size, default=None, metavar="WxH", help="image size (default: the model's)")
    _sampling_args(p, "out.png")
    p.set_defaults(func=cmd_image)


def _check_out(out: Path, inputs: list[Path]) -> None:
    """-o names a file in an existing folder, and never one of the inputs."""
    if out.is_dir():
        raise UsageError(f"-o {out} is a folder; give a file name such as {out / 'out.mp4'}")
    if not out.parent.is_dir():
        raise UsageError(f"the output folder {out.parent} does not exist")
    _not_an_input(out, inputs)


def _not_an_input(out: Path, inputs: list[Path]) -> None:
    for path in inputs:
        if out.exists() and path.exists() and out.samefile(path):
            raise UsageError(f"-o {out} is the input {path}; write the output to another file (inputs are never changed)")


def _check_options(args) -> None:
    """The sampling options' cheap checks, shared by every generating command."""
    import math

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise UsageError(f"--guidance must be a finite number, got {args.guidance}")
    if not -2**63 <= args.seed < 2**64:
        raise UsageError(f"--seed must fit in 64 bits, got {args.seed}")


def _model_dir(args) -> Path:
    """--model, else the shipped model; a missing folder is bad input."""
    model_dir = args.model or default_model_dir()
    if not model_dir.is_dir():
        hint = "" if args.model else "; train one or pass --model DIR"
        raise UsageError(f"no model folder at {model_dir}{hint}")
    return model_dir


def _check_sampling(args) -> None:
    """The shared options' cheap checks, and that the model folder exists."""
    _check_options(args)
    _model_dir(args)


def _generate_given(args):
    """generate's --image and --loop as what the pipeline is given (None: text alone)."""
    if args.image is None and not args.loop:
        return None
    if args.image is not None:
        _not_an_input(args.out, [args.image])
    from .pipeline import Given

    return Given.from_files(image=args.image, loop=args.loop)


def _sidecar_prompt(clip: Path) -> tuple[str, bool] | None:
    """The caption (else the prompt) in CLIP.json, which framecast writes beside the clips it makes,
    and whether it is a caption (already detailed: not expanded again)."""
    try:
        doc = json.loads(clip.with_suffix(".json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    for key in ("caption", "prompt"):
        if isinstance(doc.get(key), str) and doc[key].strip():
            return doc[key], key == "caption"
    return None


def _run_media(args, prompt: str, given, seconds: float, notes: list[str], image: bool = False) -> int:
    """Load the model, generate with a progress bar, print the notices, write the output."""
    import time
    import warnings

    from .safety import PolicyViolation, enforce

    try:
        enforce(prompt, f"framecast {args.command}")  # before any model loads
    except PolicyViolation as e:
        print(f"framecast: {e}", file=sys.stderr)
        return 3
    from .pipeline import Framecast, SampleOptions, generate, generate_image
    from .provenance import Generation, write_marked_mp4, write_marked_png

    model_dir = _model_dir(args)
    model = Framecast.load(model_dir)
    w, h = getattr(args, "size", None) or (None, None)
    opts = SampleOptions(seconds=seconds, width=w, height=h, seed=args.seed, steps=args.steps, guidance=args.guidance,
                         negative_prompt=args.negative_prompt, sampler=args.sampler, expand=args.expand,
                         best_of=args.best_of)
    start = time.perf_counter()
    with StepBar("sampling") as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if image:
            frame, more = generate_image(model, prompt, opts, progress)
            frames, fps = frame[None], None
        else:
            frames, fps, more = generate(model, prompt, opts, progress, given=given)
    for note in [*notes, *more, *(str(c.message) for c in caught if issubclass(c.category, UserWarning))]:
        print(f"framecast: note: {note}", file=sys.stderr)
    settings = {"seed": args.seed, "size": f"{frames.shape[2]}x{frames.shape[1]}", "task": args.command,
                "steps": opts.steps or model.meta.steps, "best_of": opts.best_of or model.meta.best_of}
    gen = Generation(model_dir.resolve().name, settings=settings,
                     prompt=prompt if getattr(args, "include_prompt", False) else None)
    if image:
        write_marked_png(args.out, frames[0].numpy(), gen)
    else:
        write_marked_mp4(args.out, frames.numpy(), fps, gen)
    seconds_taken = time.perf_counter() - start
    shape = f"{frames.shape[2]}x{frames.shape[1]}"
    what = shape if image else f"{frames.shape[0]} frames, {shape}, {fps:g} fps"
    print(f"wrote {args.out} ({what}) in {seconds_taken:.1f} s")
    return 0


def _clip_prompt(args, clip: Path) -> tuple[str, list[str]]:
    """The prompt of extend / connect: as given, else the clip's caption beside it, else none."""
    if args.prompt is not None:
        if not args.prompt.strip():
            raise UsageError("the prompt is empty")
        return args.prompt, []
    found = _sidecar_prompt(clip)
    if found is not None:
        text, is_caption = found
        if is_caption:
            args.expand = False  # a caption is what expansion would make
        return text, [f"prompt taken from {clip.with_suffix('.json').name}: {text}"]
    args.expand = False  # nothing to expand
    return "", ["no prompt: the new frames follow the clip alone"]


def cmd_extend(args) -> int:
    _check_sampling(args)
    _check_out(args.out, [args.input])
    from .pipeline import Given

    given = Given.from_files(**{"after" if args.backward else "before": args.input})
    prompt, notes = _clip_prompt(args, args.input)
    return _run_media(args, prompt, given, args.seconds, notes)


def cmd_connect(args) -> int:
    _check_sampling(args)
    _check_out(args.out, [args.first, args.second])
    from .pipeline import Given

    given = Given.from_files(before=args.first, after=args.second)
    prompt, notes = _clip_prompt(args, args.first)
    return _run_media(args, prompt, given, args.seconds, notes)


def cmd_edit(args) -> int:
    _check_sampling(args)
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    _check_out(args.out, [args.input])
    from .pipeline import Given

    given = Given.from_files(source=args.input, strength=args.strength, edit=args.method)
    return _run_media(args, args.prompt, given, DEFAULT_SECONDS, [])


def cmd_image(args) -> int:
    from PIL import Image

    _check_sampling(args)
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    _check_out(args.out, [])
    if args.out.suffix.lower() not in Image.registered_extensions():
        raise UsageError(f"cannot tell an image format from {args.out.name}; name it .png or .jpg")
    return _run_media(args, args.prompt, None, DEFAULT_SECONDS, [], image=True)


def cmd_serve(args) -> int:
    import os

    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    keys = args.api_key if args.api_key is not None else os.environ.get("FRAMECAST_API_KEY", "").split(",")
    keys = tuple(k.strip() for k in keys if k.strip())
    model_dir = _model_dir(args)
    # heavy imports after the cheap checks: bad input fails at once
    from .server.app import serve
    from .server.settings import DEFAULT_DATA_DIR, ServerSettings

    settings = ServerSettings(model_dir=model_dir, data_dir=args.data or DEFAULT_DATA_DIR, workers=args.workers,
                              api_keys=keys, device=args.device)
    serve(settings, args.host, args.port)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate_dir, format_report

    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a folder")
    report = evaluate_dir(args.dir)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 1 if args.strict and any(c["failed"] for c in report["clips"]) else 0


def cmd_bench(args) -> int:
    from .config import PRESETS

    try:
        seconds = tuple(float(s) for s in args.seconds_list.split(","))
    except ValueError:
        raise UsageError(f"--seconds-list must be numbers like 4,16,60, got {args.seconds_list!r}") from None
    if not all(s > 0 for s in seconds):
        raise UsageError(f"--seconds-list must be positive, got {args.seconds_list!r}")
    for name in ("steps", "threads", "matmul"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.model and args.preset:
        raise UsageError("give --model or --preset, not both")
    if args.preset is not None and args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    model = _model_dir(args) if args.model else None
    if model is None and args.preset is None:
        shipped = default_model_dir()
        if (shipped / "model.safetensors").is_file():
            model = shipped
        else:
            print(f"framecast: note: no trained model at {shipped}: random weights of the default preset "
                  "(weights do not change speed)", file=sys.stderr)
    from .bench import BenchOptions, bench, format_report

    report = bench(BenchOptions(model=str(model) if model else None, preset=args.preset or "default", seconds=seconds,
                                steps=args.steps, size=args.size, threads=args.threads, matmul=args.matmul))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_verify(args) -> int:
    if not args.file.exists():
        raise UsageError(f"no such file: {args.file}")  # before the heavy imports: bad input fails at once
    from .provenance import format_report, verify_file

    report = verify_file(args.file)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["framecast"] else 1


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """framecast's own warnings as one plain line, like its notes; others as Python shows them."""
    if issubclass(category, UserWarning) and f"{os.sep}framecast{os.sep}" in filename:
        print(f"framecast: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (UsageError, ValueError, FileNotFoundError) as e:
        print(f"framecast: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("framecast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
