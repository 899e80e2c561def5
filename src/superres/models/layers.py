"""Building blocks shared by several model families."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from superres.quality.degrade import cubic_kernel

# Taps either side of the centre that MATLAB's bicubic needs when enlarging.
_BICUBIC_REACH = 2


def _phase_kernels(scale: int) -> np.ndarray:
    """(scale, 5) weights of MATLAB bicubic for each output phase of an integer upscale.

    Output pixel ``o = scale * i + p`` has its centre at LR coordinate
    ``i + (p + 0.5) / scale - 0.5``; its taps are LR pixels ``i - 2 .. i + 2``.
    """
    offsets = np.arange(-_BICUBIC_REACH, _BICUBIC_REACH + 1)
    centres = (np.arange(scale) + 0.5) / scale - 0.5
    weights = cubic_kernel(centres[:, None] - offsets[None, :])
    return weights / weights.sum(axis=1, keepdims=True)


def pad_symmetric(x: torch.Tensor, border: int) -> torch.Tensor:
    """Mirror padding repeating the edge pixel (MATLAB's 'symmetric'; torch has only 'reflect').

    Grown one pixel per side at a time: the k-th new pixel is the original's pixel k-1, which
    sits at index 2k-2 of the array padded so far. Unlike slicing ``border`` pixels at once,
    this is right for images narrower than the border (a 1-pixel side mirrors onto itself),
    and its constant slices keep height and width dynamic in an ONNX export.
    """
    for dim in (2, 3):
        for k in range(1, border + 1):
            first = _along(x, dim, slice(2 * k - 2, 2 * k - 1))
            last = _along(x, dim, slice(-(2 * k - 1), -(2 * k - 2) or None))
            x = torch.cat([first, x, last], dim=dim)
    return x


def _along(x: torch.Tensor, dim: int, index: slice) -> torch.Tensor:
    return x[(slice(None),) * dim + (index,)]


class MatlabBicubicUpsample(nn.Module):
    """Integer-factor bicubic enlargement identical to MATLAB's ``imresize`` (before rounding).

    Written as a fixed convolution plus pixel shuffle so it runs inside a network,
    on tiles, and exports to ONNX.
    """

    def __init__(self, scale: int, channels: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.channels = channels
        phases = torch.from_numpy(_phase_kernels(scale)).float()
        kernel_2d = torch.einsum("pi,qj->pqij", phases, phases).reshape(scale * scale, 1, 5, 5)
        self.register_buffer("kernel", kernel_2d.repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Kept in fp32 under bf16 autocast: bf16 would round the image itself by ~0.5 grey level.
        with torch.autocast(x.device.type, enabled=False):
            padded = pad_symmetric(x.float(), _BICUBIC_REACH)
            phases = F.conv2d(padded, self.kernel, groups=self.channels)
            return F.pixel_shuffle(phases, self.scale)


def conv(
    in_channels: int, out_channels: int, kernel_size: int, padding_mode: str = "zeros"
) -> nn.Conv2d:
    """A 'same' convolution."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode
    )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate the last rows and columns so both sides are multiples of ``multiple``.

    Done inside the network (not by the caller) so that every caller, the ONNX export
    included, accepts any size; the network crops its output back.
    """
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="replicate")
