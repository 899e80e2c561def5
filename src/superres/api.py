"""The Python API: ``superres.upscale`` and ``superres.load_model`` on arrays or PIL images,
``superres.upscale_file`` on image, animation and video files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

import numpy as np
from PIL import Image

from superres.engine.batch import FileSummary, Job, beside, default_suffix
from superres.engine.batch import upscale_file as enlarge_file
from superres.engine.inference import MAX_OUTPUT_PIXELS, Progress, Upscaler, check_outscale
from superres.engine.runtime import AUTO
from superres.errors import ImageWriteError, SuperresError
from superres.imageio.files import pixels_from_pil
from superres.imageio.video import VideoCodec, VideoOptions
from superres.models import load_model
from superres.models.registry import AUTO_MODEL

ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image)


@lru_cache(maxsize=32)  # above the shipped set (models x scales in use)
def get_upscaler(
    model: str | Path,
    scale: int | None,
    tile: int | str | None = AUTO,
    device: str = AUTO,
    precision: str = AUTO,
    backend: str = AUTO,
    denoise: float | None = None,
    max_output_pixels: int | None = MAX_OUTPUT_PIXELS,
    ensemble: int = 1,
) -> Upscaler:
    """A cached :class:`Upscaler`, so repeated calls do not reload weights."""
    loaded = load_model(model, scale)
    return Upscaler(
        loaded,
        tile=tile,
        device=device,
        precision=precision,
        backend=backend,
        denoise=denoise,
        max_output_pixels=max_output_pixels,
        ensemble=ensemble,
    )


class ModelOptions(TypedDict, total=False):
    """How :func:`upscale` and :func:`upscale_file` enlarge, all optional.

    ``model``: a shipped name; ``auto`` (the default) is ``real`` where it is shipped for the
    scale (photos: JPEG, noise, blur), ``default`` elsewhere; or a weights file's path: one
    ``superres train`` wrote, or another project's (``superres[community]``); ``scale``: 2, 3
    or 4 (4; a file's own scale, which is the only one it takes);
    ``outscale``: resample the model's result to exactly this factor of the input size;
    ``tile``, ``precision``, ``backend``: ``auto`` (the default) picks the ones measured
    fastest for the model (bf16 only where it costs under 0.05 dB; see
    :mod:`superres.engine.runtime`); ``device``: auto (CUDA, then MPS, then the CPU), cpu,
    cuda, cuda:N or mps; ``denoise`` in [0, 1] blends ``real``'s two weight sets: 0 keeps the
    input's texture and noise, 1 (its default) cleans them; other models refuse it;
    ``max_output_pixels``: a larger result is refused before any work (256,000,000; None: no
    limit); ``ensemble``: 2, 4 or 8 averages the model over that many flips and transposes of
    the input (self-ensemble: that many times the time, up to about 0.1 dB; 1, the
    default: none).
    """

    model: str | Path
    scale: int | None
    outscale: float | None
    tile: int | str | None
    device: str
    precision: str
    backend: str
    denoise: float | None
    max_output_pixels: int | None
    ensemble: int


def _upscaler_for(options: ModelOptions) -> tuple[Upscaler, float | None]:
    unknown = sorted(set(options) - set(ModelOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"unknown option {unknown[0]!r}; known: {', '.join(ModelOptions.__annotations__)}"
        )
    outscale = options.get("outscale")
    check_outscale(outscale)  # before loading a model
    upscaler = get_upscaler(
        options.get("model", AUTO_MODEL),
        options.get("scale"),
        options.get("tile", AUTO),
        options.get("device", AUTO),
        options.get("precision", AUTO),
        options.get("backend", AUTO),
        options.get("denoise"),
        options.get("max_output_pixels", MAX_OUTPUT_PIXELS),
        options.get("ensemble", 1),
    )
    return upscaler, outscale


def upscale(image: ImageLike, **options: Unpack[ModelOptions]) -> ImageLike:
    """Enlarge ``image`` with a shipped model (:class:`ModelOptions` say how); returns the same
    type, mode and bit depth."""
    upscaler, outscale = _upscaler_for(options)
    if isinstance(image, Image.Image):
        result = upscaler.upscale(pixels_from_pil(image), outscale)
        return Image.fromarray(result)
    if not isinstance(image, np.ndarray):
        raise SuperresError(f"expected a numpy array or a PIL image, got {type(image).__name__}")
    return upscaler.upscale(image, outscale)


def upscale_file(
    source: str | Path,
    target: str | Path | None = None,
    quality: int = 95,
    video_codec: VideoCodec | None = None,
    crf: int | None = None,
    progress: Progress | None = None,
    **options: Unpack[ModelOptions],
) -> FileSummary:
    """Enlarge the image, animation or video file ``source`` into ``target``, whose extension
    names the format or container (default: beside ``source`` as ``NAME_x4.EXT``, x4 being the
    scale or outscale); :class:`ModelOptions` say how to enlarge.

    Images (PNG, JPEG, WebP, TIFF, BMP, AVIF; HEIC and JPEG XL with ``pip install
    'superres[formats]'``) keep their EXIF and ICC profile; the summary's ``notes`` say what a
    format could not keep (e.g. 16 bits in AVIF) or what was left (a HEIC burst's other
    images). Animations (GIF, animated WebP, APNG, multi-page
    TIFF) keep frame durations, loop count and transparency. Videos (``pip install
    'superres[video]'``) keep every stream and timestamp: audio and subtitles are copied,
    ``video_codec`` (h264, h265, vp9, av1; default h264, vp9 in WebM) and ``crf`` choose the
    encoding. ``quality`` is JPEG's, WebP's, AVIF's, HEIC's and JPEG XL's; ``progress(done,
    total)`` counts tiles or frames. ``target`` appears only once complete; an input is never
    overwritten.
    """
    source = Path(source)
    if target is not None and Path(target).resolve() == source.resolve():
        raise ImageWriteError(f"{target}: refusing to overwrite an input file")
    upscaler, outscale = _upscaler_for(options)
    if target is None:
        target = beside(source, default_suffix(upscaler.scale, outscale))
    return enlarge_file(
        upscaler,
        Job(source, Path(target)),
        outscale,
        quality,
        progress,
        VideoOptions(video_codec, crf),
    )
