"""Video files through PyAV (FFmpeg): decode to RGB frames, re-encode, copy every other stream.

Only the upscaled video stream is re-encoded. Audio, subtitles, attachments and any other
stream are remuxed packet for packet, so they stay bit-identical and in sync; each frame keeps
its own timestamp, which keeps variable frame rates too. Frames stream through one at a time:
memory depends on the frame size and the encoder's look-ahead, not on the video's length.

Colour: YUV becomes RGB with the source's matrix and range. An untagged source is taken as
BT.709 from 720 lines up and BT.601 below, as players do, and the result is encoded with that
same matrix, in limited range, and tagged, so that a player does not guess from the new size.
A display rotation (phone videos) is applied to the pixels, as EXIF orientation is for photos.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from superres.errors import ImageTooLargeError, ImageWriteError, SuperresError, VideoReadError
from superres.extras import require

if TYPE_CHECKING:
    from types import ModuleType

    import av
    import av.container
    import av.stream
    import av.video

# Containers a video may be written to (and so are picked up in folders), by file extension.
OUTPUT_CONTAINERS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".3gp": "3gp",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".flv": "flv",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".mts": "mpegts",
}
VIDEO_EXTENSIONS: frozenset[str] = frozenset(OUTPUT_CONTAINERS)

VideoCodec = Literal["h264", "h265", "vp9", "av1"]


@dataclass(frozen=True)
class Encoder:
    """An FFmpeg encoder behind a ``--video-codec`` name, with its quality scale."""

    name: str
    crf: int  # default: visually lossless for upscaled footage
    crf_range: tuple[int, int]
    options: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # read by the library itself
    mp4_tag: str | None = None  # the sample entry Apple's players insist on in MP4 and MOV


ENCODERS: dict[str, Encoder] = {
    "h264": Encoder("libx264", 18, (0, 51)),
    "h265": Encoder("libx265", 20, (0, 51), {"x265-params": "log-level=error"}, mp4_tag="hvc1"),
    # b=0 puts libvpx in constant-quality mode; row-mt uses every core on large frames.
    "vp9": Encoder("libvpx-vp9", 30, (0, 63), {"b": "0", "row-mt": "1"}),
    "av1": Encoder("libsvtav1", 30, (1, 63), environment={"SVT_LOG": "1"}),  # errors only
}
# Without --video-codec: the first of these the container can hold.
DEFAULT_CODECS = ("h264", "vp9")
# Chroma at half resolution both ways: what every player decodes (and needs even sides).
PIXEL_FORMAT = "yuv420p"

# FFmpeg's AVColorSpace tags -> the swscale matrix that converts them.
_AVCOL_SPC_BT709, _AVCOL_SPC_UNSPECIFIED, _AVCOL_SPC_SMPTE170M = 1, 2, 6
_MATRICES = {
    1: "ITU709",
    4: "FCC",
    5: "ITU601",  # BT470BG
    6: "ITU601",  # SMPTE170M
    7: "SMPTE240M",
    9: "BT2020",  # non-constant luminance
    10: "BT2020",
}
_HD_LINES = 720
# Stream metadata that describes the content (and so travels); the rest is the muxer's own.
_STREAM_TAGS = ("language", "title", "handler_name")
_MUXER_TAGS = frozenset({"encoder", "major_brand", "minor_version", "compatible_brands"})


@dataclass(frozen=True)
class VideoOptions:
    """How the upscaled video is encoded. ``codec`` None: H.264, or VP9 where the container
    cannot hold H.264 (WebM); ``crf`` None: the codec's default (lower is better and larger).
    """

    codec: VideoCodec | None = None
    crf: int | None = None

    def __post_init__(self) -> None:
        """Refuse an unknown codec, or a CRF off its scale, before any file is opened."""
        if self.codec is None:
            return
        if self.codec not in ENCODERS:
            choices = ", ".join(ENCODERS)
            raise SuperresError(f"unknown video codec {self.codec!r}; choose {choices}")
        self._crf(self.codec)

    def _crf(self, codec: str) -> int:
        encoder = ENCODERS[codec]
        crf = encoder.crf if self.crf is None else self.crf
        low, high = encoder.crf_range
        if not low <= crf <= high:
            raise SuperresError(f"--crf for {codec} must be from {low} to {high}, not {crf}")
        return crf

    def encoder(self, container: str, target: Path) -> tuple[Encoder, int]:
        """The encoder and CRF for FFmpeg's ``container`` muxer, refusing a pairing it cannot
        store (FFmpeg itself is asked: see :func:`_muxer_takes`)."""
        tried = [self.codec] if self.codec else list(DEFAULT_CODECS)
        codec = next((name for name in tried if _takes_encoder(container, name)), None)
        if codec is None:
            held = [n for n in ENCODERS if n not in tried and _takes_encoder(container, n)]
            raise ImageWriteError(
                f"{target}: a {target.suffix} file cannot hold {' or '.join(tried)}; "
                f"choose {' or '.join(held) or 'another container, such as .mkv'}"
            )
        return ENCODERS[codec], self._crf(codec)


@dataclass(frozen=True)
class VideoLimits:
    """What a caller accepts (a server): checked on the header, then again while decoding."""

    max_seconds: float | None = None
    max_frames: int | None = None
    max_pixels: int | None = None  # per input frame


DEFAULT_OPTIONS = VideoOptions()
NO_LIMITS = VideoLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its main video stream, before any decoding."""

    width: int
    height: int
    frames: int | None  # declared, or estimated from the duration; None when unknown
    estimated: bool  # frames is duration x rate, not the header's count
    seconds: float | None


