"""The ``superres report`` pipeline: degrade, enlarge, score and time every method, then write
the outputs, figures, ``report.json`` and one self-contained ``index.html``.

The page inlines every image as a data URI and carries its few lines of CSS and JS, so it
can be mailed or archived as one file and opens offline without fetching anything.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superres.apps.report.figures import (
    Box,
    comparison_figure,
    detail_box,
    save_figure,
    speed_quality_figure,
    training_curves_figure,
)
from superres.apps.report.tables import format_number, write_json, write_text_atomic
from superres.engine.evaluation import (
    Enlarger,
    EvaluationResult,
    ImageScore,
    MethodOutput,
    canonical_method,
    enlarger_for,
    low_resolution_pair,
)
from superres.errors import SuperresError
from superres.imageio.files import write_image
from superres.models.files import is_model_path, model_labels
from superres.quality.metrics import score
from superres.quality.realistic import TRACKS
from superres.timing import median_seconds

BASELINE = "bicubic"
# --degrade choice -> how the LR input is made: the papers' way, the SRCNN tutorial's, or one of
# the fixed real-world tracks (a photo's JPEG, noise and blur, the same for every method).
DEGRADATIONS: dict[str, str] = {
    "standard": "matlab-bicubic",
    "bilinear": "bilinear",
    **{name: name for name in TRACKS if name != "clean"},
}


def describe_input(degradation: str) -> str:
    """How the report's LR inputs were made, in words for titles."""
    made = DEGRADATIONS[degradation]
    return TRACKS[made].description if made in TRACKS else f"LR by {made}"


TIMED_RUNS = 3
SUMMARY_COLUMNS = ["method", "PSNR dB", "SSIM", "MSE", "seconds", "MP/s"]


@dataclass(frozen=True)
class ImageReport:
    name: str
    outputs: list[MethodOutput]
    box: Box
    figure: Path
    images: dict[str, Path]  # method -> its output as written


@dataclass(frozen=True)
class MethodSummary:
    """Mean scores over the report's images, and the speed measured in the same run."""

    result: EvaluationResult
    seconds: float  # median time to enlarge all of the report's inputs once
    megapixels_per_second: float


@dataclass(frozen=True)
class Report:
    folder: Path
    scale: int
    degradation: str
    images: list[ImageReport]
    methods: list[MethodSummary]
    plots: dict[str, Path]  # title -> PNG (quality versus speed, training curves)

    @property
    def page(self) -> Path:
        return self.folder / "index.html"


def method_enlargers(methods: Sequence[str], scale: int) -> dict[str, Enlarger]:
    """Enlargers by the names given, with bicubic first: it is every report's baseline. Model
    files go by a short label (their outputs are written to ``images/LABEL/``)."""
    names = [BASELINE, *(m for m in methods if m != BASELINE)]
    files = [name for name in names if is_model_path(name)]
    shipped = set(names) - set(files)
    labels = dict(zip(files, model_labels([Path(f) for f in files], shipped), strict=True))
    return {labels.get(name, name): enlarger_for(canonical_method(name), scale) for name in names}


