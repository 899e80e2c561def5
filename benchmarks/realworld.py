"""Real-world inputs: our models beside Real-ESRGAN's compact real-world model, same inputs.

For each fixed degradation track (clean; JPEG q50; noise sigma 10 + JPEG q70; blur 1.6 +
noise 5 + JPEG q60; see superres.quality.realistic.TRACKS): standard-protocol PSNR/SSIM on
the Y channel of Set5 and Set14 at x4 (and x2 for ours), for bicubic, the clean-trained
default model, the `real` model (at denoise strengths 1 and 0 where it has both weight sets)
and the Real-ESRGAN ncnn peer; with ``--ensemble N``, also `real` as a self-ensemble of N at
x4 (the targets' scale). Then the speed target: 320x240 -> 1280x960, ours and the
peer timed in this one process, interleaved, 2 threads, median of several runs. Figures
(original / input / each method, with scores) go beside the tables.
Writes docs/results/realworld.{md,json} and docs/results/realworld-*.png.

    .venv/bin/pip install ncnn          # benchmark-only; never a dependency
    .venv/bin/python benchmarks/realworld.py [--scales 4,2] [--repeats 7] [--real-weights F]
        [--ensemble 8]

The peer comes from ../shared/peers (read its README); it is skipped when absent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from superres.apps.report.figures import comparison_figure, detail_box, save_figure
from superres.apps.report.tables import markdown_table, write_json, write_text_atomic
from superres.engine.evaluation import (
    MethodOutput,
    bicubic_enlarger,
    evaluate,
    load_references,
    low_resolution_pair,
)
from superres.engine.inference import Upscaler
from superres.engine.runtime import cpu_features
from superres.models import load_model, load_weights_file
from superres.models.registry import shipped_scales
from superres.quality.metrics import score
from superres.quality.realistic import TRACKS
from superres.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "docs" / "results"
PEER_DIR = SHARED / "peers" / "realesrgan-general-x4v3-ncnn"
PEER = "realesrgan-general-x4v3 (ncnn)"
FIGURES = [("Set14", "comic.bmp"), ("Set5", "butterfly.png"), ("Set14", "zebra.bmp")]
FIGURE_TRACKS = ("noise10-jpeg70", "jpeg50", "blur1.6-noise5-jpeg60")

Enlarger = Callable[[np.ndarray], np.ndarray]


def ncnn_peer(threads: int = 2) -> Enlarger | None:
    """Real-ESRGAN general-x4v3 as an RGB uint8 enlarger (grey in, grey out), or None."""
    try:
        import ncnn
    except ImportError:
        return None
    if not (PEER_DIR / "realesr-general-x4v3.param").is_file():
        return None
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = False
    net.load_param(str(PEER_DIR / "realesr-general-x4v3.param"))
    net.load_model(str(PEER_DIR / "realesr-general-x4v3.bin"))

    def enlarge(low: np.ndarray) -> np.ndarray:
        rgb = low if low.ndim == 3 else np.repeat(low[..., None], 3, axis=2)
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0
        extractor = net.create_extractor()
        extractor.input("data", ncnn.Mat(chw))
        _, out = extractor.extract("output")
        sr = np.clip(np.array(out).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return sr if low.ndim == 3 else np.round(sr.mean(axis=2)).astype(np.uint8)

    return enlarge


def our_methods(scale: int, real_weights: Path | None, ensemble: int) -> dict[str, Upscaler]:
    """Ours in fixed fp32 (scores must not depend on the machine's measured runtime)."""
    methods = {}
    if scale in shipped_scales("compact"):
        methods["compact (clean-trained default)"] = Upscaler(
            load_model("compact", scale), tile=1024, precision="fp32", backend="pytorch"
        )
    real = None
    if real_weights is not None:
        real = load_weights_file(real_weights)
    elif scale in shipped_scales("real"):
        real = load_model("real", scale)
    if real is not None and real.scale == scale:
        methods["real"] = Upscaler(real, tile=1024, precision="fp32", backend="pytorch")
        if real.keep_texture is not None:
            methods["real, denoise 0"] = Upscaler(
                real, tile=1024, precision="fp32", backend="pytorch", denoise=0.0
            )
        if ensemble > 1 and scale == 4:
            methods[f"real, self-ensemble x{ensemble}"] = Upscaler(
                real, tile=1024, precision="fp32", backend="pytorch", ensemble=ensemble
            )
    return methods


def methods_for(
    scale: int, real_weights: Path | None, peer: Enlarger | None, ensemble: int
) -> dict[str, Any]:
    methods: dict[str, Enlarger] = {"bicubic": bicubic_enlarger(scale)}
    ours = our_methods(scale, real_weights, ensemble)
    methods.update({name: up.upscale for name, up in ours.items()})
    if peer is not None and scale == 4:
        methods[PEER] = peer
    return methods


def speed(
    real_weights: Path | None, peer: Enlarger | None, repeats: int, ensemble: int
) -> list[dict]:
    """320x240 -> 1280x960: ours as `superres upscale` runs it (auto) and in fp32, the peer."""
    rng = np.random.default_rng(0)
    photo = load_references(SHARED / "datasets" / "Set14")[0][1]  # a real photo, not noise
    top, left = (photo.shape[0] - 240) // 2, (photo.shape[1] - 320) // 2
    low = np.ascontiguousarray(photo[top : top + 240, left : left + 320])
    low = np.clip(low + rng.normal(0, 5, low.shape), 0, 255).astype(np.uint8)
    runs: dict[str, Enlarger] = {}
    real = load_weights_file(real_weights) if real_weights else None
    if real is None and 4 in shipped_scales("real"):
        real = load_model("real", 4)
    if real is not None:
        runs["real (auto, as superres upscale runs it)"] = Upscaler(real).upscale
        runs["real (fp32, PyTorch)"] = Upscaler(real, precision="fp32", backend="pytorch").upscale
        if ensemble > 1:
            runs[f"real (auto, self-ensemble x{ensemble})"] = Upscaler(
                real, ensemble=ensemble
            ).upscale
    if peer is not None:
        runs[PEER] = peer
    for enlarge in runs.values():
        enlarge(low)  # warm-up, all before any timing
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so both see the same machine state
        for name, enlarge in runs.items():
            times[name].append(median_seconds(lambda e=enlarge: e(low), 1, warmup=0))
    return [
        {"method": name, "seconds": round(float(np.median(values)), 4), "runs": len(values)}
        for name, values in times.items()
    ]


def figures(
    methods: dict[str, Enlarger],
    scale: int,
    prefix: str = "realworld",
    images: list[tuple[str, str]] = FIGURES,
    tracks: tuple[str, ...] = FIGURE_TRACKS,
) -> list[str]:
    """One figure per image and track, written as RESULTS/PREFIX-xSCALE-IMAGE-TRACK.png."""
    written = []
    for dataset, image_name in images:
        path = SHARED / "datasets" / dataset / image_name
        references = dict(load_references(path.parent))
        for track in tracks:
            high, low = low_resolution_pair(references[image_name], scale, track, image_name)
            outputs = [
                MethodOutput(name, out := enlarge(low), score(high, out, "standard", scale))
                for name, enlarge in methods.items()
            ]
            title = f"{dataset} {image_name}, x{scale}, input: {TRACKS[track].description}"
            file_name = f"{prefix}-x{scale}-{Path(image_name).stem}-{track}.png"
            save_figure(
                comparison_figure(title, high, low, outputs, detail_box(high)), RESULTS / file_name
            )
            written.append(file_name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="4,2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--real-weights", type=Path, help="Score a run's weights, not shipped.")
    parser.add_argument("--ensemble", type=int, default=1, help="Also real as a self-ensemble.")
    args = parser.parse_args()
    torch.set_num_threads(2)
    peer = ncnn_peer()
    datasets = {name: load_references(SHARED / "datasets" / name) for name in ("Set5", "Set14")}
    rows = []
    figure_files: list[str] = []
    for scale in [int(s) for s in args.scales.split(",")]:
        methods = methods_for(scale, args.real_weights, peer, args.ensemble)
        for name, enlarge in methods.items():
            for track in TRACKS:
                row: dict[str, Any] = {"method": name, "scale": scale, "input": track}
                for dataset, references in datasets.items():
                    result = evaluate(enlarge, references, scale, name, dataset, degradation=track)
                    row[f"{dataset}_psnr"] = round(result.psnr, 4)
                    row[f"{dataset}_ssim"] = round(result.ssim, 5)
                rows.append(row)
                print(row, flush=True)
        if scale == 4:  # the self-ensemble's difference is not one to see
            shown = {name: f for name, f in methods.items() if "self-ensemble" not in name}
            figure_files = figures(shown, scale)
    timings = speed(args.real_weights, peer, args.repeats, args.ensemble)
    command = "python benchmarks/realworld.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    payload = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": command,
        "threads": 2,
        "cpu_features": cpu_features(),
        "protocol": "standard: Y of BT.601 YCbCr, border = scale shaved, Gaussian SSIM",
        "tracks": {name: t.description for name, t in TRACKS.items()},
        "scores": rows,
        "speed_320x240_to_1280x960": timings,
        "figures": figure_files,
    }
    write_json(RESULTS / "realworld.json", payload)
    write_text_atomic(RESULTS / "realworld.md", markdown(payload))
    print(markdown(payload))


