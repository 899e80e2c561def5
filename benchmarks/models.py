"""Our models beside the third-party OpenCV dnn_superres models, on the same inputs.

For every method and scale: standard-protocol PSNR/SSIM on Set5 and Set14, parameters,
multiply-adds per output pixel, and output megapixels per second making a 1920x1080 image on
this machine (2 threads, median of several runs), all measured in one run. Our models are
scored in fp32 and timed twice: in fp32 on PyTorch (like for like with OpenCV's fp32 peers)
and as `superres upscale` runs them by default (``auto``: the measured fastest precision,
backend and tile of runtime.json). Writes docs/results/models.{md,json}.

    .venv/bin/pip install 'opencv-contrib-python-headless<5'   # benchmark-only; never a dependency
    .venv/bin/python benchmarks/models.py [--scales 2,3,4] [--repeats 5]

Peers come from ../shared/peers (read its README); they are skipped when it or
cv2.dnn_superres is absent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from superres.apps.report.tables import markdown_table, write_json, write_text_atomic
from superres.engine.evaluation import bicubic_enlarger, evaluate, load_references
from superres.engine.inference import Upscaler
from superres.models import create_model, load_model
from superres.models.complexity import multiply_adds_per_output_pixel
from superres.models.registry import ARCHITECTURES, shipped_scales
from superres.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "docs" / "results"
# OpenCV's models with the architecture hyper-parameters their sources document, so that
# their arithmetic can be counted with our implementation of the same network.
PEERS = {
    "opencv-fsrcnn": ("FSRCNN", "fsrcnn", {"residual": False}),
    "opencv-fsrcnn-small": ("FSRCNN-small", "fsrcnn", {"d": 32, "s": 5, "m": 1, "residual": False}),
    "opencv-espcn": ("ESPCN", "espcn", {"residual": False}),
    "opencv-lapsrn": ("LapSRN", None, {}),
}

Enlarger = Callable[[np.ndarray], np.ndarray]


def opencv_peer(file_stem: str, scale: int) -> Enlarger | None:
    """An OpenCV dnn_superres model as an RGB enlarger, or None where it is not available."""
    path = SHARED / "peers" / "opencv-dnn-superres" / f"{file_stem}_x{scale}.pb"
    if not path.is_file() or not hasattr(cv2, "dnn_superres"):
        return None
    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    try:
        sr.readModel(str(path))
    except cv2.error as error:  # OpenCV 5 dropped the TensorFlow importer these .pb files need
        print(f"skipped {path.name}: OpenCV {cv2.__version__} cannot read it ({error.err})")
        return None
    sr.setModel(file_stem.split("-")[0].lower(), scale)

    def enlarge(low: np.ndarray) -> np.ndarray:
        rgb = low if low.ndim == 3 else np.repeat(low[..., None], 3, axis=2)
        out = cv2.cvtColor(sr.upsample(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), cv2.COLOR_BGR2RGB)
        return out if low.ndim == 3 else out[..., 0]

    return enlarge


def megapixels_per_second(enlarge: Enlarger, low: np.ndarray, scale: int, repeats: int) -> float:
    seconds = median_seconds(lambda: enlarge(low), repeats)
    return low.shape[0] * low.shape[1] * scale * scale / 1e6 / seconds


@dataclass
class Method:
    name: str
    enlarge: Enlarger  # fp32: what the scores and the like-for-like speed come from
    parameters: int | None
    multiply_adds: float | None
    default: Upscaler | None = None  # ours as `superres upscale` runs it (auto)


def methods_for(scale: int) -> list[Method]:
    """Every method at ``scale``: bicubic, our shipped models, OpenCV's peers where present."""
    methods = [Method("bicubic", bicubic_enlarger(scale), 0, None)]
    for name in ARCHITECTURES:
        if scale in shipped_scales(name):
            model = load_model(name, scale)
            fp32 = Upscaler(model, tile=1024, precision="fp32", backend="pytorch")
            macs = multiply_adds_per_output_pixel(model)
            methods.append(Method(name, fp32.upscale, model.parameters, macs, Upscaler(model)))
    for label, (stem, arch, hyper) in PEERS.items():
        enlarge = opencv_peer(stem, scale)
        if enlarge is None:
            continue
        if arch is None:
            methods.append(Method(label, enlarge, None, None))
            continue
        twin = create_model(arch, scale, **hyper)
        methods.append(
            Method(label, enlarge, twin.parameters, multiply_adds_per_output_pixel(twin))
        )
    return methods


