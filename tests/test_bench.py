"""`framecast bench`: the report through the real CLI entry at a tiny size, and the FLOP count."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from framecast.bench import diffusers_ratio, dit_forward_flops
from framecast.config import PRESETS
from framecast.models.dit import DiT

FRAMECAST = Path(sys.executable).with_name("framecast")


def run(*args):
    cmd = [str(FRAMECAST)] if FRAMECAST.exists() else [sys.executable, "-m", "framecast"]
    return subprocess.run(cmd + ["bench", *args], check=False, capture_output=True, text=True, timeout=300)


def test_bench_json_report(tmp_path):
    out = tmp_path / "bench.json"
    res = run("--json", "--preset", "tiny", "--steps", "2", "--size", "32x32", "--seconds-list", "0.5",
              "--matmul", "128", "--threads", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert json.loads(out.read_text()) == report
    assert {"peak_flops", "dit_flops", "mfu", "diffusers_ratio", "breakdown", "scaling", "device"} <= report.keys()
    assert report["device"].startswith("cpu")
    assert report["peak_flops"] > 0 and report["dit_flops"] > 0 and report["dit_flops_per_s"] > 0
    assert 0 < report["mfu"] <= 1.2
    assert report["mfu"] == report["dit_flops_per_s"] / report["peak_flops"]
    # 2 steps for each of the tiny preset's 2 candidates, guidance batched into one call each
    assert report["clip"]["best_of"] == 2 and report["dit_calls"] == 4
    if importlib.util.find_spec("diffusers"):
        assert report["diffusers_ratio"] > 0
    else:
        assert report["diffusers_ratio"] is None and "not installed" in report["diffusers_note"]
    stages = report["breakdown"]
    for stage in ("text encoding", "sampling", "VAE decoding", "world checks", "mp4 writing", "provenance", "total"):
        assert stages[stage] > 0, stage
    assert stages["total"] >= sum(v for k, v in stages.items() if k != "total") - 1e-6
    assert stages["sampling"] >= report["dit_seconds"]  # the DiT's calls are inside the sampler
    point = report["scaling"]["0.5"]
    assert point["time"] > 0 and 100 < point["peak_rss_mb"] < 10_000 and point["windows"] == 1


def test_bench_rejects_bad_options():
    for args, message in ((["--seconds-list", "4,x"], "--seconds-list"), (["--steps", "0"], "--steps"),
                          (["--preset", "huge"], "unknown preset"), (["--model", ".", "--preset", "tiny"], "not both")):
        res = run(*args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)


@pytest.mark.parametrize("head", [0, 6])
def test_flop_count_matches_torch(head):
    """The analytic count equals torch's FLOP counter (SDPA in its math form, which it can count)."""
    cfg = dataclasses.replace(PRESETS["tiny"].dit, head_channels=head)
    dit = DiT(cfg).eval()
    for t in (torch.rand(2), torch.rand(2, 5)):  # one time per clip, one per latent frame
        x, text = torch.randn(2, cfg.latent_channels, 5, 4, 6), torch.randn(2, 7, cfg.text_dim)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            dit(x, t, text, torch.ones(2, 7, dtype=torch.bool))
        groups = 1 if t.dim() == 1 else 5
        assert dit_forward_flops(cfg, tuple(x.shape), 7, groups) == counter.get_total_flops()


def test_without_diffusers_the_ratio_is_null(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import fails as if not installed
    ratio, note = diffusers_ratio(None, (), torch.device("cpu"))
    assert ratio is None and "not installed" in note
