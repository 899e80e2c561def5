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

    def grown(self, state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
        """``state`` of a smaller network of this design (``blocks`` deep, no wider than this
        one) as this one's, computing the very same function, so training goes on from it.

        Extra blocks go after the trained ones and start as identities (second convolution
        zeroed). Extra channels start from this network's own initial values, except that
        every weight from a new channel into an old one is zeroed: the old channels compute
        what they did, the new ones do not reach the output yet, and every weight still
        gets a gradient (new channels carry signal, the zeroed weights read it)."""
        if not blocks <= self.blocks:
            raise ValueError(f"cannot deepen a {blocks}-block network into {self.blocks} blocks")
        own = self.state_dict()
        last = f"body.{blocks}."  # the body's closing convolution moves to the end
        grown = {
            (f"body.{self.blocks}." + name[len(last) :] if name.startswith(last) else name): t
            for name, t in state.items()
        }
        for index in range(blocks, self.blocks):
            for name in (f"body.{index}.conv1.weight", f"body.{index}.conv1.bias"):
                grown[name] = own[name]
            for name in (f"body.{index}.conv2.weight", f"body.{index}.conv2.bias"):
                grown[name] = torch.zeros_like(own[name])
        return {name: _widened(t, own[name]) if name in own else t for name, t in grown.items()}

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        features = self.head(low_res)
        features = features + self.body(features)
        detail = F.pixel_shuffle(self.tail(features), self.scale)
        return self.upsample(low_res) + detail


def _widened(trained: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """``trained`` in the top-left corner of ``initial``'s shape; weights from the new input
    channels into the trained outputs are zeroed so those outputs do not change."""
    if trained.shape == initial.shape:
        return trained
    widened = initial.clone()
    widened[tuple(slice(0, size) for size in trained.shape)] = trained
    if widened.dim() > 1:
        widened[: trained.shape[0], trained.shape[1] :] = 0
    return widened
