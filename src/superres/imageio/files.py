"""Image files in and out: decode to numpy without losing bits, write atomically.

Pillow does the work wherever it is right. OpenCV is used only for 16-bit colour (RGB/RGBA,
and 16-bit grey+alpha on read): Pillow has no 16-bit colour modes, so it silently truncates
48/64-bit PNG and TIFF to 8 bits on read and cannot write them at all.

AVIF is Pillow's own. HEIC/HEIF (pillow-heif) and JPEG XL (pillow-jxl-plugin) come with the
``formats`` extra and are registered with Pillow only when such a file is met or asked for;
10/12-bit HEIC is read and written through pillow-heif itself, for the same reason as OpenCV
above (its Pillow plugin hands Pillow 8 bits).

Every read failure is an :class:`ImageReadError` and every write failure an
:class:`ImageWriteError`, each one line that names the file, so the CLI can report it as is.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, features

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

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageData",
    "ImageReadError",
    "ImageWriteError",
    "OUTPUT_FORMATS",
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
# Encoders that keep 16-bit samples (HEIF as 10 bits, see _heif_encoder); JXL only for grey
# (pillow-jxl-plugin writes 16 bits from mode I;16 alone). Others get round(x / 257).
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF", "HEIF"})
# Encoders that cannot embed an ICC profile here: BMP, and pillow-jxl-plugin, which always
# writes JPEG XL's own sRGB colour encoding.
_NO_ICC_FORMATS = frozenset({"BMP", "JXL"})
# Each encoder's option for full-resolution chroma, used from quality 90 on.
_FULL_CHROMA = {
    "JPEG": ("subsampling", 0),
    "AVIF": ("subsampling", "4:4:4"),
    "HEIF": ("chroma", 444),
}

_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION = ExifTags.Base.Orientation
_BITS_PER_SAMPLE = 258
_PHOTOMETRIC = 262
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IDAT_SIZE = 1 << 20

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
        raise ImageTooLargeError(f"{path}: too many pixels ({_one_line(error)})") from error
    except Exception as error:  # a decoder bug or odd file must still be one clean line
        raise ImageReadError(
            f"{path}: cannot read image ({type(error).__name__}: {_one_line(error)})"
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
        if not deep_heif:  # pillow-heif decodes that itself, below
            with _decoding(path, width, height):
                image.load()
        icc_profile = image.info.get("icc_profile") or None
        raw_exif = image.info.get("exif") or _tiff_exif(image)
        exif = _exif_with_orientation_reset(raw_exif) if raw_exif else None
        source_format = image.format or "unknown"
        opencv_source = _opencv_source(image, header)
        if deep_heif:
            with _decoding(path, width, height):
                pixels = _heif_pixels(file, image.tell())
        elif opencv_source is None:
            upright = image if _decoder_orients(image) else ImageOps.exif_transpose(image)
            pixels = _pillow_pixels(str(path), upright)
        else:
            orientation = image.getexif().get(_ORIENTATION, 1)
            file.seek(0)
            grey = opencv_source == "grey+alpha"
            pixels = _opencv_pixels(path, file.read(), image.size, grey=grey)
            pixels = np.ascontiguousarray(_apply_orientation(pixels, orientation))
        notes = _left_behind(image)
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
            f"{path}: corrupt or truncated image data ({_one_line(error)})"
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


def _heif_pixels(file: BinaryIO, index: int) -> np.ndarray:
    """A 10/12-bit HEIF image at full depth, scaled to the full uint16 range (image ``index``,
    the primary one): pillow-heif's Pillow plugin would hand over 8 bits."""
    import pillow_heif  # registered by _require_codec already

    file.seek(0)
    heif = pillow_heif.open_heif(file, convert_hdr_to_8bit=False)[index]
    bits = heif.info["bit_depth"]
    samples = np.asarray(heif).astype(np.uint32) >> (16 - bits)  # pillow-heif shifts left
    top = (1 << bits) - 1
    return ((samples * 65535 + top // 2) // top).astype(np.uint16)


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
    size = _jxl_size(file.read())
    file.seek(0)
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (max_pixels)"
        )


# JPEG XL's SizeHeader: a 2-bit selector picks how many bits hold a side less one.
_JXL_SIDE_BITS = (9, 13, 18, 30)
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_JXL_HEAD_BYTES = 12


def _jxl_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG XL codestream's SizeHeader (ISO 18181-1), bare or in its
    container's jxlc/jxlp box; None where it cannot be found (the decoder then reports)."""
    codestream = _jxl_codestream_head(data)
    if codestream is None or not codestream.startswith(b"\xff\x0a"):
        return None
    bits = int.from_bytes(codestream[2:], "little")  # fields are packed from the low bit

    def take(count: int) -> int:
        nonlocal bits
        value = bits & ((1 << count) - 1)
        bits >>= count
        return value

    def side(small: int) -> int:
        return 8 * (take(5) + 1) if small else take(_JXL_SIDE_BITS[take(2)]) + 1

    small = take(1)  # both sides multiples of 8, up to 256
    height = side(small)
    ratio = take(3)
    if ratio == 0:
        return side(small), height
    numerator, denominator = _JXL_RATIOS[ratio]
    return height * numerator // denominator, height


def _jxl_codestream_head(data: bytes) -> bytes | None:
    """The first bytes of a JPEG XL file's codestream, enough for its SizeHeader (at most 68
    bits after the signature): the file's own, or those of its first jxlc or jxlp box (a jxlp
    payload starts with a 4-byte sequence number)."""
    if data.startswith(b"\xff\x0a"):
        return data[:_JXL_HEAD_BYTES]
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        start = offset + 8
        if size == 1 and offset + 16 <= len(data):  # a 64-bit size follows
            (size,) = struct.unpack_from(">Q", data, start)
            start += 8
        if kind in (b"jxlc", b"jxlp"):
            start += 4 if kind == b"jxlp" else 0
            return data[start : start + _JXL_HEAD_BYTES]
        if size < start - offset:  # 0 (to the end of the file) or malformed: no codestream
            return None
        offset += size
    return None


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
            raise ImageReadError(f"{path}: corrupt image header ({_one_line(error)})") from error
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


def _opencv_source(image: Image.Image, header: bytes) -> str | None:
    """None if Pillow decodes this losslessly, else the 16-bit layout: "colour" or "grey+alpha".

    Pillow reports these as 8-bit RGB/RGBA, so the bit depth comes from the PNG header
    (IHDR) or the TIFF BitsPerSample tag.
    """
    if image.format == "PNG" and len(header) >= 26:
        bit_depth, colour_type = header[24], header[25]
        if bit_depth == 16 and colour_type in (2, 4, 6):  # RGB, grey+alpha, RGBA
            return "grey+alpha" if colour_type == 4 else "colour"
    if image.format == "TIFF" and image.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        bits = image.tag_v2.get(_BITS_PER_SAMPLE, 8)
        bits = bits if isinstance(bits, tuple) else (bits,)
        if max(bits, default=8) > 8:
            grey = image.tag_v2.get(_PHOTOMETRIC) in (0, 1)  # min-is-white / min-is-black
            return "grey+alpha" if grey else "colour"
    return None


def _opencv_pixels(path: Path, data: bytes, size: tuple[int, int], *, grey: bool) -> np.ndarray:
    """16-bit colour through OpenCV, which keeps all 16 bits (BGR order turned into RGB).

    imdecode rather than imread: same decoder, but it works for any file name on every OS.
    """
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    width, height = size
    if pixels is None or pixels.shape[:2] != (height, width):
        raise ImageReadError(f"{path}: OpenCV could not decode this 16-bit image")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        return np.ascontiguousarray(pixels)
    if grey and pixels.shape[2] == 4:  # OpenCV expands grey+alpha to BGRA (B = G = R = grey)
        return np.ascontiguousarray(pixels[..., [0, 3]])
    if pixels.shape[2] == 2:
        return np.ascontiguousarray(pixels)
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


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
        raise ImageReadError(f"PIL image: cannot decode ({_one_line(error)})") from error


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


# TIFF keeps its EXIF among the tags that lay out its own pixels; those must not travel.
_TIFF_LAYOUT_TAGS = frozenset(
    {256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 338, 339, 340, 341, 34675}
)


def _tiff_exif(image: Image.Image) -> bytes | None:
    """Photo metadata of a TIFF (Pillow fills ``info['exif']`` only for other formats)."""
    if image.format != "TIFF":
        return None
    exif = image.getexif()
    for tag in _TIFF_LAYOUT_TAGS & set(exif):
        del exif[tag]
    return exif.tobytes() if len(exif) else None


def _exif_with_orientation_reset(exif: bytes) -> bytes:
    """EXIF with the "Exif\\0\\0" prefix and Orientation patched to 1 in place.

    Patched in the raw bytes rather than rebuilt with Pillow, so maker notes and any
    offsets into them survive untouched.
    """
    if not exif.startswith(_EXIF_HEADER):
        exif = _EXIF_HEADER + exif
    start = len(_EXIF_HEADER)
    byte_order = {b"II": "<", b"MM": ">"}.get(exif[start : start + 2])
    if byte_order is None:
        return exif
    try:
        (first_ifd,) = struct.unpack_from(byte_order + "I", exif, start + 4)
        (count,) = struct.unpack_from(byte_order + "H", exif, start + first_ifd)
        for index in range(count):
            entry = start + first_ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(byte_order + "HHI", exif, entry)
            if tag == _ORIENTATION and kind == 3 and number == 1:  # one SHORT, stored inline
                patched = bytearray(exif)
                struct.pack_into(byte_order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except struct.error:  # a malformed IFD: pass the bytes on as they are
        pass
    return exif


def _one_line(error: BaseException) -> str:
    return re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__


def _first_sentence(error: BaseException) -> str:
    """The gist of a codec's message: libjxl's, through its plugin, goes on with build advice."""
    return re.split(r"(?<=\.) ", _one_line(error))[0]


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
    same folder, synced, then renamed over the target. PNG and TIFF keep 16 bits, HEIC 10
    and JPEG XL 16 for grey; JPEG, WebP, BMP, AVIF and colour JPEG XL get 8 (``round(x / 257)``,
    see :func:`format_notes`). JPEG and BMP drop alpha. ``quality`` is for JPEG, WebP, AVIF,
    HEIC and JPEG XL. The ICC profile and EXIF are written to PNG, JPEG, WebP, TIFF, AVIF and
    HEIC (JPEG XL: EXIF only), except to 16-bit colour TIFF (OpenCV cannot). 16-bit grey+alpha
    TIFF is written as 16-bit RGBA, grey+alpha HEIC and AVIF as RGBA.
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
        raise ImageWriteError(f"{target}: cannot write ({_one_line(error)})") from error
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
            raise ImageWriteError(f"{target}: cannot write ({_one_line(error)})") from error
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
        raise ImageWriteError(f"{target}: cannot encode ({_one_line(error)})") from error
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


def format_notes(path: str | Path, pixels: np.ndarray, icc_profile: bytes | None) -> list[str]:
    """What writing ``pixels`` to ``path`` (its extension names the format) cannot keep, one
    remark each, for the note lines of a batch: the written file degrades, it is not refused."""
    fmt = _WRITE_FORMATS.get(Path(path).suffix.lower())
    label = _LABELS.get(fmt, fmt)
    notes = []
    if pixels.dtype == np.uint16 and not _keeps_16_bits(fmt, pixels):
        notes.append(f"16-bit samples written as 8-bit ({label} holds 8 here)")
    if icc_profile and fmt in _NO_ICC_FORMATS and not _is_srgb(icc_profile):
        notes.append(f"ICC profile not carried ({label} is written without one: sRGB is assumed)")
    return notes


def _is_srgb(icc_profile: bytes) -> bool:
    """Whether a profile only says sRGB, what a file without one is taken as anyway: by its
    description, as most writers name it ("sRGB IEC61966-2.1") and libjxl names the profiles
    it makes for sRGB colour and grey (JPEG XL files always come with one)."""
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
        description = ImageCms.getProfileDescription(profile).strip()
    except (OSError, ImageCms.PyCMSError):
        return False
    return description.startswith("sRGB") or description == "Gra_D65_Rel_SRG"


def _keeps_16_bits(fmt: str | None, pixels: np.ndarray) -> bool:
    """Whether ``fmt`` is written with these 16-bit samples kept (see _SIXTEEN_BIT_FORMATS)."""
    grey = pixels.ndim == 2 or pixels.shape[2] == 1
    return fmt in _SIXTEEN_BIT_FORMATS or (fmt == "JXL" and grey)


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
    if exif and not exif.startswith(_EXIF_HEADER):
        exif = _EXIF_HEADER + exif
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
    if fmt in _FULL_CHROMA and quality >= 90:
        # 4:4:4: halving chroma would undo part of the upscaling
        key, value = _FULL_CHROMA[fmt]
        options[key] = value
    if fmt == "HEIF":
        return _heif_encoder(pixels, options)
    if pixels.dtype == np.uint16 and pixels.ndim == 3:
        return _opencv_16_bit_encoder(target, pixels, fmt, icc_profile, exif)
    if fmt == "TIFF" and features.check("libtiff"):
        options["compression"] = "tiff_lzw"
    image = Image.fromarray(pixels)  # uint16 HxW becomes I;16, which PNG and TIFF keep whole

    def save(file: BinaryIO) -> None:
        image.save(file, format=fmt, **options)

    return save


# Pillow-heif's modes for each (channels, bits per sample); grey+alpha is written as RGBA.
_HEIF_MODES = {
    (1, 8): "L",
    (2, 8): "LA",
    (3, 8): "RGB",
    (4, 8): "RGBA",
    (1, 16): "I;16",
    (2, 16): "LA;16",
    (3, 16): "RGB;16",
    (4, 16): "RGBA;16",
}


def _heif_encoder(pixels: np.ndarray, options: dict[str, object]) -> Callable[[BinaryIO], None]:
    """HEIC (HEVC) through pillow-heif itself, which takes 16-bit samples as Pillow cannot.

    16-bit samples are written as 10 bits: HEVC Main 10, what phones write and every HEIC
    reader decodes (12 bits would keep more, but few decoders, Apple's among them, take it).
    """
    import pillow_heif  # registered by _format_for already

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    mode = _HEIF_MODES[(channels, 8 * pixels.itemsize)]
    height, width = pixels.shape[:2]
    heif = pillow_heif.from_bytes(mode, (width, height), memoryview(pixels))

    def save(file: BinaryIO) -> None:
        heif.save(file, bit_depth=10, **options)

    return save


def _opencv_16_bit_encoder(
    target: Path,
    pixels: np.ndarray,
    fmt: str,
    icc_profile: bytes | None,
    exif: bytes | None,
) -> Callable[[BinaryIO], None]:
    """16-bit colour, which Pillow cannot write; PNG metadata is added as PNG chunks."""
    if fmt == "PNG" and pixels.shape[2] == 2:
        # Neither Pillow nor OpenCV writes 16-bit grey+alpha PNG; the format is simple enough.
        encoded = _png_grey_alpha_16(pixels)
    else:
        if pixels.shape[2] == 2:  # OpenCV cannot write 2 channels: 16-bit RGBA keeps every bit
            pixels = np.ascontiguousarray(pixels[..., [0, 0, 0, 1]])
        code = cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR
        suffix, params = (
            (".png", [cv2.IMWRITE_PNG_COMPRESSION, 6]) if fmt == "PNG" else (".tiff", [])
        )
        ok, buffer = cv2.imencode(suffix, cv2.cvtColor(pixels, code), params)
        if not ok:
            raise ImageWriteError(f"{target}: OpenCV could not encode a 16-bit {fmt}")
        encoded = memoryview(buffer.reshape(-1))  # not .tobytes(): a second file-sized copy
    parts = _png_with_metadata(encoded, icc_profile, exif) if fmt == "PNG" else [encoded]

    def save(file: BinaryIO) -> None:
        for part in parts:
            file.write(part)

    return save


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_grey_alpha_16(pixels: np.ndarray) -> bytes:
    """A 16-bit grey+alpha PNG: unfiltered rows of big-endian samples, deflated."""
    height, width, _ = pixels.shape
    rows = np.zeros((height, 1 + width * 4), np.uint8)  # leading 0 = filter type "None"
    rows[:, 1:] = pixels.astype(">u2").view(np.uint8).reshape(height, width * 4)
    compressed = zlib.compress(rows.tobytes(), 6)
    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)
    idat = b"".join(
        _png_chunk(b"IDAT", compressed[start : start + _PNG_IDAT_SIZE])
        for start in range(0, len(compressed), _PNG_IDAT_SIZE)
    )
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + idat + _png_chunk(b"IEND", b"")


def _png_with_metadata(
    png: bytes | memoryview, icc_profile: bytes | None, exif: bytes | None
) -> list[bytes | memoryview]:
    """iCCP and eXIf chunks right after IHDR, where every reader looks for them.

    Returned as pieces to write in turn: joining them would copy the whole encoded image.
    """
    extra = b""
    if icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        extra += _png_chunk(b"eXIf", exif.removeprefix(_EXIF_HEADER))
    end_of_header = len(_PNG_SIGNATURE) + 8 + 13 + 4  # length, "IHDR", 13 data bytes, CRC
    png = memoryview(png)
    return [png[:end_of_header], extra, png[end_of_header:]]


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
