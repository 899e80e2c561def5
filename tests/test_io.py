"""Image I/O: exact round trips, metadata, orientation, clean errors, atomic writes."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from helpers import MAKE, ORIENTATION, SRGB, exif_bytes, exif_tags
from PIL import Image, ImageOps
from skimage import data

from superres.atomic import remove_leftovers
from superres.errors import ImageTooLargeError
from superres.imageio.files import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageData,
    ImageReadError,
    ImageWriteError,
    find_images,
    format_notes,
    load_pixels,
    output_path_for,
    pixels_from_pil,
    read_image,
    write_image,
)


def random_pixels(channels: int | None, dtype: type, seed: int = 0) -> np.ndarray:
    """Noise over the full range, so a dropped bit or swapped channel cannot go unnoticed."""
    shape = (13, 17) if channels is None else (13, 17, channels)
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, dtype, endpoint=True)


def part_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".part")]


def error_message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 2, 3, 4])
def test_lossless_round_trip_is_exact(
    tmp_path: Path, suffix: str, dtype: type, channels: int | None
) -> None:
    pixels = random_pixels(channels, dtype)
    path = write_image(tmp_path / f"image{suffix}", pixels)
    image = read_image(path)

    expected = pixels
    if suffix != ".png" and dtype == np.uint16 and channels == 2:
        expected = pixels[..., [0, 0, 0, 1]]  # documented: 16-bit grey+alpha TIFF becomes RGBA
    assert image.pixels.dtype == dtype
    assert image.pixels.shape == expected.shape
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.bit_depth == (16 if dtype == np.uint16 else 8)
    assert image.has_alpha == (channels in (2, 4))
    assert image.pixels.flags.c_contiguous and image.pixels.flags.writeable
    assert image.format == ("PNG" if suffix == ".png" else "TIFF")


def test_photograph_round_trip_and_load_pixels(tmp_path: Path) -> None:
    photo, grey = data.astronaut(), data.camera()
    np.testing.assert_array_equal(load_pixels(write_image(tmp_path / "a.png", photo)), photo)
    np.testing.assert_array_equal(load_pixels(write_image(tmp_path / "c.bmp", grey)), grey)


def test_sixteen_bit_colour_is_not_truncated(tmp_path: Path) -> None:
    # Values that differ only in the low byte: an 8-bit decode would make them all equal.
    pixels = np.full((4, 4, 3), 0x1200, np.uint16) + np.arange(48, dtype=np.uint16).reshape(4, 4, 3)
    assert np.array_equal(read_image(write_image(tmp_path / "x.png", pixels)).pixels, pixels)


def test_sixteen_bit_is_rounded_for_8_bit_formats(tmp_path: Path) -> None:
    pixels = np.array([[0, 128, 129, 257, 385, 386, 65535]], np.uint16)
    image = read_image(write_image(tmp_path / "x.bmp", pixels))
    np.testing.assert_array_equal(image.pixels, [[0, 0, 1, 1, 1, 2, 255]])
    assert image.pixels.dtype == np.uint8


@pytest.mark.parametrize("suffix", [".bmp", ".jpg"])
def test_alpha_is_dropped_where_the_format_has_none(tmp_path: Path, suffix: str) -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    grey_alpha = np.stack([np.full((16, 16), 90, np.uint8), np.zeros((16, 16), np.uint8)], -1)
    rgb = read_image(write_image(tmp_path / f"rgba{suffix}", rgba)).pixels
    grey = read_image(write_image(tmp_path / f"la{suffix}", grey_alpha)).pixels
    assert rgb.shape == (16, 16, 3) and abs(int(rgb[..., 0].mean()) - 200) <= 2
    assert grey.shape == (16, 16) and abs(int(grey.mean()) - 90) <= 2


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_are_close_and_respect_quality(tmp_path: Path, suffix: str) -> None:
    photo = data.astronaut()
    best = read_image(write_image(tmp_path / f"best{suffix}", photo, quality=95)).pixels
    worst = write_image(tmp_path / f"worst{suffix}", photo, quality=5)
    assert best.shape == photo.shape and best.dtype == np.uint8
    assert np.abs(best.astype(int) - photo).mean() < 4
    assert worst.stat().st_size < (tmp_path / f"best{suffix}").stat().st_size / 3


# ------------------------------------------------------------------------------ pillow modes


def saved(tmp_path: Path, image: Image.Image, name: str, **options: object) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    palette_image = Image.fromarray(data.astronaut()).quantize(16)
    image = read_image(saved(tmp_path, palette_image, "p.png"))
    assert image.pixels.shape == (512, 512, 3)
    np.testing.assert_array_equal(image.pixels, np.array(palette_image.convert("RGB")))


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    palette_image = Image.fromarray(data.astronaut()).quantize(16)
    path = saved(tmp_path, palette_image, "p.png", transparency=3)
    pixels = read_image(path).pixels
    indices = np.array(palette_image)
    assert pixels.shape == (512, 512, 4)
    np.testing.assert_array_equal(pixels[..., 3] == 0, indices == 3)
    np.testing.assert_array_equal(pixels[..., :3], np.array(palette_image.convert("RGB")))


def test_grey_with_transparent_value_gains_alpha(tmp_path: Path) -> None:
    grey = np.array([[0, 10, 20], [10, 30, 10]], np.uint8)
    pixels = read_image(saved(tmp_path, Image.fromarray(grey), "l.png", transparency=10)).pixels
    np.testing.assert_array_equal(pixels[..., 0], grey)
    np.testing.assert_array_equal(pixels[..., 1], np.where(grey == 10, 0, 255))


def test_bilevel_becomes_8_bit_grey(tmp_path: Path) -> None:
    bits = np.array([[True, False, True], [False, False, True]])
    pixels = read_image(saved(tmp_path, Image.fromarray(bits), "1.png")).pixels
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.where(bits, 255, 0))


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    cmyk = Image.fromarray(data.astronaut()).convert("CMYK")
    pixels = read_image(saved(tmp_path, cmyk, "cmyk.tif")).pixels
    np.testing.assert_array_equal(pixels, np.array(cmyk.convert("RGB")))


def test_32_bit_integers_are_clipped_to_uint16(tmp_path: Path) -> None:
    values = np.array([[-5, 0, 300, 65535, 70000]], np.int32)
    pixels = read_image(saved(tmp_path, Image.fromarray(values), "i.tif")).pixels
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, [[0, 0, 300, 65535, 65535]])


@pytest.mark.parametrize(
    ("values", "expected", "dtype"),
    [
        ([0.0, 0.5, 1.0, -0.25], [0, 32768, 65535, 0], np.uint16),  # normalised
        ([0.0, 2.4, 100.6, 255.0], [0, 2, 101, 255], np.uint8),  # 8-bit range
        ([0.0, 1000.4, 70000.0, np.nan], [0, 1000, 65535, 0], np.uint16),  # 16-bit range
    ],
)
def test_float_images_are_scaled_by_their_range(
    tmp_path: Path, values: list[float], expected: list[int], dtype: type
) -> None:
    image = Image.fromarray(np.array([values], np.float32))
    pixels = read_image(saved(tmp_path, image, "f.tif")).pixels
    assert pixels.dtype == dtype
    np.testing.assert_array_equal(pixels, [expected])


def test_pixels_from_pil_uses_the_same_layouts() -> None:
    palette_image = Image.fromarray(data.astronaut()).quantize(8)
    palette_image.info["transparency"] = 0
    rgba = pixels_from_pil(palette_image)
    assert rgba.shape == (512, 512, 4)
    np.testing.assert_array_equal(rgba[..., 3] == 0, np.array(palette_image) == 0)
    sixteen = random_pixels(None, np.uint16)
    np.testing.assert_array_equal(pixels_from_pil(Image.fromarray(sixteen)), sixteen)


def test_pixels_from_pil_applies_orientation(tmp_path: Path) -> None:
    upright = random_pixels(3, np.uint8)
    path = saved(tmp_path, Image.fromarray(upright), "o.png", exif=exif_bytes(8))
    with Image.open(path) as image:
        np.testing.assert_array_equal(pixels_from_pil(image), np.rot90(upright, 1))


# -------------------------------------------------------------------- orientation and metadata


def test_jpeg_exif_orientation_is_applied_and_reset(tmp_path: Path) -> None:
    upright = np.zeros((48, 80, 3), np.uint8)
    upright[:24, :40] = (255, 0, 0)  # red block top left
    path = saved(tmp_path, Image.fromarray(upright), "o.jpg", exif=exif_bytes(6), quality=95)

    image = read_image(path)
    # Orientation 6 means "rotate 90 degrees clockwise to view": the red block goes top right.
    expected = np.rot90(upright, -1)
    assert image.pixels.shape == expected.shape == (80, 48, 3)
    assert np.abs(image.pixels.astype(int) - expected).mean() < 3
    tags = exif_tags(image.exif)
    assert tags[ORIENTATION] == 1
    assert tags[MAKE] == "TestCam"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_the_same_for_8_and_16_bit(tmp_path: Path, orientation: int) -> None:
    eight = random_pixels(3, np.uint8)
    exif = exif_bytes(orientation)
    upright8 = read_image(write_image(tmp_path / "8.png", eight, exif=exif))
    upright16 = read_image(
        write_image(tmp_path / "16.png", eight.astype(np.uint16) * 257, exif=exif)
    )

    with Image.open(tmp_path / "8.png") as source:
        np.testing.assert_array_equal(upright8.pixels, np.array(ImageOps.exif_transpose(source)))
    np.testing.assert_array_equal(upright16.pixels, upright8.pixels.astype(np.uint16) * 257)
    assert upright16.pixels.dtype == np.uint16
    assert exif_tags(upright8.exif)[ORIENTATION] == exif_tags(upright16.exif)[ORIENTATION] == 1
    if orientation == 6:
        np.testing.assert_array_equal(upright8.pixels, np.rot90(eight, -1))


@pytest.mark.parametrize(
    ("name", "dtype", "channels"),
    [("a.png", np.uint8, 3), ("a.jpg", np.uint8, 3), ("a.webp", np.uint8, 3)]
    + [("a.tiff", np.uint8, 3), ("b.png", np.uint16, 3), ("b.tiff", np.uint16, None)]
    + [("c.tiff", np.uint16, 3), ("d.tiff", np.uint16, 4)],  # 16-bit colour TIFF: tifffile
)
def test_icc_profile_and_exif_are_written(
    tmp_path: Path, name: str, dtype: type, channels: int | None
) -> None:
    pixels = random_pixels(channels, dtype)
    image = read_image(write_image(tmp_path / name, pixels, icc_profile=SRGB, exif=exif_bytes(1)))
    assert image.icc_profile == SRGB
    if not name.endswith((".jpg", ".webp")):  # lossless: every sample back
        np.testing.assert_array_equal(image.pixels, pixels)
    if not name.endswith(".tiff"):  # TIFF stores EXIF as tags, which are not read back as EXIF
        assert exif_tags(image.exif)[MAKE] == "TestCam"


def test_without_metadata_none_is_reported(tmp_path: Path) -> None:
    image = read_image(write_image(tmp_path / "plain.png", random_pixels(3, np.uint8)))
    assert image.icc_profile is None and image.exif is None


def test_image_data_properties() -> None:
    image = ImageData(np.zeros((2, 2, 2), np.uint16), None, None, "PNG")
    assert image.has_alpha and image.bit_depth == 16
    image = ImageData(np.zeros((2, 2, 3), np.uint8), None, None, "PNG")
    assert not image.has_alpha and image.bit_depth == 8


# ------------------------------------------------------------------------------------ errors


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims another size: a decompression bomb stand-in."""
    stream = BytesIO()
    Image.new("L", (1, 1)).save(stream, "PNG")
    png = bytearray(stream.getvalue())
    header = struct.pack(">II", width, height) + bytes(png[24:29])
    png[16:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(png)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert error_message(excinfo) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ImageReadError) as excinfo:
        read_image(folder)
    assert error_message(excinfo) == f"{folder}: is a directory, not an image file"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert error_message(excinfo) == f"{path}: file is empty (0 bytes)"


