"""Can a whole-image noise estimate tell a JPEG-only photo from a noisy one? (issue 13)

A `real` model that knew an input was neither noisy nor blurred would clean less and keep more
texture (docs/training.md, real step 26); the cheapest way to know is a classical blind noise
estimate on the low-resolution input. This measures one, Immerkaer's (1996) Laplacian-difference
estimate on the BT.601 luma over the flatter half of the pixels (so edges count less), on
training photos (BSD200, never Set5/Set14) degraded x4 by each benchmark track and by two
training mixes: the `shared` preset without blur and noise, and with noise in every draw.
The result is a threshold's best accuracy at telling `jpeg50` from `noise10-jpeg70` inputs.
Writes docs/results/noise-estimate.{md,json}.

    .venv/bin/python benchmarks/noise_estimate.py [--every 4]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from superres.apps.report.tables import markdown_table, write_json, write_text_atomic
from superres.engine.evaluation import load_references
from superres.quality.realistic import SHARED, TRACKS, degrade_realistic

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "BSD200"
_LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def noise_sigma(rgb: np.ndarray) -> float:
    """Immerkaer's estimate (0-255 scale) over the half of the pixels with the least gradient."""
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    response = cv2.filter2D(luma, -1, _LAPLACIAN_DIFFERENCE)[1:-1, 1:-1]
    gradient = np.hypot(cv2.Sobel(luma, cv2.CV_64F, 1, 0), cv2.Sobel(luma, cv2.CV_64F, 0, 1))
    flat = gradient[1:-1, 1:-1] <= np.median(gradient)
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(response[flat]).mean())


def best_threshold_accuracy(low: list[float], high: list[float]) -> tuple[float, float]:
    """(threshold, accuracy) of the best rule 'noisy if the estimate is above the threshold'."""
    candidates = sorted(low + high)
    scored = [
        ((sum(v <= t for v in low) + sum(v > t for v in high)) / (len(low) + len(high)), t)
        for t in candidates
    ]
    accuracy, threshold = max(scored)
    return threshold, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4, help="Use every N-th BSD200 photo.")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent")
        return
    photos = load_references(DATA)[:: args.every]
    first = SHARED.first
    mixes = {
        "shared, no blur or noise": replace(
            SHARED,
            first=replace(
                first,
                blur=replace(first.blur, probability=0.0),
                noise=replace(first.noise, probability=0.0),
            ),
        ),
        "shared, noise in every draw": replace(
            SHARED, first=replace(first, noise=replace(first.noise, probability=1.0))
        ),
    }
    estimates: dict[str, list[float]] = {name: [] for name in [*TRACKS, *mixes]}
    for index, (name, photo) in enumerate(photos):
        for track_name, track in TRACKS.items():
            estimates[track_name].append(noise_sigma(track.apply(photo, 4, name)))
        for mix_name, config in mixes.items():
            estimates[mix_name].append(noise_sigma(degrade_realistic(photo, 4, config, index)))
    rows = []
    for name, values in estimates.items():
        p10, median, p90 = np.percentile(values, [10, 50, 90])
        rows.append({"input": name, "p10": p10, "median": median, "p90": p90})
    threshold, accuracy = best_threshold_accuracy(estimates["jpeg50"], estimates["noise10-jpeg70"])
    payload = {
        "photos": len(photos),
        "rows": rows,
        "jpeg50_vs_noise10_jpeg70": {"threshold": threshold, "accuracy": accuracy},
    }
    write_json(RESULTS / "noise-estimate.json", payload)
    table = markdown_table(
        ["x4 input (BSD200)", "estimate p10", "median", "p90"],
        [[r["input"], f"{r['p10']:.2f}", f"{r['median']:.2f}", f"{r['p90']:.2f}"] for r in rows],
    )
    write_text_atomic(
        RESULTS / "noise-estimate.md",
        "# A whole-image noise estimate on degraded photos\n\n"
        f"Made by `.venv/bin/python benchmarks/noise_estimate.py --every {args.every}` "
        f"({len(photos)} BSD200 photos, x4; Immerkaer's estimate, 0-255 scale, over the "
        "flatter half of the luma).\n\n"
        + table
        + f"\nBest threshold between `jpeg50` and `noise10-jpeg70` inputs: {threshold:.2f}, "
        f"right on {accuracy:.0%} of them.\n",
    )
    print(table, f"threshold {threshold:.2f}: {accuracy:.0%}")


if __name__ == "__main__":
    main()
