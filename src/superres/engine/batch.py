"""Upscale many files safely: mirrored output tree, atomic writes, resumable, inputs untouchable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from superres.engine.inference import Progress, Upscaler
from superres.errors import ImageWriteError
from superres.imageio.files import (
    IMAGE_EXTENSIONS,
    find_images,
    output_path_for,
    read_image,
    write_image,
)


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
    files, missing = find_images(inputs)
    single = len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in IMAGE_EXTENSIONS
    if single and files:
        named = output_path_for(output, output.suffix)  # canonical: .jpeg and .jpg agree
        if fmt is not None and output_path_for(output, fmt) != named:
            raise ImageWriteError(f"{output}: --format {fmt} contradicts this file name")
        return [Job(files[0][0], output)], missing
    folders = {item.resolve() for item in inputs if item.is_dir()}
    results = output.resolve()
    if results not in folders and any(results.is_relative_to(folder) for folder in folders):
        files = [(path, rel) for path, rel in files if not path.resolve().is_relative_to(results)]
    return [Job(path, output_path_for(output / relative, fmt)) for path, relative in files], missing


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
) -> tuple[int, int]:
    """Read, enlarge and atomically write one image (metadata carried); returns the output size."""
    image = read_image(job.source)
    result = upscaler.upscale(image.pixels, outscale, progress)
    write_image(job.target, result, icc_profile=image.icc_profile, exif=image.exif, quality=quality)
    return result.shape[1], result.shape[0]


def protected_paths(jobs: Iterable[Job]) -> set[Path]:
    return {job.source.resolve() for job in jobs}
