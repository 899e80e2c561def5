"""Upscale many files safely: mirrored output tree, atomic writes, resumable, inputs untouchable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from superres.engine.inference import Progress, Upscaler
from superres.engine.video import upscale_animation, upscale_video
from superres.errors import ImageWriteError
from superres.imageio.animation import ANIMATION_EXTENSIONS, is_animation
from superres.imageio.files import (
    IMAGE_EXTENSIONS,
    find_images,
    output_path_for,
    read_image,
    write_image,
)
from superres.imageio.video import DEFAULT_OPTIONS, VIDEO_EXTENSIONS, VideoOptions

# What a folder is searched for: still images, animations and videos.
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | ANIMATION_EXTENSIONS | VIDEO_EXTENSIONS


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class FileSummary:
    """What one file became: frames written (1 for a still image), output size (width,
    height), and the remarks worth a line (a stream the output container cannot hold)."""

    frames: int
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def plan_jobs(
    inputs: Iterable[Path], output: Path, fmt: str | None = None
) -> tuple[list[Job], list[Path]]:
    """Where each input goes; returns (jobs, missing inputs).

    One input file with an image-named OUTPUT writes exactly that file (a ``fmt`` naming
    another format is refused, not silently ignored); otherwise OUTPUT is a folder mirroring
    the inputs' tree. Images inside an OUTPUT that lies within an input folder are results
    of an earlier run: enlarging them again would nest copies on every resumed run.
    """
    inputs = list(inputs)
    files, missing = find_images(inputs, MEDIA_EXTENSIONS)
    single = len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in MEDIA_EXTENSIONS
    if single and files:
        image_name = output.suffix.lower() in IMAGE_EXTENSIONS
        named = output_path_for(output, output.suffix) if image_name else output  # .jpeg = .jpg
        if fmt is not None and output_path_for(output, fmt) != named:
            raise ImageWriteError(f"{output}: --format {fmt} contradicts this file name")
        return [Job(files[0][0], output)], missing
    folders = {item.resolve() for item in inputs if item.is_dir()}
    results = output.resolve()
    if results not in folders and any(results.is_relative_to(folder) for folder in folders):
        files = [(path, rel) for path, rel in files if not path.resolve().is_relative_to(results)]
    jobs = [  # --format is for images: a video keeps its container
        Job(path, output_path_for(output / relative, None if is_video(path) else fmt))
        for path, relative in files
    ]
    return jobs, missing


def check_target(
    job: Job, protected: set[Path], overwrite: bool, claimed: dict[Path, Path]
) -> bool:
    """False when the output exists and may be kept; refuses outright to replace any input.

    ``claimed`` (target -> source, filled here) catches two inputs bound for one output, such
    as same-named files from two folders: the first keeps it, the second is an error rather
    than a silent "skip" or a replacement of the first one's result.
    """
    if job.target.resolve() in protected:
        raise ImageWriteError(f"{job.target}: refusing to overwrite an input file")
    first = claimed.setdefault(job.target.resolve(), job.source)
    if first != job.source:
        raise ImageWriteError(f"{job.source}: not written: {job.target} is {first}'s output")
    return overwrite or not job.target.exists()


def upscale_file(
    upscaler: Upscaler,
    job: Job,
    outscale: float | None = None,
    quality: int = 95,
    progress: Progress | None = None,
    video: VideoOptions = DEFAULT_OPTIONS,
) -> FileSummary:
    """Read, enlarge and atomically write one image (metadata carried), animation or video
    (``progress`` then counts frames)."""
    if is_video(job.source):
        summary = upscale_video(upscaler, job.source, job.target, outscale, video, progress)
        return FileSummary(summary.frames, summary.size, summary.notes)
    if is_animation(job.source):
        summary = upscale_animation(upscaler, job.source, job.target, outscale, quality, progress)
        return FileSummary(summary.frames, summary.size)
    image = read_image(job.source)
    result = upscaler.upscale(image.pixels, outscale, progress)
    write_image(job.target, result, icc_profile=image.icc_profile, exif=image.exif, quality=quality)
    return FileSummary(1, (result.shape[1], result.shape[0]))


def protected_paths(jobs: Iterable[Job]) -> set[Path]:
    return {job.source.resolve() for job in jobs}
