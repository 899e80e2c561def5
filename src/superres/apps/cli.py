"""The ``superres`` command: a thin shell over the Python API.

Every user error ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import click
import numpy as np
import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from superres import __version__
from superres.apps.report.tables import format_number, rich_table, write_csv, write_json
from superres.apps.web import DEFAULT_LIMITS as LIMITS
from superres.engine.devices import DEVICE_HELP, resolve_device
from superres.engine.inference import MAX_OUTPUT_PIXELS
from superres.errors import ImageWriteError, SuperresError
from superres.imageio.files import (
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    find_images,
    load_pixels,
    output_path_for,
    read_image,
    require_format,
    why_missing,
    write_image,
)
from superres.imageio.video import VideoCodec
from superres.quality.degrade import METHODS, degrade, modcrop, resize
from superres.quality.metrics import PROTOCOLS, score
from superres.quality.realistic import PRESETS, STANDARD, TRACKS, degrade_realistic
from superres.quality.realistic import preset as realistic_preset
from superres.training.trainer import TRAINING_TRACKS, Loss, TrainPrecision

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

    from superres.engine.batch import FileSummary, Job
    from superres.engine.ray_executor import WorkerSettings
    from superres.models.registry import Architecture

# Typer 0.29+ parses with its own copy of click; older ones with click itself.
_click = getattr(typer.core, "_click", click)

app = typer.Typer(
    name="superres",
    help="Single-image super-resolution: degrade, measure, train, benchmark and upscale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich mode labels every flag "<bool>"
)
out = Console()
err = Console(stderr=True)

Inputs = Annotated[
    list[Path],
    typer.Argument(help="Image files or folders (searched recursively).", metavar="INPUT"),
]
# Choices as types: help lists them and a typo is refused before any work starts.
Precision = Literal["auto", "fp32", "bf16", "fp16"]
FixedPrecision = Literal["fp32", "bf16"]
Backend = Literal["auto", "pytorch", "onnxruntime"]
FixedBackend = Literal["pytorch", "onnxruntime"]
DegradeMethod = Literal[(*METHODS, "realistic")]  # type: ignore[valid-type]
Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
TrackName = Literal[tuple(TRACKS)]  # type: ignore[valid-type]
Degradation = Literal[("bicubic", "realistic", *TRAINING_TRACKS)]  # type: ignore[valid-type]
# How `report` makes its inputs: as the report module's DEGRADATIONS (not imported here: it
# pulls in matplotlib, which every command would then pay for at start-up).
ReportInput = Literal[("standard", "bilinear", *(t for t in TRACKS if t != "clean"))]  # type: ignore[valid-type]
REAL_DEMO_TRACK = "noise10-jpeg70"
ProtocolName = Literal[tuple(PROTOCOLS)]  # type: ignore[valid-type]
OutputFormat = Literal[OUTPUT_FORMATS]  # type: ignore[valid-type]
# `auto` is what benchmarks/speed.py measured fastest for the model (see superres.engine.runtime).
PRECISION_HELP = (
    "bf16 needs a CPU with native bf16 or a GPU from Ampere on; fp16 a GPU; "
    "auto: bf16 where it costs < 0.05 dB."
)
BACKEND_HELP = "auto: the fastest measured; onnxruntime needs superres[onnx]."
TILE_HELP = "Tile side in input pixels (bounds memory), or auto: the fastest measured."
ENSEMBLE_HELP = (
    "Self-ensemble: average the model over N flips and transposes of the input (2, 4 or 8; "
    "N times the time for up to about 0.1 dB) [1: none]."
)


def fail(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


# `superres --debug ...` (or SUPERRES_DEBUG=1): unexpected errors show their traceback.
debug = {"enabled": bool(os.environ.get("SUPERRES_DEBUG"))}


def describe_unexpected(error: BaseException) -> str:
    """One line for an error superres did not foresee (a bug or an exotic file)."""
    hint = "" if debug["enabled"] else " (run `superres --debug ...` for the traceback)"
    return f"unexpected {type(error).__name__}: {error}{hint}"


class Batch:
    """Counts per-file failures so a batch reports each bad file once and exits non-zero.

    Any exception from one file, foreseen or not, is that file's failure: the batch goes on.
    """

    def __init__(self) -> None:
        self.failures = 0

    def report(self, error: Exception, item: Path | None = None) -> None:
        """One ``error:`` line. A user error is printed as it is: it names its file itself
        (the input, or the output a write failed on; see superres.errors.naming), so adding
        ``item`` would name a file twice or two files. An unforeseen one gets ``item``."""
        self.failures += 1
        if isinstance(error, SuperresError):
            fail(str(error))
            return
        if debug["enabled"]:
            err.print_exception()
        fail(f"{item}: {describe_unexpected(error)}" if item else describe_unexpected(error))

    def finish(self, done: int, summary: str | None = None) -> None:
        """Exit 1 after a one-line summary if any file failed."""
        if self.failures:
            err.print(summary or f"{done} done, {self.failures} failed", highlight=False)
            raise typer.Exit(1)


def _check_not_input(target: Path, inputs: set[Path]) -> None:
    if target.resolve() in inputs:
        raise ImageWriteError(f"{target}: refusing to overwrite an input file")


def _expand(inputs: list[Path], batch: Batch) -> list[tuple[Path, Path]]:
    """The still images of ``inputs``; animations, videos and what cannot be used are one line
    each, never passed over in silence."""
    from superres.imageio.animation import ANIMATION_EXTENSIONS
    from superres.imageio.video import VIDEO_EXTENSIONS

    moving = ANIMATION_EXTENSIONS | VIDEO_EXTENSIONS
    files, missing = find_images(inputs, IMAGE_EXTENSIONS | moving)
    for path in missing:
        batch.report(SuperresError(f"{path}: {why_missing(path)}"))
    for path, _ in files:
        if path.suffix.lower() in moving:
            batch.report(SuperresError(f"{path}: an animation or a video: only upscale reads it"))
    return [(path, relative) for path, relative in files if path.suffix.lower() not in moving]


@app.command("degrade")
def degrade_command(
    inputs: Inputs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    scale: Annotated[
        float, typer.Option("--scale", "-s", help="Shrink factor, e.g. 2, 3, 1.5.")
    ] = 2.0,
    method: Annotated[
        DegradeMethod,
        typer.Option(help="realistic: blur, noise and JPEG, as photos have (integer scales)."),
    ] = "matlab-bicubic",
    keep_size: Annotated[
        bool,
        typer.Option("--keep-size", help="Enlarge back to the input size (what SRCNN is fed)."),
    ] = False,
    crop: Annotated[
        bool, typer.Option("--modcrop", help="First crop each side to a multiple of the scale.")
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Realistic: the same seed and file give the same bytes (default: random)."
        ),
    ] = None,
    preset: Annotated[Preset, typer.Option(help="Strength of the realistic degradation.")] = (
        "standard"
    ),
    strength: Annotated[
        float | None,
        typer.Option(
            help="Realistic: scale blur and noise, 0 (almost clean) to 3 (overrides --preset)."
        ),
    ] = None,
    fmt: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format",
            case_sensitive=False,
            help="The output format (default: as input; png is lossless).",
        ),
    ] = None,
) -> None:
    """Shrink images by a factor (and optionally enlarge them back), keeping their file names."""
    realistic = None
    if method == "realistic":
        if scale != int(scale):
            raise SuperresError(f"--method realistic needs an integer --scale, got {scale}")
        realistic = STANDARD.scaled(strength) if strength is not None else realistic_preset(preset)
    batch = Batch()
    files = _expand(inputs, batch)
    protected = {path.resolve() for path, _ in files}
    done = 0
    for path, relative in files:
        target = output_path_for(output / relative, fmt)
        try:
            _check_not_input(target, protected)
            image = read_image(path)
            pixels = (
                modcrop(image.pixels, int(scale)) if crop and scale == int(scale) else image.pixels
            )
            if realistic is None:
                result = degrade(pixels, scale, method, keep_size=keep_size)  # type: ignore[arg-type]
            else:
                # One stream per file: a folder gets varied degradations, each reproducible.
                file_seed = (
                    None if seed is None else [seed, zlib.crc32(relative.as_posix().encode())]
                )
                result = degrade_realistic(pixels, scale, realistic, file_seed)  # type: ignore[arg-type]
                if keep_size:
                    result = resize(result, pixels.shape[:2], "matlab-bicubic")
            write_image(target, result, icc_profile=image.icc_profile)
            done += 1
            out.print(f"{path} -> {target} ({result.shape[1]}x{result.shape[0]})", highlight=False)
        except Exception as error:
            batch.report(error, path)
    batch.finish(done)


def _pair_references(reference: Path, tests: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """Match each test image with its reference: the same file, or the same name in a folder."""
    if reference.is_file():
        return [(reference, path) for path, _ in tests]
    if not reference.is_dir():
        raise SuperresError(f"{reference}: no such file or folder")
    refs, _ = find_images([reference])
    by_name = {rel.as_posix(): path for path, rel in refs}
    by_stem = {rel.with_suffix("").as_posix(): path for path, rel in refs}
    pairs = []
    for path, relative in tests:
        match = by_name.get(relative.as_posix()) or by_stem.get(relative.with_suffix("").as_posix())
        if match is None:
            raise SuperresError(f"{path}: no reference named {relative} in {reference}")
        pairs.append((match, path))
    return pairs


def _crop_to(ref: np.ndarray, test_shape: tuple[int, ...], scale: int | None) -> np.ndarray:
    """Crop a reference to a test image that lost its modcrop remainder (at most scale-1 px)."""
    dh, dw = ref.shape[0] - test_shape[0], ref.shape[1] - test_shape[1]
    if scale and 0 <= dh < scale and 0 <= dw < scale:
        return ref[: test_shape[0], : test_shape[1]]
    return ref


@app.command("compare")
def compare_command(
    reference: Annotated[Path, typer.Argument(help="Reference image, or a folder of them.")],
    tests: Annotated[list[Path], typer.Argument(help="Images or folders to score.")],
    protocol: Annotated[
        ProtocolName,
        typer.Option(help="standard: Y channel, as SR papers; tutorial: all channels."),
    ] = "standard",
    scale: Annotated[
        int | None, typer.Option(help="SR scale: shaves this border (standard protocol).")
    ] = None,
    shave: Annotated[int | None, typer.Option(help="Border to shave (overrides --scale).")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write one row per image.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write rows and means.")] = None,
) -> None:
    """PSNR, MSE and SSIM of images against their references (matched by file name)."""
    border = shave if shave is not None else (scale or 0) if protocol == "standard" else 0
    batch = Batch()
    rows = []
    for ref_path, test_path in _pair_references(reference, _expand(tests, batch)):
        try:
            test = load_pixels(test_path)
            ref = _crop_to(load_pixels(ref_path), test.shape, scale)
            result = score(ref, test, protocol, border)  # type: ignore[arg-type]
            rows.append({"image": str(test_path), **result.as_dict()})
        except Exception as error:
            batch.report(error, test_path)
    if rows:
        means = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr", "mse", "ssim")}
        table_rows = [
            [
                r["image"],
                format_number(r["psnr"], 4),
                format_number(r["mse"], 4),
                format_number(r["ssim"], 5),
            ]
            for r in [*rows, {"image": "mean", **means}]
        ]
        title = f"{protocol} protocol, border {border}"
        out.print(rich_table(title, ["image", "PSNR dB", "MSE", "SSIM"], table_rows))
        if csv_path:
            write_csv(csv_path, rows)
        if json_path:
            write_json(
                json_path, {"protocol": protocol, "border": border, "images": rows, "mean": means}
            )
    batch.finish(len(rows))


@app.command("train")
def train_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    model: Annotated[
        str | None, typer.Option(help="Architecture, e.g. srcnn-955, compact.", metavar="NAME")
    ] = None,
    scale: Annotated[int | None, typer.Option(help="2, 3 or 4.")] = None,
    train: Annotated[
        list[Path] | None,
        typer.Option(help="Training image folder (repeatable).", metavar="DIR"),
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Validation folder (e.g. Set5).", metavar="DIR")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps [20000].")] = None,
    epoch_steps: Annotated[
        int | None, typer.Option(help="Steps between validations and checkpoints [1000].")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Global batch: patches per step over all processes [16]; under torchrun each "
            "of N processes takes batch-size/N."
        ),
    ] = None,
    patch_size: Annotated[
        int | None, typer.Option(help="HR patch side, a multiple of scale [48].")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate, cosine decay to 0 [0.001].")
    ] = None,
    loss: Annotated[Loss | None, typer.Option(help="Training loss [l1].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of weights and patches [0].")] = None,
    precision: Annotated[
        TrainPrecision | None, typer.Option(help="bf16: autocast forward pass [fp32].")
    ] = None,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all).")] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help="Validate and export a moving average of the weights with this decay, e.g. "
            "0.999 as Real-ESRGAN [0: the weights as trained].",
            metavar="DECAY",
        ),
    ] = None,
    adversarial: Annotated[
        float | None,
        typer.Option(
            help="Weight of a GAN loss (a discriminator trained alongside, from scratch) for a "
            "sharper fine-tune, e.g. 0.1 as Real-ESRGAN [0: none].",
            metavar="WEIGHT",
        ),
    ] = None,
    feature_matching: Annotated[
        float | None,
        typer.Option(
            help="Weight of feature matching, the perceptual loss built from the "
            "discriminator's features (no pretrained VGG needed), e.g. 1 [0: none].",
            metavar="WEIGHT",
        ),
    ] = None,
    clip_grad: Annotated[
        float | None,
        typer.Option(
            help="Rescale any step's gradient to at most this global norm, e.g. 1 (guards deep "
            "networks at a high learning rate against a loss spike; may be added on --resume) "
            "[0: none].",
            metavar="NORM",
        ),
    ] = None,
    teacher: Annotated[
        Path | None,
        typer.Option(
            help="Distil from these weights' self-ensemble (see --distill), e.g. the --init "
            "weights: one pass learns what several gave.",
            metavar="WEIGHTS",
        ),
    ] = None,
    distill: Annotated[
        float | None,
        typer.Option(
            help="Weight in (0, 1] of the loss against the teacher's output; the ground "
            "truth's is 1 minus it [0].",
            metavar="WEIGHT",
        ),
    ] = None,
    teacher_ensemble: Annotated[
        int | None,
        typer.Option(help="Views in the teacher's self-ensemble: 1, 2, 4 or 8 [8].", metavar="N"),
    ] = None,
    rescale: Annotated[
        str | None,
        typer.Option(
            help="Scale augmentation: patches also come from each image shrunk by these "
            "factors, e.g. 0.6,0.7,0.8,0.9,1 (VDSR's and IDN's recipe) [1].",
            metavar="LIST",
        ),
    ] = None,
    grey: Annotated[
        float | None,
        typer.Option(
            help="Share of patches made black-and-white before degrading, e.g. 0.1 (RGB "
            "models: old photos and scans have no colour) [0].",
            metavar="SHARE",
        ),
    ] = None,
    hyper: Annotated[
        list[str] | None,
        typer.Option(
            help="An architecture setting, KEY=VALUE (repeatable), e.g. blocks=16; "
            "`superres models` lists each model's.",
            metavar="KEY=VALUE",
        ),
    ] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start from these weights (fine-tuning a trained model; a compact model may "
            "start from a shallower or narrower one: it begins computing the same function)."
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the run's checkpoint, with its settings; only --steps, "
            "--precision and --clip-grad may change.",
        ),
    ] = False,
    degradation: Annotated[
        Degradation | None,
        typer.Option(
            help=(
                "bicubic: the standard protocol; realistic: real-world photos; a track name: "
                "a specialist for that one fixed degradation [bicubic]."
            )
        ),
    ] = None,
    preset: Annotated[
        Preset | None, typer.Option(help="Strength of the realistic degradation [standard].")
    ] = None,
    val_track: Annotated[
        TrackName | None,
        typer.Option(help="The fixed input degradation validation scores on [clean]."),
    ] = None,
) -> None:
    """Train a model on folders of images; validation PSNR per epoch goes to RUN_DIR/log.csv.

    Several processes: torchrun --nproc-per-node N -m superres train ... (docs/scaling.md).
    """
    from superres.apps.train import run_training

    given = {
        "model": model,
        "scale": scale,
        "train": [str(p) for p in train] if train else None,
        "val": str(val) if val else None,
        "steps": steps,
        "epoch_steps": epoch_steps,
        "batch_size": batch_size,
        "patch_size": patch_size,
        "lr": lr,
        "loss": loss,
        "seed": seed,
        "precision": precision,
        "init": str(init) if init else None,
        "hyper": _hyper_settings(hyper) if hyper else None,
        "rescales": _factors(rescale) if rescale else None,
        "grey": grey,
        "ema": ema,
        "adversarial": adversarial,
        "feature_matching": feature_matching,
        "clip_grad": clip_grad,
        "teacher": str(teacher) if teacher else None,
        "distill": distill,
        "teacher_ensemble": teacher_ensemble,
        "degradation": degradation,
        "degradation_preset": preset,
        "val_track": val_track,
    }
    options = {key: value for key, value in given.items() if value is not None}
    run_training(options, output, resume, device, threads, out, err)


def _hyper_settings(items: list[str]) -> dict[str, Any]:
    """``["blocks=16", "residual=true"]`` -> ``{"blocks": 16, "residual": True}`` (JSON values;
    the registry checks names and bounds)."""
    settings = {}
    for item in items:
        key, sign, text = item.partition("=")
        if not sign or not key.strip():
            raise SuperresError(f"--hyper takes KEY=VALUE, got {item!r}")
        try:
            settings[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            raise SuperresError(
                f"--hyper {key.strip()}: {text!r} is not a number, list or flag"
            ) from None
    return settings


def _factors(value: str) -> list[float]:
    """``"0.6,0.8,1"`` -> ``[0.6, 0.8, 1.0]``; anything else is one line."""
    try:
        return [float(item) for item in _split_list(value)]
    except ValueError:
        raise SuperresError(f"--rescale takes numbers separated by commas, got {value!r}") from None


def _split_list(values: str | list[str]) -> list[str]:
    """A comma-separated option, given once or repeated: ``--models a,b --models c``."""
    given = [values] if isinstance(values, str) else values
    return [item.strip() for value in given for item in value.split(",") if item.strip()]


@app.command("benchmark")
def benchmark_command(
    datasets: Annotated[
        list[Path], typer.Option(help="Reference folders, e.g. Set5 (repeatable).", metavar="DIR")
    ],
    models: Annotated[
        list[str],
        typer.Option(
            help="Comma-separated (or repeated): bicubic, srcnn, ..., or weights files (at their "
            "own scale).",
            metavar="LIST",
        ),
    ] = ["bicubic,srcnn"],  # noqa: B006 - typer copies option defaults
    scales: Annotated[
        list[str], typer.Option(help="Comma-separated (or repeated) scales.", metavar="LIST")
    ] = ["2,3,4"],  # noqa: B006
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write one row per result.")] = (
        None
    ),
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the rows as JSON.")] = (
        None
    ),
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Write the table as Markdown.")
    ] = None,
    backend: Annotated[FixedBackend, typer.Option(help="onnxruntime needs superres[onnx].")] = (
        "pytorch"
    ),
    precision: Annotated[
        FixedPrecision, typer.Option(help="bf16 needs a CPU with native bf16 (fixed, not auto).")
    ] = "fp32",
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
    tracks: Annotated[
        list[str],
        typer.Option(
            "--track",
            metavar="LIST",
            help=f"Comma-separated (or repeated) input degradations: {', '.join(TRACKS)} "
            "(clean: the papers').",
        ),
    ] = ["clean"],  # noqa: B006
    denoise: Annotated[
        float | None,
        typer.Option(
            help="Run the models that have a denoise control (real) at this strength in [0, 1]; "
            "the others as they are.",
            metavar="S",
        ),
    ] = None,
    ensemble: Annotated[int, typer.Option(help=ENSEMBLE_HELP, metavar="N")] = 1,
) -> None:
    """Standard-protocol PSNR/SSIM per dataset and scale, beside the published figures."""
    from superres.apps.report.tables import benchmark_markdown, benchmark_rows, write_text_atomic
    from superres.engine.evaluation import PUBLISHED, benchmark, unshipped_cells

    for folder in datasets:
        if not folder.is_dir():
            raise SuperresError(f"{folder}: no such folder")
    try:
        scale_list = [int(s) for s in _split_list(scales)]
    except ValueError as error:
        raise SuperresError(f"--scales takes whole numbers like 2,3,4: {error}") from error
    methods = _split_list(models)
    for method, scale in unshipped_cells(methods, scale_list):
        out.print(f"skip {method} x{scale} (not shipped at x{scale})", highlight=False)
    results = benchmark(
        methods,
        scale_list,
        datasets,
        backend,
        precision,
        _split_list(tracks),
        device,
        denoise,
        ensemble,
    )
    rows = benchmark_rows(results, PUBLISHED)
    table = benchmark_markdown(rows)
    sys.stdout.write(table)  # plain text: Markdown must not be re-wrapped to the terminal
    if csv_path:
        write_csv(csv_path, rows)
    if json_path:
        write_json(json_path, rows)
    if markdown_path:
        write_text_atomic(markdown_path, table)


@app.command("import-keras")
def import_keras_command(
    weights: Annotated[Path, typer.Argument(help="The tutorial's Keras .h5 weights.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write .safetensors.")],
    arch: Annotated[
        str, typer.Option(help="Architecture the file holds.", metavar="NAME")
    ] = "srcnn-tutorial",
) -> None:
    """Convert the Keras SRCNN tutorial's weights to safetensors (no pickle involved)."""
    from superres.engine.tutorial import import_keras_weights
    from superres.models import save_weights

    if output.resolve() == weights.resolve():
        raise ImageWriteError(f"{output}: refusing to overwrite the input file")
    model = import_keras_weights(weights, arch)
    save_weights(output, model)
    out.print(f"{weights} -> {output} ({model.name}, {model.parameters:,} parameters)")