def timed_outputs(enlarge: Enlarger, lows: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Every input enlarged, and the median seconds of TIMED_RUNS more passes.

    The first pass makes the outputs and doubles as the warm-up (allocations, thread pools),
    so it is not timed.
    """
    outputs = [enlarge(low) for low in lows]
    return outputs, median_seconds(lambda: [enlarge(low) for low in lows], TIMED_RUNS, warmup=0)


def _output_name(name: str) -> Path:
    return Path(name).with_suffix(".png")


def _run_methods(
    enlargers: Mapping[str, Enlarger],
    references: Sequence[tuple[str, np.ndarray]],
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: int,
) -> tuple[list[list[MethodOutput]], list[MethodSummary]]:
    """Each image's outputs (one per method, in order) and each method's means and speed."""
    per_image: list[list[MethodOutput]] = [[] for _ in references]
    summaries = []
    for method, enlarge in enlargers.items():
        images, seconds = timed_outputs(enlarge, [low for _, low in pairs])
        scored = []
        for (name, _), (high, _), image, outputs in zip(
            references, pairs, images, per_image, strict=True
        ):
            outputs.append(MethodOutput(method, image, score(high, image, "standard", scale)))
            scored.append(ImageScore(name, outputs[-1].scores))
        megapixels = sum(image.shape[0] * image.shape[1] for image in images) / 1e6
        result = EvaluationResult(method, "report", scale, scored)
        summaries.append(MethodSummary(result, seconds, megapixels / seconds))
    return per_image, summaries


def _write_image_report(
    folder: Path,
    name: str,
    high: np.ndarray,
    low: np.ndarray,
    outputs: list[MethodOutput],
    title: str,
) -> ImageReport:
    """One reference's comparison figure and method outputs, written under ``folder``."""
    box = detail_box(high)
    file_name = _output_name(name)
    figure = save_figure(
        comparison_figure(title, high, low, outputs, box), folder / "figures" / file_name
    )
    written = {
        o.method: write_image(folder / "images" / o.method / file_name, o.image) for o in outputs
    }
    return ImageReport(name, outputs, box, figure, written)


def build_report(
    references: Sequence[tuple[str, np.ndarray]],
    scale: int,
    enlargers: Mapping[str, Enlarger],
    folder: Path,
    degradation: str = "standard",
    runs: Sequence[Path] = (),
) -> Report:
    """Score and time each method on each reference and write the whole report to ``folder``.

    ``enlargers`` maps method names to LR -> SR functions (see :func:`method_enlargers`), so
    any callable can be reported, trained or not. Scores are
    :func:`superres.quality.metrics.score`'s standard protocol with a ``scale`` border, as
    ``superres compare`` computes them on the written ``images/METHOD/NAME.png`` files.
    """
    if degradation not in DEGRADATIONS:
        raise SuperresError(
            f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}"
        )
    if not references:
        raise SuperresError("no reference images to report on")
    names = {_output_name(name) for name, _ in references}
    if len(names) < len(references):
        raise SuperresError("two reference images would share an output name; rename one")
    curves = training_curves_figure(runs) if runs else None  # a bad run fails before the work
    lr_method = DEGRADATIONS[degradation]
    pairs = [low_resolution_pair(ref, scale, lr_method, name) for name, ref in references]
    per_image, methods = _run_methods(enlargers, references, pairs, scale)
    images = [
        _write_image_report(
            folder,
            name,
            high,
            low,
            outputs,
            f"{name}: x{scale}, {describe_input(degradation)}, scores on Y, {scale}-px border",
        )
        for (name, _), (high, low), outputs in zip(references, pairs, per_image, strict=True)
    ]
    speed = speed_quality_figure(
        [(m.result.method, m.megapixels_per_second, m.result.psnr) for m in methods],
        f"x{scale}, {len(references)} image(s), measured on this machine",
    )
    plots = {"Quality versus speed": save_figure(speed, folder / "quality-speed.png")}
    if curves is not None:
        plots["Training curves"] = save_figure(curves, folder / "training-curves.png")
    report = Report(folder, scale, degradation, images, methods, plots)
    write_json(folder / "report.json", report_payload(report))
    write_text_atomic(report.page, render_page(report))
    return report


def report_payload(report: Report) -> dict:
    """Every number the figures and the page show, unrounded."""
    return {
        "scale": report.scale,
        "degradation": report.degradation,
        "protocol": "standard",
        "border": report.scale,
        "methods": [
            {
                "method": m.result.method,
                "psnr": m.result.psnr,
                "ssim": m.result.ssim,
                "mse": m.result.mse,
                "seconds": m.seconds,
                "megapixels_per_second": m.megapixels_per_second,
            }
            for m in report.methods
        ],
        "images": [
            {
                "image": image.name,
                "crop": vars(image.box),
                "scores": {o.method: o.scores.as_dict() for o in image.outputs},
                "outputs": {
                    method: path.relative_to(report.folder).as_posix()
                    for method, path in image.images.items()
                },
            }
            for image in report.images
        ],
    }


