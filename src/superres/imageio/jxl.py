"""JPEG XL headers (ISO/IEC 18181-1 and -2): read from the bits, rewritten in place.

Hand-written because nothing here tells them without decoding: pillow-jxl-plugin decodes the
whole image as it opens a file, so the size is read from the SizeHeader first (to refuse a huge
image before decoding it), and the bit depth and animation from the ImageMetadata (to choose a
decoder that keeps every bit). imagecodecs' ``jpegxl_encode`` labels 16-bit samples linear sRGB
and takes no EXIF: :func:`jxl_as_srgb` rewrites the transfer function's bits to sRGB's, and
:func:`jxl_with_exif` adds an Exif box.
"""

from __future__ import annotations

import struct
from contextlib import suppress
from dataclasses import dataclass

from superres.imageio.bmff import bmff_box, bmff_boxes
from superres.imageio.exif import EXIF_HEADER

__all__ = ["JxlHeader", "jxl_as_srgb", "jxl_header", "jxl_size", "jxl_with_exif"]

# JPEG XL's headers (ISO/IEC 18181-1) are bit fields packed from the low bit. A U32 field is a
# 2-bit selector picking one of four (extra bits, offset) pairs; an Enum is a U32 of these.
_JXL_SIDE = ((9, 1), (13, 1), (18, 1), (30, 1))
_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_JXL_ENUM = ((0, 0), (0, 1), (4, 2), (6, 18))
_JXL_PREVIEW_DIV8 = ((0, 16), (0, 32), (5, 1), (9, 33))
_JXL_PREVIEW = ((6, 1), (8, 65), (10, 321), (12, 1345))
_JXL_ANIMATION = (
    ((0, 100), (0, 1000), (10, 1), (30, 1)),  # ticks per second: numerator
    ((0, 1), (0, 1001), (8, 1), (10, 1)),  # and denominator
    ((0, 0), (3, 0), (16, 0), (32, 0)),  # loops
)
_JXL_INTEGER_BITS = ((0, 8), (0, 10), (0, 12), (6, 1))
_JXL_FLOAT_BITS = ((0, 32), (0, 16), (0, 24), (6, 1))
_JXL_EXTRA_CHANNELS = ((0, 0), (0, 1), (4, 2), (12, 1))
_JXL_DIM_SHIFT = ((0, 0), (0, 3), (0, 4), (3, 1))
_JXL_NAME_LENGTH = ((0, 0), (4, 0), (5, 16), (10, 48))
_JXL_CFA = ((0, 1), (2, 0), (4, 3), (8, 19))
_JXL_XY = ((19, 0), (19, 524288), (20, 1048576), (21, 2097152))
_JXL_GREY, _JXL_XYB = 1, 2  # colour spaces
_JXL_CUSTOM = 2  # white point or primaries given as CIE xy
_JXL_LINEAR, _JXL_SRGB = 8, 13  # transfer functions
# Enough of a codestream for its headers up to the colour encoding, extra channels' names too.
_JXL_HEAD_BYTES = 4096


class _Bits:
    """A reader of JPEG XL's header fields; ValueError past the end of the bytes given."""

    def __init__(self, data: bytes, position: int = 0) -> None:
        self.value = int.from_bytes(data, "little")
        self.position = position
        self.end = 8 * len(data)

    def take(self, count: int) -> int:
        if self.position + count > self.end:
            raise ValueError("JPEG XL header cut short")
        self.position += count
        return (self.value >> (self.position - count)) & ((1 << count) - 1)

    def u32(self, distribution: tuple[tuple[int, int], ...]) -> int:
        extra, offset = distribution[self.take(2)]
        return offset + (self.take(extra) if extra else 0)

    def size(self, sides: tuple[tuple[int, int], ...] | None = _JXL_SIDE) -> tuple[int, int]:
        """A SizeHeader's (width, height); with ``sides=None``, a PreviewHeader's."""
        if sides is None:  # PreviewHeader: its own sizes, in 8s or not
            sides = _JXL_PREVIEW_DIV8 if self.take(1) else _JXL_PREVIEW
            scale = 8 if sides is _JXL_PREVIEW_DIV8 else 1
            small = False
        else:
            small, scale = self.take(1), 1  # both sides multiples of 8, up to 256

        def side() -> int:
            return 8 * (self.take(5) + 1) if small else self.u32(sides) * scale

        height = side()
        ratio = self.take(3)
        if ratio == 0:
            return side(), height
        numerator, denominator = _JXL_RATIOS[ratio]
        return height * numerator // denominator, height

    def bit_depth(self) -> tuple[int, bool]:
        """A BitDepth: bits per sample and whether samples are floating-point."""
        if self.take(1):
            bits = self.u32(_JXL_FLOAT_BITS)
            self.take(4)  # exponent bits
            return bits, True
        return self.u32(_JXL_INTEGER_BITS), False


@dataclass(frozen=True)
class JxlHeader:
    """What superres needs of a JPEG XL codestream's ImageMetadata."""

    bits: int  # per colour sample
    floating: bool
    animated: bool
    transfer_at: int | None  # the bit where the transfer function's Enum starts, if written
    transfer: int | None  # its value (_JXL_LINEAR, _JXL_SRGB...)


