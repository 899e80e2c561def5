"""HEIC, AVIF and JPEG XL (issue 19): round trips with alpha, metadata and high bit depth,
`upscale` without -o, bad files and a missing `formats` extra, on tiny images made here.

The CLI tests run the shipped espcn x2, the fastest model.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import MAKE, ORIENTATION, SRGB, exif_bytes, exif_tags, run_main
from PIL import Image, ImageCms
from skimage import data
from typer.testing import CliRunner, Result

import superres.apps.cli
from superres.api import upscale_file
from superres.engine.batch import default_suffix
from superres.errors import ImageTooLargeError
from superres.imageio.files import (
    _jxl_size,
    format_notes,
    image_size,
    read_image,
    read_image_bytes,
    require_format,
    write_image,
)

PHOTO = np.ascontiguousarray(data.astronaut()[100:124, 150:182])  # 24x32: a turn would show
GREY = np.ascontiguousarray(PHOTO[..., 1])
ALPHA = np.linspace(0, 255, GREY.size).reshape(GREY.shape).astype(np.uint8)
LAYOUTS = {
    "grey": GREY,
    "grey+alpha": np.dstack([GREY, ALPHA]),
    "rgb": PHOTO,
    "rgba": np.dstack([PHOTO, ALPHA]),
}
LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # anything but sRGB
PILLOW_NAMES = {".heic": "HEIF", ".avif": "AVIF", ".jxl": "JXL"}
# A shallow 16-bit ramp: 8 bits hold 9 of its levels, 10 bits about 32.
RAMP = np.ascontiguousarray(
    np.tile(np.linspace(30000, 32000, 64).round().astype(np.uint16), (8, 1))
)
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def plugins() -> None:
    """Pillow's HEIF and JXL openers, for the files these tests make with Pillow itself."""
    require_format("heic")
    require_format("jxl")


def encoded(pixels: np.ndarray, fmt: str, **options: object) -> bytes:
    """A file made by Pillow's (or the plugin's) own writer, not by superres."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """The colour of any layout as HxWx3 ints (grey repeated), to compare across layouts."""
    colour = pixels if pixels.ndim == 2 else pixels[..., : 3 if pixels.shape[2] >= 3 else 1]
    colour = colour.reshape(*pixels.shape[:2], -1).astype(int)
    return np.repeat(colour, 3 // colour.shape[2], axis=2)


def upscale_cli(*args: object) -> Result:
    """`superres upscale ARGS` with espcn x2 through typer's runner."""
    command = ["upscale", *map(str, args), "--model", "espcn", "--scale", "2"]
    return runner.invoke(superres.apps.cli.app, command)


def size_and_format(path: Path) -> tuple[tuple[int, int], str]:
    with Image.open(path) as image:
        return image.size, image.format


# --------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("suffix", list(PILLOW_NAMES))
def test_round_trip_keeps_colour_alpha_exif_and_icc(tmp_path: Path, suffix: str, layout: str):
    """Alpha survives everywhere (grey+alpha comes back as RGBA from HEIC and AVIF, grey as
    RGB from AVIF); EXIF everywhere; the ICC profile in HEIC and AVIF (JPEG XL files carry
    libjxl's description of their colours instead)."""
    pixels = LAYOUTS[layout]
    path = write_image(tmp_path / f"photo{suffix}", pixels, icc_profile=SRGB, exif=exif_bytes())
    image = read_image(path)
    assert image.format == PILLOW_NAMES[suffix]
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[:2] == pixels.shape[:2]
    assert image.has_alpha == (layout in ("grey+alpha", "rgba"))
    if image.has_alpha:
        assert np.abs(image.pixels[..., -1].astype(int) - ALPHA).max() <= 1
    assert np.abs(as_rgb(image.pixels) - as_rgb(pixels)).mean() < 2.5  # lossy at quality 95
    assert exif_tags(image.exif)[MAKE] == "TestCam"
    if suffix == ".jxl":  # libjxl describes the file's colours with a profile of its own
        assert image.icc_profile
    else:
        assert image.icc_profile == SRGB
    assert image.notes == []


@pytest.mark.parametrize("suffix", list(PILLOW_NAMES))
def test_orientation_is_applied_once(suffix: str) -> None:
    """HEIC and AVIF writers turn EXIF's Orientation into the file's own rotation, which comes
    back applied; a JPEG XL's codestream orientation is libjxl's to apply, and an EXIF
    Orientation beside it must not turn the pixels a second time. Orientation reads 1 after."""
    upload = encoded(PHOTO, PILLOW_NAMES[suffix], exif=exif_bytes(6), quality=95)
    image = read_image_bytes(upload, f"turned{suffix}")
    upright = np.rot90(PHOTO, -1) if suffix != ".jxl" else PHOTO
    assert image.pixels.shape == upright.shape
    assert np.abs(image.pixels.astype(int) - upright).mean() < 2.5
    assert exif_tags(image.exif) == {ORIENTATION: 1, MAKE: "TestCam"}


