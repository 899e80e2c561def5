"""Score methods on reference images the standard way: modcrop, LR by MATLAB bicubic, Y PSNR/SSIM.

A "method" is bicubic or any registered model; bicubic goes through the same
pipeline so the baseline and the models are measured identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superres.engine.inference import Upscaler, check_ensemble
from superres.engine.runtime import DEFAULT_TILE, WHOLE_IMAGE
from superres.errors import ModelError
from superres.imageio.files import find_images, load_pixels
from superres.models import load_model, resolve_name
from superres.models.files import is_model_path
from superres.models.registry import LoadedModel, shipped_scales
from superres.quality.degrade import downscale, modcrop, resize
from superres.quality.metrics import Protocol, Scores, score
from superres.quality.realistic import TRACKS, track

Enlarger = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ImageScore:
    image: str
    scores: Scores


@dataclass(frozen=True)
class EvaluationResult:
    method: str
    dataset: str
    scale: int
    images: list[ImageScore]
    degradation: str = "clean"  # the track (or resize method) the LR inputs were made with

    @property
    def psnr(self) -> float:
        return float(np.mean([i.scores.psnr for i in self.images]))

    @property
    def ssim(self) -> float:
        return float(np.mean([i.scores.ssim for i in self.images]))

    @property
    def mse(self) -> float:
        return float(np.mean([i.scores.mse for i in self.images]))


def bicubic_enlarger(scale: int) -> Enlarger:
    return lambda low: resize(low, (low.shape[0] * scale, low.shape[1] * scale), "matlab-bicubic")


def enlarger_for(
    method: str, scale: int, backend: str = "pytorch", precision: str = "fp32", device: str = "cpu"
) -> Enlarger:
    """``bicubic``, a model name or a model file -> a function from LR pixels to SR pixels."""
    if method == "bicubic":
        return bicubic_enlarger(scale)
    return model_enlarger(load_model(method, scale), backend, precision, device)


def model_enlarger(
    model: LoadedModel,
    backend: str = "pytorch",
    precision: str = "fp32",
    device: str = "cpu",
    denoise: float | None = None,
    ensemble: int = 1,
) -> Enlarger:
    """Fixed settings rather than the machine's measured ``auto`` ones, so that scores are
    reproducible anywhere; models that should not be tiled run on whole images. ``denoise``
    is the strength for a model with that control (an error for one without); ``ensemble``
    the self-ensemble's size."""
    tile = DEFAULT_TILE if model.contract.tileable else WHOLE_IMAGE
    return Upscaler(
        model,
        tile=tile,
        device=device,
        precision=precision,
        backend=backend,
        denoise=denoise,
        ensemble=ensemble,
    ).upscale


