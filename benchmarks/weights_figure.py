"""Figures of a run's `real` weights beside bicubic, the shipped `real` and the Real-ESRGAN
peer, on fixed degraded inputs: for judging a fine-tune by eye (an adversarial one above all,
whose PSNR says little), without re-running the whole real-world benchmark.
Writes docs/results/NAME-xSCALE-IMAGE-TRACK.png.

    .venv/bin/python benchmarks/weights_figure.py runs/real16-x4-gan/model.safetensors \\
        --name real-gan-attempt --label "real GAN fine-tune" --image Set14/comic.bmp \\
        --track noise10-jpeg70
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from realworld import PEER, figures, ncnn_peer

from superres.engine.evaluation import bicubic_enlarger
from superres.engine.inference import Upscaler
from superres.models import load_model, load_weights_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--name", required=True, help="File name prefix under docs/results.")
    parser.add_argument("--label", required=True, help="The weights' name in the figure.")
    parser.add_argument("--image", action="append", required=True, help="DATASET/FILE")
    parser.add_argument("--track", action="append", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tried = load_weights_file(args.weights)
    scale = tried.scale

    def fp32(model):  # scores must not depend on the machine's measured runtime
        return Upscaler(model, tile=1024, precision="fp32", backend="pytorch").upscale

    methods = {
        "bicubic": bicubic_enlarger(scale),
        "real (shipped)": fp32(load_model("real", scale)),
        args.label: fp32(tried),
    }
    peer = ncnn_peer()
    if peer is not None and scale == 4:
        methods[PEER] = peer
    images = [tuple(image.split("/", 1)) for image in args.image]
    for written in figures(methods, scale, args.name, images, tuple(args.track)):
        print(written)


if __name__ == "__main__":
    main()