@pytest.mark.parametrize("pixels", [RAMP, np.dstack([RAMP] * 3)], ids=["grey", "rgb"])
def test_heic_keeps_more_than_8_bits(tmp_path: Path, pixels: np.ndarray) -> None:
    """16 bits in, 10-bit HEVC in the file, 16 bits (full range) out."""
    path = write_image(tmp_path / "deep.heic", pixels)
    back = read_image(path).pixels
    assert back.dtype == np.uint16 and back.shape == pixels.shape
    row = back[4] if back.ndim == 2 else back[4, :, 0]
    assert len(np.unique(row)) > 16  # 8 bits would give 9 levels
    assert np.abs(back.astype(int) - pixels).mean() < 64
    white = write_image(tmp_path / "white.heic", np.full((8, 8, 3), 65535, np.uint16))
    assert read_image(white).pixels.min() == 65535
    assert format_notes(path, pixels, None) == []


def test_jpeg_xl_keeps_16_bit_grey(tmp_path: Path) -> None:
    back = read_image(write_image(tmp_path / "deep.jxl", RAMP)).pixels
    assert back.dtype == np.uint16 and len(np.unique(back[4])) > 16
    assert np.abs(back.astype(int) - RAMP).mean() < 64


@pytest.mark.parametrize(
    ("name", "pixels"), [("deep.avif", RAMP), ("deep.jxl", np.dstack([RAMP] * 3))]
)
def test_16_bits_the_format_cannot_hold_become_8_with_a_note(
    tmp_path: Path, name: str, pixels: np.ndarray
) -> None:
    back = read_image(write_image(tmp_path / name, pixels)).pixels
    assert back.dtype == np.uint8
    assert np.abs(as_rgb(back) - as_rgb(pixels) / 257).max() <= 2
    (note,) = format_notes(tmp_path / name, pixels, None)
    assert note.startswith("16-bit samples written as 8-bit")


def test_an_icc_profile_jpeg_xl_cannot_carry_is_noted_unless_it_is_srgb() -> None:
    assert format_notes("x.jxl", PHOTO, LAB) == [
        "ICC profile not carried (JPEG XL is written without one: sRGB is assumed)"
    ]
    assert format_notes("x.jxl", PHOTO, SRGB) == []
    assert format_notes("x.avif", PHOTO, LAB) == format_notes("x.heic", PHOTO, LAB) == []


@pytest.mark.parametrize("suffix", list(PILLOW_NAMES))
def test_image_size_reads_the_header(tmp_path: Path, suffix: str) -> None:
    """What training uses to plan its pool of images."""
    assert image_size(write_image(tmp_path / f"photo{suffix}", PHOTO)) == (32, 24)


@pytest.mark.parametrize(
    ("width", "height"), [(1, 1), (64, 64), (48, 16), (64, 36), (300, 200), (40, 30), (33, 17)]
)
@pytest.mark.parametrize("options", [{}, {"use_container": True}, {"exif": exif_bytes()}])
def test_jpeg_xl_size_is_read_from_its_header(width: int, height: int, options: dict) -> None:
    """Both ways of coding the size (multiples of 8, or any), the aspect-ratio shorthands, a
    bare codestream and one in a container (where EXIF puts it)."""
    upload = encoded(np.zeros((height, width, 3), np.uint8), "JXL", **options)
    assert _jxl_size(upload) == (width, height)


def test_a_jpeg_xl_over_the_pixel_limit_is_refused_before_decoding(monkeypatch) -> None:
    import pillow_jxl.JpegXLImagePlugin as plugin

    upload = encoded(PHOTO, "JXL")

    def decoder(**_: object) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(plugin, "Decoder", decoder)
    with pytest.raises(ImageTooLargeError, match=r"big\.jxl: 32x24 = 768 pixels, over the limit"):
        read_image_bytes(upload, "big.jxl", max_pixels=500)


# ---------------------------------------------------------------------------- `upscale`, no -o


def test_default_suffix() -> None:
    assert (default_suffix(2), default_suffix(4, 1.5), default_suffix(3, 2.0)) == (
        "_x2",
        "_x1.5",
        "_x2",
    )


def test_without_output_a_file_goes_beside_it_and_a_folder_to_a_sibling(tmp_path: Path) -> None:
    write_image(tmp_path / "photo.heic", PHOTO)
    holiday = tmp_path / "holiday"
    write_image(holiday / "a.avif", PHOTO)
    write_image(holiday / "day2" / "b.jxl", GREY)
    write_image(holiday / "c.png", PHOTO)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*.*")}
    result = upscale_cli(tmp_path / "photo.heic", holiday)
    assert result.exit_code == 0, result.output
    enlarged = (64, 48)
    assert size_and_format(tmp_path / "photo_x2.heic") == (enlarged, "HEIF")
    sibling = tmp_path / "holiday_x2"
    assert size_and_format(sibling / "a.avif") == (enlarged, "AVIF")
    assert size_and_format(sibling / "day2" / "b.jxl") == (enlarged, "JXL")
    assert size_and_format(sibling / "c.png") == (enlarged, "PNG")
    assert {path: path.read_bytes() for path in before} == before
    assert "4 written, 0 skipped, 0 failed" in result.output
    again = upscale_cli(tmp_path / "photo.heic", holiday)  # a resumed batch skips them
    assert "0 written, 4 skipped, 0 failed" in again.output


