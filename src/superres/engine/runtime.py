"""How to run a model on this machine: what the CPU supports, and the measured defaults.

``benchmarks/speed.py --write-defaults`` measures every shipped model and records in
``runtime.json``, beside the weights, what ran fastest: the backend per precision, the tile
size, and whether bf16 is worth it (faster, and under ``BF16_MAX_COST_DB`` of Set5 PSNR).
``"auto"`` precision, backend and tile resolve against that table. An entry belongs to the
exact weights measured (their SHA-256), so retrained or private weights, other devices, and
a missing table all fall back to fp32 on PyTorch with ``DEFAULT_TILE``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from superres.errors import ModelError, SuperresError
from superres.models import LoadedModel
from superres.models.registry import weights_dir

AUTO = "auto"
DEFAULT_TILE = 256  # low-resolution pixels per tile side
MIN_TILE = 16
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
        return f"{self.backend} {self.precision}, tile {self.tile}{note}"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def onnxruntime_available() -> bool:
    """Whether the optional ``superres[onnx]`` extra is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def check_precision(precision: str, device: torch.device) -> str:
    """fp32, or bf16 where the CPU computes it natively (emulated bf16 is slower than fp32)."""
    if precision == "fp32":
        return precision
    if precision != "bf16":
        raise SuperresError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise SuperresError("--precision bf16 needs a CPU with AVX512-BF16 or AMX; use fp32")
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


def _tile_size(tile: int | str | None, measured: int) -> int:
    """An explicit tile side (an int, or digits as typed on a command line) or the measured one."""
    if tile is None or tile == AUTO:
        return measured
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

    Measurements are CPU ones, so other devices get the fallbacks. bf16 needs native support
    and a measured gain within the quality budget; onnxruntime needs its extra installed.
    """
    needs_table = AUTO in (precision, backend, tile) or tile is None
    entry = measured_defaults(model) if needs_table and device.type == "cpu" else None
    known = entry or {}
    if precision == AUTO:
        bf16 = (
            backend in (AUTO, "pytorch")
            and known.get("precision") == "bf16"
            and bf16_affordable(known.get("bf16_psnr_cost_db"))
            and cpu_has_native_bf16()
        )
        precision = "bf16" if bf16 else "fp32"
    precision = check_precision(precision, device)
    if backend == AUTO:
        fastest = known.get("backend", {}).get(precision)
        use_onnx = fastest == "onnxruntime" and precision == "fp32" and onnxruntime_available()
        backend = "onnxruntime" if use_onnx else "pytorch"
    size = _tile_size(tile, int(known.get("tile", DEFAULT_TILE)))
    return RuntimeChoice(precision, backend, size, entry is not None)
