"""Tests use tiny models, where one thread is as fast as two and never fights other processes."""

import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses
# generated videos are signed: with a local C2PA chain made for the test run, not the user's
os.environ.setdefault("FRAMECAST_CONFIG_DIR", tempfile.mkdtemp(prefix="framecast-test-config-"))

import torch  # noqa: E402

torch.set_num_threads(1)
