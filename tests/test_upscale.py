"""`superres upscale` and `superres.upscale` (issue 4), every promise checked end to end.

A tiny compact x2 network with random weights stands in for the shipped models (which may not
exist yet): it is saved to a temporary folder that SUPERRES_WEIGHTS_DIR points the registry at,
and its random detail branch makes its output clearly different from plain bicubic.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import run_main, run_superres, upscale_cli
from PIL import Image, ImageCms
from rich.console import Console
from skimage import data
from typer.testing import CliRunner

import superres
import superres.apps.cli
import superres.engine.batch
from superres.api import get_upscaler
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.imageio.files import load_pixels, read_image, write_image
from superres.models import create_model, save_weights
from superres.quality.degrade import imresize_matlab

runner = CliRunner()
SCALE = 2
EXIF_MAKE = 0x010F
EXIF_ORIENTATION = 0x0112


@pytest.fixture(scope="session")
def weights_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a tiny compact x2 model with random (not bicubic-only) weights."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = create_model("compact", SCALE, width=8, blocks=1)
    for parameter in model.network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    save_weights(folder / f"compact-x{SCALE}.safetensors", model)
    return folder


@pytest.fixture(autouse=True)
def tiny_model(weights_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test sees only the tiny model, and no test reuses another's cached upscaler."""
    monkeypatch.setenv("SUPERRES_WEIGHTS_DIR", str(weights_folder))
    get_upscaler.cache_clear()
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads sets a process-wide value
    get_upscaler.cache_clear()


PHOTO = np.ascontiguousarray(data.astronaut()[100:140, 150:202])


@pytest.fixture
def photo() -> np.ndarray:
    """A small RGB photograph (40x52: not square, so a transposition would show)."""
    return PHOTO


def expected(pixels: np.ndarray, outscale: float | None = None) -> np.ndarray:
    """What the Python API makes of these pixels, the reference for files the CLI writes."""
    return superres.upscale(pixels, model="default", scale=SCALE, outscale=outscale)


def no_partial_files(folder: Path) -> bool:
    return not [path for path in folder.rglob("*") if path.name.endswith(".part")]


# ------------------------------------------------------------------------------ tiling


