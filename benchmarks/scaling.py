"""Scaling out on this machine: training on 1 vs 2 processes (torchrun, gloo) and the overhead
of `upscale --executor ray` over the local executor. Writes docs/results/scaling.{json,md}.

Every figure is the wall time of the command as a user types it (a child process), median of
``--repeats``. Fixed start-up costs (imports, Ray's local cluster, torchrun's rendezvous) are
separated from the per-step or per-file cost by running two sizes and differencing:
per-unit = (t_long - t_short) / (n_long - n_short).

    .venv/bin/python benchmarks/scaling.py [--repeats 5] [--note "what else ran"]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import data

from superres.imageio.files import write_image
from superres.timing import median_seconds

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
TRAIN_STEPS = (5, 25)  # short and long runs; their difference is the per-step cost
IMAGES = (8, 24)  # folder sizes for the executors
IMAGE_SIDE = 256
TRAIN = ["--model", "compact", "--scale", "2", "--patch-size", "64", "--batch-size", "16"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str]) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"failed ({completed.returncode}): {shlex.join(command)}\n{completed.stderr}")


def _photos(folder: Path, count: int) -> None:
    """``count`` different 256x256 crops of scikit-image's photos, as PNG."""
    sources = [data.astronaut(), data.coffee(), data.chelsea()]
    rng = np.random.default_rng(0)
    for index in range(count):
        photo = sources[index % len(sources)]
        top = int(rng.integers(photo.shape[0] - IMAGE_SIDE))
        left = int(rng.integers(photo.shape[1] - IMAGE_SIDE))
        write_image(
            folder / f"{index:03d}.png", photo[top : top + IMAGE_SIDE, left : left + IMAGE_SIDE]
        )


def _interleaved(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each run, taking them in turn each round, so that the load of a shared
    machine, which drifts, falls on all of them alike."""
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            times[key].append(round(median_seconds(run, 1, warmup=0), 2))
    return times


def _per_unit(times: dict[str, list[float]], label: str, sizes: tuple[int, int]) -> dict:
    """Medians at both sizes, the per-unit cost and the fixed cost they imply."""
    short, long = (statistics.median(times[f"{label} @{n}"]) for n in sizes)
    per_unit = (long - short) / (sizes[1] - sizes[0])
    return {
        "seconds": {str(n): times[f"{label} @{n}"] for n in sizes},
        "seconds_per_unit": round(per_unit, 4),
        "fixed_seconds": round(short - per_unit * sizes[0], 2),
    }


def _one_process(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "superres", *argv, "--threads", "2"]


def _two_processes(argv: list[str]) -> list[str]:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    return [*torchrun, "--master-port", str(_free_port()), "-m", "superres", *argv]


LAUNCHERS = {
    "1 process, 2 threads": _one_process,
    "2 processes (torchrun, gloo), 1 thread each": _two_processes,
}
EXECUTORS = {"local": [], "ray (local cluster, 2 workers)": ["--executor", "ray"]}


def _train_run(scratch: Path, folder: Path, launch: Callable, steps: int) -> Callable[[], None]:
    def once() -> None:
        run = Path(tempfile.mkdtemp(dir=scratch)) / "run"
        argv = ["train", *TRAIN, "--train", str(folder), "-o", str(run), "--device", "cpu"]
        _run(launch([*argv, "--steps", str(steps), "--epoch-steps", str(steps)]))

    return once


def _upscale_run(scratch: Path, folder: Path, extra: list[str]) -> Callable[[], None]:
    def once() -> None:
        output = Path(tempfile.mkdtemp(dir=scratch)) / "out"
        upscale = ["upscale", str(folder), "-o", str(output), "--scale", "2", *extra]
        _run([sys.executable, "-m", "superres", *upscale])

    return once


def _compare(
    variants: dict[str, Any],
    sizes: list[int],
    make_run: Callable[[Any, int], Callable[[], None]],
    repeats: int,
    rate: Callable[[float], tuple[str, float]],
) -> dict[str, object]:
    """Each variant timed at each size (interleaved), as seconds per unit and ``rate``'s figure."""
    runs = {
        f"{label} @{size}": make_run(option, size)
        for label, option in variants.items()
        for size in sizes
    }
    times = _interleaved(runs, repeats)
    results: dict[str, object] = {}
    for label in variants:
        figures = _per_unit(times, label, sizes)
        name, value = rate(figures["seconds_per_unit"])
        figures[name] = value
        results[label] = figures
    return results


def training(scratch: Path, repeats: int) -> dict[str, object]:
    folder = scratch / "train-data"
    _photos(folder, 6)
    return _compare(
        LAUNCHERS,
        TRAIN_STEPS,
        lambda launch, steps: _train_run(scratch, folder, launch, steps),
        repeats,
        lambda seconds: ("patches_per_second", round(16 / seconds, 1)),
    )


def executors(scratch: Path, repeats: int) -> dict[str, object]:
    for count in IMAGES:
        _photos(scratch / f"images-{count}", count)
    return _compare(
        EXECUTORS,
        IMAGES,
        lambda extra, count: _upscale_run(scratch, scratch / f"images-{count}", extra),
        repeats,
        lambda seconds: ("images_per_second", round(1 / seconds, 2)),
    )


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def write_results(record: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(record, indent=2) + "\n")
    train, execute = record["training"], record["executors"]
    lines = [
        "# Scaling out, measured on this machine",
        "",
        f"Command: `{record['command']}` ({record['date']}). Machine: {record['machine']}.",
        f"Load average before / after: {record['load_before']} / {record['load_after']} "
        f"({record['note']}).",
        "",
        f"## Training: compact x2, patch 64, global batch 16, fp32, {TRAIN_STEPS[0]} and "
        f"{TRAIN_STEPS[1]} steps",
        "",
        "| launch | s per step | patches/s | fixed start-up s |",
        "|---|---|---|---|",
        *(
            f"| {label} | {f['seconds_per_unit']:.3f} | {f['patches_per_second']:.1f} | "
            f"{f['fixed_seconds']:.1f} |"
            for label, f in train.items()
        ),
        "",
        "## Folder upscaling x2 (model auto: real at x2, auto runtime), "
        f"{IMAGE_SIDE}x{IMAGE_SIDE} PNGs, {IMAGES[0]} and {IMAGES[1]} files",
        "",
        "| executor | s per image | images/s | fixed start-up s |",
        "|---|---|---|---|",
        *(
            f"| {label} | {f['seconds_per_unit']:.3f} | {f['images_per_second']:.2f} | "
            f"{f['fixed_seconds']:.1f} |"
            for label, f in execute.items()
        ),
        "",
        f"Median of {record['repeats']} runs each, the configurations taken in turn each round "
        "(every run's time is in scaling.json); per-unit = difference between the two sizes "
        "over the difference in units, fixed = what is left of the short run. Each command "
        "is the CLI in a child process, so start-up (imports, torchrun's rendezvous, Ray's "
        "local cluster and its workers' model loads) is in the fixed column.",
        "",
    ]
    (RESULTS / "scaling.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--note", default="", help="what else loaded the machine, for the record (e.g. a training)"
    )
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="superres-scaling-") as name:
        scratch = Path(name)
        record: dict[str, object] = {
            "command": shlex.join([".venv/bin/python", "benchmarks/scaling.py", *sys.argv[1:]]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, torch {torch.__version__}, ray {_version('ray')}",
            "load_before": load_before,
            "note": args.note or "no other load noted",
            "training": training(scratch, args.repeats),
            "executors": executors(scratch, args.repeats),
        }
    record["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_results(record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
