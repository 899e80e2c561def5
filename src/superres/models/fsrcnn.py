"""FSRCNN (Dong, Loy and Tang, ECCV 2016): SRCNN's speed-up, working at low resolution.

Feature extraction, a 1x1 shrink to a thin mapping stage, a 1x1 expansion, and a
learned deconvolution that enlarges at the very end.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from superres.models.contract import NetworkContract
from superres.models.layers import MatlabBicubicUpsample

_KERNEL, _PADDING = 9, 4


class SubPixelDeconvolution(nn.ConvTranspose2d):
    """The paper's 9x9 strided deconvolution, computed as a convolution plus pixel shuffle.

    Same parameters and same result as ``nn.ConvTranspose2d``, but PyTorch's CPU
    transposed convolution scatters through a column buffer: for a 1920x1080 output it
    took 2.8x (x2), 3.0x (x3) and 5.0x (x4) as long as this form here. Output pixel ``s*q + r``
    sums input ``q + t`` times kernel tap ``r + padding - s*t``, so each of the
    ``s*s`` output phases is an ordinary small convolution of the input.
    """

    def __init__(self, in_channels: int, scale: int) -> None:
        super().__init__(
            in_channels, 1, _KERNEL, stride=scale, padding=_PADDING, output_padding=scale - 1
        )
        # Input offsets t the phases use: from -ceil((K-1-p)/s) to floor((s-1+p)/s); the kernel
        # spans exactly those (asymmetric at x3: 4x4 rather than a centred 5x5).
        self.before = math.ceil((_KERNEL - 1 - _PADDING) / scale)
        self.after = (scale - 1 + _PADDING) // scale
        offsets = torch.arange(-self.before, self.after + 1)
        taps = torch.arange(scale)[:, None] + _PADDING - scale * offsets[None, :]
        # selection[phase, offset, tap] = 1 where that kernel tap serves that phase and offset;
        # a fixed tensor (not indexing) so that the kernel's shape is static for ONNX export.
        selection = (taps[:, :, None] == torch.arange(_KERNEL)).float()
        self.register_buffer("selection", selection, persistent=False)

    def phase_kernels(self) -> torch.Tensor:
        """(scale*scale, in_channels, size, size) weights, phase-major, size = offsets spanned."""
        size = self.before + self.after + 1
        kernels = torch.einsum(
            "pik,qjl,ckl->pqcij", self.selection, self.selection, self.weight[:, 0]
        )
        return kernels.reshape(-1, self.in_channels, size, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        scale = self.stride[0]
        if self.before != self.after:
            x = F.pad(x, (self.before, self.after, self.before, self.after))
            padding = 0
        else:
            padding = self.before
        phases = F.conv2d(x, self.phase_kernels(), self.bias.repeat(scale * scale), padding=padding)
        return F.pixel_shuffle(phases, scale)


class FSRCNN(nn.Module):
    # The paper trains the deconvolution at a tenth of the rate with SGD; under Adam, whose
    # steps are already scaled per parameter, that only slowed training here, so it is not done.

    def __init__(
        self, scale: int, d: int = 56, s: int = 12, m: int = 4, residual: bool = False
    ) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(1, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconvolution = SubPixelDeconvolution(d, scale)
        # Optional (not in the paper): add MATLAB bicubic so the network learns only the detail.
        self.upsample = MatlabBicubicUpsample(scale) if residual else None
        self.contract = NetworkContract(
            scale, channels=1, context=2 + m + math.ceil(_PADDING / scale) + 1
        )

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        detail = self.deconvolution(self.body(low_res))
        return detail if self.upsample is None else detail + self.upsample(low_res)