def test_tiled_cli_output_equals_untiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tile 16 on a 70x90 image (30 overlapping tiles) gives the untiled image within 1 level."""
    image = np.ascontiguousarray(data.astronaut()[200:270, 200:290])
    write_image(tmp_path / "in.png", image)
    tiles: list[tuple[int, ...]] = []
    process = Upscaler._process

    def counted(self: Upscaler, tile: np.ndarray, peak: float) -> np.ndarray:
        tiles.append(tile.shape)
        return process(self, tile, peak)

    monkeypatch.setattr(Upscaler, "_process", counted)
    exact = ("--precision", "fp32", "--backend", "pytorch")
    tiled_run = upscale_cli(tmp_path / "in.png", "-o", tmp_path / "tiled", "--tile", 16, *exact)
    assert tiled_run.exit_code == 0
    assert len(tiles) == 5 * 6
    whole_run = upscale_cli(tmp_path / "in.png", "-o", tmp_path / "whole", "--tile", 512, *exact)
    assert whole_run.exit_code == 0
    assert len(tiles) == 5 * 6 + 1
    tiled = read_image(tmp_path / "tiled" / "in.png").pixels.astype(int)
    whole = read_image(tmp_path / "whole" / "in.png").pixels.astype(int)
    assert tiled.shape == (140, 180, 3)
    assert np.abs(tiled - whole).max() <= 1
    # The network really contributes, so misplaced tile context would show.
    assert np.abs(whole - imresize_matlab(image, scale=SCALE)).max() > 10


# ---------------------------------------------------------------------- modes and depths


def _palette(rgb: np.ndarray, transparent: bool) -> Image.Image:
    image = Image.fromarray(rgb).quantize(16)
    if transparent:
        image.info["transparency"] = 0
    return image


def _alpha_ramp(height: int, width: int, dtype: type = np.uint8) -> np.ndarray:
    peak = np.iinfo(dtype).max
    return np.linspace(0, peak, width).astype(dtype)[None].repeat(height, axis=0)


def _mode_cases(rgb: np.ndarray) -> dict[str, tuple[Image.Image | np.ndarray, np.ndarray, str]]:
    """name -> (what is saved, the pixels it must decode to, the PIL mode of the output)."""
    # 16 bits with the low byte in use (an 8-bit detour would lose it), at most 65479.
    low_byte = (np.arange(rgb.size) % 200).astype(np.uint16).reshape(rgb.shape)
    wide = rgb.astype(np.uint16) * 256 + low_byte
    rgba = np.dstack([rgb, _alpha_ramp(*rgb.shape[:2])])
    rgba16 = np.dstack([wide, _alpha_ramp(*rgb.shape[:2], np.uint16)])
    palette, palette_alpha = _palette(rgb, False), _palette(rgb, True)
    return {
        "rgb.png": (rgb, rgb, "RGB"),
        "rgba.png": (rgba, rgba, "RGBA"),
        "grey.png": (rgb[..., 1], rgb[..., 1], "L"),
        "grey-alpha.png": (rgba[..., [1, 3]], rgba[..., [1, 3]], "LA"),
        "palette.png": (palette, np.array(palette.convert("RGB")), "RGB"),
        "palette-alpha.png": (palette_alpha, np.array(palette_alpha.convert("RGBA")), "RGBA"),
        "rgb16.png": (wide, wide, "RGB"),
        "rgba16.png": (rgba16, rgba16, "RGBA"),
        "grey16.png": (wide[..., 0], wide[..., 0], "I;16"),
        "rgb16.tiff": (wide, wide, "RGB"),
        "grey16.tiff": (wide[..., 0], wide[..., 0], "I;16"),
        "rgb.tiff": (rgb, rgb, "RGB"),
    }


@pytest.mark.parametrize("name", sorted(_mode_cases(PHOTO)))
def test_every_image_mode_round_trips(tmp_path: Path, photo: np.ndarray, name: str) -> None:
    """Mode, channels, alpha and bit depth survive; the pixels are the API's, exactly."""
    saved, pixels, mode = _mode_cases(photo)[name]
    source = tmp_path / "in" / name
    source.parent.mkdir()
    if isinstance(saved, Image.Image):
        saved.save(source)
    else:
        write_image(source, saved)
    result = upscale_cli(source.parent, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = tmp_path / "out" / name
    with Image.open(written) as image:
        assert image.mode == mode
        assert image.size == (photo.shape[1] * SCALE, photo.shape[0] * SCALE)
    out = read_image(written).pixels
    assert out.dtype == pixels.dtype and out.ndim == pixels.ndim
    np.testing.assert_array_equal(out, expected(pixels))


def test_alpha_is_enlarged_apart_from_colour(tmp_path: Path, photo: np.ndarray) -> None:
    """Colour is unaffected by alpha; alpha itself is plain bicubic, not through the network."""
    alpha = _alpha_ramp(*photo.shape[:2])
    write_image(tmp_path / "in" / "rgb.png", photo)
    write_image(tmp_path / "in" / "rgba.png", np.dstack([photo, alpha]))
    assert upscale_cli(tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    rgb = read_image(tmp_path / "out" / "rgb.png").pixels
    rgba = read_image(tmp_path / "out" / "rgba.png").pixels
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    bicubic = imresize_matlab(alpha, scale=SCALE).astype(int)
    assert np.abs(rgba[..., 3].astype(int) - bicubic).max() <= 1


def test_grey_stays_grey_and_is_enlarged_by_the_network(tmp_path: Path, photo: np.ndarray) -> None:
    grey = photo[..., 0]
    write_image(tmp_path / "grey.png", grey)
    assert upscale_cli(tmp_path / "grey.png", "-o", tmp_path / "out").exit_code == 0
    out = read_image(tmp_path / "out" / "grey.png").pixels
    assert out.shape == (80, 104)
    assert np.abs(out.astype(int) - imresize_matlab(grey, scale=SCALE)).max() > 10


# ------------------------------------------------------------------------------ metadata


# Made once: a profile records its creation time.
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[EXIF_MAKE] = "superres test camera"
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


UPRIGHT = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied_and_reset(
    tmp_path: Path, photo: np.ndarray, orientation: int
) -> None:
    """The output holds upright pixels and says Orientation 1, so viewers do not turn it again."""
    Image.fromarray(photo).save(tmp_path / "turned.png", exif=_exif(orientation))
    assert upscale_cli(tmp_path / "turned.png", "-o", tmp_path / "out").exit_code == 0
    written = tmp_path / "out" / "turned.png"
    upright = np.ascontiguousarray(UPRIGHT[orientation](photo))
    np.testing.assert_array_equal(read_image(written).pixels, expected(upright))
    with Image.open(written) as image:
        assert image.getexif().get(EXIF_ORIENTATION, 1) == 1


@pytest.mark.parametrize(
    "source,fmt",
    [
        ("photo.jpg", "jpg"),
        ("photo.jpg", "png"),
        ("photo.jpg", "webp"),
        ("photo.jpg", "tiff"),
        ("photo.png", "jpg"),
        ("photo16.png", "png"),
    ],
)
def test_icc_profile_and_exif_are_carried(
    tmp_path: Path, photo: np.ndarray, source: str, fmt: str
) -> None:
    pixels = photo.astype(np.uint16) * 257 if source == "photo16.png" else photo
    write_image(tmp_path / "in" / source, pixels, icc_profile=ICC, exif=_exif(6))
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", "--format", fmt)
    assert result.exit_code == 0, result.output
    (written,) = (tmp_path / "out").iterdir()
    with Image.open(written) as image:
        assert image.size == (80, 104)  # turned upright: 52x40 (WxH) stored, orientation 6
        assert image.info.get("icc_profile") == ICC
        exif = image.getexif()
        assert exif.get(EXIF_MAKE) == "superres test camera"
        assert exif.get(EXIF_ORIENTATION, 1) == 1


def test_exif_of_a_tiff_source_is_carried(tmp_path: Path, photo: np.ndarray) -> None:
    Image.fromarray(photo).save(tmp_path / "scan.tiff", exif=_exif())
    result = upscale_cli(tmp_path / "scan.tiff", "-o", tmp_path / "out", "--format", "jpg")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "scan.jpg") as image:
        assert image.getexif().get(EXIF_MAKE) == "superres test camera"


# ----------------------------------------------------------------------- format, quality


@pytest.mark.parametrize("fmt,pillow_name", [("jpg", "JPEG"), ("webp", "WEBP")])
def test_format_and_quality(tmp_path: Path, photo: np.ndarray, fmt: str, pillow_name: str) -> None:
    """--format picks the encoder and extension; a higher --quality is larger and closer."""
    write_image(tmp_path / "photo.png", photo)
    reference = expected(photo).astype(int)
    errors, sizes = [], []
    for quality in (20, 95):
        folder = tmp_path / f"q{quality}"
        result = upscale_cli(
            tmp_path / "photo.png", "-o", folder, "--format", fmt, "--quality", quality
        )
        assert result.exit_code == 0, result.output
        written = folder / f"photo.{fmt}"
        with Image.open(written) as image:
            assert image.format == pillow_name
        errors.append(np.abs(read_image(written).pixels - reference).mean())
        sizes.append(written.stat().st_size)
    assert sizes[0] < sizes[1] and errors[0] > errors[1]
    assert errors[1] < 3


@pytest.mark.parametrize(
    "outscale,size", [(1.5, (60, 78)), (5, (200, 260)), (2.7, (108, 140)), (0.5, (20, 26))]
)
def test_outscale_gives_the_exact_size(
    tmp_path: Path, photo: np.ndarray, outscale: float, size: tuple[int, int]
) -> None:
    write_image(tmp_path / "photo.png", photo)
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "out", "--outscale", outscale)
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "out" / "photo.png").pixels
    assert out.shape == (*size, 3)
    np.testing.assert_array_equal(out, expected(photo, outscale))


