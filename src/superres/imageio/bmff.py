"""ISO-BMFF, the container of HEIF and AVIF: reading its boxes, and rewriting an AVIF's.

Hand-written because neither Pillow nor imagecodecs does either: the bit depth of an AVIF is read
from the av1C boxes of its meta box alone (Pillow's AVIF decodes to 8 bits and does not tell the
file's depth), and imagecodecs' ``avif_encode``, the only encoder here that writes 10-bit AVIF,
takes no ICC profile, EXIF or orientation: :func:`avif_with_metadata` adds them to its file as
libavif lays them out when given them (colr, irot/imir, an Exif item), moving item offsets to match.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import suppress
from typing import BinaryIO

from superres.imageio.exif import EXIF_HEADER

__all__ = ["avif_bits", "avif_with_metadata", "bmff_box", "bmff_boxes"]


def bmff_boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """The ISO-BMFF boxes in ``data[start:end]``, each (type, start, body start, end);
    ValueError where one does not fit."""
    boxes = []
    offset = start
    while offset < end:
        if offset + 8 > end:
            raise ValueError("truncated box header")
        size, kind = struct.unpack_from(">I4s", data, offset)
        body = offset + 8
        if size == 1:
            if body + 8 > end:
                raise ValueError("truncated box header")
            (size,) = struct.unpack_from(">Q", data, body)
            body += 8
        elif size == 0:  # to the end
            size = end - offset
        if size < body - offset or offset + size > end:
            raise ValueError(f"malformed {kind!r} box")
        boxes.append((kind, offset, body, offset + size))
        offset += size
    return boxes


def bmff_box(kind: bytes, body: bytes) -> bytes:
    """An ISO-BMFF box: its size (64-bit when it needs more than 32), type and body."""
    if 8 + len(body) < 1 << 32:
        return struct.pack(">I4s", 8 + len(body), kind) + body
    return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body


# A top-level box larger than this is not searched for an AVIF's bit depth (it is then read
# as 8-bit): the meta box holds little more than an ICC profile.
_MAX_META_BYTES = 16 << 20


def avif_bits(file: BinaryIO) -> int:
    """Bits per sample of an AVIF: 10 or 12 where an av1C box (AV1's codec configuration) of
    its meta box says so (high_bitdepth, twelve_bit), else 8. Reads the meta box alone."""
    while len(header := file.read(8)) == 8:
        size, kind = struct.unpack(">I4s", header)
        start = 8
        if size == 1:
            large = file.read(8)
            if len(large) < 8:
                break
            (size,) = struct.unpack(">Q", large)
            start = 16
        if kind == b"meta" and start <= size <= _MAX_META_BYTES:
            meta = file.read(size - start)
            return max((_av1c_bits(box) for box in _av1c_boxes(meta, 4)), default=8)
        if size < start:  # 0: the last box, to the end of the file
            break
        file.seek(size - start, os.SEEK_CUR)
    return 8


def _av1c_boxes(data: bytes, start: int) -> Iterator[bytes]:
    """The bodies of the av1C boxes in the item properties (iprp/ipco) of a meta box's body."""
    with suppress(ValueError, struct.error):
        for kind, _, body, end in bmff_boxes(data, start, len(data)):
            if kind == b"iprp":
                yield from _av1c_boxes(data[body:end], 0)
            elif kind == b"ipco":
                for child, _, child_body, child_end in bmff_boxes(data, body, end):
                    if child == b"av1C":
                        yield data[child_body:child_end]


def _av1c_bits(av1c: bytes) -> int:
    """An AV1CodecConfigurationRecord's bit depth: its third byte has high_bitdepth (0x40) and
    twelve_bit (0x20)."""
    if len(av1c) < 3 or not av1c[2] & 0x40:
        return 8
    return 12 if av1c[2] & 0x20 else 10


# Each EXIF orientation as the AVIF (HEIF) properties Pillow writes for it: irot's quarter turns
# anticlockwise, then imir's axis (0: top and bottom swapped, 1: left and right).
_AVIF_TRANSFORMS = {
    2: (None, 1),
    3: (2, None),
    4: (None, 0),
    5: (1, 0),
    6: (3, None),
    7: (3, 0),
    8: (1, None),
}


def avif_with_metadata(
    avif: bytes, icc_profile: bytes | None, exif: bytes | None, orientation: int
) -> bytes:
    """libavif's file, as imagecodecs writes it, with what its encoder takes no arguments for,
    laid out as libavif lays them out when given them (see Pillow's AVIF files): the ICC
    profile as a colr box and the orientation as irot/imir boxes, properties of the primary
    image; EXIF as an Exif item that describes it (a cdsc reference), at the end of the mdat
    box. The meta box grows, so the offsets of the items stored after it (iloc) move as much.
    """
    transforms = _AVIF_TRANSFORMS.get(orientation, (None, None))
    if not icc_profile and not exif and transforms == (None, None):
        return avif
    top = bmff_boxes(avif, 0, len(avif))
    kinds = [kind for kind, *_ in top]
    if kinds.count(b"meta") != 1 or kinds[-1] != b"mdat" or kinds.index(b"meta") > len(top) - 2:
        raise ValueError("unexpected AVIF layout from imagecodecs")
    _, meta_start, meta_body, meta_end = top[kinds.index(b"meta")]
    boxes = bmff_boxes(avif, meta_body + 4, meta_end)
    children = {kind: avif[body:end] for kind, _, body, end in boxes}
    if len(children) != len(boxes):
        raise ValueError("unexpected AVIF layout from imagecodecs")
    pitm = children[b"pitm"]
    primary = int.from_bytes(pitm[4:6] if pitm[0] == 0 else pitm[4:8], "big")
    rotation, mirror = transforms
    properties = [  # (box, essential): transforms must be, and come last
        *([(bmff_box(b"colr", b"prof" + icc_profile), False)] if icc_profile else []),
        *([(bmff_box(b"irot", bytes([rotation])), True)] if rotation is not None else []),
        *([(bmff_box(b"imir", bytes([mirror])), True)] if mirror is not None else []),
    ]
    if properties:
        children[b"iprp"] = _iprp_with(children[b"iprp"], primary, properties)
    payload = b"\0\0\0\0" + exif.removeprefix(EXIF_HEADER) if exif else b""
    exif_item = max(_avif_item_ids(children[b"iinf"])) + 1 if exif else 0
    if exif:
        children[b"iinf"] = _iinf_with_exif(children[b"iinf"], exif_item)
        reference = bmff_box(b"cdsc", struct.pack(">HHH", exif_item, 1, primary))
        iref = children.get(b"iref", b"\0\0\0\0")  # version 0: 16-bit item IDs
        if iref[0] != 0 or exif_item > 0xFFFF:
            raise ValueError("unexpected AVIF item references from imagecodecs")
        ordered = {}  # iref right after iinf, where libavif puts it
        for kind, body in children.items():
            if kind != b"iref":
                ordered[kind] = body
            if kind == b"iinf":
                ordered[b"iref"] = iref + reference
        children = ordered

    def meta(shift: int) -> bytes:
        iloc = children[b"iloc"]
        extent = (exif_item, len(avif) + shift, len(payload)) if exif else None
        parts = {**children, b"iloc": _iloc_shifted(iloc, shift, extent)}
        return bmff_box(
            b"meta",
            avif[meta_body : meta_body + 4]
            + b"".join(bmff_box(kind, body) for kind, body in parts.items()),
        )

    shift = len(meta(0)) - (meta_end - meta_start)  # the same at any shift
    _, mdat_start, mdat_body, _ = top[-1]
    mdat_header = bytearray(avif[mdat_start:mdat_body])
    size = int.from_bytes(mdat_header[:4], "big")
    if size == 1:
        large = int.from_bytes(mdat_header[8:16], "big") + len(payload)
        mdat_header[8:16] = large.to_bytes(8, "big")
    elif size:  # 0: to the end of the file, which the payload extends too
        mdat_header[:4] = (size + len(payload)).to_bytes(4, "big")
    return b"".join(
        (
            avif[:meta_start],
            meta(shift),
            avif[meta_end:mdat_start],
            bytes(mdat_header),
            avif[mdat_body:],
            payload,
        )
    )


def _iprp_with(iprp: bytes, item: int, properties: list[tuple[bytes, bool]]) -> bytes:
    """An iprp box's body with ``properties`` (box, essential) added to its ipco and associated
    with ``item`` in its ipma, after the item's own."""
    boxes = bmff_boxes(iprp, 0, len(iprp))
    kinds = [kind for kind, *_ in boxes]
    if kinds != [b"ipco", b"ipma"]:
        raise ValueError("unexpected AVIF item properties from imagecodecs")
    (_, _, ipco_body, ipco_end), (_, _, ipma_body, ipma_end) = boxes
    first = len(bmff_boxes(iprp, ipco_body, ipco_end)) + 1  # property indices start at 1
    ipco = iprp[ipco_body:ipco_end] + b"".join(box for box, _ in properties)
    ipma = bytearray(iprp[ipma_body:ipma_end])
    version, wide = ipma[0], ipma[3] & 1
    id_size, index_size = (2 if version < 1 else 4), (2 if wide else 1)
    added = b"".join(
        ((essential << (8 * index_size - 1)) | (first + number)).to_bytes(index_size, "big")
        for number, (_, essential) in enumerate(properties)
    )
    if first + len(properties) > (0x7FFF if wide else 0x7F):
        raise ValueError("too many AVIF item properties")
    position = 8
    for _ in range(int.from_bytes(ipma[4:8], "big")):
        count_at = position + id_size
        count = ipma[count_at]
        end = count_at + 1 + count * index_size
        if int.from_bytes(ipma[position:count_at], "big") == item:
            if count + len(properties) > 0xFF:
                raise ValueError("too many AVIF item properties")
            ipma[count_at] = count + len(properties)
            ipma[end:end] = added
            return bmff_box(b"ipco", ipco) + bmff_box(b"ipma", bytes(ipma))
        position = end
    raise ValueError("the primary AVIF image has no properties")


def _avif_item_ids(iinf: bytes) -> list[int]:
    """The item IDs of an iinf box's body (infe boxes of version 2 or 3)."""
    ids = []
    start = 6 if iinf[0] == 0 else 8  # version, flags and the 16- or 32-bit entry count
    for kind, _, body, _ in bmff_boxes(iinf, start, len(iinf)):
        if kind != b"infe" or iinf[body] not in (2, 3):
            raise ValueError("unexpected AVIF item information from imagecodecs")
        size = 2 if iinf[body] == 2 else 4
        ids.append(int.from_bytes(iinf[body + 4 : body + 4 + size], "big"))
    return ids


def _iinf_with_exif(iinf: bytes, item: int) -> bytes:
    """An iinf box's body with one more item: ``item``, of type Exif."""
    count_size = 2 if iinf[0] == 0 else 4
    count = int.from_bytes(iinf[4 : 4 + count_size], "big") + 1
    if item > 0xFFFF or count >= 1 << (8 * count_size):
        raise ValueError("too many AVIF items")
    entry = bmff_box(
        b"infe", struct.pack(">BxxxHH4sx", 2, item, 0, b"Exif")
    )  # unnamed, unprotected
    return iinf[:4] + count.to_bytes(count_size, "big") + iinf[4 + count_size :] + entry


def _iloc_shifted(iloc: bytes, shift: int, extent: tuple[int, int, int] | None) -> bytes:
    """An iloc box's body with the file offsets of its items moved by ``shift`` bytes, and one
    more item if ``extent`` (item, offset, length) says so."""
    out = bytearray(iloc)
    version = iloc[0]
    offset_size, length_size = iloc[4] >> 4, iloc[4] & 15
    base_size, index_size = iloc[5] >> 4, (iloc[5] & 15 if version in (1, 2) else 0)
    id_size = count_size = 2 if version < 2 else 4
    count = int.from_bytes(iloc[6 : 6 + count_size], "big")

    def move(at: int, size: int) -> None:
        value = int.from_bytes(out[at : at + size], "big") + shift
        out[at : at + size] = value.to_bytes(size, "big")  # OverflowError: too far

    position = 6 + count_size
    for _ in range(count):
        position += id_size
        method = 0
        if version in (1, 2):
            method = int.from_bytes(iloc[position : position + 2], "big") & 15
            position += 2
        position += 2  # data_reference_index
        base_at = position
        position += base_size
        extents = int.from_bytes(iloc[position : position + 2], "big")
        position += 2
        if method == 0 and base_size:  # offsets count from the start of the file
            move(base_at, base_size)
        for _ in range(extents):
            position += index_size
            if method == 0 and not base_size:
                if not offset_size:
                    raise ValueError("unexpected AVIF item locations from imagecodecs")
                move(position, offset_size)
            position += offset_size + length_size
    if position != len(iloc):
        raise ValueError("unexpected AVIF item locations from imagecodecs")
    if extent is None:
        return bytes(out)
    if offset_size not in (4, 8) or length_size not in (4, 8) or count + 1 >= 1 << (8 * count_size):
        raise ValueError("unexpected AVIF item locations from imagecodecs")
    item, offset, length = extent
    out[6 : 6 + count_size] = (count + 1).to_bytes(count_size, "big")
    return bytes(out) + b"".join(
        (
            item.to_bytes(id_size, "big"),
            b"\0\0" if version in (1, 2) else b"",  # construction method 0: in the file
            b"\0\0",  # data_reference_index 0: this file
            bytes(base_size),
            (1).to_bytes(2, "big"),  # one extent
            bytes(index_size),
            offset.to_bytes(offset_size, "big"),
            length.to_bytes(length_size, "big"),
        )
    )
