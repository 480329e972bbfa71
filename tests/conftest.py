"""Tests use tiny models, where one thread is as fast as two and never fights other processes."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses

import torch  # noqa: E402

torch.set_num_threads(1)
