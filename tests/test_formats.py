"""HEIC, AVIF and JPEG XL (issue 19): round trips with alpha, metadata and high bit depth,
`upscale` without -o, bad files and a missing `formats` extra, on tiny images made here.
AVIF and JPEG XL above 8 bits go through imagecodecs: those tests skip without it.

The CLI tests run the shipped espcn x2, the fastest model.
"""

from __future__ import annotations

import io
import re
import struct
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from helpers import MAKE, ORIENTATION, SRGB, exif_bytes, exif_tags, run_main
from PIL import Image, ImageCms
from skimage import data
from typer.testing import CliRunner, Result

import superres.apps.cli
import superres.imageio.srgb
from superres.api import upscale_file
from superres.engine.batch import default_suffix
from superres.errors import ImageReadError, ImageTooLargeError, ImageWriteError
from superres.imageio.files import (
    encode_image,
    format_notes,
    image_size,
    read_image,
    read_image_bytes,
    require_format,
    write_image,
)
from superres.imageio.jxl import _Bits, jxl_header, jxl_size, jxl_with_exif
from superres.imageio.srgb import is_srgb, to_srgb

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
# 16-bit colour that 8 bits would flatten: shallow ramps across (red) and down (green), and
# an alpha ramp; 8 bits hold 9 levels of the red one, AVIF's 10 bits about 32.
_ACROSS = np.tile(np.linspace(30000, 32000, 32).round().astype(np.uint16), (24, 1))
_DOWN = np.tile(np.linspace(40000, 41000, 24).round().astype(np.uint16)[:, None], (1, 32))
DEEP_RGB = np.dstack([_ACROSS, _DOWN, np.full_like(_ACROSS, 12345)])
DEEP_ALPHA = np.tile(np.linspace(1000, 64000, 24).round().astype(np.uint16)[:, None], (1, 32))
DEEP = {
    "rgb": DEEP_RGB,
    "rgba": np.dstack([DEEP_RGB, DEEP_ALPHA]),
    "grey+alpha": np.dstack([_ACROSS, DEEP_ALPHA]),
}
DEEP_SUFFIXES = [".avif", ".jxl"]
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def plugins() -> None:
    """Pillow's HEIF and JXL openers, for the files these tests make with Pillow itself."""
    require_format("heic")
    require_format("jxl")


@pytest.fixture
def codecs() -> ModuleType:
    """imagecodecs, through which AVIF and JPEG XL are read and written above 8 bits."""
    return pytest.importorskip("imagecodecs")


@pytest.fixture
def no_imagecodecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if imagecodecs were not installed: importing it fails (a module got before stays)."""
    monkeypatch.setitem(sys.modules, "imagecodecs", None)


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


@pytest.mark.parametrize("imagecodecs", ["with", "without"])
def test_jpeg_xl_keeps_16_bit_grey(tmp_path: Path, request, imagecodecs: str) -> None:
    """Through imagecodecs, or pillow-jxl-plugin's mode I;16 without it."""
    request.getfixturevalue("codecs" if imagecodecs == "with" else "no_imagecodecs")
    back = read_image(write_image(tmp_path / "deep.jxl", RAMP)).pixels
    assert back.dtype == np.uint16 and len(np.unique(back[4])) > 16
    assert np.abs(back.astype(int) - RAMP).mean() < 64
    assert format_notes(tmp_path / "deep.jxl", RAMP, None) == []


@pytest.mark.parametrize(
    ("name", "pixels"), [("deep.avif", RAMP), ("deep.jxl", np.dstack([RAMP] * 3))]
)
@pytest.mark.usefixtures("no_imagecodecs")
def test_without_imagecodecs_16_bits_become_8_with_a_note(
    tmp_path: Path, name: str, pixels: np.ndarray
) -> None:
    back = read_image(write_image(tmp_path / name, pixels)).pixels
    assert back.dtype == np.uint8
    assert np.abs(as_rgb(back) - as_rgb(pixels) / 257).max() <= 2
    (note,) = format_notes(tmp_path / name, pixels, None)
    assert note.startswith("16-bit samples written as 8-bit")
    assert note.endswith("needs the 'formats' extra: pip install 'superres[formats]')")


