"""EXIF as superres carries it from a source file to its upscaled copy.

Written by hand on the raw bytes, not rebuilt with Pillow: the Orientation tag is patched in
place (the pixels are made upright), so maker notes and any offsets into them survive; a TIFF's
own layout tags are left behind. Encoders that take no EXIF orientation (libavif through
imagecodecs) read it here to write it their own way.
"""

from __future__ import annotations

import struct

from PIL import ExifTags, Image

__all__ = [
    "EXIF_HEADER",
    "ORIENTATION",
    "exif_orientation",
    "exif_with_orientation_reset",
    "tiff_exif",
]

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION = ExifTags.Base.Orientation


def exif_orientation(exif: bytes | None) -> int:
    """EXIF's Orientation, 1 (upright) when absent, unreadable or out of range."""
    if not exif:
        return 1
    parsed = Image.Exif()
    try:
        parsed.load(exif)
    except Exception:  # a malformed IFD: the image is taken as upright
        return 1
    orientation = parsed.get(ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def exif_with_orientation_reset(exif: bytes) -> bytes:
    """EXIF with the "Exif\\0\\0" prefix and Orientation patched to 1 in place.

    Patched in the raw bytes rather than rebuilt with Pillow, so maker notes and any
    offsets into them survive untouched.
    """
    if not exif.startswith(EXIF_HEADER):
        exif = EXIF_HEADER + exif
    start = len(EXIF_HEADER)
    byte_order = {b"II": "<", b"MM": ">"}.get(exif[start : start + 2])
    if byte_order is None:
        return exif
    try:
        (first_ifd,) = struct.unpack_from(byte_order + "I", exif, start + 4)
        (count,) = struct.unpack_from(byte_order + "H", exif, start + first_ifd)
        for index in range(count):
            entry = start + first_ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(byte_order + "HHI", exif, entry)
            if tag == ORIENTATION and kind == 3 and number == 1:  # one SHORT, stored inline
                patched = bytearray(exif)
                struct.pack_into(byte_order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except struct.error:  # a malformed IFD: pass the bytes on as they are
        pass
    return exif


# TIFF keeps its EXIF among the tags that lay out its own pixels; those must not travel.
_TIFF_LAYOUT_TAGS = frozenset(
    {256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 338, 339, 340, 341, 34675}
)


def tiff_exif(image: Image.Image) -> bytes | None:
    """Photo metadata of a TIFF (Pillow fills ``info['exif']`` only for other formats)."""
    if image.format != "TIFF":
        return None
    exif = image.getexif()
    for tag in _TIFF_LAYOUT_TAGS & set(exif):
        del exif[tag]
    return exif.tobytes() if len(exif) else None
