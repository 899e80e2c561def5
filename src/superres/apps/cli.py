"""The ``superres`` command: a thin shell over the Python API.

Every user error ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from superres import __version__
from superres.apps.report.tables import format_number, rich_table, write_csv, write_json
from superres.errors import ImageWriteError, SuperresError
from superres.imageio.files import (
    find_images,
    load_pixels,
    output_path_for,
    read_image,
    write_image,
)
from superres.quality.degrade import METHODS, degrade, modcrop, resize
from superres.quality.metrics import PROTOCOLS, score
from superres.quality.realistic import PRESETS, STANDARD, TRACKS, degrade_realistic
from superres.quality.realistic import preset as realistic_preset

app = typer.Typer(
    name="superres",
    help="Single-image super-resolution: degrade, measure, train, benchmark and upscale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

Inputs = Annotated[
    list[Path], typer.Argument(help="Image files or folders (searched recursively).")
]
# `auto` is what benchmarks/speed.py measured fastest for the model (see superres.engine.runtime).
PRECISION_HELP = "auto, fp32, or bf16 (CPUs with native bf16); auto: bf16 if it costs <0.05 dB."
BACKEND_HELP = "auto, pytorch or onnxruntime; auto: the fastest measured."
TILE_HELP = "Tile side in input pixels (bounds memory), or auto: the fastest measured."


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
    files, missing = find_images(inputs)
    for path in missing:
        batch.report(SuperresError(f"{path}: no such file or folder"))
    return files


DEGRADE_METHODS = (*METHODS, "realistic")


@app.command("degrade")
def degrade_command(
    inputs: Inputs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")],
    scale: Annotated[
        float, typer.Option("--scale", "-s", help="Shrink factor, e.g. 2, 3, 1.5.")
    ] = 2.0,
    method: Annotated[
        str,
        typer.Option(
            help=f"One of: {', '.join(DEGRADE_METHODS)} (realistic: blur, noise, JPEG, as photos)."
        ),
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
    preset: Annotated[str, typer.Option(help=f"Realistic: {', '.join(PRESETS)}.")] = "standard",
    strength: Annotated[
        float | None,
        typer.Option(
            help="Realistic: scale blur and noise, 0 (almost clean) to 3 (overrides --preset)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", help="png, jpg, webp or tiff (default: as input; png is lossless)."
        ),
    ] = None,
) -> None:
    """Shrink images by a factor (and optionally enlarge them back), keeping their file names."""
    if method not in DEGRADE_METHODS:
        raise SuperresError(
            f"unknown method {method!r}; choose one of {', '.join(DEGRADE_METHODS)}"
        )
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
    protocol: Annotated[str, typer.Option(help="standard (SR papers) or tutorial.")] = "standard",
    scale: Annotated[
        int | None, typer.Option(help="SR scale: shaves this border (standard protocol).")
    ] = None,
    shave: Annotated[int | None, typer.Option(help="Border to shave (overrides --scale).")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write one row per image.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write rows and means.")] = None,
) -> None:
    """PSNR, MSE and SSIM of images against their references (matched by file name)."""
    if protocol not in PROTOCOLS:
        raise SuperresError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
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
    model: Annotated[str, typer.Option(help="Architecture, e.g. srcnn-955, compact.")],
    scale: Annotated[int, typer.Option(help="2, 3 or 4.")],
    train: Annotated[list[Path], typer.Option(help="Training image folder (repeatable).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")],
    val: Annotated[Path | None, typer.Option(help="Validation folder (e.g. Set5).")] = None,
    steps: Annotated[int, typer.Option(help="Total optimiser steps.")] = 20_000,
    epoch_steps: Annotated[int, typer.Option(help="Steps between validations.")] = 1_000,
    batch_size: Annotated[int, typer.Option()] = 16,
    patch_size: Annotated[int, typer.Option(help="HR patch side (multiple of scale).")] = 48,
    lr: Annotated[float, typer.Option(help="Adam learning rate (cosine decay to 0).")] = 1e-3,
    loss: Annotated[str, typer.Option(help="l1 or mse.")] = "l1",
    seed: Annotated[int, typer.Option()] = 0,
    precision: Annotated[str, typer.Option(help="fp32 or bf16 (autocast).")] = "fp32",
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all).")] = None,
    init: Annotated[
        Path | None, typer.Option(help="Start from these weights (fine-tuning a trained model).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run's checkpoint.")
    ] = False,
    degradation: Annotated[
        str, typer.Option(help="bicubic (the standard protocol) or realistic (real-world photos).")
    ] = "bicubic",
    preset: Annotated[
        str, typer.Option(help="Realistic degradation: light, standard, heavy or no-noise.")
    ] = "standard",
    val_track: Annotated[
        str,
        typer.Option(help="Degradation validation scores on: clean, jpeg50, noise10-jpeg70, ..."),
    ] = "clean",
) -> None:
    """Train a model on folders of images; validation PSNR per epoch goes to RUN_DIR/log.csv."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from superres.training.trainer import TrainConfig, Trainer

    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(
        model=model,
        scale=scale,
        train=[str(p) for p in train],
        val=str(val) if val else None,
        steps=steps,
        epoch_steps=epoch_steps,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        loss=loss,
        seed=seed,
        precision=precision,
        init=str(init) if init else None,
        degradation=degradation,
        degradation_preset=preset,
        val_track=val_track,
    )
    trainer = Trainer(config, output)
    if resume:
        trainer.resume()
    elif (output / "checkpoint.pt").exists():
        raise SuperresError(f"{output} already holds a run: pass --resume or choose another folder")
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.5f}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, disable=not err.is_terminal) as progress:
        task = progress.add_task(f"{model} x{scale}", total=steps, completed=trainer.step, loss=0.0)
        trainer.run(
            on_step=lambda step, value: progress.update(task, completed=step, loss=value),
            on_epoch=lambda report: progress.console.print(_epoch_line(report), highlight=False),
        )
    out.print(f"weights: {output / 'model.safetensors'}")