# ------------------------------------------------------- AVIF and JPEG XL above 8 bits


@pytest.mark.parametrize("layout", list(DEEP))
@pytest.mark.parametrize("suffix", DEEP_SUFFIXES)
def test_16_bits_round_trip_through_avif_and_jpeg_xl(
    tmp_path: Path, codecs: ModuleType, suffix: str, layout: str
) -> None:
    """At quality 100 JPEG XL gives back every bit (lossless) and AVIF 10 of them, within half
    a 10-bit step; alpha too. EXIF travels, and AVIF's ICC profile; a JPEG XL says sRGB
    (imagecodecs tags it linear otherwise). Grey+alpha comes back as RGBA from AVIF."""
    pixels = DEEP[layout]
    path = write_image(
        tmp_path / f"deep{suffix}", pixels, quality=100, icc_profile=SRGB, exif=exif_bytes()
    )
    image = read_image(path)
    expected = pixels[..., [0, 0, 0, 1]] if (suffix, layout) == (".avif", "grey+alpha") else pixels
    assert image.pixels.dtype == np.uint16 and image.pixels.shape == expected.shape
    error = np.abs(image.pixels.astype(int) - expected)
    assert (error.max() == 0) if suffix == ".jxl" else (error.max() <= 33)  # 65535 / 1023 / 2
    assert len(np.unique(image.pixels[0, :, 0])) > 16  # 8 bits would give 9 levels
    assert exif_tags(image.exif)[MAKE] == "TestCam"
    assert (image.icc_profile == SRGB) if suffix == ".avif" else is_srgb(image.icc_profile)
    assert image.notes == [] and format_notes(path, pixels, SRGB) == []