def test_outscale_keeps_alpha_and_sixteen_bits(tmp_path: Path, photo: np.ndarray) -> None:
    rgba = np.dstack([photo, _alpha_ramp(*photo.shape[:2])]).astype(np.uint16) * 257
    write_image(tmp_path / "photo.png", rgba)
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "out", "--outscale", 2.7)
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "out" / "photo.png").pixels
    assert out.shape == (108, 140, 4) and out.dtype == np.uint16


# ------------------------------------------------------------------- batches and safety


def test_output_mirrors_the_input_tree(tmp_path: Path, photo: np.ndarray) -> None:
    """Folders are searched recursively (hidden ones and non-images skipped), files taken as is."""
    tree = tmp_path / "in"
    write_image(tree / "top.png", photo)
    write_image(tree / "a" / "b" / "deep.JPG", photo)
    write_image(tree / ".hidden" / "skip.png", photo)
    (tree / "notes.txt").write_text("not an image")
    write_image(tmp_path / "single.webp", photo)
    result = upscale_cli(tree, tmp_path / "single.webp", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.*"))
    assert written == [Path("a/b/deep.JPG"), Path("single.webp"), Path("top.png")]


def test_one_file_to_a_named_output_file(tmp_path: Path, photo: np.ndarray) -> None:
    write_image(tmp_path / "photo.jpg", photo)
    assert upscale_cli(tmp_path / "photo.jpg", "-o", tmp_path / "big.png").exit_code == 0
    with Image.open(tmp_path / "big.png") as image:
        assert image.format == "PNG" and image.size == (104, 80)


def test_each_file_is_reported_on_one_verbatim_line(tmp_path: Path, photo: np.ndarray) -> None:
    """Long paths are not wrapped and "[red]" in a name is not taken for markup (logs, grep)."""
    source = tmp_path / ("a-rather-long-folder-name-" * 3) / "holiday [red] 2024.png"
    write_image(source, photo)
    target = tmp_path / "out" / source.name
    result = upscale_cli(source.parent, "-o", target.parent)
    assert f"{source} -> {target} (104x80)" in result.output.splitlines()
    result = upscale_cli(source.parent, "-o", target.parent)
    assert f"skip {target} (exists; --overwrite replaces it)" in result.output.splitlines()


def test_progress_bar_counts_images_and_tiles(
    tmp_path: Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, stderr shows images done and the current image's tiles done."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(superres.apps.cli, "err", console)
    write_image(tmp_path / "photo.png", photo)
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "out", "--tile", 16)
    assert result.exit_code == 0, result.output
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).split("\r")[-1]
    assert re.search(r"images\b.*\b1/1\b", final), final
    assert re.search(r"photo\.png\b.*\b12/12\b", final), final  # 3x4 tiles of 16


