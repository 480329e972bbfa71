"""The generation worker: a process that loads the model once, then claims jobs one at a time.

It runs outside the API's event loop (and outside its GIL), so status requests stay fast while a
video renders. It never outlives its server: it asks the kernel for SIGKILL when the server dies
and checks its parent between steps, so a restarted server is the only one working on its queue.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..pipeline import Framecast, Given, SampleOptions, generate
from ..provenance import Generation, verify_file, write_marked_mp4
from ..video.io import read_mp4
from .inputs import given_paths, job_inputs
from .store import Job, Store

log = logging.getLogger("framecast.worker")
IDLE_POLL_S = 0.2  # how often an idle worker looks for a queued job
SAMPLING_SHARE = 95  # progress shown at the end of sampling; decoding and writing take the rest
TASKS = {"image": "image-to-video", "before": "extend", "source": "edit"}  # by what a job is given


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    db_path: Path
    videos_dir: Path
    inputs_dir: Path
    model_dir: Path
    parent_pid: int
    device: str = "cpu"
    threads: int | None = None
    max_attempts: int = 3


class Abandoned(Exception):
    """The job was deleted, or taken back from this worker, while it ran."""


def output_paths(videos_dir: Path, job_id: str) -> dict[str, Path]:
    """Every file a job leaves, by the content variant that serves it."""
    return {"video": videos_dir / f"{job_id}.mp4", "thumbnail": videos_dir / f"{job_id}.webp",
            "spritesheet": videos_dir / f"{job_id}.jpg"}


def remove_outputs(videos_dir: Path, job_id: str) -> None:
    for path in output_paths(videos_dir, job_id).values():
        for p in (path, path.with_name(path.name + ".part")):
            p.unlink(missing_ok=True)


def write_previews(mp4: Path, paths: dict[str, Path], columns: int = 5, count: int = 10) -> None:
    """Thumbnail (first frame) and spritesheet (evenly spaced frames in a grid), made from the mp4
    as written, so they show exactly what the video file shows."""
    from PIL import Image

    frames, _ = read_mp4(mp4)
    Image.fromarray(frames[0]).save(paths["thumbnail"], format="WEBP", quality=90)
    picks = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)]
    cols = min(columns, len(picks))
    rows = -(-len(picks) // cols)
    h, w = frames.shape[1:3]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)  # (rows*H, cols*W, 3)
    for i, frame in enumerate(picks):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = frame
    Image.fromarray(sheet).save(paths["spritesheet"], format="JPEG", quality=90)


def provenance_of(mp4: Path) -> dict:
    """What `framecast verify` finds in a finished video, in short: checked once, stored with the job."""
    try:
        report = verify_file(mp4)
    except (OSError, ValueError) as e:
        return {"framecast": False, "c2pa": None, "watermark": False, "watermark_id": None,
                "verdict": f"could not be checked: {e}"}
    mark = report["watermark"]
    return {"framecast": report["framecast"], "c2pa": report["c2pa"]["status"], "watermark": mark["detected"],
            "watermark_id": mark["id"], "verdict": report["verdict"]}


def render(model: Framecast, job: Job, cfg: WorkerConfig, progress) -> dict:
    """Generate a job's video from its prompt and stored inputs, and write its files (the mp4 is
    written here and nowhere else); returns the finished video's provenance."""
    given = None
    settings = {k: job.options.get(k) for k in ("seed", "steps", "guidance", "seconds")} | {"size": job.size}
    if job.given:
        given = Given.from_files(**given_paths(job_inputs(cfg.inputs_dir, job.id), job.given))
        settings["task"] = next(TASKS[k] for k in TASKS if k in job.given)
    frames, fps, _ = generate(model, job.prompt, SampleOptions(**job.options), progress, given=given)
    paths = output_paths(cfg.videos_dir, job.id)
    gen = Generation(job.model, settings=settings | {"fps": fps})  # the prompt stays out of the credentials
    write_marked_mp4(paths["video"], frames.numpy(), fps, gen)  # the service's only mp4 write: watermarked, signed
    write_previews(paths["video"], paths)
    return provenance_of(paths["video"])


def run_job(store: Store, model: Framecast, job: Job, cfg: WorkerConfig) -> None:
    shown = -1

    def progress(i: int, n: int) -> None:
        nonlocal shown
        if os.getppid() != cfg.parent_pid:  # the server is gone: its successor re-runs this job
            os._exit(1)
        pct = SAMPLING_SHARE * i // n
        if pct != shown:
            if not store.set_progress(job.id, cfg.worker_id, pct):
                raise Abandoned
            shown = pct

    try:
        provenance = render(model, job, cfg, progress)
    except Abandoned:
        remove_outputs(cfg.videos_dir, job.id)
        return
    except Exception as e:  # a failed job says why; the worker goes on with the next
        log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        remove_outputs(cfg.videos_dir, job.id)
        store.fail(job.id, cfg.worker_id, "generation_failed", f"{type(e).__name__}: {e}")
        return
    if not store.complete(job.id, cfg.worker_id, provenance):  # deleted while its files were written
        remove_outputs(cfg.videos_dir, job.id)


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when the server dies (a SIGKILLed server cannot ask)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the parent check between steps does it, a step later


def load_model(cfg: WorkerConfig) -> Framecast:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Framecast.load(cfg.model_dir).to(device)


def worker_main(cfg: WorkerConfig, conn) -> None:
    """Process entry point. conn: the write end of a pipe to the pool, for "ready" or a load error.
    (A pipe, not shared locks: a worker killed while holding a multiprocessing lock would leave it
    held for good.)"""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches the server, which stops us
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     worker %(process)d: %(message)s")
    if os.getppid() != cfg.parent_pid:
        return
    try:
        model = load_model(cfg)
    except Exception as e:  # whatever stops the model loading, the pool hears why
        conn.send(f"the worker could not load the model {cfg.model_dir}: {type(e).__name__}: {e}")
        raise SystemExit(1) from None
    store = Store(cfg.db_path, cfg.max_attempts)
    cfg.videos_dir.mkdir(parents=True, exist_ok=True)
    conn.send("ready")
    while os.getppid() == cfg.parent_pid:  # until the pool terminates us, or the server is gone
        job = store.claim(cfg.worker_id)
        if job is None:
            time.sleep(IDLE_POLL_S)
            continue
        log.info("job %s: %r (%s, %s s)", job.id, job.prompt[:60], job.size, job.seconds)
        run_job(store, model, job, cfg)