def tutorial_crops(references: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """128x128 centre crops: the image size the autoencoder tutorial reported SSIM on."""
    crops = []
    for name, image in references:
        top, left = (image.shape[0] - 128) // 2, (image.shape[1] - 128) // 2
        crops.append((name, image[top : top + 128, left : left + 128]))
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    datasets = {name: load_references(SHARED / "datasets" / name) for name in ("Set5", "Set14")}
    crops = tutorial_crops([*datasets["Set5"], *datasets["Set14"]])
    rng = np.random.default_rng(0)
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        low = rng.integers(0, 256, (1080 // scale, 1920 // scale, 3), dtype=np.uint8)
        bicubic: dict[str, list[float]] = {}
        for method in methods_for(scale):
            macs = method.multiply_adds
            row: dict[str, Any] = {
                "method": method.name,
                "scale": scale,
                "parameters": method.parameters,
                "multiply_adds_per_pixel": None if macs is None else round(macs),
            }
            for dataset, references in datasets.items():
                result = evaluate(method.enlarge, references, scale, method.name, dataset)
                row[f"{dataset}_psnr"] = round(result.psnr, 3)
                row[f"{dataset}_ssim"] = round(result.ssim, 4)
                per_image = [image.scores.psnr for image in result.images]
                baseline = bicubic.setdefault(dataset, per_image)
                row[f"{dataset}_images_above_bicubic"] = sum(
                    ours > theirs for ours, theirs in zip(per_image, baseline, strict=True)
                )
            if scale == 2:  # the autoencoder tutorial's setting
                tutorial = evaluate(method.enlarge, crops, scale, protocol="tutorial")
                row["tutorial_ssim_128"] = round(tutorial.ssim, 4)
            row["megapixels_per_second"] = round(
                megapixels_per_second(method.enlarge, low, scale, args.repeats), 3
            )
            if method.default is not None:
                row["default_runtime"] = method.default.runtime.describe()
                row["default_megapixels_per_second"] = round(
                    megapixels_per_second(method.default.upscale, low, scale, args.repeats), 3
                )
            rows.append(row)
            print(row, flush=True)
    write_json(RESULTS / "models.json", {"date": datetime.now(UTC).isoformat(), "rows": rows})
    columns = [
        "method",
        "scale",
        "Set5 PSNR / SSIM",
        "Set14 PSNR / SSIM",
        "images above bicubic",
        "parameters",
        "mult-adds / px",
        "output MP/s, fp32",
        "output MP/s, default (how)",
    ]
    table = [
        [
            r["method"],
            f"x{r['scale']}",
            f"{r['Set5_psnr']:.2f} / {r['Set5_ssim']:.4f}",
            f"{r['Set14_psnr']:.2f} / {r['Set14_ssim']:.4f}",
            f"{r['Set5_images_above_bicubic']}/5, {r['Set14_images_above_bicubic']}/14",
            "-" if r["parameters"] is None else f"{r['parameters']:,}",
            "-" if r["multiply_adds_per_pixel"] is None else f"{r['multiply_adds_per_pixel']:,}",
            f"{r['megapixels_per_second']:.2f}",
            (
                f"{r['default_megapixels_per_second']:.2f} ({r['default_runtime']})"
                if "default_runtime" in r
                else "-"
            ),
        ]
        for r in rows
    ]
    header = (
        "# Models beside OpenCV's dnn_superres peers\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d} on this machine (2 threads) with "
        f"`.venv/bin/python benchmarks/models.py --scales {args.scales} "
        f"--repeats {args.repeats}`.\n"
        "Standard protocol (Y, border = scale, MATLAB-bicubic LR), scored in fp32. Speed: a "
        "1920x1080 RGB output, median of the repeats after a warm-up; our models in fp32 on "
        "PyTorch (like for like with OpenCV's fp32 peers) and as `superres upscale` runs them "
        "by default (auto: the fastest measured configuration, see speed.md). Peers' "
        "parameters and mult-adds are those of the same architecture in our implementation "
        "(LapSRN: not counted).\n\n"
    )
    x2 = [r for r in rows if "tutorial_ssim_128" in r]
    tutorial_table = markdown_table(
        ["method", "mean SSIM, tutorial protocol, 128x128 crops, x2"],
        [[r["method"], f"{r['tutorial_ssim_128']:.4f}"] for r in x2],
    )
    tutorial_header = (
        "\n\n## The autoencoder tutorial's measure\n\n"
        "The autoencoder tutorial reported an average SSIM of 0.86 on 128x128 images enlarged "
        "x2. Its own images are not available; this is the same measure (all RGB channels, "
        "scikit-image SSIM, no border shaved) on the 128x128 centre crops of the 19 Set5 and "
        "Set14 images, from MATLAB-bicubic x2 inputs, for every x2 method above.\n\n"
    )
    write_text_atomic(
        RESULTS / "models.md",
        header + markdown_table(columns, table) + tutorial_header + tutorial_table,
    )


if __name__ == "__main__":
    main()