def interrupting(
    function: Callable[..., Any], at_call: int, half_write: bool = False
) -> Callable[..., Any]:
    """``function``, except that its ``at_call``-th call raises KeyboardInterrupt, as Ctrl-C does.

    With ``half_write`` (for ``Image.save(self, file, ...)``) it first writes part of an image.
    """
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == at_call:
            if half_write:
                args[1].write(b"\x89PNG\r\n\x1a\n half an image")
            raise KeyboardInterrupt
        return function(*args, **kwargs)

    return wrapper


@pytest.fixture
def three_photos(tmp_path: Path, photo: np.ndarray) -> Path:
    for index, name in enumerate(("a.png", "b.png", "c.png")):
        write_image(tmp_path / "in" / name, np.roll(photo, index * 5, axis=1))
    return tmp_path / "in"


@pytest.mark.parametrize("during", ["encoding", "rename"])
def test_ctrl_c_leaves_no_partial_file_and_the_batch_resumes(
    tmp_path: Path, three_photos: Path, monkeypatch: pytest.MonkeyPatch, during: str
) -> None:
    """Interrupted while writing b.png: a.png whole, b.png and c.png absent, no temp file."""
    owner, name = (Image.Image, "save") if during == "encoding" else (os, "replace")
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        broken = interrupting(getattr(owner, name), 2, half_write=during == "encoding")
        patch.setattr(owner, name, broken)
        result = upscale_cli(three_photos, "-o", out)
    assert result.exit_code == 130
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # so also no .part file
    first = (out / "a.png").read_bytes()
    result = upscale_cli(three_photos, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"skip {out / 'a.png'} (exists" in result.output
    assert (out / "a.png").read_bytes() == first
    for name in ("b.png", "c.png"):
        pixels = read_image(three_photos / name).pixels
        np.testing.assert_array_equal(read_image(out / name).pixels, expected(pixels))


def test_ctrl_c_during_overwrite_keeps_the_previous_output(
    tmp_path: Path, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(tmp_path / "in" / "photo.png", photo)
    write_image(tmp_path / "out" / "photo.png", photo[:4, :4])
    before = (tmp_path / "out" / "photo.png").read_bytes()
    monkeypatch.setattr(os, "replace", interrupting(os.replace, 1))
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", "--overwrite")
    assert result.exit_code == 130
    assert (tmp_path / "out" / "photo.png").read_bytes() == before
    assert no_partial_files(tmp_path / "out")


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path: Path, three_photos: Path) -> None:
    out = tmp_path / "out"
    write_image(out / "a.png", np.zeros((3, 3), np.uint8))  # an earlier, different output
    before = (out / "a.png").read_bytes()
    result = upscale_cli(three_photos, "-o", out)
    assert result.exit_code == 0, result.output
    assert "2 written, 1 skipped, 0 failed" in result.output
    assert (out / "a.png").read_bytes() == before
    assert read_image(out / "b.png").pixels.shape == (80, 104, 3)
    result = upscale_cli(three_photos, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert "3 written, 0 skipped, 0 failed" in result.output
    pixels = read_image(three_photos / "a.png").pixels
    np.testing.assert_array_equal(read_image(out / "a.png").pixels, expected(pixels))


@pytest.mark.parametrize(
    "args",
    [
        ["{in}", "-o", "{in}"],
        ["{in}", "-o", "{in}", "--overwrite"],
        ["{in}", "-o", "{link}", "--overwrite"],
        ["{in}/a.png", "-o", "{in}/a.png", "--overwrite"],
        ["{in}", "-o", "{in}", "--format", "jpg", "--overwrite"],
    ],
)
def test_an_input_is_never_overwritten(tmp_path: Path, photo: np.ndarray, args: list[str]) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo)
    write_image(folder / "b.jpg", photo)
    (tmp_path / "link").symlink_to(folder)
    before = {path: path.read_bytes() for path in folder.iterdir()}
    paths = {"{in}": str(folder), "{link}": str(tmp_path / "link")}
    result = upscale_cli(*(re.sub(r"\{\w+\}", lambda m: paths[m[0]], a) for a in args))
    assert result.exit_code == 1
    assert "refusing to overwrite an input file" in result.output
    assert {path: path.read_bytes() for path in before} == before
    assert no_partial_files(folder)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_two_inputs_bound_for_one_output_are_reported(
    tmp_path: Path, photo: np.ndarray, overwrite: list[str]
) -> None:
    """Same-named files from two folders: the first is written, the second is an error.

    Not a silent "skip" (its image would never be made), nor a replacement of the first.
    """
    write_image(tmp_path / "one" / "a.png", photo)
    write_image(tmp_path / "two" / "a.png", photo[::-1])
    result = upscale_cli(tmp_path / "one", tmp_path / "two", "-o", tmp_path / "out", *overwrite)
    assert result.exit_code == 1
    assert f"{tmp_path / 'two' / 'a.png'}: not written" in result.output
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "a.png").pixels, expected(photo))


