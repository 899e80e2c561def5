"""How to run a model on this machine: what the CPU supports, and the measured defaults.

``benchmarks/speed.py --write-defaults`` measures every shipped model and records in
``runtime.json``, beside the weights, what ran fastest: the backend per precision, the tile
size, and whether bf16 is worth it (faster, and under ``BF16_MAX_COST_DB`` of Set5 PSNR).
``"auto"`` precision, backend and tile resolve against that table. An entry belongs to the
exact weights measured (their SHA-256), so retrained or private weights, other devices, and
a missing table all fall back to fp32 on PyTorch with ``DEFAULT_TILE``. On a CUDA device
(not measured here) ``auto`` takes the table's bf16 quality cost only, and a tile that fits
the GPU's free memory (see :mod:`superres.engine.devices`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from superres.engine.devices import check_gpu_precision, fitting_tile, gpu_bf16_supported
from superres.errors import ModelError, SuperresError
from superres.models import LoadedModel
from superres.models.registry import weights_dir

AUTO = "auto"
DEFAULT_TILE = 256  # low-resolution pixels per tile side
MIN_TILE = 16
WHOLE_IMAGE = 2**31 - 1  # the tile of models that should not be tiled: any image is one tile
BF16_MAX_COST_DB = 0.05  # issue #8: bf16 by default only where Set5 PSNR drops less than this
RUNTIME_TABLE = "runtime.json"


@dataclass(frozen=True)
class RuntimeChoice:
    """What an :class:`~superres.engine.inference.Upscaler` runs with once ``auto`` is resolved."""

    precision: str
    backend: str
    tile: int
    measured: bool  # a runtime.json entry for these weights was used

    def describe(self) -> str:
        """One phrase for people, e.g. ``pytorch bf16, tile 512 (measured)``."""
        note = " (measured)" if self.measured else ""
        tile = "whole images" if self.tile >= WHOLE_IMAGE else f"tile {self.tile}"
        return f"{self.backend} {self.precision}, {tile}{note}"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_features() -> list[str]:
    """The flags that decide CPU inference speed, for benchmark reports to name the machine."""
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]
    return [flag for flag in wanted if flag in cpu_flags()]


def cpu_has_native_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def onnxruntime_available() -> bool:
    """Whether the optional ``superres[onnx]`` extra is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def check_precision(precision: str, device: torch.device) -> str:
    """fp32; bf16 where the device computes it natively (emulated bf16 is slower than fp32);
    fp16 on GPUs."""
    if precision == "fp32":
        return precision
    if precision not in ("bf16", "fp16"):
        raise SuperresError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        raise SuperresError("--precision bf16 needs a CPU with AVX512-BF16 or AMX; use fp32")
    check_gpu_precision(precision, device)
    return precision


def bf16_affordable(cost_db: float | None) -> bool:
    """Whether a measured bf16 PSNR cost is small enough for bf16 to be a default."""
    return cost_db is not None and cost_db < BF16_MAX_COST_DB


def runtime_key(model: LoadedModel) -> str:
    return f"{model.name}-x{model.scale}"


def runtime_table_path() -> Path:
    return weights_dir() / RUNTIME_TABLE


def read_runtime_table() -> dict[str, dict[str, Any]]:
    """Entries by ``NAME-xS``; no table (nothing measured yet) is an empty one."""
    path = runtime_table_path()
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: not a readable runtime table ({error})") from error
    if not isinstance(table, dict):
        raise ModelError(f"{path}: expected NAME-xS entries, found a {type(table).__name__}")
    return table


def measured_defaults(model: LoadedModel) -> dict[str, Any] | None:
    """The table's entry for these exact weights, if they were measured."""
    entry = read_runtime_table().get(runtime_key(model))
    if entry is None or entry.get("weights_sha256") != model.weights_digest():
        return None
    return entry


def _auto_precision(entry: dict[str, Any], backend: str, device: torch.device) -> str:
    """bf16 where its measured Set5 cost is within budget and the device computes it natively;
    on a CPU also only where it was measured faster. On CUDA the speed is not measured here:
    autocast is taken to pay, as on GPUs with bf16 tensor cores. fp16 is never chosen alone,
    its cost being unmeasured."""
    if backend not in (AUTO, "pytorch") or not bf16_affordable(entry.get("bf16_psnr_cost_db")):
        return "fp32"
    if device.type == "cpu":
        faster = entry.get("precision") == "bf16" and cpu_has_native_bf16()
        return "bf16" if faster else "fp32"
    return "bf16" if gpu_bf16_supported(device) else "fp32"


def _default_tile(model: LoadedModel, device: torch.device, measured: int | None) -> int:
    """The measured tile on a CPU; on CUDA one that fits the free memory; else the fallback.
    Models that need global context (``tileable`` False in their contract) get whole images."""
    if not model.contract.tileable:
        return WHOLE_IMAGE
    if measured is not None:
        return int(measured)
    if device.type == "cuda" and torch.cuda.is_available():
        return max(MIN_TILE, fitting_tile(model.network, model.channels, model.scale, device))
    return DEFAULT_TILE


def _tile_size(tile: int | str | None) -> int | None:
    """An explicit tile side (an int, or digits as typed on a command line); None for auto."""
    if tile is None or tile == AUTO:
        return None
    try:
        size = int(tile)
    except ValueError:
        raise SuperresError(f"tile must be a number of pixels or auto, got {tile!r}") from None
    if size < MIN_TILE:
        raise SuperresError(f"tile size must be at least {MIN_TILE} pixels, got {size}")
    return size


def resolve_runtime(
    model: LoadedModel,
    device: torch.device,
    precision: str = AUTO,
    backend: str = AUTO,
    tile: int | str | None = AUTO,
) -> RuntimeChoice:
    """Explicit values as given; ``auto`` ones from the measured entry, if it speaks for here.

    Speed measurements are CPU ones, so other devices get the fallbacks, except that a GPU
    takes the measured bf16 quality cost (the rounding is the format's, not the device's).
    bf16 needs native support and a cost within the quality budget; onnxruntime needs its
    extra installed.
    """
    needs_table = AUTO in (precision, backend, tile) or tile is None
    entry = (measured_defaults(model) if needs_table else None) or {}
    known = entry if device.type == "cpu" else {}  # speed figures speak for the CPU only
    if precision == AUTO:
        precision = _auto_precision(entry, backend, device)
    precision = check_precision(precision, device)
    if precision not in model.contract.precisions:
        raise SuperresError(f"{model.name} does not support {precision}; use fp32")
    if backend == AUTO:
        fastest = known.get("backend", {}).get(precision)
        use_onnx = fastest == "onnxruntime" and precision == "fp32" and onnxruntime_available()
        backend = "onnxruntime" if use_onnx else "pytorch"
    size = _tile_size(tile)
    if size is None:
        size = _default_tile(model, device, known.get("tile"))
    used = bool(known) or (device.type != "cpu" and precision == "bf16")
    return RuntimeChoice(precision, backend, size, used)
