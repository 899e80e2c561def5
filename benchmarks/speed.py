"""How fast each shipped model upscales on this CPU, and which way of running it is the default.

For each shipped model and scale: output megapixels per second producing a 1920x1080 image
(2 threads, warm-up, median of several runs) for plain PyTorch eager (the baseline: the same
job done the tutorial way, whole image, NCHW fp32, colour in numpy) and for every way
superres can run it (PyTorch fp32 channels-last; bf16 where the CPU has it natively; ONNX
Runtime where installed), each with 256-pixel tiles; then a sweep of tile sizes for the fastest
of them. Alongside: multiply-adds per output pixel, the
achieved GFLOP/s against a large fp32 ``torch.matmul`` measured in the same run, the gain over
the eager baseline, and what bf16 costs in Set5 PSNR.

The default (marked in the table) is the fastest configuration and tile, where bf16 may only
win if it costs under ``BF16_MAX_COST_DB`` (0.05 dB; without ../shared/datasets/Set5 the
cost is unknown, so never). Writes docs/results/speed.{md,json}. ``--write-defaults`` also
records the defaults in ``runtime.json`` beside the weights, which ``auto`` precision,
backend and tile read (see superres.engine.runtime); entries of models not measured in this run are
kept. It is opt-in so that a run on another machine does not change what the package ships.

    .venv/bin/python benchmarks/speed.py [--repeats 5] [--models compact,espcn] [--write-defaults]
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from superres.apps.report.tables import markdown_table, write_json, write_text_atomic
from superres.engine.evaluation import evaluate, load_references
from superres.engine.inference import Upscaler
from superres.engine.runtime import (
    BF16_MAX_COST_DB,
    DEFAULT_TILE,
    bf16_affordable,
    cpu_features,
    cpu_has_native_bf16,
    onnxruntime_available,
    read_runtime_table,
    runtime_key,
    runtime_table_path,
)
from superres.imageio.color import rgb_to_ycbcr, ycbcr_to_rgb
from superres.models import LoadedModel, resolve_name
from superres.models.complexity import multiply_adds_per_output_pixel, sample_forward
from superres.models.registry import shipped_models
from superres.quality.degrade import imresize_matlab
from superres.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
SET5 = ROOT.parent / "shared" / "datasets" / "Set5"
OUTPUT_SIZE = (1080, 1920)
THREADS = 2
TILE_SIDES = (128, 256, 512, 1024)  # low-resolution pixels
TILE_BUDGET_MIB = 512  # sweep only tiles estimated to need at most this much memory
COLOUR_FLOATS = 16  # the Upscaler's own planes per output pixel (RGB, YCbCr, chroma, result)
SAME_SPEED = 0.02  # tiles within this fraction of the fastest count as equally fast


@dataclass(frozen=True)
class Configuration:
    """One way superres can run a model: what the Upscaler is given."""

    label: str
    backend: str
    precision: str


def configurations() -> list[Configuration]:
    """Every configuration this machine and install can run."""
    found = [Configuration("pytorch fp32 (channels-last)", "pytorch", "fp32")]
    if cpu_has_native_bf16():
        found.append(Configuration("pytorch bf16", "pytorch", "bf16"))
    if onnxruntime_available():
        found.append(Configuration("onnxruntime fp32", "onnxruntime", "fp32"))
    return found


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def plain_eager(model: LoadedModel) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline: the same job done the tutorial way, with no tuning.

    The whole image at once, NCHW fp32 under ``torch.no_grad``; colour in numpy float64 (the
    network on Y, chroma by MATLAB bicubic, back to 8-bit RGB), so that it makes the same
    output as the Upscaler and the gain counts the pipeline, not only the network.
    """

    def network(planes: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(planes.transpose(2, 0, 1).astype(np.float32))[None]
        with torch.no_grad():
            return model.network(tensor)[0].permute(1, 2, 0).double().numpy()

    def run(low: np.ndarray) -> np.ndarray:
        unit = low / 255.0
        if model.channels == 3:
            rgb = network(unit)
        else:
            ycbcr = rgb_to_ycbcr(unit)
            luma = network(ycbcr[..., :1])
            chroma = imresize_matlab(ycbcr[..., 1:], scale=model.scale)
            rgb = ycbcr_to_rgb(np.concatenate([luma, chroma], axis=2))
        return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)

    return run


def widest_tensor(model: LoadedModel, size: int = 48) -> float:
    """Floats per output pixel of the largest tensor the network makes (forward hooks)."""
    widest = 0

    def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal widest
        if isinstance(output, torch.Tensor):
            widest = max(widest, output.numel())

    height, width = sample_forward(model, record, size)
    return widest / (height * width)


