"""The decoders and encoders that keep more than 8 bits per sample where Pillow does not.

Pillow has no 16-bit colour modes: it truncates 48/64-bit PNG and TIFF to 8 bits on read and
cannot write them, so OpenCV does those (and 16-bit grey+alpha PNG, which neither writes, is
written by hand). pillow-heif's Pillow plugin hands Pillow 8 bits of a 10/12-bit HEIC, so
pillow-heif reads and writes those itself. Pillow's AVIF and pillow-jxl-plugin's colour are 8-bit,
so AVIF and JPEG XL above 8 bits go through imagecodecs (the ``formats`` extra); its encoders
need help with what they do not take: ``avif_encode`` no ICC profile, EXIF or orientation (see
superres.imageio.bmff), ``jpegxl_encode`` no EXIF, and it labels 16-bit samples linear (see
superres.imageio.jxl). Which of these a file needs is decided by superres.imageio.files.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image

from superres.errors import ImageReadError, ImageWriteError
from superres.imageio.bmff import avif_bits, avif_with_metadata
from superres.imageio.exif import EXIF_HEADER, exif_orientation, exif_with_orientation_reset
from superres.imageio.jxl import jxl_as_srgb, jxl_header, jxl_with_exif
from superres.imageio.messages import one_line

__all__ = [
    "avif_encoder",
    "deep_sample_bits",
    "heif_encoder",
    "heif_pixels",
    "imagecodecs_for",
    "imagecodecs_pixels",
    "jxl_encoder",
    "opencv_16_bit_encoder",
    "opencv_layout",
    "opencv_pixels",
]

# ------------------------------------------------------------------------------------- read


def imagecodecs_for(fmt: str | None) -> ModuleType | None:
    """imagecodecs, from the `formats` extra, when it can code ``fmt`` (AVIF or JXL), else None:
    the formats above 8 bits that Pillow and pillow-jxl-plugin hand over as 8."""
    try:
        import imagecodecs
    except ImportError:
        return None
    codec = {"AVIF": "AVIF", "JXL": "JPEGXL"}.get(fmt or "")
    return imagecodecs if codec and getattr(imagecodecs, codec).available else None


def deep_sample_bits(image: Image.Image, file: BinaryIO) -> tuple[int, bool]:
    """Bits per sample of an AVIF or JPEG XL that Pillow (or its plugin) decodes to fewer, from
    the file's headers, 8 otherwise; and whether it is a still image. An animation's first
    frame is left to Pillow, at 8 bits: imagecodecs would decode every frame to return it."""
    if image.mode in ("I;16", "F"):  # JPEG XL grey or floating-point: read whole by the plugin
        return 8, True
    file.seek(0)
    try:
        if image.format == "AVIF":
            return avif_bits(file), getattr(image, "n_frames", 1) == 1
        jxl = jxl_header(file.read())
    finally:
        file.seek(0)
    if jxl is None or jxl.floating or jxl.bits > 16 or getattr(image, "jpeg", False):
        return 8, True  # a losslessly recompressed JPEG is 8-bit, and handed over as that JPEG
    return jxl.bits, not jxl.animated


def imagecodecs_pixels(imagecodecs: ModuleType, fmt: str, data: bytes, bits: int) -> np.ndarray:
    """An AVIF's or JPEG XL's pixels at full depth through imagecodecs, in the layouts of
    read_image, 16-bit samples scaled to the full uint16 range.

    No frame index is passed: ``avif_decode(index=0)`` corrupts memory (imagecodecs 2026.3).
    libjxl applies a JPEG XL's codestream orientation itself; libavif leaves irot/imir alone.
    """
    decode = imagecodecs.avif_decode if fmt == "AVIF" else imagecodecs.jpegxl_decode
    pixels = np.asarray(decode(data))
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4)):
        raise ValueError(f"unexpected decoded layout {pixels.shape}")
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype != np.uint16:
        raise ValueError(f"unexpected decoded samples {pixels.dtype}")
    return pixels if bits == 16 else _full_range(pixels, bits)


def heif_pixels(file: BinaryIO, index: int) -> np.ndarray:
    """A 10/12-bit HEIF image at full depth, scaled to the full uint16 range (image ``index``,
    the primary one): pillow-heif's Pillow plugin would hand over 8 bits."""
    import pillow_heif  # registered by files._require_codec already

    file.seek(0)
    heif = pillow_heif.open_heif(file, convert_hdr_to_8bit=False)[index]
    bits = heif.info["bit_depth"]
    return _full_range(np.asarray(heif) >> (16 - bits), bits)  # pillow-heif shifts left