@pytest.mark.parametrize(
    "content", [b"just some notes\n", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"], ids=["text", "gif"]
)
def test_not_a_supported_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert error_message(excinfo).startswith(f"{path}: not an image, or not a supported format")


@pytest.mark.parametrize(
    ("name", "pixels"),
    [
        ("eight.png", random_pixels(3, np.uint8)),
        ("sixteen.png", random_pixels(3, np.uint16)),
        ("photo.jpg", data.astronaut()),
    ],
)
def test_truncated_file(tmp_path: Path, name: str, pixels: np.ndarray) -> None:
    path = write_image(tmp_path / name, pixels, quality=90)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert error_message(excinfo).startswith(f"{path}: corrupt or truncated image data")


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    png = bytearray(png_claiming_size(8, 8))
    png[29] ^= 0xFF  # break the IHDR checksum
    path.write_bytes(bytes(png))
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    assert str(path) in error_message(excinfo)


def test_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.png", random_pixels(3, np.uint8))  # 17x13 = 221 pixels

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("decoded despite the size limit")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path, max_pixels=220)
    assert error_message(excinfo) == (
        f"{path}: 17x13 = 221 pixels, over the limit of 220 (max_pixels)"
    )


def test_header_claiming_billions_of_pixels(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(100_000, 100_000))
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    message = error_message(excinfo)
    assert message.startswith(f"{path}: ") and "pixels" in message