@app.command("tutorial-deploy")
def tutorial_deploy_command(
    references: Inputs,
    weights: Annotated[Path, typer.Option(help="Converted tutorial weights (see import-keras).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write degraded and output images.")
    ] = None,
) -> None:
    """The SRCNN tutorial's deploy path: bilinear x2 input, network on YCrCb's Y, 6-px shave."""
    from superres.engine.tutorial import tutorial_deploy
    from superres.models import load_weights_file

    model = load_weights_file(weights)
    if not hasattr(model.network, "mapping"):
        raise SuperresError(f"{weights}: {model.name} is not an SRCNN network")
    batch = Batch()
    rows = []
    for path, relative in _expand(references, batch):
        try:
            result = tutorial_deploy(model, read_image(path).pixels)
        except Exception as error:
            batch.report(error, path)
            continue
        if output:
            write_image(output / "degraded" / relative, result.degraded)
            write_image(output / "srcnn" / relative, result.output)
        rows.append(
            [
                str(relative),
                *(
                    format_number(v, 4)
                    for v in (
                        result.degraded_scores.psnr,
                        result.output_scores.psnr,
                        result.degraded_scores.ssim,
                        result.output_scores.ssim,
                    )
                ),
            ]
        )
    if rows:
        columns = ["image", "degraded PSNR", "SRCNN PSNR", "degraded SSIM", "SRCNN SSIM"]
        out.print(rich_table("tutorial protocol (all channels, 6-px shave)", columns, rows))
    batch.finish(len(rows))