def test_format_clash_in_one_folder_is_reported(tmp_path: Path, photo: np.ndarray) -> None:
    """a.jpg and a.png with --format png would both become out/a.png."""
    write_image(tmp_path / "in" / "a.jpg", photo)
    write_image(tmp_path / "in" / "a.png", photo[::-1])
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", "--format", "png")
    assert result.exit_code == 1
    assert "1 written, 0 skipped, 1 failed" in result.output
    assert f"{tmp_path / 'in' / 'a.png'}: not written" in result.output


def test_a_rerun_on_a_glob_skips_the_results_written_beside_the_inputs(tmp_path, photo):
    """`superres upscale pics/*.jpg` again: the glob now names photo_x2.jpg as well, which was
    enlarged again (photo_x2_x2.jpg) while photo.jpg was refused as overwriting an input."""
    pics = tmp_path / "pics"
    write_image(pics / "photo.jpg", photo)
    write_image(pics / "other.jpg", photo[::-1])
    assert upscale_cli(*sorted(pics.glob("*.jpg"))).exit_code == 0
    results = {path: path.read_bytes() for path in pics.glob("*_x2.jpg")}
    again = upscale_cli(*sorted(pics.glob("*.jpg")))
    assert again.exit_code == 0, again.output
    lines = again.output.splitlines()
    earlier = f"skip {pics / 'photo_x2.jpg'} (an earlier result of {pics / 'photo.jpg'}; -o"
    assert [line for line in lines if line.startswith(earlier)] == [f"{earlier} enlarges it again)"]
    assert f"skip {pics / 'photo_x2.jpg'} (exists; --overwrite replaces it)" in lines
    assert "0 written, 4 skipped, 0 failed" in again.output
    assert {path: path.read_bytes() for path in pics.glob("*_x2.jpg")} == results
    replaced = upscale_cli(*sorted(pics.glob("*.jpg")), "--overwrite")  # from their sources
    assert "2 written, 2 skipped, 0 failed" in replaced.output, replaced.output
    assert sorted(path.name for path in pics.iterdir()) == [
        "other.jpg",
        "other_x2.jpg",
        "photo.jpg",
        "photo_x2.jpg",
    ]


def test_a_rerun_on_a_glob_of_folders_skips_the_sibling_result_folders(tmp_path, photo):
    """`superres upscale */` again names holiday_x2/ too: it is not made into holiday_x2_x2/,
    nor are holiday/'s outputs refused as inputs."""
    write_image(tmp_path / "holiday" / "a.png", photo)
    assert upscale_cli(tmp_path / "holiday").exit_code == 0
    again = upscale_cli(tmp_path / "holiday", tmp_path / "holiday_x2")
    assert again.exit_code == 0, again.output
    assert (
        f"skip {tmp_path / 'holiday_x2'} (an earlier result of {tmp_path / 'holiday'}; "
        "-o enlarges it again)" in again.output.splitlines()
    )
    assert "0 written, 2 skipped, 0 failed" in again.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["holiday", "holiday_x2"]