def test_max_pixels_overrides_pillows_global_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pixels = random_pixels(3, np.uint8)  # 221 pixels
    path = write_image(tmp_path / "x.png", pixels)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow warns above 50, refuses above 100
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path, max_pixels=10)
    assert str(path) in error_message(excinfo)
    np.testing.assert_array_equal(read_image(path, max_pixels=None).pixels, pixels)
    np.testing.assert_array_equal(read_image(path, max_pixels=1000).pixels, pixels)
    assert Image.MAX_IMAGE_PIXELS == 50

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)  # 221 is in Pillow's warning band
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_image(path, max_pixels=250).pixels, pixels)


# ------------------------------------------------------------------------------------- write


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    target = tmp_path / "out.png"
    if existing:
        target.write_bytes(b"previous")

    def interrupted_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG half an image")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        write_image(target, random_pixels(3, np.uint8))
    assert part_files(tmp_path) == []
    if existing:
        assert target.read_bytes() == b"previous"
    else:
        assert not target.exists()


def test_failed_sync_is_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError) as excinfo:
        write_image(target, random_pixels(3, np.uint16))  # the OpenCV path
    assert str(target) in error_message(excinfo) and "No space left" in str(excinfo.value)
    assert part_files(tmp_path) == [] and not target.exists()


