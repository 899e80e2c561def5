"""Load test of `superres serve`: bursts of concurrent uploads against the real server.

For each burst size a fresh server runs as a child process, exactly as a user starts it
(`superres serve`, loopback only, one worker and the default budgets), so its peak resident
set (VmHWM) is that burst's own. Every request of a burst is started at once. The server
queues what its memory and pending-work budgets hold and answers 503 with ``Retry-After``
only beyond them. Its resident set is read after a warm-up request, at its peak, and once
the burst is over and the server idle again. Without shipped x2 weights for the default
model, an untrained network of that architecture is saved to a temporary folder named by
SUPERRES_WEIGHTS_DIR: time and memory depend on the architecture, not the weights' values.

    nice -n 15 .venv/bin/python benchmarks/load_test.py [--bursts 50 200]
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
BURSTS = (50, 200)
REQUEST_TIMEOUT = 300.0  # seconds per request; the whole burst is bounded by it too
START_TIMEOUT = 120.0
SETTLE_SECONDS = 2.0  # idle time before the resident set is read after a burst
POLL_SECONDS = 0.1  # how often /healthz is read during a burst
MIB = 1024 * 1024


def upload_png() -> bytes:
    """A 256x256 crop of the astronaut as PNG: a photo, so its size is a photo's."""
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()[:SIDE, 128 : 128 + SIDE]).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def memory_mib(pid: int, field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (the most since it started), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} for process {pid}")


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


def wait_until_idle(client: httpx.Client) -> None:
    while client.get("/healthz").json()["in_flight"]:
        time.sleep(POLL_SECONDS)


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


class HealthWatch:
    """Reads /healthz while a burst runs: the most memory promised and jobs queued at once."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.most = {"memory_promised_bytes": 0, "work_pending_gmacs": 0, "jobs": 0, "in_flight": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT) as client:
            while not self._stop.wait(POLL_SECONDS):
                health = client.get("/healthz").json()
                for key, most in self.most.items():
                    self.most[key] = max(most, health[key])


def burst(base_url: str, upload: bytes, count: int) -> tuple[list[dict], float, dict]:
    """``count`` uploads released together, one connection each: results, wall s, health."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    start = threading.Barrier(count)
    with (
        httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT, limits=limits) as client,
        ThreadPoolExecutor(count) as pool,
        HealthWatch(base_url) as watch,
    ):
        began = time.perf_counter()
        futures = [pool.submit(send, client, upload, start) for _ in range(count)]
        results = [future.result(timeout=REQUEST_TIMEOUT + 60) for future in futures]
        wall = time.perf_counter() - began
    return results, wall, watch.most


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


def run_burst(count: int, upload: bytes, extra_env: dict[str, str]) -> dict:
    """A fresh server, a warm-up request, one burst of ``count``, and the memory figures."""
    port = free_port()
    argv = ["serve", "--host", HOST, "--port", str(port)]
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
            limits = client.get("/api/limits").json()
            rss_warm = memory_mib(server.pid, "VmRSS")
            results, wall, most = burst(base_url, upload, count)
            peak = memory_mib(server.pid, "VmHWM")
            wait_until_idle(client)
            time.sleep(SETTLE_SECONDS)
            rss_after = memory_mib(server.pid, "VmRSS")
    finally:
        server.terminate()
        server.wait(30)
    return {
        "requests": count,
        "server_command": "superres " + shlex.join(argv),
        "memory_budget_mb": limits["memory_budget_bytes"] / 1e6,
        "memory_budget_mib": round(limits["memory_budget_bytes"] / MIB, 1),
        "max_pending_gmacs": limits["max_pending_gmacs"],
        "warm_up": warm_up,
        "burst_wall_seconds": round(wall, 2),
        "burst": summarise(results),
        "most_at_once": {
            "in_flight": most["in_flight"],
            "jobs": most["jobs"],
            "memory_promised_mib": round(most["memory_promised_bytes"] / MIB, 1),
            "work_pending_gmacs": most["work_pending_gmacs"],
        },
        "rss_mib": {"after_warm_up": rss_warm, "peak": peak, "after_burst_idle": rss_after},
    }


