"""Image files in and out: decode to numpy without losing bits, write atomically.

Pillow does the work wherever it is right. OpenCV is used only for 16-bit colour (RGB/RGBA,
and 16-bit grey+alpha on read): Pillow has no 16-bit colour modes, so it silently truncates
48/64-bit PNG and TIFF to 8 bits on read and cannot write them at all.

AVIF is Pillow's own. HEIC/HEIF (pillow-heif) and JPEG XL (pillow-jxl-plugin) come with the
``formats`` extra and are registered with Pillow only when such a file is met or asked for;
10/12-bit HEIC is read and written through pillow-heif itself, for the same reason as OpenCV
above (its Pillow plugin hands Pillow 8 bits). So are AVIF and JPEG XL above 8 bits, through
imagecodecs (also in the extra): Pillow's AVIF and pillow-jxl-plugin's colour are 8-bit. Pillow
still reads their metadata (EXIF, ICC profile, orientation); without imagecodecs such a file is
read at 8 bits, with a remark saying so.

This module is the public API and picks the codec for each file; the code behind the formats
Pillow cannot do whole is beside it: :mod:`~superres.imageio.deep` (the decoders and encoders
that keep more than 8 bits), :mod:`~superres.imageio.bmff` (the HEIF/AVIF container),
:mod:`~superres.imageio.jxl` (JPEG XL's headers), :mod:`~superres.imageio.exif` (EXIF) and
:mod:`~superres.imageio.srgb` (colours turned to sRGB for the formats that take no ICC profile).

Every read failure is an :class:`ImageReadError` and every write failure an
:class:`ImageWriteError`, each one line that names the file, so the CLI can report it as is.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, features

from superres.atomic import create_temporary
from superres.errors import (
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    NotAnImageError,
    SuperresError,
)
from superres.extras import require
from superres.imageio.alpha import has_alpha
from superres.imageio.deep import (
    avif_encoder,
    deep_sample_bits,
    heif_encoder,
    heif_pixels,
    imagecodecs_for,
    imagecodecs_pixels,
    jxl_encoder,
    opencv_16_bit_encoder,
    opencv_layout,
    opencv_pixels,
)
from superres.imageio.exif import (
    EXIF_HEADER,
    ORIENTATION,
    exif_with_orientation_reset,
    tiff_exif,
)
from superres.imageio.jxl import jxl_size
from superres.imageio.messages import one_line
from superres.imageio.srgb import is_srgb, srgb_conversion, to_srgb

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageData",
    "ImageReadError",
    "ImageWriteError",
    "OUTPUT_FORMATS",
    "deep_bit_depth",
    "encode_image",
    "find_images",
    "format_notes",
    "header_formats",
    "image_size",
    "load_pixels",
    "output_path_for",
    "pixels_from_pil",
    "read_image",
    "read_image_bytes",
    "require_format",
    "why_missing",
    "write_image",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    | {".avif", ".heic", ".heif", ".hif", ".jxl"}
)

# Where Pillow itself refuses (twice its warning level, Image.MAX_IMAGE_PIXELS): a header
# claiming more is refused before decoding, so a tiny crafted file cannot eat gigabytes.
DEFAULT_MAX_PIXELS: int = 178_956_970

# Only these decoders are offered to Pillow; the rest of its plugins (some of which shell out,
# like EPS via Ghostscript) are attack surface we do not need. HEIF and JXL are added for a file
# whose first bytes name them, once their plugin is registered (see _codec_for).
_READ_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "AVIF")
# Formats from the `formats` extra: Pillow's name -> (module, what users call it).
_PLUGINS = {"HEIF": ("pillow_heif", "HEIC/HEIF"), "JXL": ("pillow_jxl", "JPEG XL")}
_LABELS = {"AVIF": "AVIF", **{fmt: label for fmt, (_, label) in _PLUGINS.items()}}
_PLUGIN_LOCK = threading.Lock()
# The first bytes of a file, enough for a PNG header and an ISO-BMFF ftyp box with its brands.
_HEADER_BYTES = 128
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")

_WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".avif": "AVIF",
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".hif": "HEIF",
    ".jxl": "JXL",
}
_CANONICAL_SUFFIX = {
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpg",
    "webp": ".webp",
    "tif": ".tiff",
    "tiff": ".tiff",
    "bmp": ".bmp",
    "avif": ".avif",
    "heic": ".heic",
    "heif": ".heif",
    "jxl": ".jxl",
}
# What --format and the web page's format choice accept.
OUTPUT_FORMATS: tuple[str, ...] = tuple(_CANONICAL_SUFFIX)
_FORMAT_LIST = ", ".join(OUTPUT_FORMATS)
# Largest side each encoder accepts; checked up front for a clear message instead of a codec error.
# AVIF: libavif refuses to decode a side over 32768 by default, so a larger file is unreadable.
ENCODER_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383, "AVIF": 32_768}
# Encoders that keep 16-bit samples: HEIF and AVIF as 10 bits (see heif_encoder and
# avif_encoder), JPEG XL whole. AVIF and JPEG XL go through imagecodecs (the `formats` extra),
# without which AVIF gets 8 bits and JPEG XL keeps 16 for grey alone (pillow-jxl-plugin writes
# 16 bits from mode I;16 only). Others get round(x / 257).
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF", "HEIF", "AVIF", "JXL"})
_IMAGECODECS_FORMATS = frozenset({"AVIF", "JXL"})
_FORMATS_EXTRA = "the 'formats' extra: pip install 'superres[formats]'"  # as extras.require says
# Encoders that cannot embed an ICC profile here: BMP, and JPEG XL, whose encoders here
# (pillow-jxl-plugin, imagecodecs) always write JPEG XL's own sRGB colour encoding. Pixels in
# another profile are converted to sRGB for them (see superres.imageio.srgb), where LittleCMS can.
_NO_ICC_FORMATS = frozenset({"BMP", "JXL"})
# Each encoder's option for full-resolution chroma, used from quality 90 on.
_FULL_CHROMA = {
    "JPEG": ("subsampling", 0),
    "AVIF": ("subsampling", "4:4:4"),
    "HEIF": ("chroma", 444),
}

_PIXEL_LIMIT_LOCK = threading.Lock()


@dataclass(eq=False)  # eq on ndarray fields would raise, not compare
class ImageData:
    """Decoded pixels plus the metadata worth carrying to an upscaled copy."""

    pixels: np.ndarray  # HxW, HxWx2 (grey+alpha), HxWx3 RGB, HxWx4 RGBA; uint8 or uint16
    icc_profile: bytes | None  # colours are only meaningful relative to this profile
    exif: bytes | None  # "Exif\0\0"-prefixed, Orientation reset to 1 (pixels are upright)
    format: str  # Pillow's name for the source format, e.g. "PNG", "JPEG"
    # What was left behind, one remark each: other images of a HEIC burst, a depth map.
    notes: list[str] = field(default_factory=list)

    @property
    def has_alpha(self) -> bool:
        """Whether the last channel is alpha (grey+alpha or RGBA)."""
        return has_alpha(self.pixels)

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 8 or 16."""
        return 16 if self.pixels.dtype == np.uint16 else 8


