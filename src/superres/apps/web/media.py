"""Videos and animated images through ``POST /api/upscale``: what they are, and the work.

An upload is an animation when Pillow reads several frames from it (any GIF, APNG, animated
WebP, multi-page TIFF) and a video when its name says so (``clip.mp4``; see
:data:`~superres.imageio.video.VIDEO_EXTENSIONS`): by content alone, FFmpeg would also take
HEIC, AVIF or a PNG for a one-frame video. Either comes back in its own format and container,
every frame enlarged as ``superres upscale`` does it, within the server's limits on length,
frames and pixels per frame: checked on the header before any work is queued, and the frames
again while decoding, since a header may understate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from superres.engine.video import enlarge_animation
from superres.imageio.animation import open_animation
from superres.imageio.video import (
    OUTPUT_CONTAINERS,
    VideoInfo,
    VideoLimits,
    check_limits,
    probe_video,
    transcode,
)

# Pillow's multi-frame formats -> the result's suffix and media type.
_ANIMATIONS = {
    "GIF": (".gif", "image/gif"),
    "PNG": (".png", "image/apng"),
    "WEBP": (".webp", "image/webp"),
    "TIFF": (".tiff", "image/tiff"),
}
# FFmpeg's muxers (see OUTPUT_CONTAINERS) -> media types.
_VIDEO_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "3gp": "video/3gpp",
    "matroska": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "flv": "video/x-flv",
    "mpegts": "video/mp2t",
}


# What a video's or an animation's response may be.
RESULT_TYPES = sorted({kind for _, kind in _ANIMATIONS.values()} | set(_VIDEO_TYPES.values()))


@dataclass(frozen=True)
class Media:
    """A multi-frame upload as its header describes it."""

    kind: Literal["video", "animation"]
    format: str  # Pillow's format of an animation, FFmpeg's muxer of a video
    width: int  # of the first frame
    height: int
    frames: int  # declared, or estimated from the duration
    channels: int  # of a decoded frame: 4 with transparency

    @property
    def media_type(self) -> str:
        return _VIDEO_TYPES[self.format] if self.kind == "video" else _ANIMATIONS[self.format][1]

    @property
    def holds_frames(self) -> bool:
        """Whether every enlarged frame is in memory at once: Pillow's writers but GIF's
        take them all before writing."""
        return self.kind == "animation" and self.format != "GIF"


@dataclass(frozen=True)
class MediaResult:
    body: bytes
    size: tuple[int, int]  # width, height of the first frame
    frames: int
    notes: list[str]  # streams left out, repaired timestamps: what a client should know


def _animation(upload: bytes) -> tuple[str, VideoInfo, int] | None:
    """Pillow's format, the size and frames, and the channels of a multi-frame upload; None
    otherwise."""
    try:
        with Image.open(BytesIO(upload), formats=tuple(_ANIMATIONS)) as image:
            frames = getattr(image, "n_frames", 1)
            if image.format != "GIF" and frames == 1:
                return None
            channels = 4 if image.mode == "P" else len(image.getbands())  # palettes: maybe alpha
            info = VideoInfo(image.width, image.height, frames, False, None)
            return image.format or "GIF", info, max(3, channels)
    except Exception:  # not something Pillow animates: the still-image path names the problem
        return None


def probe_media(upload: bytes, name: str, limits: VideoLimits) -> Media | None:
    """The upload as a video or an animation, refused in one line if over ``limits``; None
    for anything else (a still image, or what the image reader will refuse)."""
    found = _animation(upload)
    if found is not None:
        fmt, info, channels = found
        check_limits(info, limits, name)  # frames and pixels, before decoding any
        with open_animation(upload, max_pixels=limits.max_pixels, name=name) as (animation, _):
            seconds = sum(animation.durations) / 1000 or None  # known once decoded
        check_limits(replace(info, seconds=seconds), limits, name)
        return Media("animation", fmt, info.width, info.height, info.frames, channels)
    container = OUTPUT_CONTAINERS.get(Path(name).suffix.lower())
    if container is None:
        return None
    info = probe_video(BytesIO(upload), name)
    check_limits(info, limits, name)
    frames = info.frames or limits.max_frames or 1  # unknown: as many as decoding will allow
    return Media("video", container, info.width, info.height, frames, 3)


def upscale_media(
    upload: bytes,
    name: str,
    media: Media,
    enlarge: Callable[[np.ndarray], np.ndarray],
    limits: VideoLimits,
) -> MediaResult:
    """Every frame of ``upload`` through ``enlarge``, encoded in memory as the upload was."""
    output = BytesIO()
    if media.kind == "video":
        source = BytesIO(upload)
        summary = transcode(
            source, output, media.format, enlarge, name=name, target=Path(name), limits=limits
        )
        return MediaResult(output.getvalue(), summary.size, summary.frames, summary.notes)
    with open_animation(upload, max_pixels=limits.max_pixels, name=name) as (animation, frames):
        size = enlarge_animation(enlarge, animation, frames, output, media.format)
    return MediaResult(output.getvalue(), size, animation.frames, [])