def test_output_folder_inside_the_input_folder_resumes(tmp_path: Path, photo: np.ndarray) -> None:
    """A second run skips the first run's results instead of enlarging them into OUT/OUT."""
    folder = tmp_path / "photos"
    write_image(folder / "a.png", photo)
    assert upscale_cli(folder, "-o", folder / "x2").exit_code == 0
    first = (folder / "x2" / "a.png").read_bytes()
    result = upscale_cli(folder, "-o", folder / "x2")
    assert result.exit_code == 0, result.output
    assert "0 written, 1 skipped, 0 failed" in result.output
    result = upscale_cli(folder, "-o", folder / "x2", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "1 written, 0 skipped, 0 failed" in result.output
    assert (folder / "x2" / "a.png").read_bytes() == first
    assert not (folder / "x2" / "x2").exists()


def test_bad_files_are_reported_skipped_and_summarised(tmp_path: Path, photo: np.ndarray) -> None:
    folder = tmp_path / "in"
    write_image(folder / "good.png", photo)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not a PNG")
    write_image(folder / "z-good.png", photo)
    result = upscale_cli(folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    for name in ("empty.png", "text.png"):
        assert len([line for line in result.output.splitlines() if name in line]) == 1
    assert "2 written, 0 skipped, 2 failed" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "z-good.png"]


def test_missing_input_is_reported_and_the_rest_done(tmp_path: Path, photo: np.ndarray) -> None:
    write_image(tmp_path / "photo.png", photo)
    missing = tmp_path / "missing.png"
    result = upscale_cli(missing, tmp_path / "photo.png", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{missing}: no such file or folder" in result.output
    assert "1 written, 0 skipped, 1 failed" in result.output
    assert (tmp_path / "out" / "photo.png").is_file()


def test_threads_and_device_options(tmp_path: Path, photo: np.ndarray) -> None:
    write_image(tmp_path / "photo.png", photo)
    result = upscale_cli(
        tmp_path / "photo.png", "-o", tmp_path / "out", "--threads", 1, "--device", "auto"
    )
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    np.testing.assert_array_equal(
        read_image(tmp_path / "out" / "photo.png").pixels, expected(photo)
    )


# ------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "options,message",
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--scale", "3"], "no shipped weights for compact at x3"),
        (["--outscale", "0"], "--outscale must be above 0"),
        (["--outscale", "-1.5"], "--outscale must be above 0"),
        (["--outscale", "17"], "at most 16"),
        (["--quality", "0"], "--quality must be between 1 and 100"),
        (["--quality", "101"], "--quality must be between 1 and 100"),
        (["--format", "gif"], "unknown --format 'gif'"),
        (["--tile", "8"], "tile size must be at least 16"),
        (["--tile", "huge"], "tile must be a number of pixels or auto"),
        (["--precision", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16'"),
        (["--backend", "tensorrt"], "'tensorrt' is not one of"),
        (["--threads", "0"], "threads must be at least 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path,
    photo: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    write_image(tmp_path / "photo.png", photo)
    options = options if "--scale" in options else [*options, "--scale", str(SCALE)]
    code, stderr = run_main(
        monkeypatch, capsys, "upscale", tmp_path / "photo.png", "-o", tmp_path / "out", *options
    )
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()


def test_format_contradicting_a_named_output_file_is_refused(
    tmp_path: Path,
    photo: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_image(tmp_path / "photo.png", photo)
    big = tmp_path / "big.png"
    args = ("upscale", tmp_path / "photo.png", "-o", big, "--format", "jpg", "--scale", SCALE)
    code, stderr = run_main(monkeypatch, capsys, *args)
    assert code == 2 and "--format jpg contradicts this file name" in stderr
    assert not big.exists()
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "big.jpeg", "--format", "jpg")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "big.jpeg") as image:
        assert image.format == "JPEG"


def test_a_real_run_in_a_subprocess(tmp_path: Path, photo: np.ndarray) -> None:
    """`python -m superres upscale` as a user runs it; SUPERRES_WEIGHTS_DIR reaches the child."""
    write_image(tmp_path / "photo.png", photo)
    completed = run_superres("upscale", "photo.png", "-o", "big.png", "-s", "2", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "1 written, 0 skipped, 0 failed" in completed.stdout
    np.testing.assert_array_equal(read_image(tmp_path / "big.png").pixels, expected(photo))


# ------------------------------------------------------------------------------ Python API


@pytest.mark.parametrize("layout", ["grey", "rgb", "rgba", "grey16"])
def test_api_numpy_in_numpy_out(photo: np.ndarray, layout: str) -> None:
    pixels = {
        "grey": photo[..., 0],
        "rgb": photo,
        "rgba": np.dstack([photo, _alpha_ramp(*photo.shape[:2])]),
        "grey16": photo[..., 0].astype(np.uint16) * 257,
    }[layout]
    out = superres.upscale(pixels, model="default", scale=SCALE)
    assert isinstance(out, np.ndarray) and out.dtype == pixels.dtype
    assert out.shape == (80, 104, *pixels.shape[2:])
    assert np.abs(out.astype(int) - imresize_matlab(pixels, scale=SCALE)).max() > 10


@pytest.mark.parametrize(
    "mode,result_mode",
    [("L", "L"), ("RGB", "RGB"), ("RGBA", "RGBA"), ("P", "RGB"), ("I;16", "I;16")],
)
def test_api_pil_in_pil_out(photo: np.ndarray, mode: str, result_mode: str) -> None:
    """The mode is kept (a palette, which cannot hold new colours, becomes RGB)."""
    images = {
        "L": lambda: Image.fromarray(photo[..., 0]),
        "RGB": lambda: Image.fromarray(photo),
        "RGBA": lambda: Image.fromarray(np.dstack([photo, _alpha_ramp(*photo.shape[:2])])),
        "P": lambda: _palette(photo, transparent=False),
        "I;16": lambda: Image.fromarray(photo[..., 0].astype(np.uint16) * 257),
    }
    image = images[mode]()
    assert image.mode == mode
    out = superres.upscale(image, model="default", scale=SCALE)
    assert isinstance(out, Image.Image)
    assert out.mode == result_mode and out.size == (104, 80)
    reference = np.array(image.convert(result_mode)) if mode == "P" else np.array(image)
    np.testing.assert_array_equal(np.array(out), expected(reference))


def test_api_outscale_and_bad_arguments(photo: np.ndarray) -> None:
    assert superres.upscale(photo, model="default", scale=SCALE, outscale=2.7).shape == (
        108,
        140,
        3,
    )
    with pytest.raises(SuperresError, match="outscale"):
        superres.upscale(photo, model="default", scale=SCALE, outscale=0)
    with pytest.raises(SuperresError, match="numpy array or a PIL image"):
        superres.upscale(photo.tolist(), model="default", scale=SCALE)
    with pytest.raises(SuperresError, match="unknown model"):
        superres.upscale(photo, model="nope", scale=SCALE)
    with pytest.raises(TypeError, match="unknown option 'scael'"):
        superres.upscale(photo, model="default", scael=SCALE)


def test_api_upscale_file_writes_an_image_and_never_its_input(tmp_path, photo) -> None:
    write_image(tmp_path / "photo.png", photo)
    summary = superres.upscale_file(tmp_path / "photo.png", tmp_path / "big.png", scale=SCALE)
    assert (summary.frames, summary.size, summary.notes) == (
        1,
        (photo.shape[1] * SCALE, photo.shape[0] * SCALE),
        [],
    )
    np.testing.assert_array_equal(read_image(tmp_path / "big.png").pixels, expected(photo))
    with pytest.raises(SuperresError, match="refusing to overwrite an input"):
        superres.upscale_file(tmp_path / "photo.png", tmp_path / "photo.png", scale=SCALE)


def test_denoise_on_a_model_without_the_control_is_one_clear_error(tmp_path, photo):
    write_image(tmp_path / "photo.png", photo)
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "out", "--denoise", "0.5")
    assert result.exit_code != 0 and "no denoise control" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_self_ensemble_through_the_cli_and_the_api(tmp_path, photo):
    """`--ensemble N` and ``ensemble=N`` give the upscaler's self-ensemble (said in the run's
    line); a size it has not is one clear error before anything is written."""
    write_image(tmp_path / "photo.png", photo)
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "big.png", "--ensemble", "2")
    assert result.exit_code == 0 and "self-ensemble x2" in result.output, result.output
    by_upscaler = Upscaler("default", SCALE, ensemble=2).upscale(photo)
    np.testing.assert_array_equal(read_image(tmp_path / "big.png").pixels, by_upscaler)
    by_api = superres.upscale(photo, model="default", scale=SCALE, ensemble=2)
    np.testing.assert_array_equal(by_api, by_upscaler)
    assert not np.array_equal(by_upscaler, expected(photo))
    result = upscale_cli(tmp_path / "photo.png", "-o", tmp_path / "out", "--ensemble", "3")
    assert result.exit_code != 0 and "self-ensemble size must be" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_a_folder_with_a_one_pixel_image_is_fully_processed(tmp_path, photo):
    write_image(tmp_path / "in" / "dot.png", np.full((1, 1, 3), 9, np.uint8))
    write_image(tmp_path / "in" / "photo.png", photo)
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert load_pixels(tmp_path / "out" / "dot.png").shape == (SCALE, SCALE, 3)
    assert (tmp_path / "out" / "photo.png").is_file()


def test_an_unexpected_error_in_one_file_is_one_line_and_the_batch_goes_on(
    tmp_path, photo, monkeypatch
):
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / "in" / name, photo)
    real_upscale_file = superres.engine.batch.upscale_file

    def flaky(upscaler, job, *args, **kwargs):
        if job.source.name == "b.png":
            raise RuntimeError("boom")
        return real_upscale_file(upscaler, job, *args, **kwargs)

    monkeypatch.setattr(superres.apps.cli, "debug", {"enabled": False})
    monkeypatch.setattr(superres.engine.batch, "upscale_file", flaky)
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert "b.png: unexpected RuntimeError: boom (run `superres --debug" in result.output
    assert "Traceback" not in result.output


def test_a_result_over_the_pixel_limit_is_refused_before_any_work(tmp_path, photo, monkeypatch):
    """A few bytes of PNG can declare a huge image: its result is refused, naming the file and
    the limit, before its buffer is taken; the batch goes on, and 0 lifts the limit."""
    write_image(tmp_path / "in" / "big.png", photo)  # 52x40: 104x80 = 8,320 pixels at x2
    write_image(tmp_path / "in" / "small.png", photo[:30, :30])
    runs: list[int] = []
    enlarge = Upscaler._enlarge

    def counted(self: Upscaler, image: np.ndarray, progress=None) -> np.ndarray:
        runs.append(image.size)
        return enlarge(self, image, progress)

    monkeypatch.setattr(Upscaler, "_enlarge", counted)
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", "--max-output-pixels", 8319)
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 'in' / 'big.png'}: enlarging 52x40 by 2 makes 104x80 = 8,320 pixels, "
        "over the limit of 8,319 (--max-output-pixels" in result.output
    )
    assert len(runs) == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", "--max-output-pixels", 0)
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / "out" / "big.png").pixels.shape == (80, 104, 3)
    with pytest.raises(SuperresError, match="over the limit of 8,319"):
        superres.upscale(photo, model="default", scale=SCALE, max_output_pixels=8319)
    assert superres.upscale(photo, model="default", scale=SCALE, max_output_pixels=None).shape


