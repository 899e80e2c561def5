"""How much arithmetic a model does per output pixel, counted from its convolutions."""

from __future__ import annotations

import torch
from torch import nn

from superres.models.registry import LoadedModel


def multiply_adds_per_output_pixel(model: LoadedModel, size: int = 48) -> float:
    """Multiply-adds of every convolution for one output pixel, measured on a sample input.

    Counted with forward hooks on the learned convolutions (the fixed bicubic skip, about
    25 per pixel, is left out), divided by the output size of the sample.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            per_input = module.in_channels * module.out_channels // module.groups
            total += (
                inputs[0].numel()
                // inputs[0].shape[1]
                * per_input
                * module.kernel_size[0]
                * module.kernel_size[1]
            )
        elif isinstance(module, nn.Conv2d):
            per_output = (
                module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            )
            total += output.numel() * per_output

    hooks = [
        m.register_forward_hook(count)
        for m in model.network.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        with torch.inference_mode():
            out = model.network(torch.zeros(1, model.channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return total / (out.shape[-2] * out.shape[-1])
