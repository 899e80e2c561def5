"""The `large` model: attention blocks without attention parameters, at low resolution.

The design follows SPAN (Wan et al., "Swift Parameter-free Attention Network for Efficient
Super-Resolution", NTIRE 2024 efficiency winner): each block is three 3x3 convolutions whose
last output, through ``sigmoid(x) - 0.5``, gates the block's own residual sum, so the network
learns where to put detail at no extra parameters; a 1x1 convolution fuses early and late
features before the pixel-shuffle tail. Convolutions are plain 3x3 (SPAN trains a
re-parameterisable 3-branch version and folds it into a 3x3 for inference; plain 3x3 is what
ships either way). As in `compact`, it works on the luminance plane and adds MATLAB-bicubic
enlargement of the input, so the body learns only the missing detail (faster to train on a CPU).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample, conv

CONVOLUTIONS_PER_BLOCK = 3


class GatedBlock(nn.Module):
    """Three convolutions; the third's output both adds to the input and gates the sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv(width, width, 3)
        self.conv2 = conv(width, width, 3)
        self.conv3 = conv(width, width, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output, and its first convolution's (fused at the end of the network)."""
        first = self.conv1(x)
        third = self.conv3(F.silu(self.conv2(F.silu(first))))
        return (third + x) * (torch.sigmoid(third) - 0.5), first


class LargeSR(nn.Module):
    def __init__(self, scale: int, channels: int = 1, width: int = 48, blocks: int = 6) -> None:
        super().__init__()
        if blocks < 2:
            raise ValueError("the large model fuses its first and last blocks: at least 2")
        self.scale = scale
        self.head = conv(channels, width, 3)
        self.body = nn.ModuleList(GatedBlock(width) for _ in range(blocks))
        self.closing = conv(width, width, 3)
        # The head's features, the closed body's, the first block's output and the last block's
        # first convolution: shallow and deep features together, as SPAN fuses them.
        self.fuse = nn.Conv2d(4 * width, width, 1)
        self.tail = conv(width, channels * scale * scale, 3)
        self.upsample = MatlabBicubicUpsample(scale, channels)
        reach = CONVOLUTIONS_PER_BLOCK * blocks + 3  # head, closing, tail: 3x3 each
        self.contract = NetworkContract(scale, channels, context=reach + 2)

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        head = self.head(low_res)
        first_block, _ = self.body[0](head)
        features = first_block
        for block in self.body[1:]:
            features, last_first = block(features)
        fused = self.fuse(torch.cat([head, self.closing(features), first_block, last_first], 1))
        detail = F.pixel_shuffle(self.tail(fused), self.scale)
        return self.upsample(low_res) + detail