# Off a terminal (nohup, CI) the bars are off; a long file then shows a line this often.
PLAIN_PROGRESS_SECONDS = 30.0


def _file_progress(
    progress: RichProgress, task: TaskID, source: Path, unit: str
) -> Callable[[int, int], None]:
    """Advance ``task`` with frames (or tiles) per second, and print that as plain lines when
    there is no terminal to show the bar on."""
    last_line = time.monotonic()

    def update(done: int, total: int) -> None:
        nonlocal last_line
        progress.update(task, completed=done, total=total)
        state = next(each for each in progress.tasks if each.id == task)
        speed = state.speed
        rate = f"{speed:.1f} {'fps' if unit == 'frames' else 'tiles/s'}" if speed else ""
        progress.update(task, rate=rate)
        if progress.disable and time.monotonic() - last_line >= PLAIN_PROGRESS_SECONDS:
            last_line = time.monotonic()
            left = state.time_remaining
            eta = f", {left:.0f} s left" if left is not None else ""
            err.print(
                f"{source}: {done}/{total} {unit}, {rate or 'measuring'}{eta}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    return update


@app.command("upscale")
def upscale_command(
    inputs: Inputs,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output folder (or file, for one input). Without it, each file's output goes "
            "beside it as NAME_x4.EXT and a folder's into a sibling FOLDER_x4/ (x4: the --scale, "
            "or the --outscale; see --suffix).",
        ),
    ] = None,
    suffix: Annotated[
        str | None,
        typer.Option(
            help="What is added to names without -o (default: _x<scale>).", metavar="TEXT"
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            help="Model name; see `superres models`. auto: real (for photos: JPEG, noise, blur) "
            "where it is shipped for the scale, default elsewhere. Or a weights file: one "
            "`superres train` wrote, or another project's (superres[community]).",
            metavar="NAME|FILE",
        ),
    ] = "auto",
    scale: Annotated[
        int | None,
        typer.Option("--scale", "-s", help="Model scale: 2, 3 or 4 [4; a model file: its own]."),
    ] = None,
    outscale: Annotated[
        float | None, typer.Option(help="Final size factor, e.g. 1.5 or 5 (resampled).")
    ] = None,
    tile: Annotated[str, typer.Option(help=TILE_HELP, metavar="SIDE|auto")] = "auto",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="png, jpg, webp, tiff, bmp, avif, heic or jxl (default: as input; heic and jxl "
            "need superres[formats]).",
            metavar="FORMAT",
        ),
    ] = None,
    quality: Annotated[
        int, typer.Option(help="JPEG, WebP, AVIF, HEIC and JPEG XL quality, 1-100.")
    ] = 95,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    max_output_pixels: Annotated[
        int,
        typer.Option(
            help="Largest result, in pixels: a larger one is refused before any memory is taken "
            "(0: no limit).",
            metavar="N",
        ),
    ] = MAX_OUTPUT_PIXELS,
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = "auto",
    backend: Annotated[Backend, typer.Option(help=BACKEND_HELP)] = "auto",
    denoise: Annotated[
        float | None,
        typer.Option(
            help="real only: 0 keeps the photo's texture and noise, 1 (default) cleans them."
        ),
    ] = None,
    ensemble: Annotated[int, typer.Option(help=ENSEMBLE_HELP, metavar="N")] = 1,
    video_codec: Annotated[
        VideoCodec | None,
        typer.Option(
            "--video-codec", help="Videos: default h264 (vp9 in .webm); audio is copied as is."
        ),
    ] = None,
    crf: Annotated[
        int | None,
        typer.Option(
            help="Video quality, lower is better and larger (default: h264 18, h265 20, "
            "vp9 and av1 30)."
        ),
    ] = None,
    executor: Annotated[
        Literal["local", "ray"],
        typer.Option(help="ray: files across a Ray cluster's workers (superres[distributed])."),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster: host:port, ray://host:10001 or auto (default: start one here).",
            metavar="ADDRESS",
        ),
    ] = None,
) -> None:
    """Enlarge images, animations and videos with a model; existing outputs are skipped, so a
    stopped batch resumes.

    Without -o, photo.heic becomes photo_x4.heic beside it and holiday/ becomes holiday_x4/
    beside it (x4: --scale, or --outscale; --suffix changes "_x4"). An input is never
    overwritten.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from superres.engine.batch import (
        check_target,
        default_suffix,
        is_video,
        protected_paths,
        upscale_file,
    )
    from superres.engine.inference import Upscaler, check_ensemble, check_outscale
    from superres.imageio.video import VideoOptions
    from superres.models import load_model
    from superres.models.files import is_model_path

    check_outscale(outscale, "--outscale")
    check_ensemble(ensemble)
    if fmt is not None:
        if fmt.lower() not in OUTPUT_FORMATS:
            raise SuperresError(f"unknown --format {fmt!r}; choose {', '.join(OUTPUT_FORMATS)}")
        require_format(fmt)  # a missing extra: one line now, not one per file
    if suffix is not None and output is not None:
        raise SuperresError("--suffix names outputs written beside their inputs: drop it or -o")
    if suffix is not None and ("/" in suffix or os.sep in suffix):
        raise SuperresError(f"--suffix {suffix!r} is part of a file name: no / in it")
    if not 1 <= quality <= 100:
        raise SuperresError(f"--quality must be between 1 and 100, got {quality}")
    loaded = load_model(model, scale)  # a bad name or file: one line, before any work
    suffix = default_suffix(loaded.scale, outscale) if suffix is None else suffix
    video = VideoOptions(video_codec, crf)
    options = dict(
        tile=tile,
        device=device,
        threads=threads,
        precision=precision,
        backend=backend,
        denoise=denoise,
        max_output_pixels=max_output_pixels or None,
        ensemble=ensemble,
    )
    if executor == "ray":
        from superres.engine.ray_executor import WorkerSettings

        per_file = {"outscale": outscale, "quality": quality, "video": video}
        where = str(Path(model).resolve()) if is_model_path(model) else model  # for every node
        settings = WorkerSettings(where, loaded.scale, options, per_file)
        _upscale_on_ray(inputs, output, fmt, suffix, overwrite, settings, ray_address)
        return
    upscaler = Upscaler(loaded, **options)
    chosen = upscaler.describe()
    out.print(f"{upscaler.model.name} x{upscaler.scale}: {chosen}", highlight=False)
    batch = Batch()
    jobs, skipped = _plan(inputs, output, fmt, suffix, batch)
    protected = protected_paths(jobs)
    claimed: dict[Path, Path] = {}
    written = 0
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, disable=not err.is_terminal) as progress:
        overall = progress.add_task("images", total=len(jobs), rate="")
        tiles = progress.add_task("tiles", total=None, rate="")
        for job in jobs:
            try:
                if not check_target(job, protected, overwrite, claimed):
                    skipped += 1
                    _print_skip(job.target)
                    continue
                unit = "frames" if is_video(job.source) else "tiles"
                progress.reset(tiles, description=job.source.name, total=None, rate="")
                summary = upscale_file(
                    upscaler,
                    job,
                    outscale,
                    quality,
                    _file_progress(progress, tiles, job.source, unit),
                    video,
                )
                written += 1
                _print_written(job, summary)
            except Exception as error:
                batch.report(error, job.source)
            finally:
                progress.advance(overall)
    _finish_upscale(batch, written, skipped)


def _plan(
    inputs: list[Path], output: Path | None, fmt: str | None, suffix: str, batch: Batch
) -> tuple[list[Job], int]:
    """`upscale`'s jobs, after a line for each input that cannot be used (a failure) and each
    earlier result named again (a skip); returns them and the number of those skips."""
    from superres.engine.batch import plan_jobs

    jobs, missing, earlier = plan_jobs(inputs, output, fmt, suffix)
    for path in missing:
        batch.report(SuperresError(f"{path}: {why_missing(path)}"))
    for result, source in earlier:
        _print_skip(result, f"an earlier result of {source}; -o enlarges it again")
    return jobs, len(earlier)


def _print_skip(path: Path, why: str = "exists; --overwrite replaces it") -> None:
    """A skipped file's line, unwrapped, its name as it is (a "[red]" in it is not markup)."""
    out.print(f"skip {path} ({why})", highlight=False, markup=False, soft_wrap=True)