def _epoch_line(report) -> str:
    psnr = format_number(report.val_psnr, 2)
    return (
        f"epoch {report.epoch}: step {report.step}, loss {report.loss:.5f}, val PSNR {psnr}, "
        f"{report.seconds:.0f} s"
    )


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@app.command("benchmark")
def benchmark_command(
    datasets: Annotated[
        list[Path], typer.Option(help="Reference folders, e.g. Set5 (repeatable).")
    ],
    models: Annotated[
        str, typer.Option(help="Comma-separated: bicubic, srcnn, ...")
    ] = "bicubic,srcnn",
    scales: Annotated[str, typer.Option(help="Comma-separated scales.")] = "2,3,4",
    csv_path: Annotated[Path | None, typer.Option("--csv")] = None,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    markdown_path: Annotated[Path | None, typer.Option("--markdown")] = None,
    backend: Annotated[str, typer.Option(help="pytorch or onnxruntime.")] = "pytorch",
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 on CPUs with native bf16 (fixed, not auto).")
    ] = "fp32",
    tracks: Annotated[
        str,
        typer.Option(
            "--track",
            help=f"Comma-separated input degradations: {', '.join(TRACKS)} (clean: the papers').",
        ),
    ] = "clean",
) -> None:
    """Standard-protocol PSNR/SSIM per dataset and scale, beside the published figures."""
    from superres.apps.report.tables import benchmark_markdown, benchmark_rows, write_text_atomic
    from superres.engine.evaluation import PUBLISHED, benchmark

    for folder in datasets:
        if not folder.is_dir():
            raise SuperresError(f"{folder}: no such folder")
    try:
        scale_list = [int(s) for s in _split_list(scales)]
    except ValueError as error:
        raise SuperresError(f"--scales takes whole numbers like 2,3,4: {error}") from error
    results = benchmark(
        _split_list(models), scale_list, datasets, backend, precision, _split_list(tracks)
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
    arch: Annotated[str, typer.Option(help="Architecture the file holds.")] = "srcnn-tutorial",
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


@app.command("upscale")
def upscale_command(
    inputs: Inputs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (or file).")],
    model: Annotated[str, typer.Option(help="Model name; see `superres models`.")] = "default",
    scale: Annotated[int, typer.Option("--scale", "-s", help="Model scale: 2, 3 or 4.")] = 4,
    outscale: Annotated[
        float | None, typer.Option(help="Final size factor, e.g. 1.5 or 5 (resampled).")
    ] = None,
    tile: Annotated[str, typer.Option(help=TILE_HELP)] = "auto",
    fmt: Annotated[
        str | None, typer.Option("--format", help="png, jpg, webp or tiff (default: as input).")
    ] = None,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality, 1-100.")] = 95,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs.")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    denoise: Annotated[
        float | None,
        typer.Option(
            help="real only: 0 keeps the photo's texture and noise, 1 (default) cleans them."
        ),
    ] = None,
) -> None:
    """Enlarge images with a model; existing outputs are skipped, so a stopped batch resumes."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from superres.engine.batch import check_target, plan_jobs, protected_paths, upscale_file
    from superres.engine.inference import Upscaler
    from superres.models import load_model

    if outscale is not None and not 0 < outscale <= 16:
        raise SuperresError(f"--outscale must be above 0 and at most 16, got {outscale}")
    if fmt is not None and fmt.lower() not in ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp"):
        raise SuperresError(f"unknown --format {fmt!r}; choose png, jpg, webp or tiff")
    if not 1 <= quality <= 100:
        raise SuperresError(f"--quality must be between 1 and 100, got {quality}")
    upscaler = Upscaler(
        load_model(model, scale),
        tile=tile,
        device=device,
        threads=threads,
        precision=precision,
        backend=backend,
        denoise=denoise,
    )
    chosen = upscaler.runtime.describe()
    out.print(f"{upscaler.model.name} x{upscaler.scale}: {chosen}", highlight=False)
    batch = Batch()
    jobs, missing = plan_jobs(inputs, output, fmt)
    for path in missing:
        batch.report(SuperresError(f"{path}: no such file or folder"))
    protected = protected_paths(jobs)
    claimed: dict[Path, Path] = {}
    # One unwrapped line per file, names as they are (a "[red]" in a file name is not markup).
    verbatim = {"highlight": False, "markup": False, "soft_wrap": True}
    written = skipped = 0
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, disable=not err.is_terminal) as progress:
        overall = progress.add_task("images", total=len(jobs))
        tiles = progress.add_task("tiles", total=None)
        for job in jobs:
            try:
                if not check_target(job, protected, overwrite, claimed):
                    skipped += 1
                    out.print(f"skip {job.target} (exists; --overwrite replaces it)", **verbatim)
                    continue
                progress.update(tiles, description=job.source.name, completed=0, total=None)
                size = upscale_file(
                    upscaler,
                    job,
                    outscale,
                    quality,
                    lambda done, total: progress.update(tiles, completed=done, total=total),
                )
                written += 1
                out.print(f"{job.source} -> {job.target} ({size[0]}x{size[1]})", **verbatim)
            except Exception as error:
                batch.report(error, job.source)
            finally:
                progress.advance(overall)
    summary = f"{written} written, {skipped} skipped, {batch.failures} failed"
    if not batch.failures:
        out.print(summary, highlight=False)
    batch.finish(written, summary)


@app.command("models")
def models_command() -> None:
    """The shipped models: scale, parameters, file size, Set5 PSNR and how `auto` runs them here."""
    import torch

    from superres.engine.runtime import resolve_runtime
    from superres.models.registry import ALIASES, shipped_models

    rows = []
    for entry in shipped_models():
        aliases = [alias for alias, name in ALIASES.items() if name == entry.name]
        choice = resolve_runtime(entry.model, torch.device("cpu"))
        rows.append(
            [
                entry.name + (f" ({', '.join(aliases)})" if aliases else ""),
                f"x{entry.scale}",
                f"{entry.parameters:,}",
                f"{entry.file_kib:.0f} KiB",
                entry.metadata.get("val_psnr", "-") or "-",
                entry.metadata.get("steps", "-"),
                f"{choice.precision} {choice.tile}"
                + ("" if choice.backend == "pytorch" else f" {choice.backend}"),
            ]
        )
    # "auto runs": the precision and tile (and backend, when not PyTorch) auto picks here.
    columns = ["model", "scale", "parameters", "file", "Set5 dB", "steps", "auto runs"]
    out.print(rich_table("shipped models", columns, rows))


@app.command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")] = Path(
        "superres-demo"
    ),
    models: Annotated[str, typer.Option(help="Comma-separated methods to compare.")] = (
        "default,srcnn"
    ),
    scale: Annotated[int, typer.Option("--scale", "-s")] = 3,
) -> None:
    """The main job on built-in data: enlarge a shrunk sample photo, score, figure, report."""
    from skimage import data

    from superres.apps.report.html import (
        SUMMARY_COLUMNS,
        build_report,
        method_enlargers,
        summary_rows,
    )

    enlargers = method_enlargers(_split_list(models), scale)
    report = build_report([("astronaut.png", data.astronaut())], scale, enlargers, output)
    title = f"scikit-image's astronaut, x{scale}, standard protocol (Y, border {scale})"
    out.print(rich_table(title, SUMMARY_COLUMNS, summary_rows(report.methods)))
    out.print(f"figure: {report.images[0].figure}\nreport: {report.page}", highlight=False)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind (default: localhost only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option()] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, MB.")] = 20.0,
    max_pixels: Annotated[int, typer.Option(help="Largest input image, pixels.")] = 16_000_000,
    workers: Annotated[int, typer.Option(help="Images processed at once.")] = 1,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "auto",
    tile: Annotated[str, typer.Option(help=TILE_HELP)] = "auto",
) -> None:
    """A web page and an HTTP API for upscaling."""
    from superres.apps.web.server import run

    run(
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        workers=workers,
        precision=precision,
        backend=backend,
        tile=tile,
    )


@app.command("report")
def report_command(
    inputs: Inputs,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder.")],
    scale: Annotated[int, typer.Option("--scale", "-s", help="SR scale: 2, 3 or 4.")] = 3,
    models: Annotated[
        str, typer.Option(help="Comma-separated methods; bicubic is always included.")
    ] = "bicubic,srcnn",
    degradation: Annotated[
        str,
        typer.Option("--degrade", help="standard (MATLAB bicubic) or bilinear (tutorial)."),
    ] = "standard",
    runs: Annotated[
        list[Path] | None, typer.Option("--runs", help="Training run folder to plot (repeatable).")
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
    model: Annotated[str, typer.Option(help="Shipped model name.")] = "default",
    scale: Annotated[int, typer.Option("--scale", "-s")] = 4,
    fmt: Annotated[str, typer.Option("--format", help="Only onnx for now.")] = "onnx",
) -> None:
    """Export a model's network (dynamic height and width), verified against PyTorch."""
    from superres.engine.export import OnnxRuntimeNetwork, export_onnx, max_difference
    from superres.models import load_model

    if fmt != "onnx":
        raise SuperresError(f"unknown export format {fmt!r}; only onnx is supported")
    loaded = load_model(model, scale)
    path = export_onnx(loaded, output)
    sizes = [(17, 23), (40, 31), (64, 64)]
    worst = max_difference(loaded, OnnxRuntimeNetwork(path.read_bytes()), sizes)
    if worst > 1e-4:
        raise SuperresError(f"{path}: ONNX differs from PyTorch by {worst:.2e}; do not use it")
    out.print(
        f"{path}: {loaded.name} x{loaded.scale}; matches PyTorch within {worst:.1e} "
        f"on {len(sizes)} random sizes",
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
        app()
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
