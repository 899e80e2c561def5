"""How much arithmetic a model does per output pixel, counted from its convolutions (and the
linear layers of other projects' transformer models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from superres.models.fsrcnn import SubPixelDeconvolution
from superres.models.registry import LoadedModel

Hook = Callable[[nn.Module, tuple[Any, ...], Any], None]


def sample_forward(model: LoadedModel, hook: Hook, size: int = 48) -> tuple[int, int]:
    """Run the network once on a ``size`` x ``size`` input with ``hook`` on every module;
    returns the output's (height, width), to turn what the hook saw into per-pixel figures.
    """
    hooks = [m.register_forward_hook(hook) for m in model.network.modules()]
    try:
        with torch.inference_mode():
            out = model.network(torch.zeros(1, model.channels, size, size))
    finally:
        for handle in hooks:
            handle.remove()
    return out.shape[-2], out.shape[-1]


def multiply_adds_per_output_pixel(model: LoadedModel, size: int = 48) -> float:
    """Multiply-adds of every convolution for one output pixel, as computed.

    Counted with forward hooks on the learned convolutions (the fixed bicubic skip, about
    25 per pixel, is left out). FSRCNN's deconvolution counts the dense convolution it
    runs as (zero taps included), not the transposed one it is equivalent to.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal total
        if isinstance(module, SubPixelDeconvolution):
            kernels = module.phase_kernels()
            total += inputs[0].numel() * kernels.shape[0] * kernels.shape[2] * kernels.shape[3]
        elif isinstance(module, nn.Conv2d):
            per_output = (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):  # attention's own products are not counted
            total += output.numel() * module.in_features

    height, width = sample_forward(model, count, size)
    return total / (height * width)
