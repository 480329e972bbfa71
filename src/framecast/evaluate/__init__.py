"""World-grounded evaluation: score clips against their prompts by the world's rules.

`evaluate_clip(frames, fps, target)` checks one clip against a `Scene` or a `PromptSpec`;
`evaluate_dir(path)` scores every NAME.mp4 + NAME.json in a folder; `format_report` prints
the result as a table. The categories are WORLD.md's: alignment, motion, physics,
permanence, stability.
"""

from .checks import CATEGORIES
from .clip import evaluate_clip
from .report import evaluate_dir, format_report

__all__ = ["CATEGORIES", "evaluate_clip", "evaluate_dir", "format_report"]