def _print_written(job: Job, summary: FileSummary) -> None:
    """The file's line, after a ``note:`` line (on stderr) for each remark, file names verbatim
    (a "[red]" in a name is not markup)."""
    verbatim = {"highlight": False, "markup": False, "soft_wrap": True}
    for remark in summary.notes:
        err.print(f"note: {job.source}: {remark}", **verbatim)
    width, height = summary.size
    out.print(f"{job.source} -> {job.target} ({width}x{height})", **verbatim)


def _finish_upscale(batch: Batch, written: int, skipped: int) -> None:
    summary = f"{written} written, {skipped} skipped, {batch.failures} failed"
    if not batch.failures:
        out.print(summary, highlight=False)
    batch.finish(written, summary)


def _upscale_on_ray(
    inputs: list[Path],
    output: Path | None,
    fmt: str | None,
    suffix: str,
    overwrite: bool,
    settings: WorkerSettings,
    address: str | None,
) -> None:
    """`upscale --executor ray`: the local path's plan, skips and lines; the files themselves
    go to a pool of Ray workers (superres.engine.ray_executor)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from superres.engine.batch import check_target, protected_paths
    from superres.engine.ray_executor import RayPool

    pool = RayPool(settings, address)  # Ray missing: one line, before any work
    batch = Batch()
    jobs, skipped = _plan(inputs, output, fmt, suffix, batch)
    protected, claimed = protected_paths(jobs), {}
    runnable, written = [], 0
    for job in jobs:
        try:
            if check_target(job, protected, overwrite, claimed):
                runnable.append(job)
            else:
                skipped += 1
                _print_skip(job.target)
        except Exception as error:
            batch.report(error, job.source)
    if runnable:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        with pool, Progress(*columns, console=err, disable=not err.is_terminal) as progress:
            out.print(pool.start(len(runnable)), highlight=False)
            task = progress.add_task("images", total=len(runnable))
            for job, result in pool.run(runnable):
                if isinstance(result, Exception):
                    batch.report(result, job.source)
                else:
                    written += 1
                    _print_written(job, result)
                progress.advance(task)
    _finish_upscale(batch, written, skipped)


@app.command("models")
def models_command(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Describe this weights file instead: architecture, scale, parameters, purpose, "
            "tiling, precisions, and whether superres runs it.",
            metavar="PATH",
        ),
    ] = None,
    to_safetensors: Annotated[
        Path | None,
        typer.Option(
            "--to-safetensors",
            help="With --file: also copy a .pth/.ckpt/.pt file's weights to this .safetensors "
            "file, which nothing can run code from.",
            metavar="OUT",
        ),
    ] = None,
    allow_torchscript: Annotated[
        bool,
        typer.Option(
            "--allow-torchscript",
            help="With --file: load a TorchScript .pt, whose code runs (only files you trust).",
        ),
    ] = False,
) -> None:
    """The shipped models: scale, parameters, file size, validation PSNR, how `auto` runs them."""
    if file is not None:
        _describe_model_file(file, to_safetensors, allow_torchscript)
        return
    if to_safetensors is not None or allow_torchscript:
        raise SuperresError("--to-safetensors and --allow-torchscript go with --file")
    import torch

    from superres.engine.runtime import resolve_runtime
    from superres.models.registry import (
        ALIASES,
        ARCHITECTURES,
        shipped_models,
        stray_weight_files,
    )

    rows = []
    unreadable: list[str] = []
    for entry in shipped_models(unreadable):
        aliases = [alias for alias, name in ALIASES.items() if name == entry.name]
        choice = resolve_runtime(entry.model, torch.device("cpu"))
        rows.append(
            [
                entry.name + (f" ({', '.join(aliases)})" if aliases else ""),
                f"x{entry.scale}",
                f"{entry.parameters:,}",
                f"{entry.file_kib:.0f} KiB",
                _validation_label(entry.metadata),
                entry.metadata.get("steps", "-"),
                f"{choice.precision} {choice.tile}"
                + ("" if choice.backend == "pytorch" else f" {choice.backend}"),
            ]
        )
    # "auto runs": the precision and tile (and backend, when not PyTorch) auto picks here.
    columns = ["model", "scale", "parameters", "file", "val PSNR dB", "steps", "auto runs"]
    out.print(rich_table("shipped models", columns, rows))
    out.print(
        rich_table(
            "architectures (train --model NAME --hyper KEY=VALUE)",
            ["model", "settings (default: allowed)", "what it is"],
            [
                [name, _settings_label(arch), arch.description]
                for name, arch in sorted(ARCHITECTURES.items())
            ],
        )
    )
    for path in stray_weight_files():
        err.print(f"ignored {path}: not named NAME-xSCALE.safetensors", highlight=False)
    for reason in unreadable:
        err.print(f"ignored {reason}", highlight=False, markup=False, soft_wrap=True)


def _settings_label(arch: Architecture) -> str:
    """``blocks=8: a whole number from 0 to 64`` lines (``=default`` where the registry sets
    one; else the paper's): what ``--hyper`` may set."""
    return (
        "\n".join(
            key
            + (f"={json.dumps(arch.hyper[key])}" if key in arch.hyper else "")
            + f": {bound.describe()}"
            for key, bound in arch.bounds.items()
        )
        or "-"
    )


def _describe_model_file(file: Path, target: Path | None, allow_torchscript: bool) -> None:
    """`superres models --file`: one "field value" line each, then the copy, if asked for."""
    from superres.models.files import convert_to_safetensors, describe_model_file

    verbatim = {"highlight": False, "markup": False, "soft_wrap": True}
    for field, value in describe_model_file(file, allow_torchscript):
        out.print(f"{field:<17} {value}", **verbatim)
    if target is not None:
        architecture = convert_to_safetensors(file, target, allow_torchscript)
        out.print(f"{file} -> {target} ({architecture}, read back and checked)", **verbatim)


def _validation_label(metadata: dict[str, str]) -> str:
    """E.g. "31.43 (Set5)" or "27.90 (Set5, noise10-jpeg70)": which set and which inputs."""
    psnr = metadata.get("val_psnr")
    if not psnr:
        return "-"
    track = json.loads(metadata.get("training", "{}")).get("val_track", "clean")
    where = ", ".join(x for x in (metadata.get("validation_data"), track) if x and x != "clean")
    return f"{psnr[:5]} ({where})" if where else psnr[:5]


@app.command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path(
        "superres-demo"
    ),
    models: Annotated[
        str, typer.Option(help="Comma-separated methods to compare.", metavar="LIST")
    ] = ("default,srcnn"),
    scale: Annotated[int, typer.Option("--scale", "-s", help="SR scale: 2, 3 or 4.")] = 3,
) -> None:
    """The main job on built-in data: enlarge a shrunk sample photo, score, figure, report."""
    from skimage import data

    from superres.apps.report.html import (
        SUMMARY_COLUMNS,
        build_report,
        method_enlargers,
        summary_rows,
    )

    photo = [("astronaut.png", data.astronaut())]
    # The clean protocol of the papers, then a photo as people have them (noise and JPEG) at x4,
    # where the clean-trained default sharpens the noise and the real-world model cleans it.
    runs = [
        (output, scale, _split_list(models), "standard", "standard protocol"),
        (output / "real-photo", 4, ["default", "real"], REAL_DEMO_TRACK, "noise and JPEG"),
    ]
    for folder, run_scale, names, degradation, how in runs:
        enlargers = method_enlargers(names, run_scale)
        report = build_report(photo, run_scale, enlargers, folder, degradation)
        title = f"scikit-image's astronaut, x{run_scale}, {how} (scores: Y, border {run_scale})"
        out.print(rich_table(title, SUMMARY_COLUMNS, summary_rows(report.methods)))
        out.print(f"figure: {report.images[0].figure}\nreport: {report.page}", highlight=False)