@dataclass
class VideoSummary:
    """What was written, and the remarks worth a line (streams left out, repaired timing)."""

    frames: int = 0
    size: tuple[int, int] = (0, 0)  # width, height
    notes: list[str] = field(default_factory=list)


def load_av() -> ModuleType:
    """PyAV, or one line naming the extra that installs it."""
    return require("av", "video", "video")


def container_for(target: Path) -> str:
    """FFmpeg's muxer for ``target``'s extension."""
    container = OUTPUT_CONTAINERS.get(target.suffix.lower())
    if container is None:
        choices = ", ".join(sorted(OUTPUT_CONTAINERS))
        raise ImageWriteError(f"{target}: not a video file name; use one of {choices}")
    return container


def _one_line(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return re.sub(r"\s+", " ", text).strip() or type(error).__name__


@contextmanager
def _opened(source: Path | BinaryIO, name: str) -> Iterator[av.container.InputContainer]:
    av = load_av()
    try:
        container = av.open(source if not isinstance(source, Path) else str(source), "r")
    except FileNotFoundError:
        raise VideoReadError(f"{name}: no such file") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoReadError(f"{name}: not a video FFmpeg can read ({_one_line(error)})") from None
    with container:
        yield container


def _main_stream(container: av.container.InputContainer, name: str) -> av.video.VideoStream:
    """The first video stream that is a picture sequence, not cover art."""
    av = load_av()
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
    raise VideoReadError(f"{name}: no video stream ({kinds})")


def _info(stream: av.video.VideoStream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    seconds = None
    if stream.duration is not None:
        seconds = float(stream.duration * stream.time_base)
    elif stream.container.duration is not None:
        seconds = stream.container.duration / 1_000_000  # AV_TIME_BASE
    estimate = round(seconds * rate) if seconds and rate else None
    return VideoInfo(
        stream.width, stream.height, stream.frames or estimate, not stream.frames, seconds
    )


def probe_video(source: Path | BinaryIO, name: str) -> VideoInfo:
    """The main video stream's size, length and rate, from the headers alone."""
    with _opened(source, name) as container:
        return _info(_main_stream(container, name))


def check_limits(info: VideoInfo, limits: VideoLimits, name: str) -> None:
    """Refuse a clip over ``limits`` in one line naming the limit (an ImageTooLargeError)."""
    pixels = info.width * info.height
    if limits.max_pixels is not None and pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"{name}: {info.width}x{info.height} frames are over the limit of "
            f"{limits.max_pixels:,} pixels"
        )
    if limits.max_seconds is not None and (info.seconds or 0) > limits.max_seconds:
        raise ImageTooLargeError(
            f"{name}: {info.seconds:.1f} s long, over the limit of {limits.max_seconds:g} s"
        )
    declared = 0 if info.estimated else info.frames or 0  # an estimate is counted in decoding
    if limits.max_frames is not None and declared > limits.max_frames:
        raise ImageTooLargeError(
            f"{name}: {info.frames} frames, over the limit of {limits.max_frames}"
        )


def _source_matrix(frame: av.VideoFrame) -> int:
    """The frame's AVColorSpace tag, or the players' guess for an untagged one."""
    if frame.colorspace in _MATRICES:
        return int(frame.colorspace)
    return _AVCOL_SPC_BT709 if frame.height >= _HD_LINES else _AVCOL_SPC_SMPTE170M


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """An upright HxWx3 uint8 RGB array, converted with the frame's own matrix and range."""
    rgb = frame.to_ndarray(format="rgb24", src_colorspace=_MATRICES[_source_matrix(frame)])
    turns = round(frame.rotation / 90) % 4  # counterclockwise, as the display matrix says
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class _Output:
    """The output file, declared on the first enlarged frame (the result's size is known then).

    The upscaled stream is declared first, then the copies in their input order; packets to copy
    that the demuxer hands over before that wait here, as a muxer takes packets only once every
    stream is declared.
    """

    def __init__(
        self,
        writer: av.container.OutputContainer,
        main: av.video.VideoStream,
        copied: list[av.stream.Stream],
        encoder: Encoder,
        crf: int,
        notes: list[str],
    ) -> None:
        self.writer, self.main, self.copied = writer, main, copied
        self.encoder, self.crf, self.notes = encoder, crf, notes
        self.stream: av.video.VideoStream | None = None
        self.copies: dict[int, av.stream.Stream] = {}
        self.waiting: list[av.Packet] = []
        self.matrix = _AVCOL_SPC_UNSPECIFIED
        # Nominal frames per second: the encoder's rate control, and the step for bad timestamps.
        self.rate = Fraction(main.average_rate or main.guessed_rate or 25)
        self.first_pts: int | None = None
        self.last_pts: int | None = None
        self.repaired = 0

    def _open(self, width: int, height: int, first: av.VideoFrame) -> av.video.VideoStream:
        av = load_av()
        stream = self.writer.add_stream(self.encoder.name, rate=self.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, PIXEL_FORMAT
        stream.time_base = self.main.time_base
        context = stream.codec_context
        context.time_base = self.main.time_base
        stream.options = {"crf": str(self.crf), **self.encoder.options}
        if self.encoder.mp4_tag and self.writer.format.name in ("mp4", "mov"):
            context.codec_tag = self.encoder.mp4_tag
        self.matrix = _source_matrix(first)
        context.colorspace = self.matrix
        context.color_range = 1  # AVCOL_RANGE_MPEG: limited, what every player expects
        context.color_primaries = first.color_primaries
        context.color_trc = first.color_trc
        aspect = self.main.sample_aspect_ratio
        if aspect:  # anamorphic pixels keep their shape; a quarter turn swaps their sides
            context.sample_aspect_ratio = 1 / aspect if first.rotation % 180 else aspect
        stream.metadata.update(_content_tags(self.main))
        for source in self.copied:
            try:
                copy = self.writer.add_stream_from_template(source)
            except (ValueError, av.FFmpegError) as error:
                self.notes.append(f"{_label(source)} not copied ({_one_line(error)})")
                continue
            copy.metadata.update(_content_tags(source))
            copy.disposition = source.disposition
            self.copies[source.index] = copy
        self.stream = stream
        for packet in self.waiting:
            self.copy(packet)
        self.waiting.clear()
        return stream

    def _pts(self, frame: av.VideoFrame) -> int:
        """The frame's own timestamp; a missing or backward one is spaced at the nominal rate."""
        pts = frame.pts
        if self.last_pts is not None and (pts is None or pts <= self.last_pts):
            pts = self.last_pts + max(1, round(1 / (self.rate * self.main.time_base)))
            self.repaired += 1
        self.last_pts = pts or 0
        if self.first_pts is None:
            self.first_pts = self.last_pts
        return self.last_pts

    def seconds(self) -> float:
        """From the first frame to the end of the last (at the nominal rate)."""
        if self.last_pts is None or self.first_pts is None:
            return 0.0
        return float((self.last_pts - self.first_pts) * self.main.time_base + 1 / self.rate)

    def encode(self, rgb: np.ndarray, frame: av.VideoFrame) -> None:
        av = load_av()
        height, width = rgb.shape[0] & ~1, rgb.shape[1] & ~1  # 4:2:0 needs even sides
        stream = self.stream or self._open(width, height, frame)
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), "rgb24")
        picture = picture.reformat(
            format=PIXEL_FORMAT, dst_colorspace=_MATRICES[self.matrix], dst_color_range="MPEG"
        )
        picture.pts, picture.time_base = self._pts(frame), self.main.time_base
        for packet in stream.encode(picture):
            self.writer.mux(packet)

    def copy(self, packet: av.Packet) -> None:
        if self.stream is None:
            self.waiting.append(packet)
            return
        copy = self.copies.get(packet.stream.index)
        if copy is not None:
            packet.stream = copy
            self.writer.mux(packet)

    def finish(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode(None):
                self.writer.mux(packet)


def _muxer_takes(container: str, add: Callable[[av.container.OutputContainer], object]) -> bool:
    """Whether FFmpeg's ``container`` muxer accepts the stream ``add`` declares: a header is
    written to memory. (``supported_codecs`` cannot tell "no" from "unknown": MPEG-TS lists
    neither H.264 nor AAC, yet holds both.)"""
    av = load_av()
    try:
        with av.open(BytesIO(), "w", format=container) as trial:
            add(trial)
            trial.start_encoding()
    except (av.FFmpegError, ValueError):
        return False
    return True


def _takes_encoder(container: str, codec: str) -> bool:
    def declare(trial: av.container.OutputContainer) -> None:
        stream = trial.add_stream(ENCODERS[codec].name, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, PIXEL_FORMAT
        stream.options = ENCODERS[codec].options

    for variable, value in ENCODERS[codec].environment.items():
        os.environ.setdefault(variable, value)  # the user's own setting wins
    return _muxer_takes(container, declare)


def _takes_copy(container: str, stream: av.stream.Stream) -> bool:
    return _muxer_takes(container, lambda trial: trial.add_stream_from_template(stream))


def _label(stream: av.stream.Stream) -> str:
    codec = stream.codec_context.name if stream.codec_context else "unknown codec"
    return f"{stream.type} stream {stream.index} ({codec})"


def _content_tags(stream: av.stream.Stream) -> dict[str, str]:
    return {key: value for key, value in stream.metadata.items() if key.lower() in _STREAM_TAGS}


def _copyable(
    reader: av.container.InputContainer,
    main: av.video.VideoStream,
    container: str,
    notes: list[str],
) -> list[av.stream.Stream]:
    """Every input stream but the upscaled one that FFmpeg's ``container`` muxer can hold;
    each one left out gets a note saying why."""
    copied = []
    for stream in reader.streams:
        if stream.index == main.index:
            continue
        if _takes_copy(container, stream):
            copied.append(stream)
        else:
            notes.append(f"{_label(stream)} not copied: the {container} container cannot hold it")
    return copied


def transcode(
    source: Path | BinaryIO,
    output: Path | BinaryIO,
    container: str,
    enlarge: Callable[[np.ndarray], np.ndarray],
    *,
    name: str,
    target: Path | None = None,
    options: VideoOptions = DEFAULT_OPTIONS,
    limits: VideoLimits = NO_LIMITS,
    progress: Callable[[int, int], None] | None = None,
) -> VideoSummary:
    """Decode ``source``, pass each RGB frame through ``enlarge``, encode into ``output``.

    ``container`` is FFmpeg's muxer name (see :func:`container_for`). ``name`` labels the
    source in errors, ``target`` the output (default: ``output``; give it when writing to a
    temporary).
    A decode failure is a :class:`VideoReadError` and an encode or mux failure an
    :class:`ImageWriteError`, each one line; ``output`` is then incomplete and the caller
    discards it. ``progress(done, total)`` counts frames (total estimated when undeclared).
    """
    av = load_av()
    target = target or (output if isinstance(output, Path) else Path("output"))
    summary = VideoSummary()
    with _opened(source, name) as reader:
        main = _main_stream(reader, name)
        info = _info(main)
        check_limits(info, limits, name)
        main.thread_type = "AUTO"  # frame threads: decoding keeps pace with a big encode
        try:
            writer = av.open(str(output) if isinstance(output, Path) else output, "w", container)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise ImageWriteError(f"{target}: cannot write ({_one_line(error)})") from None
        with writer:
            encoder, crf = options.encoder(container, target)
            copied = _copyable(reader, main, container, summary.notes)
            writer.metadata.update(
                {k: v for k, v in reader.metadata.items() if k.lower() not in _MUXER_TAGS}
            )
            video = _Output(writer, main, copied, encoder, crf, summary.notes)
            for frame in _decoded(reader, [main, *copied], video, name, target):
                summary.frames += 1
                if limits.max_frames is not None and summary.frames > limits.max_frames:
                    raise ImageTooLargeError(
                        f"{name}: more than the limit of {limits.max_frames} frames"
                    )
                rgb = enlarge(frame_to_rgb(frame))
                _write(target, lambda rgb=rgb, frame=frame: video.encode(rgb, frame))
                if progress:
                    progress(summary.frames, max(summary.frames, info.frames or 0))
            _write(target, video.finish)
            _check_complete(name, summary, main.frames, info.seconds, video.seconds())
        summary.size = (video.stream.width, video.stream.height) if video.stream else (0, 0)
    if video.repaired:
        summary.notes.append(
            f"{video.repaired} frames had missing or out-of-order timestamps; "
            "they were spaced at the nominal frame rate"
        )
    return summary


def _check_complete(
    name: str, summary: VideoSummary, frames: int, declared: float | None, decoded: float
) -> None:
    """A header's frame count is a promise: falling short by more than an edit list may trim
    (2 frames, or 2%) is truncation. A duration is only a hint (a container's may cover a
    longer audio stream), so stopping 5% short of it is noted, not refused."""
    if summary.frames == 0:
        raise VideoReadError(f"{name}: the video stream holds no frames")
    if frames and summary.frames < frames - max(2, frames // 50):
        raise VideoReadError(
            f"{name}: truncated: {summary.frames} of the {frames} frames its header declares"
        )
    if declared and decoded < 0.95 * declared:
        summary.notes.append(
            f"the video stops at {decoded:.2f} s of the {declared:.2f} s its container "
            "declares: is the file truncated?"
        )


def _decoded(
    reader: av.container.InputContainer,
    streams: list[av.stream.Stream],
    video: _Output,
    name: str,
    target: Path,
) -> Iterator[av.VideoFrame]:
    """The first stream's decoded frames; the other streams' packets go straight to copies."""
    av = load_av()
    main = streams[0]
    packets = reader.demux(streams)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode() if packet.stream.index == main.index else None
        except StopIteration:
            return
        except (av.FFmpegError, OSError) as error:
            raise VideoReadError(
                f"{name}: corrupt or truncated video data ({_one_line(error)})"
            ) from None
        if frames is not None:
            yield from frames
        elif packet.dts is not None:  # the demuxer's empty end-of-stream packets have none
            _write(target, lambda packet=packet: video.copy(packet))


def _write(target: Path, step: Callable[[], None]) -> None:
    """Run an encode or mux step; FFmpeg's failure becomes one ImageWriteError line."""
    av = load_av()
    try:
        step()
    except (av.FFmpegError, OSError) as error:
        raise ImageWriteError(f"{target}: cannot write the video ({_one_line(error)})") from None
