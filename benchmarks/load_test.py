"""Load test of `superres serve`: a burst of concurrent uploads against the real server.

The server runs as a child process, exactly as a user starts it (`superres serve`, loopback
only, one worker and a queue of four), so its peak resident set (VmHWM) is its own. Every
request is started at once; with that capacity most should be turned away with 503 and
``Retry-After``, and the rest answered with the image. Without shipped x2 weights for the
default model, an untrained network of that architecture is saved to a temporary folder named
by SUPERRES_WEIGHTS_DIR: time and memory depend on the architecture, not the weights' values.

    .venv/bin/python benchmarks/load_test.py [--requests 50]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image
from skimage import data

from superres.models import create_model, resolve_name, save_weights
from superres.models.registry import shipped_scales, weights_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
HOST = "127.0.0.1"
MODEL, SCALE, SIDE = "default", 2, 256
REQUEST_TIMEOUT = 300.0  # seconds per request; the whole burst is bounded by it too
START_TIMEOUT = 120.0


def upload_png() -> bytes:
    """A 256x256 crop of the astronaut as PNG: a photo, so its size is a photo's."""
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()[:SIDE, 128 : 128 + SIDE]).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most memory the process has held resident since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def weights_for(scratch: Path) -> tuple[dict[str, str], str]:
    """Extra environment and a description of the weights the server will use."""
    name = resolve_name(MODEL)
    if SCALE in shipped_scales(name):
        return {}, f"shipped {name}-x{SCALE}.safetensors from {weights_dir()}"
    save_weights(scratch / f"{name}-x{SCALE}.safetensors", create_model(name, SCALE))
    return {"SUPERRES_WEIGHTS_DIR": str(scratch)}, (
        f"UNTRAINED {name} x{SCALE} at its shipped size (random initialisation; no shipped "
        f"x{SCALE} weights yet): the output images are meaningless, time and memory are not"
    )


def wait_until_up(client: httpx.Client, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT:g} s")


def send(client: httpx.Client, upload: bytes, start: threading.Barrier | None) -> dict:
    """One upload; its status (or error), latency and the headers worth keeping."""
    if start is not None:
        start.wait()
    began = time.perf_counter()
    try:
        response = client.post(
            "/api/upscale",
            files={"image": ("astronaut.png", upload, "image/png")},
            data={"model": MODEL, "scale": str(SCALE)},
        )
    except httpx.HTTPError as error:
        return {"error": f"{type(error).__name__}: {error}", "ms": elapsed_ms(began)}
    return {
        "status": response.status_code,
        "ms": elapsed_ms(began),
        "work_ms": response.headers.get("x-elapsed-ms"),
        "output_size": response.headers.get("x-output-size"),
        "retry_after": response.headers.get("retry-after"),
    }


def elapsed_ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 1)


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "n": len(values),
        "p50": round(float(p50), 1),
        "p90": round(float(p90), 1),
        "p99": round(float(p99), 1),
        "max": round(max(values), 1),
    }


def burst(base_url: str, upload: bytes, count: int) -> tuple[list[dict], float]:
    """``count`` uploads released together, one connection each; returns results and wall s."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    start = threading.Barrier(count)
    with (
        httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits) as client,
        ThreadPoolExecutor(count) as pool,
    ):
        began = time.perf_counter()
        futures = [pool.submit(send, client, upload, start) for _ in range(count)]
        results = [future.result(timeout=REQUEST_TIMEOUT + 60) for future in futures]
    return results, time.perf_counter() - began


def summarise(results: list[dict]) -> dict:
    ok = [r for r in results if r.get("status") == 200]
    busy = [r for r in results if r.get("status") == 503]
    return {
        "status_counts": dict(
            sorted(Counter(str(r.get("status", "error")) for r in results).items())
        ),
        "errors": [r["error"] for r in results if "error" in r],
        "latency_ms": {
            "all": percentiles([r["ms"] for r in results]),
            "200": percentiles([r["ms"] for r in ok]),
            "503": percentiles([r["ms"] for r in busy]),
        },
        "server_work_ms_200": percentiles([float(r["work_ms"]) for r in ok]),
        "output_sizes_200": sorted({r["output_size"] for r in ok}),
        "retry_after_503": sorted({int(r["retry_after"]) for r in busy}),
    }


def write_results(record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load_test.json").write_text(json.dumps(record, indent=2) + "\n")
    summary = record["burst"]

    def row(label: str, stats: dict | None) -> str:
        if stats is None:
            return f"| {label} | 0 | - | - | - | - |"
        cells = " | ".join(f"{stats[key]:.0f}" for key in ("p50", "p90", "p99", "max"))
        return f"| {label} | {stats['n']} | {cells} |"

    counts = ", ".join(f"{count} x {status}" for status, count in summary["status_counts"].items())
    lines = [
        f"# `superres serve` under load: {record['requests']} concurrent uploads",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Server: `{record['server_command']}` (1 worker thread, queue of 4: at "
        "most 5 requests in flight, the rest refused with 503 and Retry-After).",
        f"Each request: {record['upload']}; all released together, one connection each, "
        "after one warm-up request.",
        "",
        f"Statuses: {counts}. Transport errors: {len(summary['errors'])}. "
        f"Burst wall time: {record['burst_wall_seconds']:.1f} s.",
        "",
        "| latency (ms, client side) | n | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|---|",
        row("all", summary["latency_ms"]["all"]),
        row("200 (image)", summary["latency_ms"]["200"]),
        row("503 (busy)", summary["latency_ms"]["503"]),
        row("server work per 200 (X-Elapsed-Ms)", summary["server_work_ms_200"]),
        "",
        f"Results: {', '.join(summary['output_sizes_200']) or 'none'}; Retry-After given: "
        f"{', '.join(map(str, summary['retry_after_503'])) or '-'} s. "
        f"Warm-up request: {record['warm_up']['ms']:.0f} ms.",
        "",
        f"Server peak RSS (VmHWM after the burst): {record['server_peak_rss_mib']:.0f} MiB.",
        "",
        f"Weights: {record['weights']}.",
        "",
        f"Machine: {record['machine']}. One burst, with the server's default (auto) precision, "
        "backend and tile.",
        "",
    ]
    (RESULTS / "load_test.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=50, help="concurrent uploads (50)")
    args = parser.parse_args()
    upload = upload_png()
    port = free_port()
    argv = ["serve", "--host", HOST, "--port", str(port)]
    with tempfile.TemporaryDirectory(prefix="superres-load-") as scratch:
        extra_env, weights = weights_for(Path(scratch))
        server = subprocess.Popen(
            [sys.executable, "-m", "superres", *argv],
            env={**os.environ, **extra_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base_url = f"http://{HOST}:{port}"
        try:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT) as client:
                wait_until_up(client, server)
                warm_up = send(client, upload, None)
            results, wall = burst(base_url, upload, args.requests)
            peak = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    script = ["benchmarks/load_test.py"]
    if args.requests != 50:
        script += ["--requests", str(args.requests)]
    record = {
        "command": ".venv/bin/python " + shlex.join(script),
        "server_command": "superres " + shlex.join(argv),
        "requests": args.requests,
        "upload": f"{SIDE}x{SIDE} RGB PNG ({len(upload):,} bytes), model {MODEL}, scale {SCALE}",
        "weights": weights,
        "warm_up": warm_up,
        "burst_wall_seconds": round(wall, 2),
        "burst": summarise(results),
        "server_peak_rss_mib": peak,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}",
    }
    write_results(record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
