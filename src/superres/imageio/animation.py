"""Animated images (GIF, animated WebP, APNG) and multi-page TIFF: every frame, timing kept.

Pillow decodes each frame composited onto the canvas (disposal and blending applied), so every
frame is a whole picture that can be enlarged on its own; they are written back as whole
frames with the same durations, loop count and transparency. GIF has 1-bit transparency, so
alpha below half becomes transparent and the rest opaque. A TIFF's pages are independent
images, each kept at its own size and mode.

Pillow's writers merge consecutive identical frames into one of their summed duration: the
animation plays exactly the same, with fewer frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from superres.errors import ImageReadError, ImageTooLargeError, ImageWriteError
from superres.imageio.deep import opencv_layout
from superres.imageio.files import DEFAULT_MAX_PIXELS, pixels_from_pil
from superres.imageio.messages import one_line

# Extensions only animations use; PNG, WebP and TIFF files are images unless they hold several
# frames (see :func:`is_animation`).
ANIMATION_EXTENSIONS: frozenset[str] = frozenset({".gif", ".apng"})
_READ_FORMATS = ("GIF", "PNG", "WEBP", "TIFF")
_WRITE_FORMATS = {
    ".gif": "GIF",
    ".png": "PNG",
    ".apng": "PNG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# Extensions a file of several frames can be written to.
ANIMATION_SUFFIXES: frozenset[str] = frozenset(_WRITE_FORMATS)
_TIMED = ("GIF", "PNG", "WEBP")  # formats with frame durations and a loop count
_GIF_OPAQUE = 128


@dataclass(frozen=True)
class Animation:
    """What a multi-frame file says about its frames besides their pixels."""

    format: str  # Pillow's name: GIF, PNG, WEBP or TIFF
    frames: int
    durations: list[float]  # milliseconds per frame; empty for TIFF pages
    plays: int  # 0: forever; else how many times it plays (a GIF's loop count + 1)
    icc_profile: bytes | None


def is_animation(path: Path) -> bool:
    """Whether ``path`` takes the animation path: any GIF, or a PNG, WebP or TIFF of several
    frames. Anything Pillow cannot open here is left to the still-image reader to report."""
    if path.suffix.lower() in ANIMATION_EXTENSIONS:
        return True
    try:
        with Image.open(path, formats=_READ_FORMATS) as image:
            return image.format == "GIF" or getattr(image, "n_frames", 1) > 1
    except Exception:  # only routing: read_image gives the real reason
        return False


def _plays(image: Image.Image) -> int:
    """How many times the animation plays, 0 for forever, in one meaning for every format."""
    loop = image.info.get("loop")
    if image.format == "GIF":  # no NETSCAPE block: once; else loop = repeats after the first
        return 1 if loop is None else (0 if loop == 0 else loop + 1)
    return 0 if loop is None else int(loop)


@contextmanager
def open_animation(
    source: Path | bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = ""
) -> Iterator[tuple[Animation, Iterator[np.ndarray]]]:
    """The file's (or an upload's) description and its frames (decoded one at a time, as
    :func:`read_image` would lay them out); every failure is one :class:`ImageReadError` line
    naming the file (``name`` for an upload)."""
    path = source if isinstance(source, Path) else Path(name or "upload")
    opened = source if isinstance(source, Path) else BytesIO(source)
    try:
        image = Image.open(opened, formats=_READ_FORMATS)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a GIF, PNG, WebP or TIFF image") from None
    except Exception as error:
        raise ImageReadError(f"{path}: cannot read ({one_line(error)})") from error
    with image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageTooLargeError(
                f"{path}: {width}x{height} frames are over the limit of {max_pixels:,} pixels"
            )
        if isinstance(source, Path):
            with open(path, "rb") as file:
                header = file.read(32)
        else:
            header = source[:32]
        try:
            frames = getattr(image, "n_frames", 1)
            durations = []
            for index in range(frames):
                image.seek(index)
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise ImageTooLargeError(  # a TIFF's pages have sizes of their own
                        f"{path}: page {index + 1} is {image.width}x{image.height}, over the "
                        f"limit of {max_pixels:,} pixels"
                    )
                if opencv_layout(image, header) is not None:
                    raise ImageReadError(
                        f"{path}: frame {index + 1} is 16-bit colour, which is kept only in "
                        "single images; save the frames or pages as separate files"
                    )
                if image.format in _TIMED:
                    image.load()  # WebP sets a frame's duration only once it is decoded
                    durations.append(float(image.info.get("duration") or 0))
            image.seek(0)
        except ImageReadError:
            raise
        except Exception as error:
            raise ImageReadError(
                f"{path}: corrupt or truncated frames ({one_line(error)})"
            ) from error
        animation = Animation(
            image.format or "GIF",
            frames,
            durations,
            _plays(image),
            image.info.get("icc_profile") or None,
        )
        yield animation, _frames(path, image, frames)


def _frames(path: Path, image: Image.Image, count: int) -> Iterator[np.ndarray]:
    for index in range(count):
        try:
            image.seek(index)
            yield pixels_from_pil(image)
        except ImageReadError as error:
            raise ImageReadError(f"{path}: frame {index + 1}: {error}") from error
        except Exception as error:
            raise ImageReadError(
                f"{path}: frame {index + 1} is corrupt ({one_line(error)})"
            ) from error


def animation_format(target: Path, frames: int) -> str:
    """Pillow's format for writing ``frames`` frames to ``target``, or one line saying why not."""
    fmt = _WRITE_FORMATS.get(target.suffix.lower())
    if fmt is None:  # e.g. .jpg
        raise ImageWriteError(
            f"{target}: a {target.suffix or 'file without extension'} cannot hold {frames} "
            "frames; use .gif, .webp, .png (APNG) or .tiff"
        )
    return fmt


