"""Peak memory and wall time of `superres upscale` on a 4000x3000 photo at x4 (target: < 3 GiB).

The upscale runs as a child process, exactly as a user would type it, so its peak resident set
(the kernel's VmHWM, polled, and getrusage's ru_maxrss after it exits) is the command's alone.
Without shipped x4 weights for ``--model``, an untrained network of that architecture is saved to
a temporary folder named by SUPERRES_WEIGHTS_DIR: memory and time depend on the architecture,
not on the weights' values, but the output image is then meaningless and recorded as such.

    .venv/bin/python benchmarks/upscale_memory.py [--model default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

from superres.imageio.files import write_image
from superres.models import create_model, resolve_name, save_weights
from superres.models.registry import shipped_scales, weights_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
WIDTH, HEIGHT, SCALE = 4000, 3000, 4
TARGET_GIB = 3.0
POLL_SECONDS = 0.05


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """The astronaut tiled 2x2 (mirrored), enlarged to size, plus sensor-like noise."""
    base = data.astronaut()
    tiled = np.block([[[base], [base[:, ::-1]]], [[base[::-1]], [base[::-1, ::-1]]]])
    big = cv2.resize(tiled, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noise = np.random.default_rng(seed).normal(0.0, 4.0, big.shape).round().astype(np.int16)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set, KiB) of a live process, or None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(command: list[str], env: dict[str, str]) -> dict[str, float | int]:
    """Run ``command`` to completion; its exit status, wall time and peak RSS two ways."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    polled = 0
    while process.poll() is None:
        polled = max(polled, peak_rss_kib(process.pid) or 0)
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - start
    # Linux reports ru_maxrss in KiB; this script starts no other child, so it is the upscale's.
    rusage_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "exit_status": process.returncode,
        "wall_seconds": round(wall, 1),
        "peak_rss_mib_vmhwm_polled": round(polled / 1024, 1),
        "peak_rss_mib_ru_maxrss": round(rusage_kib / 1024, 1),
    }


def weights_for(model: str, scratch: Path) -> tuple[dict[str, str], str]:
    """Extra environment and a description of the weights the run will use."""
    if SCALE in shipped_scales(model):
        return {}, f"shipped {resolve_name(model)}-x{SCALE}.safetensors from {weights_dir()}"
    folder = scratch / "weights"
    save_weights(folder / f"{resolve_name(model)}-x{SCALE}.safetensors", create_model(model, SCALE))
    return {"SUPERRES_WEIGHTS_DIR": str(folder)}, (
        f"UNTRAINED {resolve_name(model)} x{SCALE} (random initialisation, 0 training steps; "
        "no shipped x4 weights yet): only the memory and time figures are meaningful"
    )


def write_results(record: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upscale_memory.json").write_text(json.dumps(record, indent=2) + "\n")
    run = record["result"]
    peak = run["peak_rss_mib_ru_maxrss"]
    verdict = "meets" if peak < TARGET_GIB * 1024 else "MISSES"
    width, height = record["output_size"]
    buffer_mib, pillow_mib = width * height * 3 / 2**20, width * height * 4 / 2**20
    lines = [
        "# `superres upscale` memory: 4000x3000 RGB at x4",
        "",
        f"Command (image and output in a temporary folder): `{record['command']}`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| peak RSS (ru_maxrss) | {run['peak_rss_mib_ru_maxrss']:.0f} MiB |",
        f"| peak RSS (VmHWM, polled every {POLL_SECONDS}s) | "
        f"{run['peak_rss_mib_vmhwm_polled']:.0f} MiB |",
        f"| wall time | {run['wall_seconds']:.0f} s |",
        f"| exit status | {run['exit_status']} |",
        f"| output | {record['output']} |",
        "",
        f"Target < {TARGET_GIB:g} GiB peak RSS: {verdict} it.",
        "",
        "Where it goes: the output image held whole for encoding "
        f"({width}x{height}x3 bytes = {buffer_mib:.0f} MiB), Pillow's copy of it for the PNG "
        f"encoder (RGB is stored as 4 bytes per pixel: {pillow_mib:.0f} MiB), and the rest "
        f"({peak - buffer_mib - pillow_mib:.0f} MiB: Python, torch, the decoded input, one "
        "tile's tensors). Inference itself is tiled, so only the two image-sized buffers grow "
        "with the image.",
        "",
        f"Weights: {record['weights']}.",
        "",
        f"Machine: {record['machine']}. One run, with the command's default (auto) precision, "
        "backend and tile; the wall time includes decoding the input and encoding the "
        "192-megapixel PNG, so it is not a speed figure (see speed.md for those).",
        "",
        "Reproduce: `.venv/bin/python benchmarks/upscale_memory.py"
        + (f" --model {record['model']}`" if record["model"] != "default" else "`"),
        "",
    ]
    (RESULTS / "upscale_memory.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="default", help="model name (default: default)")
    parser.add_argument("--tile", type=int, default=None, help="--tile for the run (default: its)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="superres-memory-") as scratch_name:
        scratch = Path(scratch_name)
        source, output = scratch / "photo.png", scratch / "out"
        write_image(source, photo_like(WIDTH, HEIGHT))
        extra_env, weights = weights_for(args.model, scratch)
        argv = ["upscale", str(source), "-o", str(output), "--scale", str(SCALE)]
        argv += ["--model", args.model] + (["--tile", str(args.tile)] if args.tile else [])
        command = [sys.executable, "-m", "superres", *argv]
        result = measure(command, {**os.environ, **extra_env})
        written = output / source.name
        size = cv2.imread(str(written), cv2.IMREAD_UNCHANGED).shape if written.exists() else None
        shown = "superres " + shlex.join(argv).replace(str(scratch), "$TMP")
        record = {
            "command": shown,
            "model": args.model,
            "weights": weights,
            "input": f"{WIDTH}x{HEIGHT} RGB 8-bit PNG (astronaut tiled, resized, noise sigma 4)",
            "output": f"{size[1]}x{size[0]} PNG" if size else "not written",
            "output_size": [size[1], size[0]] if size else [WIDTH * SCALE, HEIGHT * SCALE],
            "target_peak_rss_gib": TARGET_GIB,
            "result": result,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, torch {torch.__version__}",
        }
    write_results(record)
    print(json.dumps(record, indent=2))
    if result["exit_status"] != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