def tile_sides(model: LoadedModel, low_shape: tuple[int, ...]) -> list[int]:
    """Tile sides to sweep: within the memory budget, and none past the one covering the image.

    A tile's memory is estimated per output pixel as a layer's input and output at the
    network's widest plus the colour planes (SRCNN, at full resolution, is the widest by far).
    """
    bytes_per_pixel = 4 * (2 * widest_tensor(model) + COLOUR_FLOATS)
    sides = []
    for side in TILE_SIDES:
        if (side * model.scale) ** 2 * bytes_per_pixel > TILE_BUDGET_MIB * 2**20:
            break
        sides.append(side)
        if side >= max(low_shape[:2]):
            break
    return sides


def set5_psnr(model: LoadedModel, precision: str) -> float | None:
    if not SET5.is_dir():
        return None
    upscaler = Upscaler(model, tile=1024, precision=precision, backend="pytorch")
    return evaluate(upscaler.upscale, load_references(SET5), model.scale).psnr


def bf16_cost(model: LoadedModel) -> dict[str, Any] | None:
    """Set5 PSNR at fp32 and bf16, or None where bf16 or Set5 is unavailable."""
    if not cpu_has_native_bf16():
        return None
    fp32, bf16 = set5_psnr(model, "fp32"), set5_psnr(model, "bf16")
    if fp32 is None or bf16 is None:
        return None
    return {
        "model": model.name,
        "scale": model.scale,
        "set5_psnr_fp32": round(fp32, 4),
        "set5_psnr_bf16": round(bf16, 4),
        "cost_db": round(fp32 - bf16, 4) + 0.0,  # + 0.0: a cost that rounds to nothing is 0, not -0
    }


def measure_model(
    model: LoadedModel, low: np.ndarray, repeats: int, ceiling: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]:
    """(table rows, bf16 cost, runtime.json entry) for one model and scale."""
    pixels = low.shape[0] * low.shape[1] * model.scale**2
    macs = multiply_adds_per_output_pixel(model)
    rows: list[dict[str, Any]] = []

    def measure(label: str, run: Callable[[np.ndarray], object], **how: Any) -> dict[str, Any]:
        seconds = median_seconds(lambda: run(low), repeats)
        gflops = 2 * macs * pixels / seconds / 1e9
        baseline = rows[0]["seconds"] if rows else seconds  # the eager baseline comes first
        rows.append(
            {
                "model": model.name,
                "scale": model.scale,
                "configuration": label,
                **how,
                "seconds": round(seconds, 4),
                "output_megapixels_per_second": round(pixels / seconds / 1e6, 3),
                "speedup_over_eager": round(baseline / seconds, 2),
                "multiply_adds_per_pixel": round(macs),
                "gflops": round(gflops, 2),
                "fraction_of_matmul": round(gflops / ceiling, 3),
                "default": False,
            }
        )
        print(rows[-1], flush=True)
        return rows[-1]

    def run_with(config: Configuration, tile: int) -> dict[str, Any]:
        upscaler = Upscaler(
            model, tile=tile, precision=config.precision, backend=config.backend, threads=THREADS
        )
        how = {"backend": config.backend, "precision": config.precision, "tile": tile}
        return measure(config.label, upscaler.upscale, **how)

    measure("pytorch-eager-nchw (baseline)", plain_eager(model), tile=None)
    configs = configurations()
    candidates = [(config, run_with(config, DEFAULT_TILE)) for config in configs]
    cost = bf16_cost(model)
    cost_db = cost["cost_db"] if cost else None
    allowed = [
        (config, row)
        for config, row in candidates
        if config.precision == "fp32" or bf16_affordable(cost_db)
    ]
    fastest, at_default_tile = min(allowed, key=lambda pair: pair[1]["seconds"])
    swept = [at_default_tile] + [
        run_with(fastest, side) for side in tile_sides(model, low.shape) if side != DEFAULT_TILE
    ]
    quickest = min(row["seconds"] for row in swept)
    chosen = min(
        (row for row in swept if row["seconds"] <= quickest * (1 + SAME_SPEED)),
        key=lambda row: row["tile"],
    )
    chosen["default"] = True
    backends: dict[str, str] = {}
    for config, row in sorted(candidates, key=lambda pair: pair[1]["seconds"]):
        backends.setdefault(config.precision, row["backend"])
    entry = {
        "precision": fastest.precision,
        "backend": backends,
        "tile": chosen["tile"],
        "bf16_psnr_cost_db": cost_db,
        "output_megapixels_per_second": chosen["output_megapixels_per_second"],
        "speedup_over_eager": chosen["speedup_over_eager"],
        "weights_sha256": model.weights_digest(),
    }
    return rows, cost, entry


def selected_models(names: str | None) -> list[LoadedModel]:
    """The shipped models, or those named (aliases allowed), every scale."""
    wanted = {resolve_name(name.strip()) for name in names.split(",")} if names else None
    return [entry.model for entry in shipped_models() if wanted is None or entry.name in wanted]