def write_results(record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "load_test.json").write_text(json.dumps(record, indent=2) + "\n")

    def cells(stats: dict | None) -> str:
        return "-" if stats is None else f"{stats['p50']:.0f} / {stats['p99']:.0f}"

    lines = [
        "# `superres serve` under load: bursts of concurrent uploads",
        "",
        f"Command: `{record['command']}`",
        "",
        f"Each request: {record['upload']}; all of a burst released together, one connection "
        "each, after one warm-up request, against a fresh server for each burst started as "
        "`superres serve --host 127.0.0.1 --port PORT`: one worker thread and the default "
        "budgets (below), so 503 with Retry-After comes only beyond them.",
        "",
        "| burst | statuses | errors | wall s | latency p50 / p99 ms (200) | "
        "server work p50 / p99 ms | most in flight / queued | memory / work promised at most | "
        "RSS after warm-up | peak RSS (VmHWM) | RSS idle after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in record["runs"]:
        summary, rss, most = run["burst"], run["rss_mib"], run["most_at_once"]
        counts = ", ".join(f"{n} x {status}" for status, n in summary["status_counts"].items())
        lines.append(
            f"| {run['requests']} | {counts} | {len(summary['errors'])} | "
            f"{run['burst_wall_seconds']:.1f} | {cells(summary['latency_ms']['200'])} | "
            f"{cells(summary['server_work_ms_200'])} | {most['in_flight']} / {most['jobs']} | "
            f"{most['memory_promised_mib']:.0f} MiB / {most['work_pending_gmacs']:,.0f} G | "
            f"{rss['after_warm_up']:.0f} MiB | "
            f"{rss['peak']:.0f} MiB | {rss['after_burst_idle']:.0f} MiB |"
        )
    first = record["runs"][0]
    lines += [
        "",
        f"Budgets (the defaults): memory {first['memory_budget_mb']:,.0f} MB "
        f"({first['memory_budget_mib']:,.0f} MiB) for all requests in flight, pending work "
        f"{first['max_pending_gmacs']:,.0f} G multiply-adds. "
        "Stated bound: peak RSS at most the RSS after warm-up plus the memory budget (plus "
        "one worker's tile buffers, which are not image-sized).",
        "",
        "Latency is client side, from release to the whole image received, so it includes the "
        "wait in the queue; server work is X-Elapsed-Ms (decode, enlarge, encode). "
        '"Most in flight / queued" and "promised" are the largest values /healthz '
        f'reported, read every {POLL_SECONDS:g} s. "RSS idle after" is read '
        f"{SETTLE_SECONDS:g} s after the server last had a request in flight.",
        "",
        f"Weights: {record['weights']}.",
        "",
        f"Machine: {record['machine']}. One burst per size, with the server's default (auto) "
        "precision, backend and tile, run at nice 15 beside a model training on the same "
        "cores, so times are slower than on an idle machine.",
        "",
    ]
    (RESULTS / "load_test.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--bursts", type=int, nargs="+", default=list(BURSTS), help="burst sizes (50 200)"
    )
    args = parser.parse_args()
    upload = upload_png()
    with tempfile.TemporaryDirectory(prefix="superres-load-") as scratch:
        extra_env, weights = weights_for(Path(scratch))
        runs = [run_burst(count, upload, extra_env) for count in args.bursts]
    script = ["benchmarks/load_test.py"]
    if tuple(args.bursts) != BURSTS:
        script += ["--bursts", *map(str, args.bursts)]
    record = {
        "command": "nice -n 15 .venv/bin/python " + shlex.join(script),
        "upload": f"{SIDE}x{SIDE} RGB PNG ({len(upload):,} bytes), model {MODEL}, scale {SCALE}",
        "weights": weights,
        "runs": runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}",
    }
    write_results(record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
