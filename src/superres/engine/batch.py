"""Upscale many files safely: mirrored output tree, atomic writes, resumable, inputs untouchable."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from superres.engine.inference import Progress, Upscaler
from superres.engine.video import upscale_animation, upscale_video
from superres.errors import ImageWriteError, NotAnImageError, naming
from superres.imageio.animation import ANIMATION_EXTENSIONS, is_animation
from superres.imageio.files import (
    IMAGE_EXTENSIONS,
    find_images,
    format_notes,
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


def default_suffix(scale: int, outscale: float | None = None) -> str:
    """What names an output beside its input: ``_x4``, or ``_x1.5`` for ``outscale`` 1.5."""
    return f"_x{outscale if outscale is not None else scale:g}"


def beside(source: Path, suffix: str, fmt: str | None = None) -> Path:
    """The output of ``source`` when none is named: ``NAME{suffix}.EXT`` in its folder (EXT
    from ``fmt`` for an image; a video keeps its container)."""
    return output_path_for(
        source.with_name(f"{source.stem}{suffix}{source.suffix}"),
        None if is_video(source) else fmt,
    )


def plan_jobs(
    inputs: Iterable[Path], output: Path | None, fmt: str | None = None, suffix: str = "_x4"
) -> tuple[list[Job], list[Path], list[tuple[Path, Path]]]:
    """Where each input goes; returns (jobs, missing inputs, earlier results).

    One input file with an image-named OUTPUT writes exactly that file (a ``fmt`` naming
    another format is refused, not silently ignored); otherwise OUTPUT is a folder mirroring
    the inputs' tree. Images inside an OUTPUT that lies within an input folder are results
    of an earlier run: enlarging them again would nest copies on every resumed run.
    Without OUTPUT, each file goes :func:`beside` itself and each folder to a sibling folder
    named FOLDER{suffix}, as Real-ESRGAN's and upscayl's users expect. An input that another
    input becomes there is an earlier run's result, named again by a re-run on a shell glob
    (``pics/*``): it comes back with its source, as (result, source), to be skipped with a
    line rather than enlarged again or refused as the other's output; so does a file in an
    input folder that another file of that folder becomes beside itself.
    """
    inputs = list(inputs)
    if output is None:
        return _plan_beside(inputs, fmt, suffix)
    files, missing = find_images(inputs, MEDIA_EXTENSIONS)
    single = len(inputs) == 1 and inputs[0].is_file() and output.suffix.lower() in MEDIA_EXTENSIONS
    if single and files:
        image_name = output.suffix.lower() in IMAGE_EXTENSIONS
        named = output_path_for(output, output.suffix) if image_name else output  # .jpeg = .jpg
        if fmt is not None and output_path_for(output, fmt) != named:
            raise ImageWriteError(f"{output}: --format {fmt} contradicts this file name")
        return [Job(files[0][0], output)], missing, []
    folders = {item.resolve() for item in inputs if item.is_dir()}
    results = output.resolve()
    if results not in folders and any(results.is_relative_to(folder) for folder in folders):
        files = [(path, rel) for path, rel in files if not path.resolve().is_relative_to(results)]
    jobs = [  # --format is for images: a video keeps its container
        Job(path, output_path_for(output / relative, None if is_video(path) else fmt))
        for path, relative in files
    ]
    if results in folders:
        # Results among their inputs (-o FOLDER --format F): found in it, dropped without a line.
        made = _made_by_others((job.source, job.target) for job in jobs)
        jobs = [job for job in jobs if job.source.resolve() not in made]
    return jobs, missing, []


def _made_by_others(pairs: Iterable[tuple[Path, Path]]) -> dict[Path, Path]:
    """The outputs of (input, output) ``pairs`` that are not their own input, resolved, each
    with its input: an input found among them is an earlier run's result, to skip or replace,
    not an input to enlarge again."""
    made: dict[Path, Path] = {}
    for source, target in pairs:
        if (resolved := target.resolve()) != source.resolve():
            made[resolved] = source
    return made


def _plan_beside(
    inputs: list[Path], fmt: str | None, suffix: str
) -> tuple[list[Job], list[Path], list[tuple[Path, Path]]]:
    outputs = {
        item: _sibling_folder(item, suffix) if item.is_dir() else beside(item, suffix, fmt)
        for item in inputs
        if item.is_dir() or item.is_file()
    }
    made = _made_by_others(outputs.items())
    jobs: list[Job] = []
    missing: list[Path] = []
    earlier: list[tuple[Path, Path]] = []
    for item in inputs:
        if item not in outputs:
            missing.append(item)
        elif (source := made.get(item.resolve())) is not None:
            earlier.append((item, source))
        elif item.is_dir():
            # A file the folder's own files became beside them (an earlier `upscale photo.heic`
            # made holiday/photo_x4.heic): skipped with a line, as on a glob.
            found, unusable, _ = plan_jobs([item], outputs[item], fmt)
            beside_made = _made_by_others(
                (job.source, beside(job.source, suffix, fmt)) for job in found
            )
            for job in found:
                if (source := beside_made.get(job.source.resolve())) is not None:
                    earlier.append((job.source, source))
                else:
                    jobs.append(job)
            missing += unusable
        else:
            jobs.append(Job(item, outputs[item]))
    return jobs, missing, earlier


def _sibling_folder(item: Path, suffix: str) -> Path:
    """FOLDER{suffix} beside the folder ``item``, which "." or ".." name only absolutely."""
    folder = Path(os.path.normpath(item))
    if folder.name in ("", ".."):
        folder = Path(os.path.abspath(folder))
    if not folder.name:
        raise ImageWriteError(f"{item}: name an output folder for it with -o")
    return folder.with_name(folder.name + suffix)


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
    if job.target.is_dir():  # not an earlier result to skip or replace
        raise ImageWriteError(f"{job.source}: not written: {job.target} is a folder")
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
    try:
        image = read_image(job.source)
    except NotAnImageError as error:  # clip.wmv, say: name the video containers read, too
        if job.source.suffix.lower() in IMAGE_EXTENSIONS:
            raise
        raise NotAnImageError(f"{error}; videos: {', '.join(sorted(VIDEO_EXTENSIONS))}") from None
    with naming(job.source):
        result = upscaler.upscale(image.pixels, outscale, progress)
    write_image(job.target, result, icc_profile=image.icc_profile, exif=image.exif, quality=quality)
    notes = [*image.notes, *format_notes(job.target, result, image.icc_profile, image.exif)]
    return FileSummary(1, (result.shape[1], result.shape[0]), notes)


def protected_paths(jobs: Iterable[Job]) -> set[Path]:
    return {job.source.resolve() for job in jobs}