@app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to bind (default: localhost only).", metavar="HOST")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest upload accepted, MB.")
    ] = LIMITS.max_upload_mb,
    max_pixels: Annotated[
        int, typer.Option(help="Largest input image, pixels.")
    ] = LIMITS.max_pixels,
    workers: Annotated[int, typer.Option(help="Images processed at once.")] = LIMITS.workers,
    precision: Annotated[Precision, typer.Option(help=PRECISION_HELP)] = "auto",
    backend: Annotated[Backend, typer.Option(help=BACKEND_HELP)] = "auto",
    tile: Annotated[str, typer.Option(help=TILE_HELP, metavar="SIDE|auto")] = "auto",
    device: Annotated[str, typer.Option(help=DEVICE_HELP, metavar="DEVICE")] = "auto",
    memory_budget_mb: Annotated[
        float, typer.Option(help="Memory all requests in flight may claim, MB; beyond it, 503.")
    ] = LIMITS.memory_budget_mb,
    max_work: Annotated[
        float,
        typer.Option(help="Work one request may take, G multiply-adds (output pixels x model)."),
    ] = LIMITS.max_request_gmacs,
    max_pending_work: Annotated[
        float, typer.Option(help="Work all queued requests may take, G multiply-adds; beyond, 503.")
    ] = LIMITS.max_pending_gmacs,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Another name clients use for this server (repeatable; * for any).", metavar="NAME"
        ),
    ] = None,
    max_video_seconds: Annotated[
        float, typer.Option(help="Longest video or animation accepted, seconds.")
    ] = LIMITS.max_video_seconds,
    max_frames: Annotated[
        int, typer.Option(help="Most frames in a video or animation accepted.")
    ] = LIMITS.max_frames,
    model_file: Annotated[
        list[Path] | None,
        typer.Option(
            help="Also offer this weights file (repeatable), under its file name without the "
            "extension; clients can name no other file.",
            metavar="PATH",
        ),
    ] = None,
) -> None:
    """A web page and an HTTP API for upscaling."""
    device = str(resolve_device(device))  # an absent device fails now, not at the first upload
    from superres.extras import require

    run = require("superres.apps.web.server", "web", "superres serve").run
    run(
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        workers=workers,
        precision=precision,
        backend=backend,
        tile=tile,
        device=device,
        memory_budget_mb=memory_budget_mb,
        max_request_gmacs=max_work,
        max_pending_gmacs=max_pending_work,
        allow_hosts=allow_host or (),
        max_video_seconds=max_video_seconds,
        max_frames=max_frames,
        model_files=model_file or (),
    )


