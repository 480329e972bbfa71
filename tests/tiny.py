"""A tiny framecast model with small random weights, for the tests that generate."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from framecast.config import PRESETS, ModelConfig
from framecast.pipeline import Framecast, ModelMeta


def tiny_model(meta: ModelMeta, text: nn.Module, config: ModelConfig = PRESETS["tiny"], seed: int = 0) -> Framecast:
    """adaLN-zero starts the DiT as a zero velocity, which would make every video the decoded
    noise; small random weights make the output depend on the text, the time and the guidance.
    `text` may be an nn.Identity() when the model is only saved (the folder holds no encoder)."""
    torch.manual_seed(seed)
    model = Framecast(config, dataclasses.replace(meta), text)
    for m in model.dit.modules():
        if isinstance(m, nn.Linear) and not m.weight.any():
            nn.init.normal_(m.weight, std=0.05)
            nn.init.normal_(m.bias, std=0.05)
    return model.eval()