def test_suffix_format_and_outscale_name_the_outputs(tmp_path: Path) -> None:
    write_image(tmp_path / "photo.heic", PHOTO)
    write_image(tmp_path / "holiday" / "a.png", PHOTO)
    result = upscale_cli(tmp_path / "photo.heic", tmp_path / "holiday", "--suffix", "-big")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photo-big.heic").is_file()
    assert (tmp_path / "holiday-big" / "a.png").is_file()
    result = upscale_cli(tmp_path / "photo.heic", "--format", "jxl", "--outscale", "1.5")
    assert result.exit_code == 0, result.output
    assert size_and_format(tmp_path / "photo_x1.5.jxl") == ((48, 36), "JXL")


def test_the_api_writes_beside_the_input_too(tmp_path: Path) -> None:
    write_image(tmp_path / "photo.avif", PHOTO)
    summary = upscale_file(tmp_path / "photo.avif", model="espcn", scale=2)
    assert summary.size == (64, 48) and summary.notes == []
    assert size_and_format(tmp_path / "photo_x2.avif") == ((64, 48), "AVIF")


# ------------------------------------------------------------------------------- bad input


def cut(path: Path) -> Path:
    """The first half of a file, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def deep_heic_with_wrong_depth(path: Path) -> Path:
    """A 10-bit HEIC whose hvcC box signals 15 bits: the decoder cannot honour that depth."""
    data = bytearray(write_image(path, np.full((16, 16, 3), 30000, np.uint16)).read_bytes())
    record = data.find(b"hvcC") + 4
    data[record + 17 : record + 19] = b"\xff\xff"  # bitDepthLuma/ChromaMinus8 = 7
    path.write_bytes(bytes(data))
    return path


def test_bad_files_in_a_folder_are_one_line_each_and_the_rest_is_done(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_image(folder / "good.png", PHOTO)
    bad = [cut(write_image(folder / f"cut{suffix}", PHOTO)) for suffix in PILLOW_NAMES]
    bad.append(deep_heic_with_wrong_depth(folder / "depth.heic"))
    result = upscale_cli(folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    for path in bad:
        (line,) = [line for line in result.output.splitlines() if path.name in line]
        assert line.startswith(f"error: {path}: corrupt or truncated")
    assert "Traceback" not in result.output
    assert "1 written, 0 skipped, 4 failed" in result.output
    assert size_and_format(tmp_path / "out" / "good.png") == ((64, 48), "PNG")


def test_a_heic_of_several_images_gives_its_primary_one_and_says_so(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((24, 32, 3), value, np.uint8)) for value in (30, 140, 220)]
    burst = tmp_path / "burst.heic"
    frames[0].save(burst, format="HEIF", save_all=True, append_images=frames[1:], primary_index=1)
    result = upscale_cli(burst)
    assert result.exit_code == 0, result.output
    note = f"note: {burst}: holds 3 images; only the primary one is upscaled"
    assert note in result.output.splitlines()
    assert abs(read_image(tmp_path / "burst_x2.heic").pixels.mean() - 140) < 3


def hide_plugin(monkeypatch: pytest.MonkeyPatch, module: str, fmt: str) -> None:
    """As if the `formats` extra were not installed: the import fails, Pillow lacks the opener."""
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(Image.OPEN, fmt, raising=False)


def test_reading_without_the_extra_names_it_per_file(tmp_path, monkeypatch) -> None:
    write_image(tmp_path / "in" / "photo.heic", PHOTO)
    write_image(tmp_path / "in" / "photo.png", PHOTO)
    hide_plugin(monkeypatch, "pillow_heif", "HEIF")
    result = upscale_cli(tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "photo.heic" in line]
    assert line.startswith(f"error: {tmp_path / 'in' / 'photo.heic'}: reading HEIC/HEIF needs")
    assert "pip install 'superres[formats]'" in line
    assert (tmp_path / "out" / "photo.png").is_file()


def test_writing_without_the_extra_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys
) -> None:
    write_image(tmp_path / "photo.png", PHOTO)
    hide_plugin(monkeypatch, "pillow_jxl", "JXL")
    code, stderr = run_main(
        monkeypatch, capsys, "upscale", tmp_path / "photo.png", "--format", "jxl", "-s", "2"
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "writing JPEG XL needs the 'formats' extra: pip install 'superres[formats]'" in stderr
    assert not (tmp_path / "photo_x2.jxl").exists()
