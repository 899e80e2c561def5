"""The compact default model: residual blocks at low resolution, pixel shuffle at the end.

All convolutions run on the small image (a x3 model does a ninth of SRCNN's
per-pixel work), and a MATLAB-bicubic skip means the body only learns the
missing detail.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample, conv


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv(width, width, 3)
        self.conv2 = conv(width, width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class CompactSR(nn.Module):
    def __init__(self, scale: int, channels: int = 1, width: int = 32, blocks: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.head = conv(channels, width, 3)
        self.body = nn.Sequential(
            *(ResidualBlock(width) for _ in range(blocks)), conv(width, width, 3)
        )
        self.tail = conv(width, channels * scale * scale, 3)
        self.upsample = MatlabBicubicUpsample(scale, channels)
        # Each 3x3 convolution sees one more LR pixel; the bicubic skip needs two.
        self.contract = NetworkContract(scale, channels, context=2 * blocks + 3 + 2)
        self.blocks = blocks

    def deepened(self, state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
        """``state`` of a ``blocks``-deep network of the same width, as this deeper one's:
        the extra blocks go after the trained ones and start as identities (second
        convolution zeroed), so training goes on from the very same function."""
        if not blocks <= self.blocks:
            raise ValueError(f"cannot deepen a {blocks}-block network into {self.blocks} blocks")
        last = f"body.{blocks}."  # the body's closing convolution moves to the end
        grown = {
            (f"body.{self.blocks}." + name[len(last) :] if name.startswith(last) else name): t
            for name, t in state.items()
        }
        for index in range(blocks, self.blocks):
            block = self.body[index]
            grown.update(
                {
                    f"body.{index}.conv1.weight": block.conv1.weight.detach().clone(),
                    f"body.{index}.conv1.bias": block.conv1.bias.detach().clone(),
                    f"body.{index}.conv2.weight": torch.zeros_like(block.conv2.weight),
                    f"body.{index}.conv2.bias": torch.zeros_like(block.conv2.bias),
                }
            )
        return grown

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        features = self.head(low_res)
        features = features + self.body(features)
        detail = F.pixel_shuffle(self.tail(features), self.scale)
        return self.upsample(low_res) + detail
