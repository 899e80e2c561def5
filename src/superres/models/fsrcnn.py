"""FSRCNN (Dong, Loy and Tang, ECCV 2016): SRCNN's speed-up, working at low resolution.

Feature extraction, a 1x1 shrink to a thin mapping stage, a 1x1 expansion, and a
learned deconvolution that enlarges at the very end.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FSRCNN(nn.Module):
    slow_layers = ("deconvolution",)  # the paper trains the deconvolution at a tenth of the rate

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconvolution = nn.ConvTranspose2d(
            d, 1, 9, stride=scale, padding=4, output_padding=scale - 1
        )
        self.lr_context = 2 + m + math.ceil(4 / scale) + 1

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        return self.deconvolution(self.body(low_res))