def summary_rows(methods: Sequence[MethodSummary]) -> list[list[str]]:
    """The benchmark table's rows (SUMMARY_COLUMNS), for the page and the terminal alike."""
    return [
        [
            m.result.method,
            format_number(m.result.psnr, 2),
            format_number(m.result.ssim, 4),
            format_number(m.result.mse, 2),
            format_number(m.seconds, 3),
            format_number(m.megapixels_per_second, 2),
        ]
        for m in methods
    ]


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str, css_class: str = "") -> str:
    return f'<img class="{css_class}" src="{_data_uri(path)}" alt="{html.escape(alt)}">'


def _slider(image: ImageReport, before: str, after: str) -> str:
    """Before/after: drag anywhere on the image; left of the line is ``before``."""
    width = image.outputs[0].image.shape[1]
    zoom = 2 if width <= 480 else 1  # small outputs are shown at 2x with visible pixels
    return (
        f'<div class="slider{" pixelated" if zoom == 2 else ""}" style="width:{width * zoom}px">'
        f"{_image(image.images[before], before)}"
        f"{_image(image.images[after], after, 'after')}"
        '<div class="divider"></div>'
        f'<span class="tag left">{html.escape(before)}</span>'
        f'<span class="tag right">{html.escape(after)}</span>'
        f'<input type="range" min="0" max="100" value="50" step="0.5" '
        f'aria-label="{html.escape(before)} versus {html.escape(after)}">'
        "</div>"
    )


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 16px;
       color: #222; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 36px; border-top: 1px solid #ddd;
       padding-top: 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.slider { position: relative; max-width: 100%; user-select: none; --split: 50%; }
.slider img { display: block; width: 100%; }
.slider.pixelated img { image-rendering: pixelated; }
.slider img.after { position: absolute; top: 0; left: 0; clip-path: inset(0 0 0 var(--split)); }
.slider .divider { position: absolute; top: 0; bottom: 0; left: var(--split); width: 2px;
       margin-left: -1px; background: #fff; box-shadow: 0 0 3px #000; pointer-events: none; }
.slider .tag { position: absolute; top: 6px; padding: 1px 6px; background: rgba(0,0,0,.6);
       color: #fff; font-size: 13px; pointer-events: none; }
.slider .left { left: 6px; } .slider .right { right: 6px; }
.slider input { position: absolute; inset: 0; width: 100%; height: 100%; margin: 0; opacity: 0;
       cursor: ew-resize; }
"""

_SCRIPT = """
document.querySelectorAll('.slider input').forEach(function (range) {
  range.addEventListener('input', function () {
    range.parentElement.style.setProperty('--split', range.value + '%');
  });
});
"""


def render_page(report: Report) -> str:
    """index.html: benchmark table, plots, then each image's figure and before/after slider."""
    models = [m for m in report.methods if m.result.method != BASELINE]
    has_baseline = len(models) < len(report.methods)
    best = max(models, key=lambda m: m.result.psnr).result.method if models else None
    parts = [
        f"<h1>superres report: x{report.scale}, {html.escape(describe_input(report.degradation))}"
        "</h1>",
        f"<p>{len(report.images)} image(s). Scores: standard protocol (Y of BT.601, "
        f"{report.scale}-pixel border shaved), means over the images. Speed: median of "
        f"{TIMED_RUNS} timed passes over all inputs after a warm-up, on this machine.</p>",
        _html_table(SUMMARY_COLUMNS, summary_rows(report.methods)),
        '<div class="plots">',
        *(_image(path, title) for title, path in report.plots.items()),
        "</div>",
    ]
    for image in report.images:
        parts += [f"<h2>{html.escape(image.name)}</h2>", _image(image.figure, image.name)]
        if has_baseline and best is not None:
            parts += [
                f"<p>Drag across the image: {BASELINE} on the left, {html.escape(best)} "
                "(best mean PSNR) on the right.</p>",
                _slider(image, BASELINE, best),
            ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>superres report x{report.scale}</title>\n<style>{_STYLE}</style>\n</head>\n"
        "<body>\n" + "\n".join(parts) + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