def write_defaults(entries: dict[str, dict[str, Any]], measured: str) -> Path:
    """Merge this run's entries into the shipped runtime table."""
    table = read_runtime_table()
    table.update({key: {**entry, "measured": measured} for key, entry in entries.items()})
    path = runtime_table_path()
    write_json(path, dict(sorted(table.items())))
    return path


def markdown(rows: list[dict[str, Any]], costs: list[dict[str, Any]], header: str) -> str:
    columns = [
        "model",
        "scale",
        "configuration",
        "tile",
        "output MP/s",
        "vs eager",
        "mult-adds / px",
        "GFLOP/s",
        "of matmul",
    ]
    table = [
        [
            r["model"],
            f"x{r['scale']}",
            f"**{r['configuration']} (default)**" if r["default"] else r["configuration"],
            "whole image" if r["tile"] is None else str(r["tile"]),
            f"{r['output_megapixels_per_second']:.2f}",
            f"{r['speedup_over_eager']:.2f}x",
            f"{r['multiply_adds_per_pixel']:,}",
            f"{r['gflops']:.1f}",
            f"{100 * r['fraction_of_matmul']:.0f}%",
        ]
        for r in rows
    ]
    cost_table = (
        markdown_table(
            ["model", "scale", "Set5 PSNR fp32", "Set5 PSNR bf16", "cost dB"],
            [
                [
                    c["model"],
                    f"x{c['scale']}",
                    f"{c['set5_psnr_fp32']:.4f}",
                    f"{c['set5_psnr_bf16']:.4f}",
                    f"{c['cost_db']:.4f}",
                ]
                for c in costs
            ],
        )
        if costs  # bf16_cost measures nothing without native bf16 or Set5
        else "Not measured: this CPU has no native bf16, or ../shared/datasets/Set5 is absent.\n"
    )
    return (
        header + markdown_table(columns, table) + "\n## What bf16 costs in quality\n\n" + cost_table
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", help="Comma-separated names (default: every shipped model).")
    parser.add_argument(
        "--scales", help="Comma-separated scales (default: each model's every shipped scale)."
    )
    parser.add_argument(
        "--write-defaults", action="store_true", help="Record the defaults in runtime.json."
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    ceiling = matmul_gflops(args.repeats)
    rng = np.random.default_rng(0)
    rows, costs, entries = [], [], {}
    scales = {int(s) for s in args.scales.split(",")} if args.scales else None
    for model in selected_models(args.models):
        if scales is not None and model.scale not in scales:
            continue
        height, width = (side // model.scale for side in OUTPUT_SIZE)
        low = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        model_rows, cost, entry = measure_model(model, low, args.repeats, ceiling)
        rows += model_rows
        costs += [cost] if cost else []
        entries[runtime_key(model)] = entry
    now, features = datetime.now(UTC), cpu_features()
    # A run on some models only gets files of its own: speed.md stays the table of every model.
    stem = (
        "speed"
        if not args.models
        else "speed-" + "-".join(n.strip() for n in args.models.split(","))
    ) + ("".join(f"-x{s}" for s in sorted(scales)) if scales else "")
    if args.write_defaults:
        measured = f"{now:%Y-%m-%d}, {THREADS} threads, {' '.join(features) or 'no features'}"
        print(f"defaults: {write_defaults(entries, measured)}")
    write_json(
        RESULTS / f"{stem}.json",
        {
            "date": now.isoformat(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_features": features,
            "threads": THREADS,
            "matmul_fp32_gflops": round(ceiling, 1),
            "rows": rows,
            "bf16_cost": costs,
        },
    )
    header = (
        "# Speed on this machine\n\n"
        f"Measured {now:%Y-%m-%d} with `.venv/bin/python benchmarks/speed.py "
        f"{shlex.join(sys.argv[1:])}`: a 1920x1080 output, {THREADS} threads, median after a "
        f"warm-up. CPU features found: {', '.join(features) or 'none'}. fp32 2048x2048 matmul "
        f"in the same run: {ceiling:.0f} GFLOP/s. Tiles are low-resolution pixels per side; "
        '"vs eager" is the speed over plain PyTorch eager for the same model: the same job '
        "(RGB in, RGB out) done the tutorial way, on the whole image in NCHW fp32 with colour "
        "conversion and chroma enlargement in numpy. The default, what `auto` precision, "
        "backend and tile choose, is the "
        f"fastest configuration and tile, with bf16 only where it costs under "
        f"{BF16_MAX_COST_DB} dB of Set5 PSNR (below); tiles within {SAME_SPEED:.0%} of the "
        "fastest count as equally fast and the smallest of them is chosen.\n\n"
    )
    write_text_atomic(RESULTS / f"{stem}.md", markdown(rows, costs, header))


if __name__ == "__main__":
    main()