def _gif_frame(pixels: np.ndarray) -> np.ndarray:
    """GIF transparency is all or nothing: alpha below half is transparent (colour zeroed, so
    the palette is not spent on hidden pixels), the rest opaque. Grey+alpha goes as RGBA, the
    layout Pillow's GIF writer keeps transparent."""
    if pixels.ndim != 3 or pixels.shape[2] not in (2, 4):
        return pixels
    if pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
    opaque = pixels[..., -1] >= _GIF_OPAQUE
    out = pixels * opaque[..., None].astype(pixels.dtype)
    out[..., -1] = np.where(opaque, 255, 0)
    return out


def write_animation(
    path: Path | BinaryIO,
    fmt: str,
    animation: Animation,
    frames: Iterator[np.ndarray],
    *,
    quality: int = 95,
    target: Path | None = None,
) -> tuple[int, int]:
    """Write 8-bit (or 16-bit grey, TIFF) frames as ``fmt`` with ``animation``'s timing;
    returns the first frame's size. ``target`` (default ``path``) names the file in errors,
    for a caller writing to a temporary or to memory."""
    label = target or path
    convert: Callable[[np.ndarray], np.ndarray] = _gif_frame if fmt == "GIF" else np.asarray
    try:
        first = Image.fromarray(convert(next(frames)))
    except StopIteration:
        raise ImageWriteError(f"{label}: no frames to write") from None
    later = (Image.fromarray(convert(pixels)) for pixels in frames)
    options: dict[str, object] = {"save_all": True}
    if fmt in _TIMED and animation.durations:
        options["duration"] = animation.durations
        if fmt == "GIF":
            if animation.plays != 1:  # once is a GIF without a loop block
                options["loop"] = max(0, animation.plays - 1)
            options["disposal"] = 2  # each whole frame replaces the last, transparency too
        else:
            options["loop"] = animation.plays
    if fmt == "WEBP":
        options["quality"] = quality
    if fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    if animation.icc_profile and fmt != "GIF":
        options["icc_profile"] = animation.icc_profile
    # Pillow's GIF writer takes frames as they come; the others list them all first.
    options["append_images"] = later if fmt == "GIF" else list(later)
    try:
        first.save(path, format=fmt, **options)
    except (OSError, ValueError) as error:
        raise ImageWriteError(f"{label}: cannot write ({one_line(error)})") from error
    return first.size
