"""The service's settings and what it knows of its model: the defaults live here, the CLI fills them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("framecast-data")


@dataclass(frozen=True)
class ServerSettings:
    model_dir: Path
    data_dir: Path = DEFAULT_DATA_DIR
    workers: int = 1  # generation processes: each holds a copy of the model
    api_keys: tuple[str, ...] = ()  # none: no authentication
    device: str = "auto"  # where workers run the model: auto (cuda if there is one), cpu, cuda, ...
    max_seconds: float = 20.0  # one generation (and each extension's new part)
    max_video_seconds: float = 120.0  # a whole video, extensions of extensions included (the worker holds it all)
    max_steps: int = 1000
    max_upload_bytes: int = 10 * 2**20
    area_factor: int = 16  # the largest frame a request may ask for: this many times the model's default area
    max_attempts: int = 3  # a job interrupted this many times (crashes, kills) fails instead of running again
    poll_after_ms: int = 500  # the openai client's poll helper waits this long between status requests

    @property
    def db_path(self) -> Path:
        return self.data_dir / "framecast.db"

    @property
    def videos_dir(self) -> Path:
        return self.data_dir / "videos"

    @property
    def inputs_dir(self) -> Path:
        """What jobs are given besides their prompt (images, source videos): a folder per job."""
        return self.data_dir / "inputs"


def owner_of(api_key: str | None) -> str:
    """The owner id stored with a job: a digest, so the database never holds a key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24] if api_key else ""


@dataclass(frozen=True)
class ModelInfo:
    """What requests are checked against, read from the model folder without loading weights."""

    name: str
    fps: float
    width: int
    height: int
    multiple: tuple[int, int]  # (width's, height's): frame sides are multiples of these
    max_pixels: int
    given_frames: bool = True  # the model can start from an image or continue a clip (its DiT patches single frames)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def model_info(folder: Path, area_factor: int = 16) -> ModelInfo:
    """Raises FileNotFoundError / ValueError naming the problem, as Framecast.load does."""
    import torch

    from ..models.vae import VideoVAE
    from ..pipeline import read_model_config

    config, meta = read_model_config(folder)
    with torch.device("meta"):  # only the VAE's factors are wanted: no memory, no initialisation
        sf = VideoVAE(config.vae).spatial_factor
    _, ph, pw = config.dit.patch_size
    folder = Path(folder).resolve()
    name = folder.parent.name if folder.name == "model" else folder.name  # runs/NAME/model -> NAME
    return ModelInfo(name=f"framecast-{name}", fps=meta.fps, width=meta.width, height=meta.height,
                     multiple=(sf * pw, sf * ph), max_pixels=area_factor * meta.width * meta.height,
                     given_frames=config.dit.patch_size[0] == 1)