@app.command("report")
def report_command(
    inputs: Inputs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")],
    scale: Annotated[int, typer.Option("--scale", "-s", help="SR scale: 2, 3 or 4.")] = 3,
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated methods or weights files; bicubic is always included.",
            metavar="LIST",
        ),
    ] = "bicubic,srcnn",
    degradation: Annotated[
        ReportInput,
        typer.Option(
            "--degrade",
            help="standard: MATLAB bicubic; bilinear: the tutorial's; a track name: a photo's "
            "JPEG, noise and blur after the shrink (see `superres benchmark --help`).",
        ),
    ] = "standard",
    runs: Annotated[
        list[Path] | None,
        typer.Option("--runs", help="Training run folder to plot (repeatable).", metavar="DIR"),
    ] = None,
) -> None:
    """Figures with zoomed crops, a quality/speed plot and one self-contained index.html."""
    from superres.apps.report.html import (
        SUMMARY_COLUMNS,
        build_report,
        method_enlargers,
        summary_rows,
    )

    batch = Batch()
    references = []
    for path, relative in _expand(inputs, batch):
        try:
            references.append((relative.as_posix(), load_pixels(path)))
        except Exception as error:
            batch.report(error, path)
    enlargers = method_enlargers(_split_list(models), scale)
    report = build_report(references, scale, enlargers, output, degradation, runs or [])
    title = f"x{scale}, means over {len(report.images)} image(s)"
    out.print(rich_table(title, SUMMARY_COLUMNS, summary_rows(report.methods)))
    out.print(f"report: {report.page}", highlight=False)
    batch.finish(len(report.images))


