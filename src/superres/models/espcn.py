"""ESPCN (Shi et al., CVPR 2016): convolutions at low resolution, then a sub-pixel shuffle."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample


class ESPCN(nn.Module):
    def __init__(
        self, scale: int, widths: tuple[int, int] = (64, 32), residual: bool = False
    ) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = nn.Conv2d(1, widths[0], 5, padding=2)
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, padding=1)
        self.conv3 = nn.Conv2d(widths[1], scale * scale, 3, padding=1)
        # Optional (not in the paper): add MATLAB bicubic so the network learns only the detail.
        self.upsample = MatlabBicubicUpsample(scale) if residual else None
        self.contract = NetworkContract(scale, channels=1, context=2 + 1 + 1 + 1)

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(low_res))
        x = torch.tanh(self.conv2(x))
        detail = F.pixel_shuffle(self.conv3(x), self.scale)
        return detail if self.upsample is None else detail + self.upsample(low_res)
