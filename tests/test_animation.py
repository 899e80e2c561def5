"""Animated images and multi-page TIFF (issues 18 and 14): every frame, its timing kept.

Animations are made here with Pillow: a few 32x24 frames, a moving opaque block on a
half-transparent ground, so that frames differ and transparency has something to keep. The
shipped default model runs at x2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import upscale_cli
from PIL import Image, ImageSequence
from typer.testing import CliRunner

import superres
import superres.apps.cli
from superres.engine.inference import Upscaler
from superres.imageio.files import pixels_from_pil

WIDTH, HEIGHT, SCALE = 32, 24, 2
DURATIONS = [40, 80, 120, 200]  # GIF keeps centiseconds
runner = CliRunner()


def frames_with_alpha(count: int = len(DURATIONS)) -> list[Image.Image]:
    """A bright block moving 5 px a frame over a ground that is transparent on the left."""
    frames = []
    for index in range(count):
        pixels = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
        pixels[..., :3] = (30 + 40 * index, 90, 160)
        pixels[:, WIDTH // 2 :, 3] = 255  # left half transparent
        pixels[6:18, 2 + 5 * index : 10 + 5 * index] = (250, 220, 40, 255)
        frames.append(Image.fromarray(pixels, "RGBA"))
    return frames


def save_animation(path: Path, frames: list[Image.Image], **options: object) -> Path:
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    return path


def read_frames(path: Path) -> tuple[Image.Image, list[np.ndarray], list[float]]:
    """The opened file (for its info), each frame as superres reads it, and the durations."""
    image = Image.open(path)
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        frame.load()
        frames.append(pixels_from_pil(frame))
        durations.append(frame.info.get("duration"))
    return image, frames, durations


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler("default", SCALE)


def enlarged(upscaler: Upscaler, path: Path) -> list[np.ndarray]:
    """What the model makes of each frame of ``path``, the reference for what is written."""
    return [upscaler.upscale(frame) for frame in read_frames(path)[1]]


@pytest.mark.parametrize("loop", [None, 0, 2], ids=["once", "forever", "loop-2"])
def test_gif_keeps_frames_durations_loop_and_transparency(
    tmp_path: Path, upscaler: Upscaler, loop: int | None
) -> None:
    options = {"duration": DURATIONS, "disposal": 2}
    if loop is not None:
        options["loop"] = loop
    source = save_animation(tmp_path / "moving.gif", frames_with_alpha(), **options)
    result = upscale_cli(source, "-o", tmp_path / "big.gif")
    assert result.exit_code == 0, result.output
    image, frames, durations = read_frames(tmp_path / "big.gif")
    assert image.info.get("loop") == loop
    assert durations == DURATIONS
    assert len(frames) == len(DURATIONS)
    for frame, reference in zip(frames, enlarged(upscaler, source), strict=True):
        assert frame.shape == (HEIGHT * SCALE, WIDTH * SCALE, 4)
        # GIF transparency is 1-bit: transparent exactly where the enlarged alpha is below half.
        np.testing.assert_array_equal(frame[..., 3] == 0, reference[..., 3] < 128)
        visible = frame[..., 3] > 0
        error = np.abs(frame[visible][:, :3].astype(int) - reference[visible][:, :3])
        assert error.mean() < 4  # 256-colour palettes


def test_apng_is_kept_exactly(tmp_path: Path, upscaler: Upscaler) -> None:
    """APNG is lossless, so every frame, alpha included, is exactly the model's result."""
    source = save_animation(
        tmp_path / "moving.png", frames_with_alpha(), duration=DURATIONS, loop=3
    )
    result = upscale_cli(source, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    image, frames, durations = read_frames(tmp_path / "out" / "moving.png")
    assert (image.info["loop"], durations) == (3, DURATIONS)
    assert len(frames) == len(DURATIONS)
    for frame, reference in zip(frames, enlarged(upscaler, source), strict=True):
        np.testing.assert_array_equal(frame, reference)


def test_animated_webp_keeps_timing_and_alpha(tmp_path: Path, upscaler: Upscaler) -> None:
    source = save_animation(
        tmp_path / "moving.webp", frames_with_alpha(), duration=DURATIONS, loop=0, lossless=True
    )
    assert upscale_cli(source, "-o", tmp_path / "big.webp").exit_code == 0
    image, frames, durations = read_frames(tmp_path / "big.webp")
    assert (image.info["loop"], durations, len(frames)) == (0, DURATIONS, len(DURATIONS))
    for frame, reference in zip(frames, enlarged(upscaler, source), strict=True):
        assert np.abs(frame[..., 3].astype(int) - reference[..., 3]).max() <= 2
        opaque = reference[..., 3] == 255
        assert np.abs(frame[opaque][:, :3].astype(int) - reference[opaque][:, :3]).mean() < 3


def test_gif_to_webp_keeps_how_often_it_plays(tmp_path: Path) -> None:
    """A GIF's loop count means repeats after the first play; WebP's counts every play."""
    source = save_animation(tmp_path / "a.gif", frames_with_alpha(), duration=DURATIONS, loop=2)
    assert upscale_cli(source, "-o", tmp_path / "out", "--format", "webp").exit_code == 0
    image, _, durations = read_frames(tmp_path / "out" / "a.webp")
    assert (image.info["loop"], durations) == (3, DURATIONS)


def test_multi_page_tiff_keeps_every_page(tmp_path: Path, upscaler: Upscaler) -> None:
    """Pages of their own sizes and modes, 16-bit grey included, each enlarged exactly."""
    first = frames_with_alpha(1)[0]
    grey16 = Image.fromarray((np.arange(10 * 14).reshape(10, 14) * 400).astype(np.uint16))
    pages = [first, first.convert("RGB").resize((20, 14)), grey16]
    source = save_animation(tmp_path / "scan.tiff", pages)
    assert upscale_cli(source, "-o", tmp_path / "out").exit_code == 0
    image, frames, _ = read_frames(tmp_path / "out" / "scan.tiff")
    assert getattr(image, "n_frames", 1) == 3
    references = enlarged(upscaler, source)
    assert [f.shape for f in frames] == [(48, 64, 4), (28, 40, 3), (20, 28)]
    assert frames[2].dtype == np.uint16
    for frame, reference in zip(frames, references, strict=True):
        np.testing.assert_array_equal(frame, reference)


def test_gifs_in_a_folder_are_processed_never_skipped(tmp_path: Path) -> None:
    """Issue 14: an animated GIF in a folder made nothing and said nothing; a still GIF given
    alone was refused as not an image."""
    folder = tmp_path / "in"
    folder.mkdir()
    save_animation(folder / "moving.gif", frames_with_alpha(), duration=DURATIONS, loop=0)
    frames_with_alpha(1)[0].convert("RGB").save(folder / "still.gif")
    (folder / "broken.gif").write_bytes((folder / "moving.gif").read_bytes()[:200])
    result = upscale_cli(folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{folder / 'moving.gif'} -> {tmp_path / 'out' / 'moving.gif'} (64x48)" in lines
    assert f"{folder / 'still.gif'} -> {tmp_path / 'out' / 'still.gif'} (64x48)" in lines
    assert [line for line in lines if line.startswith("error:")] == [
        next(line for line in lines if line.startswith(f"error: {folder / 'broken.gif'}: "))
    ]
    assert "2 written, 0 skipped, 1 failed" in result.output
    alone = upscale_cli(folder / "still.gif", "-o", tmp_path / "big.png")
    assert alone.exit_code == 0, alone.output
    with Image.open(tmp_path / "big.png") as image:
        assert (image.format, image.size) == ("PNG", (64, 48))


def test_an_animation_refused_by_its_target_is_one_line(tmp_path: Path) -> None:
    source = save_animation(tmp_path / "a.gif", frames_with_alpha(), duration=DURATIONS)
    result = upscale_cli(source, "-o", tmp_path / "a.jpg")
    assert result.exit_code == 1
    assert (
        f"error: {tmp_path / 'a.jpg'}: a .jpg cannot hold 4 frames; use .gif, .webp, .png "
        "(APNG) or .tiff" in result.output
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part") or p.suffix == ".jpg"]


def test_an_animation_refused_by_the_engine_is_named_once(tmp_path: Path) -> None:
    """The engine's reasons name no file, so the line named none; a write error (above) names
    its target itself and is printed as it is, not with the source put in front."""
    source = save_animation(tmp_path / "a.gif", frames_with_alpha(), duration=DURATIONS)
    result = upscale_cli(source, "-o", tmp_path / "b.gif", "--max-output-pixels", 100)
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {source}: enlarging 32x24 by 2 makes 64x48 = 3,072 pixels")
    assert line.count(str(tmp_path)) == 1


def test_python_api(tmp_path: Path) -> None:
    source = save_animation(tmp_path / "a.png", frames_with_alpha(), duration=DURATIONS)
    summary = superres.upscale_file(source, tmp_path / "b.webp", scale=SCALE)
    assert (summary.frames, summary.size) == (len(DURATIONS), (64, 48))
    assert read_frames(tmp_path / "b.webp")[2] == DURATIONS