@pytest.mark.parametrize("fmt", ["avif", "jxl"])
def test_a_16_bit_image_upscaled_to_avif_or_jpeg_xl_stays_deep(
    tmp_path: Path, codecs: ModuleType, fmt: str
) -> None:
    write_image(tmp_path / "deep.png", DEEP_RGB, exif=exif_bytes())
    result = upscale_cli(tmp_path / "deep.png", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output
    image = read_image(tmp_path / f"deep_x2.{fmt}")
    assert image.pixels.dtype == np.uint16 and image.pixels.shape == (48, 64, 3)
    assert len(np.unique(image.pixels[10, :, 0])) > 16
    assert exif_tags(image.exif)[MAKE] == "TestCam"


@pytest.mark.parametrize("suffix", DEEP_SUFFIXES)
def test_16_bits_at_lower_quality_stay_deep_and_close(codecs: ModuleType, suffix: str) -> None:
    """--quality is honoured as for 8 bits: smaller files as it falls, each still 16-bit."""
    photo = PHOTO.astype(np.uint16) * 257 + (DEEP_RGB - DEEP_RGB.min()) // 16  # not 8-bit
    sizes = []
    for quality in (95, 75, 50):
        upload = encode_image(photo, suffix.lstrip("."), quality=quality)
        pixels = read_image_bytes(upload, f"photo{suffix}").pixels
        assert pixels.dtype == np.uint16 and pixels.shape == photo.shape
        assert np.abs(pixels.astype(int) - photo).mean() < 257 * {95: 2.5, 75: 4, 50: 6}[quality]
        sizes.append(len(upload))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3
    smooth = read_image_bytes(encode_image(DEEP_RGB, suffix.lstrip(".")), f"ramp{suffix}")
    assert len(np.unique(smooth.pixels[0, :, 0])) > 16


@pytest.mark.parametrize("bits", [10, 12])
@pytest.mark.parametrize("suffix", DEEP_SUFFIXES)
def test_a_10_or_12_bit_file_made_elsewhere_is_read_whole(
    codecs: ModuleType, suffix: str, bits: int
) -> None:
    """64 consecutive codes (8 bits would give 16 or 4 levels), scaled to the full uint16
    range exactly: lossless files made by imagecodecs itself, not by superres."""
    codes = np.tile(np.arange(500, 564, dtype=np.uint16), (8, 1))
    samples = np.dstack([codes, codes[:, ::-1], np.full_like(codes, 300)])
    if suffix == ".avif":
        upload = codecs.avif_encode(samples, level=100, bitspersample=bits)
    else:
        upload = codecs.jpegxl_encode(samples, lossless=True, bitspersample=bits)
    image = read_image_bytes(bytes(upload), f"deep{suffix}")
    top = (1 << bits) - 1
    assert np.array_equal(image.pixels, (samples.astype(int) * 65535 + top // 2) // top)
    assert len(np.unique(image.pixels[..., 0])) == 64 and image.notes == []


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_deep_avif_is_turned_once_as_an_8_bit_one(codecs: ModuleType, orientation: int):
    """EXIF's Orientation becomes the file's irot/imir, as Pillow writes them: read back, the
    pixels are turned once, as those of Pillow's own 8-bit file; Orientation reads 1 after."""
    pillow = read_image_bytes(encoded(PHOTO, "AVIF", exif=exif_bytes(orientation)), "8.avif")
    deep = encode_image(PHOTO.astype(np.uint16) * 257, "avif", exif=exif_bytes(orientation))
    image = read_image_bytes(deep, "16.avif")
    assert image.pixels.dtype == np.uint16 and image.pixels.shape == pillow.pixels.shape
    assert np.abs(image.pixels / 257 - pillow.pixels).mean() < 2.5
    assert exif_tags(image.exif) == {ORIENTATION: 1, MAKE: "TestCam"}


def turned_jxl(codestream: bytes, orientation: int) -> bytes:
    """A bare 16-bit JPEG XL codestream of imagecodecs' given an orientation in its header, as
    cameras' files have one: ImageMetadata's extra fields (orientation; no intrinsic size,
    preview or animation) and ToneMapping's all_default bit are inserted; the first frame
    starts at a byte boundary after the headers, so it is copied as it is."""
    assert codestream.startswith(b"\xff\x0a")
    reader = _Bits(codestream, 16)
    reader.size()
    extra_fields = reader.position + 1  # after ImageMetadata's all_default
    header = jxl_header(codestream)
    assert header is not None and header.transfer_at is not None
    colour_end = header.transfer_at + 6 + 2  # transfer function (linear), rendering intent
    headers_end = colour_end + 2 + 1  # no extensions, default CustomTransformData
    value = int.from_bytes(codestream, "little")

    def span(start: int, end: int) -> list[int]:
        return [(value >> bit) & 1 for bit in range(start, end)]

    assert span(extra_fields, extra_fields + 1) == [0]  # no extra fields yet
    assert span(colour_end, headers_end) == [0, 0, 1]
    turn = [((orientation - 1) >> bit) & 1 for bit in range(3)]
    bits = span(0, extra_fields) + [1, *turn, 0, 0, 0] + span(extra_fields + 1, colour_end)
    bits += [1, *span(colour_end, headers_end)]
    bits += [0] * (-len(bits) % 8)
    headers = sum(bit << index for index, bit in enumerate(bits)).to_bytes(len(bits) // 8, "little")
    return headers + codestream[(headers_end + 7) // 8 :]


def test_a_deep_jpeg_xl_turned_by_its_codestream_is_turned_once(codecs: ModuleType) -> None:
    """libjxl (through imagecodecs) applies the codestream's orientation; EXIF's beside it, the
    same as writers keep it, must not turn the pixels again. Orientation reads 1 after."""
    pixels = PHOTO.astype(np.uint16) * 257
    codestream = turned_jxl(bytes(codecs.jpegxl_encode(pixels, level=95)), 6)
    image = read_image_bytes(jxl_with_exif(codestream, exif_bytes(6)), "turned.jxl")
    upright = np.rot90(pixels, -1)
    assert image.pixels.dtype == np.uint16 and image.pixels.shape == upright.shape
    assert np.abs(image.pixels.astype(int) - upright).mean() < 257 * 2.5
    assert exif_tags(image.exif) == {ORIENTATION: 1, MAKE: "TestCam"}


@pytest.mark.parametrize("suffix", DEEP_SUFFIXES)
def test_without_imagecodecs_a_deep_file_is_read_at_8_bits_and_says_so(
    codecs: ModuleType, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    if suffix == ".avif":
        upload, bits = codecs.avif_encode(DEEP_RGB >> 6, level=100, bitspersample=10), 10
    else:
        upload, bits = codecs.jpegxl_encode(DEEP_RGB, lossless=True), 16
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    image = read_image_bytes(bytes(upload), f"deep{suffix}")
    assert image.pixels.dtype == np.uint8
    assert np.abs(image.pixels - DEEP_RGB / 257).max() <= 1
    assert image.notes == [
        f"its {bits}-bit samples are read as 8 bits (reading them whole needs the 'formats' "
        "extra: pip install 'superres[formats]')"
    ]


@pytest.mark.parametrize("kept", [0.5, 0.95])
@pytest.mark.parametrize("suffix", DEEP_SUFFIXES)
def test_a_truncated_deep_file_is_one_clear_error(
    tmp_path: Path, codecs: ModuleType, suffix: str, kept: float
) -> None:
    """Cut early, Pillow refuses it; cut late, an AVIF opens and imagecodecs fails to decode."""
    path = write_image(tmp_path / f"deep{suffix}", DEEP["rgba"])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(ImageReadError, match=f"^{re.escape(str(path))}: corrupt or truncated"):
        read_image(path)


def test_a_failing_deep_encoder_leaves_no_file(
    tmp_path: Path, codecs: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object, **__: object) -> bytes:
        raise RuntimeError("avifEncoderFinish returned 'Encoding of color planes failed'")

    monkeypatch.setattr(codecs, "avif_encode", fail)
    with pytest.raises(ImageWriteError, match=r"deep\.avif: cannot encode \(avifEncoderFinish"):
        write_image(tmp_path / "deep.avif", DEEP_RGB)
    assert list(tmp_path.iterdir()) == []


def test_an_icc_profile_jpeg_xl_cannot_carry_is_noted_unless_it_is_srgb() -> None:
    assert format_notes("x.jxl", PHOTO, LAB) == [
        "ICC profile not carried (JPEG XL is written without one: sRGB is assumed)"
    ]
    assert format_notes("x.jxl", PHOTO, ADOBE_RGB) == [
        "colours converted from Adobe RGB (1998) to sRGB "
        "(JPEG XL is written without an ICC profile here)"
    ]
    assert format_notes("x.jxl", PHOTO, SRGB) == []
    assert format_notes("x.avif", PHOTO, LAB) == format_notes("x.heic", PHOTO, LAB) == []
    assert format_notes("x.avif", PHOTO, ADOBE_RGB) == []


# -------------------------------------------- colours for the formats without an ICC profile


def xyz(x: float, y: float, z: float) -> bytes:
    """An ICC XYZType: three s15Fixed16 numbers."""
    return b"XYZ \0\0\0\0" + struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))


D50 = (0.9642, 1.0, 0.8249)  # the ICC connection space's white: colorants are adapted to it


def icc_profile(space: bytes, description: str, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 display profile, as LittleCMS reads it: a matrix/TRC RGB one, or grey."""
    text = description.encode() + b"\0"
    tags = {
        b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(78),
        b"wtpt": xyz(*D50),
        **tags,
    }
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for name, body in tags.items():
        table += name + struct.pack(">II", start + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    header = struct.pack(
        ">I4sI4s4s4s", start + len(data), b"none", 2 << 24, b"mntr", space, b"XYZ "
    )
    header += bytes(12) + b"acsp" + bytes(28) + xyz(*D50)[8:]  # the date, then the illuminant
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + data


def gamma_curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


# Adobe RGB (1998): its D50-adapted primaries and its gamma, 563/256.
ADOBE_RGB = icc_profile(
    b"RGB ",
    "Adobe RGB (1998)",
    {
        b"rXYZ": xyz(0.60974, 0.31111, 0.01947),
        b"gXYZ": xyz(0.20528, 0.62567, 0.06087),
        b"bXYZ": xyz(0.14919, 0.06322, 0.74457),
        **dict.fromkeys([b"rTRC", b"gTRC", b"bTRC"], gamma_curve(563 / 256)),
    },
)
GREY_18 = icc_profile(b"GRAY", "Gray Gamma 1.8", {b"kTRC": gamma_curve(1.8)})
# Flat 8x8 patches: saturated colours sRGB holds (some) and cannot (the green), and a grey.
PATCHES = np.kron(
    np.array(
        [
            [[40, 200, 60], [220, 30, 40], [30, 60, 210]],
            [[250, 200, 20], [90, 160, 230], [128] * 3],
        ],
        np.uint8,
    ),
    np.ones((8, 8, 1), np.uint8),
)


def in_srgb(pixels: np.ndarray, profile: bytes) -> np.ndarray:
    """What ImageCms itself makes of 8-bit colour (or grey, as RGB) in ``profile``."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    mode = "L" if pixels.ndim == 2 else "RGB"
    transform = ImageCms.buildTransform(
        source, ImageCms.createProfile("sRGB"), mode, "RGB", ImageCms.Intent.RELATIVE_COLORIMETRIC
    )
    return np.asarray(ImageCms.applyTransform(Image.fromarray(pixels), transform))


@pytest.mark.parametrize("suffix", [".bmp", ".jxl"])
def test_wide_gamut_colours_are_converted_to_srgb_where_the_profile_cannot_go(
    tmp_path: Path, suffix: str
) -> None:
    """The file is read as sRGB, so it gets sRGB's values for the colours: as ImageCms gives
    them (within a level in the middle of each patch of a JPEG XL, lossy here even at quality
    99), far from the Adobe RGB values."""
    expected = in_srgb(PATCHES, ADOBE_RGB).astype(int)
    assert np.abs(expected - PATCHES).max() > 40  # the green is well outside sRGB
    path = write_image(tmp_path / f"wide{suffix}", PATCHES, icc_profile=ADOBE_RGB, quality=99)
    image = read_image(path)
    error = np.abs(image.pixels.astype(int) - expected)
    assert error.max() == 0 if suffix == ".bmp" else error[4::8, 4::8].max() <= 1
    assert not image.icc_profile or is_srgb(image.icc_profile)
    label = "BMP" if suffix == ".bmp" else "JPEG XL"
    assert format_notes(path, PATCHES, ADOBE_RGB) == [
        f"colours converted from Adobe RGB (1998) to sRGB ({label} is written without an ICC "
        "profile here)"
    ]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_is_converted_and_alpha_is_left_alone(layout: str) -> None:
    """Colour as ImageCms converts it; grey in an RGB profile as its neutral grey, in a grey
    profile as that profile's grey (the same in R, G and B within a level). The same through
    a JPEG XL, lossy here."""
    pixels = LAYOUTS[layout]
    alpha = layout in ("grey+alpha", "rgba")
    colour = (pixels[..., :-1] if alpha else pixels).reshape(*pixels.shape[:2], -1)
    grey = colour.shape[2] == 1
    for profile in (ADOBE_RGB, GREY_18) if grey else (ADOBE_RGB,):
        converted = to_srgb(pixels, profile)
        assert converted.shape == pixels.shape and converted.dtype == np.uint8
        if alpha:
            assert np.array_equal(converted[..., -1], pixels[..., -1])
        result = (converted[..., :-1] if alpha else converted).reshape(colour.shape)
        source = (
            colour[..., 0] if profile == GREY_18 else np.repeat(colour, 3 // len(colour[0, 0]), 2)
        )
        assert np.abs(result.astype(int) - in_srgb(source, profile)).max() <= 1
    back = read_image_bytes(encode_image(pixels, "jxl", icc_profile=ADOBE_RGB), "x.jxl").pixels
    assert back.shape == pixels.shape
    assert np.abs(as_rgb(back) - as_rgb(to_srgb(pixels, ADOBE_RGB))).mean() < 2.5
    if alpha:
        assert np.abs(back[..., -1].astype(int) - pixels[..., -1]).max() <= 1


@pytest.mark.parametrize("fmt", ["png", "tiff", "jpg", "webp", "avif", "heic"])
def test_outputs_that_keep_the_profile_keep_the_pixels_too(fmt: str) -> None:
    """The profile byte for byte, and the pixels as they are written without one."""
    tagged = read_image_bytes(encode_image(PATCHES, fmt, icc_profile=ADOBE_RGB), f"x.{fmt}")
    plain = read_image_bytes(encode_image(PATCHES, fmt), f"x.{fmt}")
    assert tagged.icc_profile == ADOBE_RGB
    assert np.array_equal(tagged.pixels, plain.pixels)
    if fmt in ("png", "tiff"):
        assert np.array_equal(tagged.pixels, PATCHES)
    assert format_notes(f"x.{fmt}", PATCHES, ADOBE_RGB) == []


def test_a_16_bit_png_keeps_the_profile_and_every_bit() -> None:
    deep = PATCHES.astype(np.uint16) * 257 + 100
    image = read_image_bytes(encode_image(deep, "png", icc_profile=ADOBE_RGB), "deep.png")
    assert image.icc_profile == ADOBE_RGB and np.array_equal(image.pixels, deep)


def test_srgb_and_untagged_pixels_are_written_as_they_are(tmp_path: Path) -> None:
    untagged = encode_image(PATCHES, "jxl")
    assert encode_image(PATCHES, "jxl", icc_profile=SRGB) == untagged
    path = write_image(tmp_path / "srgb.bmp", PATCHES, icc_profile=SRGB)
    assert np.array_equal(read_image(path).pixels, PATCHES)
    assert to_srgb(PATCHES, SRGB) is PATCHES and to_srgb(PATCHES, None) is PATCHES
    assert format_notes(path, PATCHES, SRGB) == format_notes(path, PATCHES, None) == []


@pytest.mark.parametrize(
    ("profile", "pixels"),
    [(b"not a profile", PATCHES), (LAB, PATCHES), (GREY_18, PATCHES), (ADOBE_RGB[:100], GREY)],
    ids=["unreadable", "lab", "grey profile for colour", "cut short"],
)
def test_a_profile_that_cannot_be_applied_leaves_the_pixels_as_they_were(
    tmp_path: Path, profile: bytes, pixels: np.ndarray
) -> None:
    path = write_image(tmp_path / "kept.bmp", pixels, icc_profile=profile)
    assert np.array_equal(read_image(path).pixels, pixels)
    assert format_notes(path, pixels, profile) == [
        "ICC profile not carried (BMP is written without one: sRGB is assumed)"
    ]


def test_16_bit_colours_are_converted_at_16_bits(tmp_path: Path, codecs: ModuleType) -> None:
    """Through imagecodecs' LittleCMS: at the 8-bit values, what ImageCms gives within a
    level; and the shallow ramps of DEEP_RGB keep more levels than 8 bits would."""
    deep = np.concatenate([PATCHES.astype(np.uint16) * 257, DEEP_RGB[:16, :24]], axis=1)
    path = write_image(tmp_path / "deep.jxl", deep, icc_profile=ADOBE_RGB, quality=100)
    back = read_image(path).pixels
    assert back.dtype == np.uint16 and back.shape == deep.shape
    patches = back[:, :24].astype(int)
    assert np.abs(patches - in_srgb(PATCHES, ADOBE_RGB).astype(int) * 257).max() <= 257
    assert len(np.unique(back[4, 24:, 0])) > 16  # 8 bits would give 9 levels


@pytest.mark.usefixtures("no_imagecodecs")
def test_without_imagecodecs_16_bits_go_through_a_table_of_the_8_bit_transform(
    tmp_path: Path,
) -> None:
    """Every 8-bit value through the table: equal to ImageCms's at its nodes (every 3 levels),
    within a level between them; 16-bit ramps stay deeper than 8 bits, grey in a JPEG XL too
    (pillow-jxl-plugin writes it whole)."""
    eight = np.random.default_rng(3).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    eight[:8, :8] = np.arange(0, 192, 3).reshape(8, 8, 1)  # some pixels all on nodes
    table = to_srgb(eight.astype(np.uint16) * 257, ADOBE_RGB).astype(int)
    error = np.abs(table - in_srgb(eight, ADOBE_RGB).astype(int) * 257)
    nodes = (eight % 3 == 0).all(axis=2)
    assert nodes.sum() >= 64 and error[nodes].max() == 0 and error.max() <= 257
    ramps = to_srgb(DEEP_RGB, ADOBE_RGB)
    assert ramps.dtype == np.uint16 and len(np.unique(ramps[4, :, 0])) > 16
    grey = to_srgb(RAMP, GREY_18)
    assert grey.dtype == np.uint16 and len(np.unique(grey[4])) > 16
    back = read_image(write_image(tmp_path / "grey.jxl", RAMP, icc_profile=GREY_18)).pixels
    assert back.dtype == np.uint16 and np.abs(back.astype(int) - grey).mean() < 64


def test_a_transform_that_fails_after_all_leaves_the_pixels(tmp_path, monkeypatch) -> None:
    def fail(*args: object) -> None:
        raise ImageCms.PyCMSError("cannot transform")

    monkeypatch.setattr(superres.imageio.srgb, "_pillow", fail)
    path = write_image(tmp_path / "kept.bmp", PATCHES, icc_profile=ADOBE_RGB)
    assert np.array_equal(read_image(path).pixels, PATCHES)


@pytest.mark.parametrize("profile", [ADOBE_RGB, GREY_18], ids=["adobe rgb", "grey gamma 1.8"])
def test_the_16_bit_table_is_close_to_imagecodecs_exact_transform(
    monkeypatch: pytest.MonkeyPatch, codecs: ModuleType, profile: bytes
) -> None:
    """The accuracy measured in srgb._interpolated, in 16-bit units, on random colours: a mean
    error of about 45 and a 99th percentile of about 150; the worst, in dark channels of
    saturated colours at sRGB's gamut edge, is about what the 8-bit route (round, transform,
    x 257) gets wrong there. Grey goes through a curve: within half an 8-bit level."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 65536, (256, 256) if profile == GREY_18 else (256, 256, 3))
    pixels = pixels.astype(np.uint16)
    exact = to_srgb(pixels, profile).astype(int)
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    error = np.abs(to_srgb(pixels, profile).astype(int) - exact)
    if profile == GREY_18:
        assert error.max() <= 129  # half an 8-bit level: the 8-bit transform's rounding
        return
    eight = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    route = np.abs(in_srgb(eight, profile).astype(int) * 257 - exact)
    assert error.mean() < 55 and route.mean() > 75
    assert np.percentile(error, 99) < 200
    assert error.max() <= route.max() + 257


def test_the_batch_notes_the_conversion(tmp_path: Path) -> None:
    write_image(tmp_path / "wide.png", PATCHES, icc_profile=ADOBE_RGB)
    result = upscale_cli(tmp_path / "wide.png", "--format", "bmp")
    assert result.exit_code == 0, result.output
    note = (
        f"note: {tmp_path / 'wide.png'}: colours converted from Adobe RGB (1998) to sRGB "
        "(BMP is written without an ICC profile here)"
    )
    assert note in result.output.splitlines()
    assert read_image(tmp_path / "wide_x2.bmp").icc_profile is None


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
    assert jxl_size(upload) == (width, height)


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


def test_a_folder_skips_what_its_files_became_beside_them(tmp_path: Path) -> None:
    """`upscale holiday/photo.heic`, then `upscale holiday`: photo_x2.heic is that first
    run's result, not a photo to enlarge again."""
    holiday = tmp_path / "holiday"
    write_image(holiday / "photo.heic", PHOTO)
    assert upscale_cli(holiday / "photo.heic").exit_code == 0
    result = upscale_cli(holiday)
    assert result.exit_code == 0, result.output
    assert "skip" in result.output and "earlier result" in result.output
    assert "1 written" in result.output
    assert sorted(path.name for path in (tmp_path / "holiday_x2").iterdir()) == ["photo.heic"]


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


def test_jpeg_xl_at_quality_100_is_lossless() -> None:
    """pillow-jxl-plugin refuses quality 100 unless told lossless; superres tells it."""
    back = read_image_bytes(encode_image(PHOTO, "jxl", quality=100), "x.jxl").pixels
    np.testing.assert_array_equal(back, PHOTO)