# --------------------------------------------------------------------------------------- read


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode an image upright (EXIF orientation applied) at its full bit depth.

    Refuses images with more than ``max_pixels`` pixels before decoding them (``None``
    disables the guard, including Pillow's own global one).
    """
    path = Path(path)
    with _read_errors(path):
        _check_is_readable_file(path)
        with open(path, "rb") as file:
            return _decode(path, file, max_pixels)


def read_image_bytes(
    data: bytes, name: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> ImageData:
    """:func:`read_image` for an image already in memory (an upload); ``name`` labels errors."""
    label = Path(name)
    with _read_errors(label):
        if not data:
            raise ImageReadError(f"{label}: file is empty (0 bytes)")
        return _decode(label, BytesIO(data), max_pixels)


@contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    """Any failure while reading becomes one ImageReadError line that names the file."""
    try:
        yield
    except SuperresError:  # already one line: a read error, or the extra to install
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"{path}: too many pixels ({one_line(error)})") from error
    except Exception as error:  # a decoder bug or odd file must still be one clean line
        raise ImageReadError(
            f"{path}: cannot read image ({type(error).__name__}: {one_line(error)})"
        ) from error


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as the header says, for callers that plan before they decode (a JPEG XL
    is decoded to tell: its plugin has no other way); errors as :func:`read_image`'s."""
    path = Path(path)
    with _read_errors(path), open(path, "rb") as file:
        codec = _codec_for(path, file.read(_HEADER_BYTES))
        file.seek(0)
        with _open_with_pillow(path, file, DEFAULT_MAX_PIXELS, codec) as image:
            return image.size


def deep_bit_depth(image: Image.Image, file: BinaryIO) -> int:
    """16 where :func:`read_image` keeps more than the 8 bits per sample that Pillow reports for
    an AVIF or JPEG XL it opened from ``file`` (a still image whose headers give 10 to 16 bits,
    imagecodecs installed to decode it whole), else 8: :attr:`ImageData.bit_depth` to be, told
    from the headers alone, for callers that plan before they decode. Other formats show their
    depth in ``image`` itself (mode or tiles; ``info["bit_depth"]`` for HEIF)."""
    if image.format not in _IMAGECODECS_FORMATS:
        return 8
    bits, still = deep_sample_bits(image, file)
    return 16 if bits > 8 and still and imagecodecs_for(image.format) else 8


def load_pixels(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Just the pixels of :func:`read_image`, for callers that do not write the image back."""
    return read_image(path, max_pixels=max_pixels).pixels


def _decode(path: Path, file: BinaryIO, max_pixels: int | None) -> ImageData:
    """Decode from an open binary file; ``path`` only names it in errors."""
    header = file.read(_HEADER_BYTES)
    file.seek(0)
    codec = _codec_for(path, header)
    if codec == "JXL":
        _check_jxl_size(path, file, max_pixels)
    with _open_with_pillow(path, file, max_pixels, codec) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(
                f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} (max_pixels)"
            )
        deep_heif = codec == "HEIF" and image.info.get("bit_depth", 8) > 8
        deep_bits, still = (
            deep_sample_bits(image, file) if codec in _IMAGECODECS_FORMATS else (8, True)
        )
        imagecodecs = imagecodecs_for(codec) if deep_bits > 8 and still else None
        if not (deep_heif or imagecodecs):  # those are decoded below, by their own libraries
            with _decoding(path, width, height):
                image.load()
        icc_profile = image.info.get("icc_profile") or None
        raw_exif = image.info.get("exif") or tiff_exif(image)
        exif = exif_with_orientation_reset(raw_exif) if raw_exif else None
        source_format = image.format or "unknown"
        opencv_source = opencv_layout(image, header)
        if deep_heif:
            with _decoding(path, width, height):
                pixels = heif_pixels(file, image.tell())
        elif imagecodecs is not None:
            file.seek(0)
            with _decoding(path, width, height):
                pixels = imagecodecs_pixels(imagecodecs, codec, file.read(), deep_bits)
                if pixels.shape[:2] != (height, width):  # Pillow's size, before irot/imir
                    raise ValueError(f"imagecodecs decoded {pixels.shape[1]}x{pixels.shape[0]}")
            if codec == "AVIF":  # libavif leaves irot/imir to the caller, as Pillow does
                orientation = image.getexif().get(ORIENTATION, 1)
                pixels = np.ascontiguousarray(_apply_orientation(pixels, orientation))
        elif opencv_source is None:
            upright = image if _decoder_orients(image) else ImageOps.exif_transpose(image)
            pixels = _pillow_pixels(str(path), upright)
        else:
            orientation = image.getexif().get(ORIENTATION, 1)
            file.seek(0)
            grey = opencv_source == "grey+alpha"
            pixels = opencv_pixels(path, file.read(), image.size, grey=grey)
            pixels = np.ascontiguousarray(_apply_orientation(pixels, orientation))
        notes = _left_behind(image)
        if deep_bits > 8 and imagecodecs is None and pixels.dtype == np.uint8:
            why = f"reading them whole needs {_FORMATS_EXTRA}" if still else "an animation"
            notes.append(f"its {deep_bits}-bit samples are read as 8 bits ({why})")
    return ImageData(
        pixels=pixels, icc_profile=icc_profile, exif=exif, format=source_format, notes=notes
    )


@contextmanager
def _decoding(path: Path, width: int, height: int) -> Iterator[None]:
    """Decode everything now: a truncated file must fail here, not half-load later."""
    try:
        yield
    except MemoryError:
        raise ImageReadError(
            f"{path}: not enough memory to decode {width}x{height} pixels"
        ) from None
    except Exception as error:
        raise ImageReadError(
            f"{path}: corrupt or truncated image data ({one_line(error)})"
        ) from error


def _sniff(header: bytes) -> str | None:
    """AVIF, HEIF or JXL (Pillow's names) when the first bytes say so, else None.

    AVIF and HEIF share the ISO-BMFF ``ftyp`` box; its brands tell them apart (a HEIC may have
    the generic major brand ``mif1``, so the compatible brands count too).
    """
    if header.startswith(_JXL_SIGNATURES):
        return "JXL"
    if header[4:8] != b"ftyp":
        return None
    end = min(int.from_bytes(header[:4], "big"), len(header))
    brands = {header[8:12]} | {header[i : i + 4] for i in range(16, end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIF" if brands & _HEIF_BRANDS else None


def _codec_for(path: Path, header: bytes) -> str | None:
    """What the first bytes name, its plugin registered; one line if it is not installed."""
    codec = _sniff(header)
    if codec is not None:
        _require_codec(codec, "reading", f"{path}: ")
    return codec


def _require_codec(fmt: str, verb: str, where: str = "") -> None:
    """Make Pillow able to read and write ``fmt``: import and register its plugin the first
    time (not when superres is imported), or say in one line what to install."""
    if fmt == "AVIF" and not features.check("avif"):
        raise SuperresError(f"{where}{verb} AVIF needs a Pillow with AVIF (wheels from 11.3 on)")
    if fmt not in _PLUGINS or fmt in Image.OPEN:
        return
    module, label = _PLUGINS[fmt]
    with _PLUGIN_LOCK:
        plugin = require(module, "formats", f"{where}{verb} {label}")  # pillow_jxl: on import
        if fmt == "HEIF" and fmt not in Image.OPEN:
            plugin.register_heif_opener()


def header_formats() -> tuple[str, ...]:
    """The formats Pillow can size from their header, without decoding: those superres reads,
    with HEIF once registered, but not JPEG XL, whose plugin decodes the image as it opens it."""
    return (*_READ_FORMATS, *(fmt for fmt in _PLUGINS if fmt in Image.OPEN and fmt != "JXL"))


def require_format(fmt: str) -> None:
    """Check up front that output format ``fmt`` (png, heic, ...) can be written here: one line
    naming the extra to install, before any work, rather than one per file."""
    _require_codec(_WRITE_FORMATS[output_path_for("image", fmt).suffix], "writing")


def _decoder_orients(image: Image.Image) -> bool:
    """Whether the decoder has already turned the pixels upright, so EXIF's Orientation (kept
    equal to the file's own by writers) must not be applied again: JPEG XL's codestream
    orientation, applied by libjxl, unless the file is a losslessly recompressed JPEG, which
    the plugin hands back as that JPEG. (HEIF's irot/imir are applied by libheif too, and its
    plugin resets EXIF's Orientation itself; AVIF's come from Pillow as EXIF's Orientation.)"""
    return image.format == "JXL" and not getattr(image, "jpeg", False)


def _left_behind(image: Image.Image) -> list[str]:
    """Remarks on what a still image's file holds besides the picture upscaled."""
    notes = []
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        which = "primary" if image.format == "HEIF" else "first"
        notes.append(f"holds {frames} images; only the {which} one is upscaled")
    if image.info.get("depth_images"):
        notes.append("its depth map is not carried to the output")
    return notes


def _check_jxl_size(path: Path, file: BinaryIO, max_pixels: int | None) -> None:
    """Refuse a JPEG XL over ``max_pixels`` from its header: pillow-jxl-plugin decodes the whole
    image as it opens it, before Pillow could tell its size."""
    if max_pixels is None:
        return
    size = jxl_size(file.read())
    file.seek(0)
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (max_pixels)"
        )


def _check_is_readable_file(path: Path) -> None:
    """Name the commonest mistakes plainly instead of letting a decoder guess at them."""
    try:
        status = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageReadError(f"{path}: cannot access ({error.strerror or error})") from error
    if stat.S_ISDIR(status.st_mode):
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(status.st_mode):
        raise ImageReadError(f"{path}: not a regular file")
    if status.st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")


@contextmanager
def _open_with_pillow(
    path: Path, file: BinaryIO, max_pixels: int | None, codec: str | None
) -> Iterator[Image.Image]:
    """Image.open with our pixel limit in charge of Pillow's global decompression-bomb guard.

    Pillow's warning is silenced: the caller's max_pixels, checked next, is what decides.
    ``codec`` is what the first bytes named (see _sniff), so a file that only looks like one
    is called corrupt rather than unknown.
    """
    formats = (*_READ_FORMATS, codec) if codec in _PLUGINS else _READ_FORMATS
    with _pillow_pixel_limit(max_pixels), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(file, formats=formats)
        except Image.DecompressionBombError:
            raise
        except Exception as error:
            unknown = isinstance(error, Image.UnidentifiedImageError)  # its text names no cause
            if codec is not None:
                reason = "" if unknown else f" ({_first_sentence(error)})"
                raise ImageReadError(
                    f"{path}: corrupt or truncated {_LABELS[codec]} file{reason}"
                ) from error
            if unknown:
                supported = ", ".join((*_READ_FORMATS, *_PLUGINS))
                raise NotAnImageError(
                    f"{path}: not an image, or not a supported format ({supported})"
                ) from None
            raise ImageReadError(f"{path}: corrupt image header ({one_line(error)})") from error
    with image:
        yield image


@contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Lift Pillow's global limit when the caller allows more; we check the size ourselves.

    Pillow refuses above 2 * Image.MAX_IMAGE_PIXELS and has no per-call limit, so only then
    is the global briefly changed (under a lock, so concurrent reads here restore it right).
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels is not None and max_pixels <= 2 * current):
        yield
        return
    with _PIXEL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max_pixels // 2 + 1
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The numpy twin of ImageOps.exif_transpose, for arrays Pillow cannot hold."""
    match orientation:
        case 2:
            return pixels[:, ::-1]
        case 3:
            return pixels[::-1, ::-1]
        case 4:
            return pixels[::-1]
        case 5:
            return pixels.swapaxes(0, 1)
        case 6:
            return np.rot90(pixels, -1)
        case 7:
            return np.rot90(pixels, 2).swapaxes(0, 1)
        case 8:
            return np.rot90(pixels, 1)
    return pixels


def pixels_from_pil(image: Image.Image) -> np.ndarray:
    """An in-memory PIL image in the layouts :func:`read_image` returns, for the Python API.

    EXIF orientation is applied here too, so the result is upright the way viewers show it
    (a no-op for an image already passed through ImageOps.exif_transpose).
    """
    try:
        return _pillow_pixels("PIL image", ImageOps.exif_transpose(image))
    except ImageReadError:
        raise
    except Exception as error:  # e.g. a lazily opened file that turns out truncated
        raise ImageReadError(f"PIL image: cannot decode ({one_line(error)})") from error


def _pillow_pixels(name: str, image: Image.Image) -> np.ndarray:
    """Pillow's many modes reduced to the few layouts the rest of superres understands."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.array(image).astype(np.uint16)  # also makes big-endian data native
    if mode == "I":
        return np.clip(np.array(image), 0, 65535).astype(np.uint16)
    if mode == "F":
        return _float_to_integer(np.array(image))
    if mode in ("1", "L"):
        target = "LA" if image.has_transparency_data else "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in ("RGBA", "RGBa", "PA"):
        target = "RGBA"
    else:  # RGB, P, CMYK, YCbCr, LAB, HSV, RGBX: colour, with alpha only if a tRNS says so
        target = "RGBA" if image.has_transparency_data else "RGB"
    try:
        converted = image if mode == target else image.convert(target)
    except ValueError as error:
        raise ImageReadError(f"{name}: unsupported colour mode {mode} ({error})") from error
    return np.array(converted)


def _float_to_integer(values: np.ndarray) -> np.ndarray:
    """Float samples (mode F) by their range, the only clue to what they mean.

    Peak <= 1: normalised data, scaled to the full uint16 range to keep its precision.
    Peak <= 255: 8-bit data stored as float, rounded to uint8.
    Otherwise: 16-bit data stored as float, rounded and clipped to uint16.
    Negatives and NaN become 0.
    """
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size else 0.0
    if peak <= 1.0:
        scale, top, dtype = 65535.0, 65535.0, np.uint16
    elif peak <= 255.0:
        scale, top, dtype = 1.0, 255.0, np.uint8
    else:
        scale, top, dtype = 1.0, 65535.0, np.uint16
    clean = np.nan_to_num(values.astype(np.float64) * scale, nan=0.0, posinf=top, neginf=0.0)
    return np.round(np.clip(clean, 0.0, top)).astype(dtype)


def _first_sentence(error: BaseException) -> str:
    """The gist of a codec's message: libjxl's, through its plugin, goes on with build advice."""
    return re.split(r"(?<=\.) ", one_line(error))[0]


# -------------------------------------------------------------------------------------- write


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    overwrite: bool = True,
) -> Path:
    """Write ``pixels`` in the format named by the extension, atomically; return the path.

    The file appears complete or not at all: it is written to a hidden ``.part`` file in the
    same folder, synced, then renamed over the target. PNG, TIFF and JPEG XL keep 16 bits,
    HEIC and AVIF 10; JPEG, WebP and BMP get 8 (``round(x / 257)``, see :func:`format_notes`),
    and so do AVIF and JPEG XL (but grey) without imagecodecs. JPEG and BMP drop alpha.
    ``quality`` is for JPEG, WebP, AVIF, HEIC and JPEG XL (100: lossless for 16-bit JPEG XL).
    The ICC profile and EXIF are written to PNG, JPEG, WebP, TIFF, AVIF and HEIC (JPEG XL: EXIF
    only), except to 16-bit colour TIFF (OpenCV cannot); for JPEG XL and BMP, read as sRGB, the
    pixels are converted to sRGB from another profile (see format_notes). 16-bit grey+alpha
    TIFF is written as 16-bit RGBA, grey+alpha HEIC and AVIF as RGBA (and 16-bit grey AVIF as
    RGB).
    """
    target = Path(path)
    fmt = _format_for(target, quality)
    if target.is_dir():
        raise ImageWriteError(f"{target}: is a directory")
    if not overwrite and target.exists():
        raise ImageWriteError(f"{target}: already exists (not overwriting)")
    encode = _encoder(target, _checked_pixels(target, pixels, fmt), fmt, icc_profile, exif, quality)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = create_temporary(target)
    except OSError as error:
        raise ImageWriteError(f"{target}: cannot write ({one_line(error)})") from error
    try:
        with os.fdopen(descriptor, "wb") as file:
            encode(file)
            file.flush()
            os.fsync(file.fileno())
        _move_into_place(temporary, target, overwrite)
    except BaseException as error:  # includes KeyboardInterrupt: never leave a .part behind
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError | cv2.error):
            raise ImageWriteError(f"{target}: cannot write ({one_line(error)})") from error
        raise
    return target


