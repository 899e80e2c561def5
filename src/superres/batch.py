"""Upscale many files safely: mirrored output tree, atomic writes, resumable, inputs untouchable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from superres.errors import ImageWriteError
from superres.inference import Progress, Upscaler
from superres.io import IMAGE_EXTENSIONS, find_images, output_path_for, read_image, write_image


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def plan_jobs(
    inputs: Iterable[Path], output: Path, fmt: str | None = None
) -> tuple[list[Job], list[Path]]:
    """Where each input goes; returns (jobs, missing inputs).

    One input file with an image-named OUTPUT writes exactly that file; otherwise
    OUTPUT is a folder mirroring the inputs' tree.
    """
    inputs = list(inputs)
    files, missing = find_images(inputs)
    single = len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in IMAGE_EXTENSIONS
    if single and files:
        return [Job(files[0][0], output)], missing
    return [Job(path, output_path_for(output / relative, fmt)) for path, relative in files], missing


def check_target(job: Job, protected: set[Path], overwrite: bool) -> bool:
    """False when the output exists and may be kept; refuses outright to replace any input."""
    if job.target.resolve() in protected:
        raise ImageWriteError(f"{job.target}: refusing to overwrite an input file")
    return overwrite or not job.target.exists()


def upscale_file(
    upscaler: Upscaler,
    job: Job,
    outscale: float | None = None,
    quality: int = 95,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Read, enlarge and atomically write one image (metadata carried); returns the output size."""
    image = read_image(job.source)
    result = upscaler.upscale(image.pixels, outscale, progress)
    write_image(job.target, result, icc_profile=image.icc_profile, exif=image.exif, quality=quality)
    return result.shape[1], result.shape[0]


def protected_paths(jobs: Iterable[Job]) -> set[Path]:
    return {job.source.resolve() for job in jobs}
