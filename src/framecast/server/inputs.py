"""What a job is given besides its prompt, on disk from the moment the job is accepted: an uploaded
image (as PNG) or the video it extends or edits (a hard link to the source's mp4, else a copy).

A job's inputs live in DATA/inputs/<job id>/ and nowhere in memory, so a job accepted is run after
a crash and restart, and after its source video is deleted; they go when the job is deleted.
The job's `given` names them: Given.from_files' arguments, with files named within that folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

IMAGE = "image.png"
SOURCE = "source.mp4"
FILE_ARGS = ("image", "before", "after", "source")  # the Given.from_files arguments that name files
PART = ".part"


def job_inputs(inputs_dir: Path, job_id: str) -> Path:
    return inputs_dir / job_id


def save_inputs(folder: Path, files: dict[str, np.ndarray | Path]) -> None:
    """Write a job's inputs (an (H, W, 3) image as PNG; a file linked, else copied) and flush them to
    disk, all or nothing: the folder appears whole, before the job that names it is added."""
    from PIL import Image

    part = folder.with_name(folder.name + PART)
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        for name, value in files.items():
            target = part / name
            if isinstance(value, Path):
                try:
                    os.link(value, target)  # finished videos are replaced, never rewritten: a link is a snapshot
                except OSError:
                    shutil.copyfile(value, target)
            else:
                Image.fromarray(value).save(target, format="PNG")
            _fsync(target)
        _fsync(part)
        os.replace(part, folder)
        _fsync(folder.parent)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def given_paths(folder: Path, given: dict[str, Any]) -> dict[str, Any]:
    """A job's `given` with its file names made paths in its inputs folder: Given.from_files' arguments."""
    return {k: folder / v if k in FILE_ARGS else v for k, v in given.items()}


def given_files(folder: Path, given: dict[str, Any] | None) -> dict[str, Path]:
    """name -> path of each file a job's `given` names (what a remix of it links again)."""
    return {given[k]: folder / given[k] for k in FILE_ARGS if given and k in given}


def remove_inputs(inputs_dir: Path, job_id: str) -> None:
    shutil.rmtree(job_inputs(inputs_dir, job_id), ignore_errors=True)


def sweep(inputs_dir: Path, is_job: Callable[[str], bool]) -> int:
    """Remove the inputs of jobs that do not exist (written, then the server died before adding the
    job, or a job deleted while its inputs were being removed); returns how many went."""
    if not inputs_dir.is_dir():
        return 0
    gone = [p for p in inputs_dir.iterdir() if p.name.endswith(PART) or not is_job(p.name)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(gone)