def encode_image(
    pixels: np.ndarray,
    fmt: str,
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
) -> bytes:
    """The bytes :func:`write_image` would write for format ``fmt`` (png, jpg, ...), in memory.

    For callers that send images rather than store them, such as the web server.
    """
    target = output_path_for("image", fmt)
    kind = _format_for(target, quality)
    encode = _encoder(
        target, _checked_pixels(target, pixels, kind), kind, icc_profile, exif, quality
    )
    buffer = BytesIO()
    try:
        encode(buffer)
    except (OSError, cv2.error) as error:
        raise ImageWriteError(f"{target}: cannot encode ({one_line(error)})") from error
    return buffer.getvalue()


def _format_for(target: Path, quality: int) -> str:
    """Pillow's format name for ``target``'s extension, after checking ``quality``."""
    fmt = _WRITE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ImageWriteError(
            f"{target}: unsupported output format {target.suffix or '(no extension)'!r}; "
            f"use {_FORMAT_LIST}"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageWriteError(
            f"{target}: quality must be an integer from 1 to 100, not {quality!r}"
        )
    _require_codec(fmt, "writing", f"{target}: ")
    return fmt


def format_notes(
    path: str | Path, pixels: np.ndarray, icc_profile: bytes | None, exif: bytes | None = None
) -> list[str]:
    """What writing ``pixels`` to ``path`` (its extension names the format) cannot keep, one
    remark each, for the note lines of a batch: the written file degrades, it is not refused."""
    fmt = _WRITE_FORMATS.get(Path(path).suffix.lower())
    label = _LABELS.get(fmt, fmt)
    notes = []
    if pixels.dtype == np.uint16 and not _keeps_16_bits(fmt, pixels):
        if fmt in _IMAGECODECS_FORMATS:  # imagecodecs is missing
            notes.append(
                f"16-bit samples written as 8-bit ({label} above 8 bits needs {_FORMATS_EXTRA})"
            )
        else:
            notes.append(f"16-bit samples written as 8-bit ({label} holds 8 here)")
    if icc_profile and fmt in _NO_ICC_FORMATS and not is_srgb(icc_profile):
        source = srgb_conversion(icc_profile, pixels)
        if source is not None:  # see _encoder
            notes.append(
                f"colours converted from {source} to sRGB "
                f"({label} is written without an ICC profile here)"
            )
        else:
            notes.append(
                f"ICC profile not carried ({label} is written without one: sRGB is assumed)"
            )
    if fmt == "TIFF" and pixels.dtype == np.uint16 and pixels.ndim == 3:
        if exif:  # see deep.opencv_16_bit_encoder
            notes.append("EXIF not carried (16-bit colour TIFF is written without it here)")
        if icc_profile and pixels.shape[2] == 2:  # OpenCV's RGBA
            notes.append("ICC profile not carried (16-bit grey+alpha TIFF is written by OpenCV)")
    return notes


def _keeps_16_bits(fmt: str | None, pixels: np.ndarray) -> bool:
    """Whether ``fmt`` is written with these 16-bit samples kept (see _SIXTEEN_BIT_FORMATS)."""
    if fmt not in _SIXTEEN_BIT_FORMATS:
        return False
    if fmt not in _IMAGECODECS_FORMATS or imagecodecs_for(fmt) is not None:
        return True
    return fmt == "JXL" and (pixels.ndim == 2 or pixels.shape[2] == 1)  # mode I;16


def output_path_for(path: str | Path, fmt: str | None) -> Path:
    """``path`` with its suffix swapped for ``fmt``'s usual extension (unchanged if no fmt)."""
    path = Path(path)
    if fmt is None:
        return path
    suffix = _CANONICAL_SUFFIX.get(fmt.lower().lstrip("."))
    if suffix is None:
        raise ImageWriteError(f"unknown output format {fmt!r}; use {_FORMAT_LIST}")
    return path.with_suffix(suffix)


def _checked_pixels(target: Path, pixels: np.ndarray, fmt: str) -> np.ndarray:
    """Validate the array, then fit it to what ``fmt`` can store (bit depth, alpha)."""
    if not isinstance(pixels, np.ndarray):
        raise ImageWriteError(
            f"{target}: pixels must be a numpy array, not {type(pixels).__name__}"
        )
    if pixels.dtype.kind != "u" or pixels.dtype.itemsize not in (1, 2):
        raise ImageWriteError(f"{target}: pixels must be uint8 or uint16, not {pixels.dtype}")
    pixels = pixels.astype(np.uint16 if pixels.dtype.itemsize == 2 else np.uint8, copy=False)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (2, 3, 4))):
        raise ImageWriteError(
            f"{target}: pixels must be HxW, HxWx2, HxWx3 or HxWx4, not {pixels.shape}"
        )
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ImageWriteError(f"{target}: image is empty ({width}x{height})")
    limit = ENCODER_MAX_SIDE.get(fmt)
    if limit is not None and max(height, width) > limit:
        raise ImageWriteError(
            f"{target}: {width}x{height} is too large for {fmt} (at most {limit} per side)"
        )
    if pixels.dtype == np.uint16 and not _keeps_16_bits(fmt, pixels):
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # = round(x / 257)
    if fmt in ("JPEG", "BMP") and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1]  # these formats have no alpha: drop it (no compositing)
        if pixels.shape[2] == 1:
            pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels)


