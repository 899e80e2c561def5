"""A teacher for distillation: a trained model's self-ensemble, which scores better than the
model alone (eight views: +0.07 dB for `real` on Set14 JPEG q50 at x4) but costs eight
passes. Training a network towards those outputs as well as towards the ground truth asks
one pass to learn what eight gave."""

from __future__ import annotations

from pathlib import Path

import torch

from superres.engine.inference import check_ensemble, self_ensemble
from superres.errors import SuperresError
from superres.models import load_weights_file


class Teacher:
    """Frozen weights from ``path`` that turn low-resolution batches into target batches."""

    def __init__(
        self, path: Path, scale: int, channels: int, views: int, device: torch.device, bf16: bool
    ) -> None:
        check_ensemble(views)
        model = load_weights_file(path)
        if (model.scale, model.channels) != (scale, channels):
            raise SuperresError(
                f"teacher {path} is x{model.scale} on {model.channels} channel(s); the model "
                f"trained is x{scale} on {channels}"
            )
        self.network = model.network.to(device, memory_format=torch.channels_last).eval()
        self.network.requires_grad_(False)
        self.views, self.device, self.bf16 = views, device, bf16

    @torch.no_grad()
    def __call__(self, low_res: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self_ensemble(self.network, low_res, self.views).float()