@app.command("plot-training")
def plot_training_command(
    runs: Annotated[list[Path], typer.Argument(help="Training run folders, each with log.csv.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Image file to write (.png).")],
) -> None:
    """Training loss and validation PSNR per step of one or more runs, on one figure."""
    from superres.apps.report.figures import save_figure, training_curves_figure

    out.print(f"curves: {save_figure(training_curves_figure(runs), output)}", highlight=False)


@app.command("pair-denoise")
def pair_denoise_command(
    clean: Annotated[Path, typer.Argument(help="Weights trained to clean (denoise 1).")],
    keep: Annotated[Path, typer.Argument(help="Weights trained to keep texture (denoise 0).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the pair.")],
) -> None:
    """Join two trainings of one network into one file that takes `upscale --denoise S`."""
    from superres.models import load_weights_file, save_weights
    from superres.models.registry import pair_for_denoise

    if output.resolve() in (clean.resolve(), keep.resolve()):
        raise ImageWriteError(f"{output}: refusing to overwrite an input file")
    paired = pair_for_denoise(load_weights_file(clean), load_weights_file(keep))
    save_weights(output, paired)
    out.print(f"{output}: {paired.name} x{paired.scale}, denoise 0-1", highlight=False)


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.onnx).")],
    model: Annotated[
        str,
        typer.Option(help="Shipped model name or a superres weights file.", metavar="NAME|FILE"),
    ] = "default",
    scale: Annotated[
        int | None, typer.Option("--scale", "-s", help="[4; a model file: its own]")
    ] = None,
    fmt: Annotated[Literal["onnx"], typer.Option("--format", help="The export format.")] = "onnx",
) -> None:
    """Export a model's network (dynamic height and width), verified against PyTorch."""
    from superres.engine.export import OnnxRuntimeNetwork, export_onnx, max_difference
    from superres.models import load_model

    loaded = load_model(model, scale)
    path = export_onnx(loaded, output)
    sizes = [(1, 1), (1, 9), (17, 23), (40, 31), (64, 64)]
    worst = max_difference(loaded, OnnxRuntimeNetwork(path.read_bytes()), sizes)
    if worst > 1e-4:
        raise SuperresError(f"{path}: ONNX differs from PyTorch by {worst:.2e}; do not use it")
    out.print(
        f"{path}: {loaded.name} x{loaded.scale}; matches PyTorch within {worst:.1e} "
        f"on random inputs of {', '.join(f'{w}x{h}' for h, w in sizes)} pixels",
        highlight=False,
    )


def version_callback(value: bool) -> None:
    if value:
        out.print(f"superres {__version__}")
        raise typer.Exit()


@app.callback()
def common(
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print it."),
    ] = False,
    debug_flag: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")
    ] = False,
) -> None:
    """Single-image super-resolution toolkit."""
    debug["enabled"] = debug["enabled"] or debug_flag


def main() -> None:
    try:
        # Not standalone: click's usage errors become our one line instead of usage + error.
        code = app(standalone_mode=False)
    except _click.exceptions.NoArgsIsHelpError as error:
        out.print(error.format_message(), highlight=False, markup=False)
        sys.exit(error.exit_code)
    except _click.exceptions.UsageError as error:
        hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
        fail(f"{error.format_message()}{hint}")
        sys.exit(error.exit_code)
    except _click.exceptions.ClickException as error:
        fail(error.format_message())
        sys.exit(error.exit_code)
    except typer.Abort:
        fail("interrupted")
        sys.exit(130)
    except SuperresError as error:
        fail(str(error))
        sys.exit(2)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)
    except Exception as error:  # a bug: one line, unless --debug asks for the traceback
        if debug["enabled"]:
            raise
        fail(describe_unexpected(error))
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)