def _encoder(
    target: Path,
    pixels: np.ndarray,
    fmt: str,
    icc_profile: bytes | None,
    exif: bytes | None,
    quality: int,
) -> Callable[[BinaryIO], None]:
    """A function that writes the encoded image to an open file."""
    if fmt in _NO_ICC_FORMATS:  # read as sRGB: the colours must be sRGB's (see format_notes)
        pixels = to_srgb(pixels, icc_profile)
    if exif and not exif.startswith(EXIF_HEADER):
        exif = EXIF_HEADER + exif
    options: dict[str, object] = {}
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "HEIF"):
        if icc_profile:
            options["icc_profile"] = icc_profile
        if exif:
            options["exif"] = exif
    if fmt == "JXL" and exif:
        options["exif"] = exif  # and no ICC profile: see _NO_ICC_FORMATS
    if fmt in ("JPEG", "WEBP", "AVIF", "HEIF", "JXL"):
        options["quality"] = quality
    if fmt == "JXL" and quality == 100:
        # pillow-jxl-plugin fails on quality 100 unless asked for lossless, which it then is.
        options["lossless"] = True
    if fmt in _FULL_CHROMA and quality >= 90:
        # 4:4:4: halving chroma would undo part of the upscaling
        key, value = _FULL_CHROMA[fmt]
        options[key] = value
    if fmt in _IMAGECODECS_FORMATS and pixels.dtype == np.uint16:
        imagecodecs = imagecodecs_for(fmt)
        if fmt == "AVIF" and imagecodecs is not None:
            return avif_encoder(target, imagecodecs, pixels, icc_profile, exif, quality)
        if fmt == "JXL" and imagecodecs is not None:
            return jxl_encoder(target, imagecodecs, pixels, exif, quality)
    if fmt == "HEIF":
        return heif_encoder(pixels, options)
    if pixels.dtype == np.uint16 and pixels.ndim == 3:
        return opencv_16_bit_encoder(target, pixels, fmt, icc_profile, exif)
    if fmt == "TIFF" and features.check("libtiff"):
        options["compression"] = "tiff_lzw"
    image = Image.fromarray(pixels)  # uint16 HxW becomes I;16, which PNG and TIFF keep whole

    def save(file: BinaryIO) -> None:
        image.save(file, format=fmt, **options)

    return save


