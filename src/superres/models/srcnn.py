"""SRCNN (Dong et al. 2014/2015): three convolutions on the luminance of a bicubic-enlarged image.

The network takes the low-resolution Y channel and enlarges it itself with
MATLAB-exact bicubic, so every model in the registry has the same LR -> SR
interface; :meth:`SRCNN.mapping` is the paper's network on an enlarged image.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample


class SRCNN(nn.Module):
    """SRCNN f1-f2-f3 with widths n1, n2.

    As in the paper, the last layer learns at a tenth of the rate (``slow_layers``).

    ``residual`` adds the enlarged input to the output (the network predicts the
    detail bicubic misses; it trains several times faster on a CPU and changes no
    layer). ``valid_outer`` reproduces the Keras tutorial's variant, whose first
    and last layers are unpadded so its mapping returns an image 12 pixels smaller.
    """

    slow_layers = ("reconstruct",)

    def __init__(
        self,
        scale: int,
        kernel_sizes: tuple[int, int, int] = (9, 5, 5),
        widths: tuple[int, int] = (64, 32),
        residual: bool = True,
        valid_outer: bool = False,
    ) -> None:
        super().__init__()
        f1, f2, f3 = kernel_sizes
        n1, n2 = widths
        outer_padding = 0 if valid_outer else None
        self.scale = scale
        self.residual = residual
        self.shrink = (f1 // 2 + f3 // 2) if valid_outer else 0
        self.upsample = MatlabBicubicUpsample(scale)
        self.features = nn.Conv2d(1, n1, f1, padding=f1 // 2 if outer_padding is None else 0)
        self.nonlinear = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.reconstruct = nn.Conv2d(n2, 1, f3, padding=f3 // 2 if outer_padding is None else 0)
        halo = (f1 + f2 + f3 - 3) // 2
        self.contract = NetworkContract(scale, channels=1, context=math.ceil(halo / scale) + 3)

    def mapping(self, enlarged: torch.Tensor) -> torch.Tensor:
        """The paper's network on an already enlarged Y image (``shrink`` pixels lost per side)."""
        x = F.relu(self.features(enlarged))
        x = F.relu(self.nonlinear(x))
        x = self.reconstruct(x)
        if self.residual:
            s = self.shrink
            x = x + (enlarged[..., s:-s, s:-s] if s else enlarged)
        return x

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        enlarged = self.upsample(low_res)
        if self.shrink:
            enlarged = F.pad(enlarged, (self.shrink,) * 4, mode="replicate")
        return self.mapping(enlarged)