def _full_range(samples: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit samples (0 to 2**bits - 1) scaled to the full uint16 range, rounded."""
    top = (1 << bits) - 1
    return ((samples.astype(np.uint32) * 65535 + top // 2) // top).astype(np.uint16)


_BITS_PER_SAMPLE = 258
_PHOTOMETRIC = 262


def opencv_layout(image: Image.Image, header: bytes) -> str | None:
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


def opencv_pixels(path: Path, data: bytes, size: tuple[int, int], *, grey: bool) -> np.ndarray:
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


# ------------------------------------------------------------------------------------ write


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


def heif_encoder(pixels: np.ndarray, options: dict[str, object]) -> Callable[[BinaryIO], None]:
    """HEIC (HEVC) through pillow-heif itself, which takes 16-bit samples as Pillow cannot.

    16-bit samples are written as 10 bits: HEVC Main 10, what phones write and every HEIC
    reader decodes (12 bits would keep more, but few decoders, Apple's among them, take it).
    """
    import pillow_heif  # registered by files._format_for already

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    mode = _HEIF_MODES[(channels, 8 * pixels.itemsize)]
    height, width = pixels.shape[:2]
    heif = pillow_heif.from_bytes(mode, (width, height), memoryview(pixels))

    def save(file: BinaryIO) -> None:
        heif.save(file, bit_depth=10, **options)

    return save


_AVIF_SPEED = 6  # Pillow's default for its AVIF encoder


def avif_encoder(
    target: Path,
    imagecodecs: ModuleType,
    pixels: np.ndarray,
    icc_profile: bytes | None,
    exif: bytes | None,
    quality: int,
) -> Callable[[BinaryIO], None]:
    """A 10-bit AVIF through imagecodecs, which takes 16-bit samples as Pillow cannot;
    ``quality`` is libavif's, as for Pillow (100: lossless), with 4:4:4 chroma from 90.

    10 bits rather than 12: AVIF's own profiles (Baseline, Advanced) stop at 10, the depths of
    AV1's Main and High profiles; 12 needs AV1's Professional profile, which hardware decoders
    and some viewers lack. 10 bits already give 4 levels for each 8-bit one, enough to keep
    gradients smooth. As for HEIC, grey is written as RGB (libavif's monochrome is not offered).
    imagecodecs takes no metadata: the ICC profile, EXIF and orientation are added to its file
    by avif_with_metadata.
    """
    orientation = exif_orientation(exif)
    if exif and orientation != 1:  # it goes into irot/imir, as Pillow writes it
        exif = exif_with_orientation_reset(exif)
    if pixels.ndim == 2:
        pixels = np.dstack([pixels] * 3)
    elif pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
    samples = ((pixels.astype(np.uint32) * 1023 + 32767) // 65535).astype(np.uint16)
    chroma = "YUV444" if quality >= 90 else "YUV420"  # 4:4:4 from 90, as files._FULL_CHROMA

    def save(file: BinaryIO) -> None:
        try:
            encoded = imagecodecs.avif_encode(
                samples,
                level=quality,
                speed=_AVIF_SPEED,
                bitspersample=10,
                pixelformat=imagecodecs.AVIF.PIXEL_FORMAT[chroma],
                numthreads=os.cpu_count() or 1,
            )
            file.write(avif_with_metadata(bytes(encoded), icc_profile, exif, orientation))
        except (RuntimeError, ValueError) as error:  # imagecodecs' AvifError is a RuntimeError
            raise ImageWriteError(f"{target}: cannot encode ({one_line(error)})") from error

    return save


def jxl_encoder(
    target: Path, imagecodecs: ModuleType, pixels: np.ndarray, exif: bytes | None, quality: int
) -> Callable[[BinaryIO], None]:
    """A 16-bit JPEG XL through imagecodecs, which writes 16-bit colour where pillow-jxl-plugin
    cannot: lossless at quality 100, else lossy at the distance pillow-jxl-plugin gives
    ``quality`` (libjxl's JxlEncoderDistanceFromQuality, imagecodecs' ``level``).

    imagecodecs tags every 16-bit image linear sRGB, and takes no other: lossy samples are
    handed to it linear (so that its perceptual coding is right), and the file's transfer
    function is then turned to sRGB's (see jxl_as_srgb), so that the file decodes to sRGB
    samples again, as it does lossless. No ICC profile (see files._NO_ICC_FORMATS); EXIF is added
    in a box (see jxl_with_exif).
    """
    lossless = quality == 100
    samples = pixels if lossless else _srgb_to_linear(pixels)

    def save(file: BinaryIO) -> None:
        try:
            if lossless:
                encoded = imagecodecs.jpegxl_encode(samples, lossless=True)
            else:
                encoded = imagecodecs.jpegxl_encode(samples, level=quality)
            data = jxl_as_srgb(bytes(encoded))
            file.write(jxl_with_exif(data, exif) if exif else data)
        except (RuntimeError, ValueError) as error:  # imagecodecs' JpegxlError: RuntimeError
            raise ImageWriteError(f"{target}: cannot encode ({one_line(error)})") from error

    return save


@cache
def _srgb_decoding_table() -> np.ndarray:
    """uint16 sRGB-coded samples -> uint16 linear ones (IEC 61966-2-1's curve), for np.take."""
    coded = np.arange(65536) / 65535
    linear = np.where(coded <= 0.04045, coded / 12.92, ((coded + 0.055) / 1.055) ** 2.4)
    return np.round(linear * 65535).astype(np.uint16)


def _srgb_to_linear(pixels: np.ndarray) -> np.ndarray:
    """The colour samples of 16-bit ``pixels`` made linear; alpha, linear already, is kept."""
    if pixels.ndim == 2:
        return np.take(_srgb_decoding_table(), pixels)
    colour = 1 if pixels.shape[2] <= 2 else 3
    linear = pixels.copy()
    linear[..., :colour] = np.take(_srgb_decoding_table(), pixels[..., :colour])
    return linear


def opencv_16_bit_encoder(
    target: Path,
    pixels: np.ndarray,
    fmt: str,
    icc_profile: bytes | None,
    exif: bytes | None,
) -> Callable[[BinaryIO], None]:
    """16-bit colour, which Pillow cannot write; PNG metadata is added as PNG chunks. RGB(A)
    TIFF goes through tifffile, which (unlike OpenCV) embeds the ICC profile."""
    if fmt == "TIFF" and pixels.shape[2] in (3, 4):
        return _tifffile_encoder(pixels, icc_profile)
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


def _tifffile_encoder(pixels: np.ndarray, icc_profile: bytes | None) -> Callable[[BinaryIO], None]:
    """16-bit RGB(A) TIFF, deflate-compressed (tifffile's own zlib: no codec package needed),
    alpha as unassociated, the ICC profile in its tag. EXIF is not written (tifffile writes no
    EXIF IFD), as OpenCV did not."""
    import tifffile  # scikit-image's dependency too

    alpha = ("unassalpha",) if pixels.shape[2] == 4 else None

    def save(file: BinaryIO) -> None:
        # Through memory: tifffile takes a file object's integer ``name`` for a path.
        encoded = io.BytesIO()
        tifffile.imwrite(
            encoded,
            pixels,
            photometric="rgb",
            compression="zlib",
            iccprofile=icc_profile,
            extrasamples=alpha,
        )
        file.write(encoded.getbuffer())

    return save


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IDAT_SIZE = 1 << 20


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
        extra += _png_chunk(b"eXIf", exif.removeprefix(EXIF_HEADER))
    end_of_header = len(_PNG_SIGNATURE) + 8 + 13 + 4  # length, "IHDR", 13 data bytes, CRC
    png = memoryview(png)
    return [png[:end_of_header], extra, png[end_of_header:]]