def test_write_creates_folders_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.tiff"
    assert write_image(target, random_pixels(None, np.uint8)) == target
    assert target.is_file()
    assert part_files(target.parent) == []


@pytest.mark.skipif(os.name == "nt", reason="a newline in a file name")
def test_both_clean_ups_know_a_temporary_by_one_definition(tmp_path: Path) -> None:
    """The next write (a killed writer's leftover) and remove_leftovers (a dead Ray worker's)
    remove the same files, odd names included: the write's clean-up missed a name with a
    newline, which the other's glob pattern matched."""
    target = tmp_path / "a\n[1].png"
    kept = sorted([".b.png.0123abcd.part", f".{target.name}.notatoken.part"])
    for name in kept:
        (tmp_path / name).write_bytes(b"")
    leftover = tmp_path / f".{target.name}.0123abcd.part"
    leftover.write_bytes(b"half")
    write_image(target, random_pixels(None, np.uint8))
    assert sorted(part_files(tmp_path)) == kept
    leftover.write_bytes(b"half")
    remove_leftovers(target)
    assert sorted(part_files(tmp_path)) == kept


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_written_file_gets_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        target = write_image(tmp_path / "out.png", random_pixels(None, np.uint8))
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("exists", [False, True])
def test_overwrite_false(tmp_path: Path, exists: bool) -> None:
    target = tmp_path / "out.png"
    if exists:
        target.write_bytes(b"keep me")
        with pytest.raises(ImageWriteError) as excinfo:
            write_image(target, random_pixels(3, np.uint8), overwrite=False)
        assert error_message(excinfo) == f"{target}: already exists (not overwriting)"
        assert target.read_bytes() == b"keep me"
    else:
        write_image(target, random_pixels(3, np.uint8), overwrite=False)
        assert read_image(target).pixels.shape == (13, 17, 3)
    assert part_files(tmp_path) == []