def jxl_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG XL codestream's SizeHeader, bare or in its container's
    jxlc/jxlp box; None where it cannot be found (the decoder then reports)."""
    start = _jxl_codestream_start(data)
    if start is None:
        return None
    with suppress(ValueError):
        return _Bits(data[start : start + 12], 16).size()
    return None


def jxl_header(data: bytes) -> JxlHeader | None:
    """The ImageMetadata of a JPEG XL file (bare codestream or container), as far as its colour
    encoding; None where it cannot be read (the decoder then reports)."""
    start = _jxl_codestream_start(data)
    if start is None:
        return None
    try:
        return _read_jxl_header(_Bits(data[start : start + _JXL_HEAD_BYTES], 16))
    except (ValueError, KeyError):
        return None


def _read_jxl_header(reader: _Bits) -> JxlHeader:
    """SizeHeader and ImageMetadata, field by field, as far as the transfer function."""
    reader.size()
    if reader.take(1):  # all_default: 8-bit sRGB, nothing else
        return JxlHeader(8, False, False, None, None)
    animated = False
    if reader.take(1):  # extra_fields
        reader.take(3)  # orientation, which libjxl applies
        if reader.take(1):
            reader.size()  # intrinsic size
        if reader.take(1):
            reader.size(None)  # preview
        animated = bool(reader.take(1))
        if animated:
            for distribution in _JXL_ANIMATION:
                reader.u32(distribution)
            reader.take(1)  # timecodes
    bits, floating = reader.bit_depth()
    reader.take(1)  # modular_16_bit_buffer_sufficient
    for _ in range(reader.u32(_JXL_EXTRA_CHANNELS)):
        if reader.take(1):  # all_default: 8-bit alpha
            continue
        kind = reader.u32(_JXL_ENUM)
        reader.bit_depth()
        reader.u32(_JXL_DIM_SHIFT)
        reader.take(8 * reader.u32(_JXL_NAME_LENGTH))
        reader.take({0: 1, 2: 4 * 16}.get(kind, 0))  # alpha: associated; spot colour: 4 F16
        if kind == 5:  # colour filter array: its channel
            reader.u32(_JXL_CFA)
    reader.take(1)  # xyb_encoded
    transfer_at = transfer = None
    if not reader.take(1) and not reader.take(1):  # colour all_default; want_icc
        space = reader.u32(_JXL_ENUM)
        if space != _JXL_XYB and reader.u32(_JXL_ENUM) == _JXL_CUSTOM:  # white point
            for _ in range(2):  # its x and y
                reader.u32(_JXL_XY)
        if space not in (_JXL_GREY, _JXL_XYB) and reader.u32(_JXL_ENUM) == _JXL_CUSTOM:
            for _ in range(6):  # red, green and blue primaries
                reader.u32(_JXL_XY)
        if space != _JXL_XYB and not reader.take(1):  # have_gamma
            transfer_at = reader.position
            transfer = reader.u32(_JXL_ENUM)
    return JxlHeader(bits, floating, animated, transfer_at, transfer)


def _jxl_codestream_start(data: bytes) -> int | None:
    """Where a JPEG XL file's codestream starts: at 0 (a bare codestream), or in its first jxlc
    or jxlp box (a jxlp payload starts with a 4-byte sequence number); None without one."""
    if data.startswith(b"\xff\x0a"):
        return 0
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        start = offset + 8
        if size == 1 and offset + 16 <= len(data):  # a 64-bit size follows
            (size,) = struct.unpack_from(">Q", data, start)
            start += 8
        if kind in (b"jxlc", b"jxlp"):
            start += 4 if kind == b"jxlp" else 0
            return start if data[start : start + 2] == b"\xff\x0a" else None
        if size < start - offset:  # 0 (to the end of the file) or malformed: no codestream
            return None
        offset += size
    return None


_JXL_CONTAINER = b"\0\0\0\x0cJXL \r\n\x87\n" + bmff_box(b"ftyp", b"jxl \0\0\0\0jxl ")


def jxl_as_srgb(data: bytes) -> bytes:
    """imagecodecs' 16-bit JPEG XL with its transfer function, linear, turned to sRGB's: both
    are written as a 4-bit Enum code (8 and 13, less 2), so the bits are rewritten in place."""
    start = _jxl_codestream_start(data)
    header = jxl_header(data)
    if start is None or header is None or header.transfer_at is None:
        raise ValueError("unexpected JPEG XL colour encoding from imagecodecs")
    if header.transfer != _JXL_LINEAR:  # lossy samples were made linear for it: refuse
        raise ValueError(f"imagecodecs tagged 16-bit JPEG XL {header.transfer}, not linear")
    patched = bytearray(data)
    first = 8 * start + header.transfer_at + 2  # past the Enum's selector
    for bit in range(4):
        byte, shift = divmod(first + bit, 8)
        value = ((_JXL_SRGB - 2) >> bit) & 1
        patched[byte] = (patched[byte] & ~(1 << shift)) | (value << shift)
    return bytes(patched)


def jxl_with_exif(data: bytes, exif: bytes) -> bytes:
    """A JPEG XL file with an Exif box (ISO/IEC 18181-2) before its codestream, in a container
    made for it if the codestream is bare."""
    box = bmff_box(b"Exif", b"\0\0\0\0" + exif.removeprefix(EXIF_HEADER))  # TIFF header at 0
    if data.startswith(b"\xff\x0a"):
        return _JXL_CONTAINER + box + bmff_box(b"jxlc", data)
    for kind, start, _, _ in bmff_boxes(data, 0, len(data)):
        if kind in (b"jxlc", b"jxlp"):
            return data[:start] + box + data[start:]
    raise ValueError("JPEG XL container without a codestream")