def markdown(payload: dict) -> str:
    rows = payload["scores"]
    table = markdown_table(
        ["method", "scale", "input", "Set5 PSNR / SSIM", "Set14 PSNR / SSIM"],
        [
            [
                r["method"],
                f"x{r['scale']}",
                r["input"],
                f"{r['Set5_psnr']:.2f} / {r['Set5_ssim']:.4f}",
                f"{r['Set14_psnr']:.2f} / {r['Set14_ssim']:.4f}",
            ]
            for r in rows
        ],
    )
    timing = markdown_table(
        ["method", "seconds (median)", "runs"],
        [
            [t["method"], f"{t['seconds']:.3f}", str(t["runs"])]
            for t in payload["speed_320x240_to_1280x960"]
        ],
    )
    tracks = "\n".join(f"- `{k}`: {v}" for k, v in payload["tracks"].items())
    pictures = "\n".join(f"![{f}]({f})" for f in payload["figures"])
    return (
        f"# Real-world inputs ({payload['date']})\n\n"
        f"Made by `{payload['command']}` on this machine ({payload['threads']} threads; CPU "
        f"features: {', '.join(payload['cpu_features']) or 'none'}).\n"
        f"Protocol: {payload['protocol']}. Input tracks:\n\n{tracks}\n\n{table}\n"
        "## Speed: 320x240 -> 1280x960 (x4), timed side by side in one process\n\n"
        f"{timing}\n## Figures\n\n{pictures}\n"
    )


if __name__ == "__main__":
    main()
