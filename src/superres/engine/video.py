"""Every frame of a video or an animated image through one :class:`Upscaler`.

The output is written to a hidden temporary beside it and renamed only once complete, so an
interrupted run never leaves a half-written file under the final name: running it again
starts that file afresh (and a batch skips the files already done).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from superres.atomic import replacing
from superres.engine.inference import Progress, Upscaler
from superres.errors import naming
from superres.imageio.animation import (
    ANIMATION_SUFFIXES,
    Animation,
    animation_format,
    open_animation,
    write_animation,
)
from superres.imageio.files import write_image
from superres.imageio.video import (
    DEFAULT_OPTIONS,
    NO_LIMITS,
    VideoLimits,
    VideoOptions,
    VideoSummary,
    container_for,
    transcode,
)


@dataclass(frozen=True)
class AnimationSummary:
    """What was written: the frame count and the first frame's size."""

    frames: int
    size: tuple[int, int]  # width, height


def _enlarger(
    upscaler: Upscaler, outscale: float | None, source: Path
) -> Callable[[np.ndarray], np.ndarray]:
    """``upscaler`` for one frame of ``source``, whose refusals (too large...) name the file."""

    def enlarge(pixels: np.ndarray) -> np.ndarray:
        with naming(source):
            return upscaler.upscale(pixels, outscale)

    return enlarge


def upscale_video(
    upscaler: Upscaler,
    source: Path,
    target: Path,
    outscale: float | None = None,
    options: VideoOptions = DEFAULT_OPTIONS,
    progress: Progress | None = None,
    limits: VideoLimits = NO_LIMITS,
) -> VideoSummary:
    """Enlarge every frame of ``source`` into ``target`` (its extension names the container);
    audio, subtitles and other streams are copied, timestamps kept."""
    container = container_for(target)
    with replacing(target) as temporary:
        return transcode(
            source,
            temporary,
            container,
            _enlarger(upscaler, outscale, source),
            name=str(source),
            target=target,
            options=options,
            limits=limits,
            progress=progress,
        )


def upscale_animation(
    upscaler: Upscaler,
    source: Path,
    target: Path,
    outscale: float | None = None,
    quality: int = 95,
    progress: Progress | None = None,
) -> AnimationSummary:
    """Enlarge every frame or page of ``source`` into ``target`` (GIF, WebP, APNG or TIFF),
    keeping frame durations, loop count and transparency. A still GIF may become any image."""
    enlarge = _enlarger(upscaler, outscale, source)
    with open_animation(source) as (animation, frames):
        if animation.frames == 1 and target.suffix.lower() not in ANIMATION_SUFFIXES:
            result = enlarge(next(frames))
            write_image(target, result, icc_profile=animation.icc_profile, quality=quality)
            return AnimationSummary(1, (result.shape[1], result.shape[0]))
        fmt = animation_format(target, animation.frames)
        with replacing(target) as temporary:
            size = enlarge_animation(
                enlarge, animation, frames, temporary, fmt, quality, progress, target
            )
    return AnimationSummary(animation.frames, size)


def enlarge_animation(
    enlarge: Callable[[np.ndarray], np.ndarray],
    animation: Animation,
    frames: Iterator[np.ndarray],
    output: Path | BinaryIO,
    fmt: str,
    quality: int = 95,
    progress: Progress | None = None,
    target: Path | None = None,
) -> tuple[int, int]:
    """Write the opened ``animation``'s ``frames``, each enlarged, as Pillow's ``fmt`` to a
    file or to memory (a server's); returns the first frame's size. ``target`` names the
    output in errors."""

    def enlarged() -> Iterator[np.ndarray]:
        for done, pixels in enumerate(frames, start=1):
            yield enlarge(pixels)
            if progress:
                progress(done, animation.frames)

    return write_animation(output, fmt, animation, enlarged(), quality=quality, target=target)