def test_overwrite_false_never_clobbers_a_file_that_appears_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.png"
    real_fsync = os.fsync

    def fsync_then_race(descriptor: int) -> None:
        real_fsync(descriptor)
        target.write_bytes(b"another worker's output")

    monkeypatch.setattr(os, "fsync", fsync_then_race)
    with pytest.raises(ImageWriteError):
        write_image(target, random_pixels(3, np.uint8), overwrite=False)
    assert target.read_bytes() == b"another worker's output"
    assert part_files(tmp_path) == []


def test_overwrite_true_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    write_image(target, random_pixels(None, np.uint8))
    assert read_image(target).pixels.shape == (13, 17)


@pytest.mark.parametrize("name", ["out.gif", "out", "out.png.bak"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageWriteError) as excinfo:
        write_image(tmp_path / name, random_pixels(3, np.uint8))
    assert "unsupported output format" in error_message(excinfo)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        [[0, 1], [2, 3]],
    ],
    ids=["float", "five-channels", "empty", "list"],
)
def test_bad_pixels_are_refused(tmp_path: Path, pixels: np.ndarray) -> None:
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "out.png", pixels)
    assert os.listdir(tmp_path) == []


def test_bad_quality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "out.jpg", random_pixels(3, np.uint8), quality=0)


def test_output_path_for() -> None:
    assert output_path_for("in/photo.JPG", "png") == Path("in/photo.png")
    assert output_path_for(Path("a/b.png"), "JPEG") == Path("a/b.jpg")
    assert output_path_for("b.png", "tif") == Path("b.tiff")
    assert output_path_for("b.png", ".webp") == Path("b.webp")
    assert output_path_for("b.tiff", "bmp") == Path("b.bmp")
    assert output_path_for("b.png", None) == Path("b.png")
    with pytest.raises(ImageWriteError):
        output_path_for("b.png", "gif")


# -------------------------------------------------------------------------------------- find


def test_find_images(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for name in [
        "b.png",
        "a.JPG",
        "notes.txt",
        ".hidden.png",
        "sub/c.tiff",
        "sub/deeper/d.webp",
        "sub/.e.png",
        ".cache/f.png",
        "a2.Jpeg",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "folder.png").mkdir()  # a directory with an image suffix is not an image
    single = tmp_path / "single.raw"
    single.write_bytes(b"x")

    files, missing = find_images([root, str(single), tmp_path / "nowhere"])

    assert files == [
        (root / "a.JPG", Path("a.JPG")),
        (root / "a2.Jpeg", Path("a2.Jpeg")),
        (root / "b.png", Path("b.png")),
        (root / "sub/c.tiff", Path("sub/c.tiff")),
        (root / "sub/deeper/d.webp", Path("sub/deeper/d.webp")),
        (single, Path("single.raw")),
    ]
    assert missing == [tmp_path / "nowhere"]


def test_find_images_empty_input() -> None:
    assert find_images([]) == ([], [])


@pytest.mark.parametrize("extension", sorted(IMAGE_EXTENSIONS))
def test_every_extension_searched_for_is_one_written_and_read(
    tmp_path: Path, extension: str
) -> None:
    """A folder is searched for what superres reads: each extension, in capitals too, is
    found, and an image written under it reads back at its size."""
    pixels = random_pixels(3, np.uint8)
    path = write_image(tmp_path / f"x{extension.upper()}", pixels)
    assert find_images([tmp_path]) == ([(path, Path(path.name))], [])
    assert read_image(path).pixels.shape == pixels.shape


def test_the_default_pixel_limit_refuses_a_crafted_header_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(DEFAULT_MAX_PIXELS + 1, 1))  # 67 bytes

    def no_decoding(self: Image.Image) -> None:
        raise AssertionError("decoded despite the size limit")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageTooLargeError) as excinfo:
        read_image(path)
    assert error_message(excinfo).startswith(f"{path}: ")


def test_what_16_bit_tiff_drops_is_noted() -> None:
    colour, grey_alpha = random_pixels(3, np.uint16), random_pixels(2, np.uint16)
    assert format_notes("x.tiff", colour, SRGB, exif_bytes(1)) == [
        "EXIF not carried (16-bit colour TIFF is written without it here)"
    ]
    assert format_notes("x.tiff", grey_alpha, SRGB) == [
        "ICC profile not carried (16-bit grey+alpha TIFF is written by OpenCV)"
    ]
    assert format_notes("x.tiff", random_pixels(None, np.uint16), SRGB, exif_bytes(1)) == []
