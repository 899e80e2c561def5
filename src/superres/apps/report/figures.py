"""Matplotlib figures: method comparisons with zoomed crops, quality versus speed, learning curves.

Figures are drawn on matplotlib's Agg canvas directly rather than through pyplot, so they
need no display, never switch the caller's backend (a notebook keeps its own), and no
global figure list grows with every report.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from superres.apps.report.tables import format_number
from superres.engine.evaluation import MethodOutput
from superres.errors import SuperresError
from superres.imageio.alpha import colour_of
from superres.imageio.color import as_rgb, luminance
from superres.imageio.files import write_image
from superres.quality.degrade import resize
from superres.quality.metrics import Scores, to_uint8
from superres.training.trainer import LOG

PANEL_INCHES = 2.6  # width of one image panel
DPI = 120
MIN_CROP = 16  # pixels: a smaller zoom shows too little to judge texture
HIGHLIGHT = "#ffcc00"  # the crop box and the crop frames, visible on most photos


@dataclass(frozen=True)
class Box:
    """A rectangle in pixels: where the zoomed crops come from."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.top : self.top + self.height, self.left : self.left + self.width]


def _window_means(values: np.ndarray, side: int) -> np.ndarray:
    """Mean of every side x side window; entry (y, x) is the window whose top-left is (y, x)."""
    integral = np.pad(values.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    sums = (
        integral[side:, side:]
        - integral[:-side, side:]
        - integral[side:, :-side]
        + integral[:-side, :-side]
    )
    return sums / (side * side)


def detail_box(image: np.ndarray, side: int | None = None) -> Box:
    """The square where the image has the most fine detail, to zoom on what SR changes.

    Detail is the variance of the Laplacian of the luma within the window: flat areas and
    smooth gradients score near zero, texture and sharp edges score high.
    """
    grey = luminance(as_rgb(to_uint8(image))).astype(np.float64)
    height, width = grey.shape
    if side is None:
        side = max(MIN_CROP, min(height, width) // 4)
    side = min(side, height, width)
    laplacian = cv2.Laplacian(grey, cv2.CV_64F)
    variance = _window_means(laplacian**2, side) - _window_means(laplacian, side) ** 2
    top, left = np.unravel_index(int(np.argmax(variance)), variance.shape)
    return Box(int(top), int(left), side, side)


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas with a layout engine that keeps labels from overlapping."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Render and write a PNG atomically (through :func:`superres.imageio.files.write_image`)."""
    canvas = figure.canvas
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]  # type: ignore[attr-defined]
    return write_image(path, np.ascontiguousarray(pixels))


def _show(ax: Axes, image: np.ndarray, interpolation: str) -> None:
    """Colour images as RGB, grey ones (with or without alpha) in grey; alpha is not shown."""
    pixels = colour_of(to_uint8(image))
    if pixels.ndim == 2:
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation=interpolation)
    else:
        ax.imshow(pixels, interpolation=interpolation)
    ax.set_xticks([])
    ax.set_yticks([])


def score_label(scores: Scores) -> str:
    return (
        f"PSNR {format_number(scores.psnr, 2)} dB\n"
        f"SSIM {format_number(scores.ssim, 4)}   MSE {format_number(scores.mse, 2)}"
    )


def comparison_figure(
    title: str, reference: np.ndarray, low: np.ndarray, outputs: Sequence[MethodOutput], box: Box
) -> Figure:
    """Original | input | each method, full views on top and the same zoomed crop below.

    The input is enlarged by nearest neighbour so every panel has the reference's size and
    the crop box falls on the same pixels everywhere.
    """
    height, width = reference.shape[:2]
    scale = height // low.shape[0]
    panels = [
        (f"Original\n{width}x{height} px", reference),
        (
            f"Input (LR x{scale}, nearest)\n{low.shape[1]}x{low.shape[0]} px",
            resize(low, (height, width), "nearest"),
        ),
        *((f"{output.method}\n{score_label(output.scores)}", output.image) for output in outputs),
    ]
    aspect = height / width
    figure = new_figure(len(panels) * PANEL_INCHES, PANEL_INCHES * (aspect + 1) + 0.9)
    figure.suptitle(title, fontsize=12, fontweight="bold")
    axes = figure.subplots(2, len(panels), squeeze=False, height_ratios=[aspect, 1])
    for (label, image), full, zoom in zip(panels, axes[0], axes[1], strict=True):
        _show(full, image, "antialiased")
        full.set_title(label, fontsize=9.5, loc="center")
        full.add_patch(
            Rectangle(
                (box.left - 0.5, box.top - 0.5),
                box.width,
                box.height,
                fill=False,
                edgecolor=HIGHLIGHT,
                linewidth=1.5,
            )
        )
        _show(zoom, box.crop(image), "nearest")
        for spine in zoom.spines.values():
            spine.set_edgecolor(HIGHLIGHT)
            spine.set_linewidth(2)
    axes[0, 0].set_ylabel("full image")
    axes[1, 0].set_ylabel(f"zoom: {box.width}x{box.height} px at x={box.left}, y={box.top}")
    return figure


def speed_quality_figure(points: Sequence[tuple[str, float, float]], subtitle: str) -> Figure:
    """Mean PSNR against output megapixels per second, one labelled point per method."""
    figure = new_figure(6.4, 4.4)
    ax = figure.subplots()
    for index, (method, speed, psnr) in enumerate(points):
        ax.scatter([speed], [psnr], s=50, zorder=3)
        # Alternate label sides so methods of similar speed and quality stay legible.
        ax.annotate(
            method,
            (speed, psnr),
            xytext=(7, 7 if index % 2 == 0 else -14),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_xscale("log")
    # Plain numbers at 1-2-5 steps: the default 10^n labels are unreadable over one decade.
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.25, y=0.2)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("speed: output megapixels per second (log scale)")
    ax.set_ylabel("mean PSNR (dB, Y channel)")
    ax.set_title(f"Quality versus speed\n{subtitle}", fontsize=11)
    return figure


def read_training_log(run_dir: Path) -> dict[str, np.ndarray]:
    """step, loss and val_psnr columns of RUN_DIR/log.csv; a missing validation is NaN."""
    path = run_dir / LOG
    if not path.is_file():
        raise SuperresError(f"{run_dir}: no {LOG} (is it a training run folder?)")
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {
            column: np.array([float(row[column] or math.nan) for row in rows])
            for column in ("step", "loss", "val_psnr")
        }
    except (KeyError, ValueError, csv.Error) as error:
        raise SuperresError(f"{path}: not a superres training log ({error})") from error


def training_curves_figure(run_dirs: Sequence[Path]) -> Figure:
    """Training loss and validation PSNR against step, one line per run, on one figure.

    Colours come from tab20 so a dozen runs stay distinguishable, and one shared legend sits
    beside the plots instead of over the curves.
    """
    logs = {run.resolve().name: read_training_log(run) for run in run_dirs}
    figure = new_figure(12, 4.2)
    loss_ax, psnr_ax = figure.subplots(1, 2)
    colours = matplotlib.colormaps["tab20"].colors
    for index, (name, log) in enumerate(logs.items()):
        colour = colours[index % len(colours)]
        loss_ax.plot(log["step"], log["loss"], marker=".", color=colour, label=name)
        psnr_ax.plot(log["step"], log["val_psnr"], marker=".", color=colour, label=name)
    for ax, label in ((loss_ax, "training loss"), (psnr_ax, "validation PSNR (dB)")):
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(label[0].upper() + label[1:])
        ax.grid(True, alpha=0.3)
    figure.legend(handles=loss_ax.get_lines(), loc="outside right center", fontsize=8)
    return figure
