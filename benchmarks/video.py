"""Frames per second upscaling a 480p video on this CPU: x2 and x4 with the default model,
and ``real`` at the scales the package ships it at.

A 854x480, 30 fps H.264 clip with AAC audio is made first: a photo panning 4 px a frame with
fresh sensor-like noise, so the decoder and encoder have real work. Each case runs the video
pipeline (decode, YUV to RGB, the Upscaler, RGB to YUV, H.264 encode at the default CRF, audio
copied) through :func:`superres.engine.video.upscale_video`, timing every frame in wall time
and in this process's CPU time (all its threads): the steady rate excludes the first frame
(warm-up). The Upscaler alone on one frame (median of 3) is the model's share; the rest is
decoding, colour conversion and encoding. On a shared machine wall time depends on the other
load, CPU time much less. Memory flat in the video's length: ``superres upscale`` at x2 runs
as a child process on a small clip of ``--memory-frames`` frames and on one three times as
long (both longer than x264's look-ahead), and their peak resident sets are compared.

    nice -n 15 .venv/bin/python benchmarks/video.py [--frames 30] [--memory-frames 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from upscale_memory import measure, photo_like

from superres.apps.report.tables import markdown_table, write_json, write_text_atomic
from superres.engine.inference import Upscaler
from superres.engine.video import upscale_video
from superres.imageio.video import ENCODERS
from superres.models import load_model
from superres.models.registry import shipped_scales
from superres.timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
WIDTH, HEIGHT, RATE = 854, 480, 30
MEMORY_SIZE = (320, 180)  # the length comparison's clip: small, so long clips stay quick
PAN = 4  # pixels per frame
SAMPLE_RATE = 48_000


def make_clip(path: Path, frames: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    """The benchmark clip: a noisy photo panning across the window, with a 440 Hz tone."""
    width, height = size
    rng = np.random.default_rng(0)
    scene = photo_like(width + PAN * frames, height).astype(np.int16)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "20"}
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for index in range(frames):
            window = scene[:, PAN * index : PAN * index + width]
            noisy = window + rng.normal(0, 3, window.shape).round().astype(np.int16)
            frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), "rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        samples = SAMPLE_RATE * frames // RATE
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
        for start in range(0, samples, 1024):
            piece = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], "fltp", "mono")
            piece.sample_rate, piece.pts = SAMPLE_RATE, start
            for packet in sound.encode(piece):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def cases() -> list[tuple[str, int]]:
    """(model, scale): the default and ``real`` (where shipped) at x2 and x4."""
    real = set(shipped_scales("real"))
    return [
        (model, scale)
        for scale in (2, 4)
        for model in ("default", "real")
        if model == "default" or scale in real
    ]


def run_case(model: str, scale: int, clip: Path, scratch: Path, frames: int) -> dict[str, Any]:
    upscaler = Upscaler(load_model(model, scale))
    stamps: list[tuple[float, float]] = []  # (wall, CPU) as each frame is done
    start = time.perf_counter()
    summary = upscale_video(
        upscaler,
        clip,
        scratch / f"{model}-x{scale}.mp4",
        progress=lambda done, total: stamps.append((time.perf_counter(), time.process_time())),
    )
    whole = time.perf_counter() - start
    if summary.frames != frames:
        raise SystemExit(f"{model} x{scale}: wrote {summary.frames} frames, not {frames}")
    frame = first_frame(clip)
    model_wall = median_seconds(lambda: upscaler.upscale(frame), repeats=3)
    model_cpu = median_seconds(lambda: upscaler.upscale(frame), 3, clock=time.process_time)
    (wall_first, cpu_first), (wall_last, cpu_last) = stamps[0], stamps[-1]
    steady = (len(stamps) - 1) / (wall_last - wall_first)
    cpu_per_frame = (cpu_last - cpu_first) / (len(stamps) - 1)
    return {
        "model": upscaler.model.name,
        "scale": scale,
        "runtime": upscaler.runtime.describe(),
        "output_size": list(summary.size),
        "frames": summary.frames,
        "fps_steady": round(steady, 3),
        "fps_whole_clip": round(summary.frames / whole, 3),
        "fps_model_alone": round(1 / model_wall, 3),
        "cpu_seconds_per_frame": round(cpu_per_frame, 3),
        "cpu_seconds_per_frame_model": round(model_cpu, 3),
        "output_mpx_per_s": round(steady * summary.size[0] * summary.size[1] / 1e6, 2),
    }


def memory_by_length(clips: list[tuple[int, Path]], scratch: Path) -> list[dict[str, Any]]:
    """Peak RSS of `superres upscale` at x2 on clips of different lengths, each its own process."""
    rows = []
    for frames, clip in clips:
        argv = ["upscale", str(clip), "-o", str(scratch / f"mem-{frames}.mp4"), "--scale", "2"]
        result = measure([sys.executable, "-m", "superres", *argv], dict(os.environ))
        if result["exit_status"] != 0:
            raise SystemExit(f"superres {shlex.join(argv)} failed")
        rows.append({"frames": frames, **result})
    return rows


def write_results(record: dict[str, Any]) -> None:
    rows = [
        [
            f"{case['model']} x{case['scale']}",
            "{}x{}".format(*case["output_size"]),
            case["runtime"],
            f"{case['fps_steady']:.2f}",
            f"{case['fps_whole_clip']:.2f}",
            f"{case['fps_model_alone']:.2f}",
            f"{case['cpu_seconds_per_frame']:.2f}",
            f"{case['cpu_seconds_per_frame_model']:.2f}",
            f"{case['output_mpx_per_s']:.1f}",
        ]
        for case in record["cases"]
    ]
    columns = [
        "model",
        "output",
        "runs as",
        "fps",
        "fps whole clip",
        "fps model alone",
        "CPU s/frame",
        "of which model",
        "output MP/s",
    ]
    memory = [
        [
            str(row["frames"]),
            f"{row['frames'] / RATE:.0f} s",
            f"{row['peak_rss_mib_vmhwm_polled']:.0f} MiB",
            f"{row['wall_seconds']:.0f} s",
        ]
        for row in record["memory_by_length"]
    ]
    lines = [
        "# Video upscaling speed on this machine",
        "",
        f"Measured {record['date']} with `{record['command']}`: a {WIDTH}x{HEIGHT}, {RATE} fps "
        f"H.264 clip of {record['frames']} frames with AAC audio (a photo panning {PAN} px a "
        "frame, with noise), upscaled to H.264 at the default CRF "
        f"({ENCODERS['h264'].crf}), audio copied. {record['machine']}.",
        "",
        "fps is the steady wall-clock rate (first frame excluded); 'whole clip' includes "
        "the first frame and opening the files (not loading the model); 'model alone' is "
        "the Upscaler on one frame (median of 3). CPU s/frame is this process's CPU time "
        "(all threads) per frame of the whole pipeline, and 'of which model' the Upscaler's "
        "own: the difference is decoding, the YUV/RGB conversions, H.264 encoding and muxing. "
        f"With the CPU to itself, {record['threads']} cores would give at most "
        f"{record['threads']} / (CPU s/frame) fps.",
        "",
        markdown_table(columns, rows),
        "",
        "Memory against the video's length (`superres upscale CLIP -o OUT.mp4 --scale 2` on "
        f"a {MEMORY_SIZE[0]}x{MEMORY_SIZE[1]} clip, each run its own process, peak resident "
        "set polled every 0.05 s): frames stream through one at a time, so once x264's "
        "look-ahead is full a longer clip needs no more memory.",
        "",
        markdown_table(["frames", "length", "peak RSS", "wall time"], memory),
        "",
        f"The CPU was shared: load average {record['load_average']} at the start (other work, "
        "such as a training run, on the same cores, and this run niced), so the wall-clock "
        "figures are lower bounds of what the machine does alone.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "video.json", record)
    write_text_atomic(RESULTS / "video.md", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, default=30, help="clip length (default 30: 1 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--memory-frames", type=int, default=60, help="shorter clip of the length comparison"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="superres-video-") as name:
        scratch = Path(name)
        clip = scratch / "clip.mp4"
        make_clip(clip, args.frames)
        measured = [run_case(m, s, clip, scratch, args.frames) for m, s in cases()]
        lengths = []
        for frames in (args.memory_frames, 3 * args.memory_frames):
            make_clip(scratch / f"small-{frames}.mp4", frames, MEMORY_SIZE)
            lengths.append((frames, scratch / f"small-{frames}.mp4"))
        memory = memory_by_length(lengths, scratch)
    record = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": shlex.join(["nice", "-n", "15", ".venv/bin/python", *sys.argv]),
        "frames": args.frames,
        "clip": {"size": [WIDTH, HEIGHT], "rate": str(Fraction(RATE)), "codec": "h264+aac"},
        "threads": args.threads,
        "load_average": load,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch "
        f"threads, Python {platform.python_version()}, torch {torch.__version__}, PyAV "
        f"{av.__version__} (FFmpeg {av.ffmpeg_version_info}), OpenCV {cv2.__version__}",
        "cases": measured,
        "memory_by_length": memory,
    }
    write_results(record)
    for case in measured:
        print(case)


if __name__ == "__main__":
    main()
