"""Which device runs a model, and what fits on it: CPU, CUDA (``cuda`` or ``cuda:N``) or MPS.

``auto`` takes CUDA, then MPS, then the CPU. A device that was asked for but is absent is a
user error, never a silent fall-back to the CPU. Nothing here can run on the project's machine
(no GPU): the CUDA and MPS paths follow PyTorch's documented APIs and their tests skip there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from superres.errors import SuperresError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
DEVICE_HELP = f"{DEVICE_CHOICES}; auto: CUDA, then MPS, then the CPU."
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
GPU_MEMORY_FRACTION = 0.5  # of the free memory a tile's tensors may take; cuDNN needs the rest
MAX_GPU_TILE = 2048  # low-resolution pixels per side: beyond this a tile is no faster
_PROBE = 32  # side of the tile run on the CPU to count a network's activation memory


def _mps_available() -> bool:
    return torch.backends.mps.is_available()


def resolve_device(device: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` -> a device that is really there.

    On CUDA, cuDNN's TF32 convolutions are turned off: they are a reduced precision whose
    quality cost nobody measured, so ``fp32`` means fp32 there too.
    """
    name = device.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    try:
        parsed = torch.device(name)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps") or name.startswith("cpu:"):
        raise SuperresError(f"unknown device {device!r}; choose {DEVICE_CHOICES}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise SuperresError(
                f"--device {device} was asked for, but no CUDA device is available "
                f"(PyTorch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise SuperresError(
                f"--device {device} was asked for, but this machine has {count} CUDA "
                f"device(s): cuda:0 to cuda:{count - 1}"
            )
        torch.backends.cudnn.allow_tf32 = False
    if parsed.type == "mps" and not _mps_available():
        raise SuperresError(f"--device {device} was asked for, but MPS is not available here")
    return parsed


def check_gpu_precision(precision: str, device: torch.device) -> None:
    """bf16 on GPUs that compute it (CUDA from Ampere on), fp16 on CUDA and MPS."""
    if precision == "bf16" and device.type == "cuda" and not gpu_bf16_supported(device):
        raise SuperresError(f"--precision bf16: {device} does not support bf16; use fp16 or fp32")
    if precision == "bf16" and device.type == "mps":
        raise SuperresError("--precision bf16 is not offered on MPS; use fp16 or fp32")
    if precision == "fp16" and device.type == "cpu":
        raise SuperresError("--precision fp16 runs on CUDA or MPS; on a CPU use bf16 or fp32")


def gpu_bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def activation_bytes_per_pixel(network: nn.Module, channels: int, scale: int) -> float:
    """fp32 bytes one low-resolution pixel costs while ``network`` runs: three times its largest
    layer output (an input, an output and a skip alive at once), plus the engine's own planes
    (input, bicubic chroma and output at full resolution). Counted on a small CPU probe."""
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    hooks = [m.register_forward_hook(record) for m in network.modules() if not list(m.children())]
    probe = torch.zeros(1, channels, _PROBE, _PROBE, device=next(network.parameters()).device)
    try:
        with torch.inference_mode():
            network(probe)
    finally:
        for hook in hooks:
            hook.remove()
    engine_planes = 3 + 2 * 3 * scale * scale  # RGB in; YCbCr and RGB out at full resolution
    return 4.0 * (3 * largest / _PROBE**2 + engine_planes)


def fitting_tile(network: nn.Module, channels: int, scale: int, device: torch.device) -> int:
    """The largest tile side whose tensors take at most ``GPU_MEMORY_FRACTION`` of the CUDA
    device's free memory now; an out-of-memory error later still halves it (see Upscaler)."""
    free, _total = torch.cuda.mem_get_info(device)
    per_pixel = activation_bytes_per_pixel(network, channels, scale)
    side = int(math.sqrt(free * GPU_MEMORY_FRACTION / per_pixel))
    return min(MAX_GPU_TILE, side)


def release_cached_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error, so a smaller retry can fit."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
