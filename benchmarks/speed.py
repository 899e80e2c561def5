"""How fast each shipped model upscales on this CPU, against the machine's own matmul ceiling.

For each shipped model and scale: output megapixels per second producing a 1920x1080
image (2 threads, warm-up, median of several runs), multiply-adds per output pixel,
and the achieved GFLOP/s as a fraction of a large fp32 ``torch.matmul`` measured in the
same run. Writes docs/results/speed.{md,json}.

    .venv/bin/python benchmarks/speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from superres.color import rgb_to_y
from superres.evaluation import evaluate, load_references
from superres.inference import Upscaler, cpu_flags, cpu_has_native_bf16
from superres.models import LoadedModel, load_model
from superres.models.complexity import multiply_adds_per_output_pixel
from superres.models.registry import shipped_models
from superres.reporting import markdown_table, write_json, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
SET5 = ROOT.parent / "shared" / "datasets" / "Set5"
OUTPUT_SIZE = (1080, 1920)


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_seconds(lambda: a @ b, repeats) / 1e9


def cpu_features() -> list[str]:
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"]
    return [flag for flag in wanted if flag in cpu_flags()]


def plain_eager(model: LoadedModel) -> Callable[[np.ndarray], object]:
    """The baseline: the network on the whole Y image, NCHW fp32, no tiling or tuning."""

    def run(low: np.ndarray) -> object:
        image = low if model.channels == 3 else rgb_to_y(low)[..., None]
        planes = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        with torch.inference_mode():
            return model.network(planes)

    return run


def variants(model: LoadedModel) -> list[tuple[str, Callable[[np.ndarray], object]]]:
    """Every way superres can run ``model`` here, with the plain eager baseline first."""
    runs = [("pytorch-eager-nchw (baseline)", plain_eager(model))]
    runs.append(("pytorch fp32 (channels-last, tiled)", Upscaler(model).upscale))
    if cpu_has_native_bf16():
        runs.append(("pytorch bf16", Upscaler(model, precision="bf16").upscale))
    runs.append(("onnxruntime fp32", Upscaler(model, backend="onnxruntime", threads=2).upscale))
    return runs


def set5_psnr(model: LoadedModel, precision: str) -> float | None:
    if not SET5.is_dir():
        return None
    upscaler = Upscaler(model, tile=1024, precision=precision)
    return evaluate(upscaler.upscale, load_references(SET5), model.scale).psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ceiling = matmul_gflops(args.repeats)
    rng = np.random.default_rng(0)
    rows, precision_costs = [], []
    for entry in shipped_models():
        model = load_model(entry.name, entry.scale)
        height, width = (side // entry.scale for side in OUTPUT_SIZE)
        low = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels = height * width * entry.scale**2
        macs = multiply_adds_per_output_pixel(model)
        baseline = None
        for backend, run in variants(model):
            seconds = median_seconds(lambda r=run, x=low: r(x), args.repeats)
            baseline = baseline or seconds
            gflops = 2 * macs * pixels / seconds / 1e9
            rows.append(
                {
                    "model": entry.name,
                    "scale": entry.scale,
                    "backend": backend,
                    "seconds": round(seconds, 4),
                    "output_megapixels_per_second": round(pixels / seconds / 1e6, 3),
                    "speedup_over_baseline": round(baseline / seconds, 2),
                    "multiply_adds_per_pixel": round(macs),
                    "gflops": round(gflops, 2),
                    "fraction_of_matmul": round(gflops / ceiling, 3),
                }
            )
            print(rows[-1], flush=True)
        if cpu_has_native_bf16():
            fp32, bf16 = set5_psnr(model, "fp32"), set5_psnr(model, "bf16")
            if fp32 is not None and bf16 is not None:
                precision_costs.append(
                    {
                        "model": entry.name,
                        "scale": entry.scale,
                        "set5_psnr_fp32": round(fp32, 4),
                        "set5_psnr_bf16": round(bf16, 4),
                        "cost_db": round(fp32 - bf16, 4),
                    }
                )
    features = cpu_features()
    write_json(
        RESULTS / "speed.json",
        {
            "date": datetime.now(UTC).isoformat(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_features": features,
            "threads": torch.get_num_threads(),
            "matmul_fp32_gflops": round(ceiling, 1),
            "rows": rows,
            "bf16_cost": precision_costs,
        },
    )
    columns = ["model", "scale", "backend", "output MP/s", "mult-adds / px", "GFLOP/s", "of matmul"]
    table = [
        [
            r["model"],
            f"x{r['scale']}",
            r["backend"],
            f"{r['output_megapixels_per_second']:.2f}",
            f"{r['multiply_adds_per_pixel']:,}",
            f"{r['gflops']:.1f}",
            f"{100 * r['fraction_of_matmul']:.0f}%",
        ]
        for r in rows
    ]
    header = (
        "# Speed on this machine\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} with `.venv/bin/python benchmarks/speed.py "
        f"--repeats {args.repeats}`: a 1920x1080 output, 2 threads, median after a warm-up. "
        f"CPU features found: {', '.join(features) or 'none'}. fp32 2048x2048 matmul in the same "
        f"run: {ceiling:.0f} GFLOP/s.\n\n"
    )
    costs = markdown_table(
        ["model", "scale", "Set5 PSNR fp32", "Set5 PSNR bf16", "cost dB"],
        [
            [
                c["model"],
                f"x{c['scale']}",
                f"{c['set5_psnr_fp32']:.4f}",
                f"{c['set5_psnr_bf16']:.4f}",
                f"{c['cost_db']:.4f}",
            ]
            for c in precision_costs
        ],
    )
    write_text_atomic(
        RESULTS / "speed.md",
        header + markdown_table(columns, table) + "\n## What bf16 costs in quality\n\n" + costs,
    )


if __name__ == "__main__":
    main()