def test_links_that_lead_nowhere_are_reported_and_linked_folders_followed(tmp_path, photo):
    """A broken link and a link back up are one line each; a link to a folder is followed."""
    folder, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    write_image(folder / "a.png", photo)
    write_image(elsewhere / "b.png", photo)
    (folder / "gone.png").symlink_to("nowhere.png")
    (folder / "linked").symlink_to(elsewhere)
    (folder / "linked-up").symlink_to(folder)
    result = upscale_cli(folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert f"error: {folder / 'gone.png'}: a broken symbolic link (to nowhere.png)" in result.output
    assert f"{folder / 'linked-up'}: a symbolic link to {folder}, a folder that contains it" in (
        result.output
    )
    assert "2 written, 0 skipped, 2 failed" in result.output
    assert (tmp_path / "out" / "linked" / "b.png").is_file()


def test_output_folder_equal_to_the_input_folder_with_a_format_can_be_run_again(tmp_path, photo):
    """photo.jpg -> photo.png among the inputs: a second run skips it, not enlarges it."""
    folder = tmp_path / "photos"
    write_image(folder / "photo.jpg", photo)
    first = upscale_cli(folder, "-o", folder, "--format", "png")
    assert first.exit_code == 0, first.output
    written = (folder / "photo.png").read_bytes()
    again = upscale_cli(folder, "-o", folder, "--format", "png")
    assert again.exit_code == 0, again.output
    assert "0 written, 1 skipped, 0 failed" in again.output
    assert (folder / "photo.png").read_bytes() == written
    assert sorted(p.name for p in folder.iterdir()) == ["photo.jpg", "photo.png"]


def test_an_output_path_that_is_a_folder_is_an_error_not_a_skip(tmp_path, photo):
    write_image(tmp_path / "in" / "photo.png", photo)
    (tmp_path / "out" / "photo.png").mkdir(parents=True)
    for overwrite in ([], ["--overwrite"]):
        result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out", *overwrite)
        assert result.exit_code == 1
        assert f"{tmp_path / 'out' / 'photo.png'} is a folder" in result.output
        assert "0 written, 0 skipped, 1 failed" in result.output


def test_the_temporary_of_a_killed_write_goes_at_the_next_run_a_live_one_stays(tmp_path, photo):
    """kill -9 mid-write leaves .NAME.xxxxxxxx.part, which nothing removed: the next write of
    NAME does, unless its writer is still alive (it holds a lock on it)."""
    import signal
    import subprocess
    import sys

    write_image(tmp_path / "in" / "photo.png", photo)
    out = tmp_path / "out"
    out.mkdir()
    writer = (
        "import os, sys\nfrom pathlib import Path\nfrom superres.atomic import create_temporary\n"
        "descriptor, _ = create_temporary(Path(sys.argv[1]))\nos.write(descriptor, b'half')\n"
        "print(flush=True)\n"
        "os.kill(os.getpid(), 9) if sys.argv[2] == 'die' else sys.stdin.read()\n"
    )

    def start(how: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-c", writer, str(out / "photo.png"), how]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline() == "\n"  # written
        return process

    assert start("die").wait() == -signal.SIGKILL
    (killed,) = list(out.glob(".photo.png.*.part"))
    alive = start("wait")
    try:
        (live,) = set(out.glob(".photo.png.*.part")) - {killed}
        result = upscale_cli(tmp_path / "in", "-o", out)
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "photo.png"])
    finally:
        alive.communicate("")
