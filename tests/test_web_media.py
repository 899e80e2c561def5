"""Videos and animations through the web API (issue 18): every frame enlarged within the
server's limits on length, frames and pixels, or a 4xx in one line. Tiny untrained models,
clips and animations made here."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageSequence
from test_video import decoded, make_clip, moving_frames, packets
from test_web import assert_refused, make_client, post

WIDTH, HEIGHT = 32, 24  # the clips' frames (test_video's)


def animation_bytes(fmt: str, count: int = 3) -> bytes:
    """``count`` different frames of 100 ms, looping forever, as Pillow's ``fmt``."""
    frames = [Image.fromarray(frame) for frame in moving_frames(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def pages_bytes(sizes: list[tuple[int, int]]) -> bytes:
    """A multi-page TIFF, a grey page of each size."""
    pages = [Image.new("RGB", size, (90, 90, 90)) for size in sizes]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def test_a_short_video_comes_back_every_frame_enlarged_audio_copied(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", moving_frames(5))
    response = post(make_client(), clip.read_bytes(), name="clip.mp4", scale=2)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["x-frames"] == "5"
    assert response.headers["x-output-size"] == f"{2 * WIDTH}x{2 * HEIGHT}"
    result = tmp_path / "result.mp4"
    result.write_bytes(response.content)
    frames = decoded(result)
    assert [(f.width, f.height) for f in frames] == [(2 * WIDTH, 2 * HEIGHT)] * 5
    assert [f.pts for f in frames] == [f.pts for f in decoded(clip)]
    assert packets(result, "audio") == packets(clip, "audio")


@pytest.mark.parametrize(
    ("fmt", "name", "media_type"),
    [
        ("GIF", "a.gif", "image/gif"),
        ("PNG", "a.png", "image/apng"),
        ("WEBP", "a.webp", "image/webp"),
        ("TIFF", "a.tif", "image/tiff"),
    ],
)
def test_an_animation_keeps_its_frames_and_timing(fmt: str, name: str, media_type: str) -> None:
    """Before, a GIF was refused as "not an image" and the others lost all but one frame."""
    response = post(make_client(), animation_bytes(fmt), name=name, scale=2)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert response.headers["x-frames"] == "3"
    with Image.open(io.BytesIO(response.content)) as result:
        assert result.format == fmt
        frames = list(ImageSequence.Iterator(result))
        assert len(frames) == 3 and result.size == (2 * WIDTH, 2 * HEIGHT)
        if fmt != "TIFF":
            durations = []
            for frame in frames:
                frame.load()  # WebP sets a frame's duration once it is decoded
                durations.append(frame.info["duration"])
            assert durations == [100] * 3 and result.info["loop"] == 0


@pytest.mark.parametrize(
    ("limits", "upload", "status", "message"),
    [
        ({"max_frames": 5}, "clip.mp4", 413, "clip.mp4: 6 frames, over the limit of 5"),
        ({"max_frames": 3}, "a.gif", 413, "a.gif: 4 frames, over the limit of 3"),
        ({"max_video_seconds": 0.2}, "clip.mp4", 413, "s long, over the limit of 0.2 s"),
        ({"max_video_seconds": 0.2}, "a.gif", 413, "a.gif: 0.4 s long, over the limit of 0.2"),
        ({"max_pixels": 500}, "clip.mp4", 413, "32x24 frames are over the limit of 500 pixels"),
        ({"max_request_gmacs": 0.05}, "clip.mp4", 413, "clip.mp4 (6 frames): enlarging 32x24"),
        ({"max_pixels": 1000}, "pages.tif", 413, "pages.tif: page 2 is 64x48, over the limit"),
        ({}, "cut.mp4", 422, "cut.mp4: truncated: "),
        ({}, "junk.mkv", 422, "junk.mkv: not a video FFmpeg can read"),
    ],
    ids=[
        *("frames", "gif-frames", "seconds", "gif-seconds", "pixels", "work", "tiff-page"),
        *("cut", "junk"),
    ],
)
def test_over_the_limits_or_unreadable_is_a_one_line_4xx(
    tmp_path: Path, limits: dict[str, float], upload: str, status: int, message: str
) -> None:
    clip = make_clip(tmp_path / "clip.mp4", moving_frames(6)).read_bytes()
    indexed = make_clip(tmp_path / "indexed.mp4", moving_frames(6), faststart=True).read_bytes()
    uploads = {
        "clip.mp4": clip,
        "a.gif": animation_bytes("GIF", 4),
        "pages.tif": pages_bytes([(WIDTH, HEIGHT), (2 * WIDTH, 2 * HEIGHT)]),
        "cut.mp4": indexed[: len(indexed) // 2],  # the header promises all 6 frames
        "junk.mkv": b"not a video" * 50,
    }
    response = post(make_client(**limits), uploads[upload], name=upload, scale=2)
    assert_refused(response, status, message)


def test_format_is_refused_for_an_animation() -> None:
    response = post(make_client(), animation_bytes("GIF"), name="a.gif", scale=2, format="png")
    assert_refused(response, 422, "a.gif: format is for still images; animations come back as")
