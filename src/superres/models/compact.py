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


# Residual blocks between two modulations of the features by the degradation estimate.
MODULATION_EVERY = 4


class DegradationEstimate(nn.Module):
    """How degraded the input is around each pixel, as a scale and shift of the body's features.

    A 65-pixel view cannot tell a clean JPEG's texture from noise on smooth content (what the
    real-world model lost on JPEG-only photos, docs/training.md steps 26-27); the mean of local
    statistics over a window ``radius`` pixels each side can, and it stays a local operation, so
    tiles with the contract's margin still give the whole-image result. The window's mean counts
    only pixels inside the image (average pooling without its padding), separable in rows and
    columns. The last layer starts at zero: a network given the estimate computes, before
    training, exactly what it did without it.
    """

    def __init__(self, channels: int, width: int, radius: int, points: int) -> None:
        super().__init__()
        statistics = 32
        self.features = nn.Sequential(
            conv(channels, statistics, 3),
            nn.ReLU(),
            conv(statistics, statistics, 3),
            nn.ReLU(),
            conv(statistics, statistics, 3),
            nn.ReLU(),
        )
        self.modulation = nn.Sequential(
            nn.Conv2d(statistics, 64, 1), nn.ReLU(), nn.Conv2d(64, points * 2 * width, 1)
        )
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)
        self.radius = radius
        self.points = points
        self.context = radius + 3  # three 3x3 convolutions, then the window

    def forward(self, low_res: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(scale, shift) pairs, one per modulation point: features * (1 + scale) + shift."""
        side, r = 2 * self.radius + 1, self.radius
        statistics = self.features(low_res)
        statistics = F.avg_pool2d(statistics, (1, side), 1, (0, r), count_include_pad=False)
        statistics = F.avg_pool2d(statistics, (side, 1), 1, (r, 0), count_include_pad=False)
        chunks = self.modulation(statistics).chunk(2 * self.points, dim=1)
        return list(zip(chunks[::2], chunks[1::2], strict=True))


class CompactSR(nn.Module):
    def __init__(
        self, scale: int, channels: int = 1, width: int = 32, blocks: int = 8, window: int = 0
    ) -> None:
        """``window``: radius in LR pixels of the :class:`DegradationEstimate` that modulates
        the body every few blocks; 0 for none."""
        super().__init__()
        self.scale = scale
        self.head = conv(channels, width, 3)
        self.body = nn.Sequential(
            *(ResidualBlock(width) for _ in range(blocks)), conv(width, width, 3)
        )
        self.tail = conv(width, channels * scale * scale, 3)
        self.upsample = MatlabBicubicUpsample(scale, channels)
        self.estimate = (
            DegradationEstimate(channels, width, window, -(-blocks // MODULATION_EVERY))
            if window
            else None
        )
        # Each 3x3 convolution sees one more LR pixel; the bicubic skip needs two. The estimate
        # reaches its own context beyond the first block's input.
        reach = self.estimate.context if self.estimate else 0
        self.contract = NetworkContract(scale, channels, context=2 * blocks + 3 + 2 + reach)
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
        features = features + (
            self._modulated_body(features, low_res) if self.estimate else self.body(features)
        )
        detail = F.pixel_shuffle(self.tail(features), self.scale)
        return self.upsample(low_res) + detail

    def _modulated_body(self, features: torch.Tensor, low_res: torch.Tensor) -> torch.Tensor:
        modulations = iter(self.estimate(low_res))
        x = features
        for index, layer in enumerate(self.body):
            if index < self.blocks and index % MODULATION_EVERY == 0:
                scale, shift = next(modulations)
                x = torch.addcmul(shift, x, 1 + scale)
            x = layer(x)
        return x


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