def low_resolution_pair(
    reference: np.ndarray, scale: int, degradation: str = "clean", key: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """(cropped reference, its LR image): the reference cropped to a multiple of ``scale``.

    ``degradation`` is a resize method or a named real-world track (``jpeg50``, ...), whose
    noise is seeded by ``key`` (the image's name) so every method gets the same input.
    """
    high = modcrop(reference, scale)
    if degradation in TRACKS:
        return high, TRACKS[degradation].apply(high, scale, key)
    return high, downscale(high, scale, degradation)  # type: ignore[arg-type]


def evaluate(
    enlarge: Enlarger,
    references: Sequence[tuple[str, np.ndarray]],
    scale: int,
    method: str = "model",
    dataset: str = "",
    protocol: Protocol = "standard",
    degradation: str = "clean",
) -> EvaluationResult:
    """Score ``enlarge`` on every reference; the border shaved is ``scale`` (standard protocol)."""
    results = []
    for name, reference in references:
        high, low = low_resolution_pair(reference, scale, degradation, name)
        border = scale if protocol == "standard" else 0
        results.append(ImageScore(name, score(high, enlarge(low), protocol, border)))
    return EvaluationResult(method, dataset, scale, results, degradation)


def load_references(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every image in ``folder`` (recursively) as (relative name, pixels)."""
    files, _missing = find_images([folder])
    return [(str(relative), load_pixels(path)) for path, relative in files]


# Published (PSNR, SSIM) on the standard protocol; None where a paper gives no SSIM.
# Bicubic: the figures every SR paper tabulates; SRCNN 9-5-5: Dong et al. TPAMI 2015;
# FSRCNN: Dong, Loy and Tang, ECCV 2016 (Set5 x3 only).
PUBLISHED: dict[tuple[str, str, int], tuple[float, float | None]] = {
    ("bicubic", "Set5", 2): (33.66, 0.9299),
    ("bicubic", "Set5", 3): (30.39, 0.8682),
    ("bicubic", "Set5", 4): (28.42, 0.8104),
    ("bicubic", "Set14", 2): (30.24, 0.8688),
    ("bicubic", "Set14", 3): (27.55, 0.7742),
    ("bicubic", "Set14", 4): (26.00, 0.7027),
    ("srcnn-955", "Set5", 2): (36.66, None),
    ("srcnn-955", "Set5", 3): (32.75, None),
    ("srcnn-955", "Set5", 4): (30.48, None),
    ("srcnn-955", "Set14", 2): (32.45, None),
    ("srcnn-955", "Set14", 3): (29.30, None),
    ("srcnn-955", "Set14", 4): (27.50, None),
    ("fsrcnn", "Set5", 3): (33.18, None),
}


def canonical_method(method: str) -> str:
    """bicubic, a model's canonical name, or a model file's path as given."""
    return method if method == "bicubic" or is_model_path(method) else resolve_name(method)


def unshipped_cells(methods: Sequence[str], scales: Sequence[int]) -> list[tuple[str, int]]:
    """(model, scale) pairs a benchmark passes over: a named model shipped at some of the
    scales asked for but not at this one (``large``, x4 only, in ``--models default,large
    --scales 2,3,4``). A model shipped at none of them stays in, to fail naming its scales."""
    passed_over = []
    for method in methods:
        if method == "bicubic" or is_model_path(method):
            continue
        offered = shipped_scales(method)
        if set(offered) & set(scales):
            passed_over += [(method, scale) for scale in scales if scale not in offered]
    return passed_over


def benchmark(
    methods: Sequence[str],
    scales: Sequence[int],
    datasets: Sequence[Path],
    backend: str = "pytorch",
    precision: str = "fp32",
    tracks: Sequence[str] = ("clean",),
    device: str = "cpu",
    denoise: float | None = None,
    ensemble: int = 1,
) -> list[EvaluationResult]:
    """Every method at every scale on every dataset and input track (standard protocol).

    ``denoise`` runs the models that have that control at that strength (their rows are
    labelled with it) and the others as they are; it is an error if no model has it.
    ``ensemble`` runs every model as a self-ensemble of that size (labelled so; bicubic
    gains nothing from one)."""
    check_ensemble(ensemble)
    for name in tracks:
        track(name)  # unknown names fail before any work
    passed_over = set(unshipped_cells(methods, scales))
    cells = [
        (canonical_method(method), scale)
        for method in methods
        for scale in scales
        if (method, scale) not in passed_over
    ]
    models = {cell: None if cell[0] == "bicubic" else load_model(*cell) for cell in cells}
    controlled = {cell for cell, model in models.items() if model and model.keep_texture}
    if denoise is not None and not controlled:
        raise ModelError(f"denoise {denoise:g}: none of {', '.join(methods)} has that control")
    loaded = [(folder.name, load_references(folder)) for folder in datasets]
    results = []
    for (method, scale), model in models.items():
        label, enlarge = method, bicubic_enlarger(scale)
        if model is not None:
            strength = denoise if (method, scale) in controlled else None
            notes = [f"denoise {strength:g}"] if strength is not None else []
            notes += [f"self-ensemble x{ensemble}"] if ensemble > 1 else []
            label = f"{method} ({', '.join(notes)})" if notes else method
            enlarge = model_enlarger(model, backend, precision, device, strength, ensemble)
        for name, references in loaded:
            results += [
                evaluate(enlarge, references, scale, label, name, degradation=degradation)
                for degradation in tracks
            ]
    return results


@dataclass(frozen=True)
class MethodOutput:
    method: str
    image: np.ndarray
    scores: Scores