def _move_into_place(temporary: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    # A hard link never replaces an existing file, so a target created by someone else
    # since our check is not clobbered.
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise ImageWriteError(f"{target}: already exists (not overwriting)") from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if target.exists():
            raise ImageWriteError(f"{target}: already exists (not overwriting)") from None
        os.replace(temporary, target)
    else:
        temporary.unlink()


# -------------------------------------------------------------------------------------- find


def find_images(
    inputs: Iterable[str | Path], extensions: frozenset[str] = IMAGE_EXTENSIONS
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Expand files and folders into ``(path, relative path for the output tree)`` pairs.

    A file given directly is taken whatever its extension, with its name as relative path.
    Folders are searched recursively for ``extensions`` (any case), skipping hidden files
    and folders, sorted, relative to the folder; links to folders are followed, each real
    folder once. Second come what cannot be used, never skipped in silence: inputs that do
    not exist, and below a folder broken links, link loops and special files with those
    extensions (:func:`why_missing` says which).
    """
    found: list[tuple[Path, Path]] = []
    missing: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            below, unusable = _images_below(path, extensions)
            found.extend(below)
            missing.extend(unusable)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            missing.append(path)
    return found, missing


def why_missing(path: Path) -> str:
    """Why :func:`find_images` could not use ``path``, in a few words."""
    if not path.is_symlink():
        if path.is_dir():
            return "a folder searched already, through a link"
        return "not a regular file" if path.exists() else "no such file or folder"
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return f"a broken symbolic link (to {os.readlink(path)})"
    except (OSError, RuntimeError):  # ELOOP; Python before 3.13 raises RuntimeError
        return "a loop of symbolic links"
    if path.parent.resolve().is_relative_to(target):
        return f"a symbolic link to {target}, a folder that contains it (a loop)"
    return f"a symbolic link to {target}, a folder searched already"


def _images_below(
    folder: Path, extensions: frozenset[str]
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    found: list[tuple[Path, Path]] = []
    unusable: list[Path] = []
    searched = {folder.resolve()}
    for root, folders, names in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(folders):
            if name.startswith("."):
                continue
            real = Path(root, name).resolve()
            if real in searched:  # reached again through a link: a loop, or a second way in
                unusable.append(Path(root, name))
            else:
                searched.add(real)
                kept.append(name)
        folders[:] = kept
        for name in names:
            path = Path(root, name)
            if name.startswith("."):
                continue
            if path.is_file():
                if Path(name).suffix.lower() in extensions:
                    found.append((path, path.relative_to(folder)))
            elif _named_as(path, extensions):  # a broken link, a loop of links, a pipe...
                unusable.append(path)
    return sorted(found, key=lambda pair: pair[1].parts), sorted(unusable)


def _named_as(path: Path, extensions: frozenset[str]) -> bool:
    """Whether ``path``, or what a link at ``path`` names, has one of ``extensions``."""
    names = [path.name, os.readlink(path)] if path.is_symlink() else [path.name]
    return any(Path(name).suffix.lower() in extensions for name in names)
