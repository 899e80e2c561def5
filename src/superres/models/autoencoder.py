"""The convolutional autoencoder of the second classic SR tutorial, on RGB.

The image is enlarged by bicubic first, then an encoder (two poolings) and a
decoder (two upsamplings) with additive skip connections restore the detail. Unlike
the tutorial, the output is added to the enlarged input (a global skip), which
makes it train in minutes on a CPU instead of hours.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample, conv, pad_to_multiple

_POOLING = 4  # two 2x2 poolings: the enlarged image must be a multiple of 4 on each side


class Autoencoder(nn.Module):
    def __init__(self, scale: int, widths: tuple[int, int, int] = (64, 128, 256)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.scale = scale
        self.upsample = MatlabBicubicUpsample(scale, channels=3)
        self.enc1 = nn.Sequential(conv(3, w1, 3), nn.ReLU(), conv(w1, w1, 3), nn.ReLU())
        self.enc2 = nn.Sequential(conv(w1, w2, 3), nn.ReLU(), conv(w2, w2, 3), nn.ReLU())
        self.bottleneck = nn.Sequential(conv(w2, w3, 3), nn.ReLU())
        self.dec2 = nn.Sequential(conv(w3, w2, 3), nn.ReLU(), conv(w2, w2, 3), nn.ReLU())
        self.dec1 = nn.Sequential(conv(w2, w1, 3), nn.ReLU(), conv(w1, w1, 3), nn.ReLU())
        self.out = conv(w1, 3, 3)
        # The receptive field is ~40 enlarged pixels. A multiple of 4 keeps tiles on the
        # pooling grid, so tiled and whole-image results agree for tiles that are multiples of 4.
        self.contract = NetworkContract(
            scale, channels=3, context=28, size_multiple=_POOLING // math.gcd(_POOLING, scale)
        )

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        enlarged = self.upsample(low_res)
        height, width = enlarged.shape[-2:]
        skip1 = self.enc1(pad_to_multiple(enlarged, _POOLING))
        skip2 = self.enc2(F.max_pool2d(skip1, 2))
        x = self.bottleneck(F.max_pool2d(skip2, 2))
        x = self.dec2(F.interpolate(x, scale_factor=2.0, mode="nearest")) + skip2
        x = self.dec1(F.interpolate(x, scale_factor=2.0, mode="nearest")) + skip1
        return self.out(x)[..., :height, :width] + enlarged
