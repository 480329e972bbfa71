"""One world clip from a seed: scene, layout, simulation, frames, prompt and caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import make_caption, make_prompt
from .physics import Trajectory, story
from .render import frame_times, render_trajectory
from .sample import place, sample_layout
from .scene import Scene

FRAME_SIZE_LIMIT = 4096


@dataclass
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    scene: Scene
    prompt: str
    caption: str
    fps: float
    seconds: float
    seed: int
    trajectory: Trajectory

    def meta(self) -> dict:
        """The clip's JSON record (the keys `framecast world sample` writes)."""
        return {"prompt": self.prompt, "caption": self.caption, "scene": self.scene.to_json(),
                "fps": self.fps, "seconds": self.seconds, "seed": self.seed}


def check_clip_args(seconds: float, fps: float, width: int, height: int) -> None:
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not (0 < width <= FRAME_SIZE_LIMIT and 0 < height <= FRAME_SIZE_LIMIT):
        raise ValueError(f"size must be between 1x1 and {FRAME_SIZE_LIMIT}x{FRAME_SIZE_LIMIT}, got {width}x{height}")
    if int(round(seconds * fps)) < 1:
        raise ValueError(f"{seconds} s at {fps} fps holds no frame")


def make_clip(seed: int, seconds: float, fps: float, width: int, height: int,
              scene: Scene | None = None, prompt: str | None = None) -> Clip:
    """Render the clip that `seed` draws (or lay out a given scene with that seed)."""
    check_clip_args(seconds, fps, width, height)
    rng = np.random.default_rng(seed)
    if scene is None:
        layout, traj = sample_layout(rng, width / height, seconds)
        scene = layout.scene
    else:
        layout, traj = place(scene, rng, seconds)
    frames = render_trajectory(traj, frame_times(seconds, fps), width, height)
    stories = [story(traj, i) for i in range(len(scene.objects))]
    words = np.random.default_rng([seed, 1])  # wording never shifts the scene's random stream
    if prompt is None:
        prompt = make_prompt(scene, words)
    caption = make_caption(scene, stories, words)
    return Clip(frames, scene, prompt, caption, float(fps), float(seconds), int(seed), traj)
