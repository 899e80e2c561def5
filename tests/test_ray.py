"""Folder upscaling on Ray (issue 15): a local cluster (``ray.init(num_cpus=2)``) writes what the
local executor writes, byte for byte; skips, per-file errors and dead workers as the local path
would have them. Skipped where Ray is not installed (the ``distributed`` extra)."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import run_main, run_superres, upscale_cli

from superres.atomic import replacing
from superres.engine.batch import FileSummary, plan_jobs
from superres.engine.ray_executor import FileWorker, RayPool, WorkerSettings
from superres.errors import SuperresError
from superres.imageio.files import write_image

SETTINGS = WorkerSettings("default", 2, {"precision": "fp32", "backend": "pytorch"})


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    photos = tmp_path / "in"
    for name, shape in [("a.png", (20, 30, 3)), ("b.png", (17, 9)), ("c/d.png", (12, 12, 4))]:
        write_image(photos / name, rng.integers(0, 256, shape, dtype=np.uint8))
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return photos


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_ray_writes_the_local_bytes_reports_bad_files_and_resumes(ray_cluster, folder, tmp_path):
    local = upscale_cli(folder, "-o", tmp_path / "local")
    on_ray = upscale_cli(folder, "-o", tmp_path / "ray", "--executor", "ray")
    assert local.exit_code == on_ray.exit_code == 1  # broken.png, in both
    assert "on 2 Ray worker(s)" in on_ray.output
    assert "3 written, 0 skipped, 1 failed" in on_ray.output
    broken = [line for line in on_ray.output.splitlines() if "broken.png" in line]
    assert broken == [line for line in local.output.splitlines() if "broken.png" in line]
    assert len(broken) == 1
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert sorted(_files(tmp_path / "ray")) == ["a.png", "b.png", "c/d.png"]

    again = upscale_cli(folder, "-o", tmp_path / "ray", "--executor", "ray")
    assert "0 written, 3 skipped, 1 failed" in again.output


def test_videos_and_animations_on_ray_are_the_local_bytes(ray_cluster, tmp_path):
    # Imported here: test_video skips without PyAV, and the other tests need no PyAV.
    from test_animation import frames_with_alpha, save_animation
    from test_video import make_clip, moving_frames

    media = tmp_path / "media"
    media.mkdir()
    make_clip(media / "clip.mp4", moving_frames(4))
    save_animation(media / "party.gif", frames_with_alpha(), duration=100, loop=0)
    local = upscale_cli(media, "-o", tmp_path / "local")
    on_ray = upscale_cli(media, "-o", tmp_path / "ray", "--executor", "ray")
    assert local.exit_code == on_ray.exit_code == 0, on_ray.output
    assert sorted(_files(tmp_path / "ray")) == ["clip.mp4", "party.gif"]
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _jobs(folder: Path, output: Path):
    jobs, _, _ = plan_jobs([folder], output)
    return [job for job in jobs if job.source.name != "broken.png"]


def test_a_worker_dying_mid_batch_is_replaced_and_its_file_redone(ray_cluster, folder, tmp_path):
    marker = tmp_path / "died"

    class DiesOnce(FileWorker):
        def run(self, job):
            if job.source.name == "b.png" and not marker.exists():
                marker.touch()
                with replacing(job.target) as temporary:  # half written, then killed
                    temporary.write_bytes(b"half an image")
                    os._exit(1)  # as a worker killed by the OOM killer would
            return super().run(job)

    with RayPool(SETTINGS, worker=DiesOnce) as pool:
        pool.start(3)
        results = dict(pool.run(_jobs(folder, tmp_path / "out")))
    assert marker.exists()
    assert all(isinstance(summary, FileSummary) for summary in results.values())
    reference = upscale_cli(folder, "-o", tmp_path / "local", "--precision", "fp32")
    assert reference.exit_code == 1
    assert _files(tmp_path / "out") == _files(tmp_path / "local")  # hidden temporaries too


def test_a_batch_stopped_midway_leaves_only_finished_files(ray_cluster, folder, tmp_path):
    """Ctrl-C in the driver kills the workers mid-write; their temporaries go too."""
    output = tmp_path / "out"

    class HangsWriting(FileWorker):
        def run(self, job):
            if job.source.name == "b.png":
                with replacing(job.target) as temporary:
                    temporary.write_bytes(b"half an image")
                    time.sleep(600)  # until killed
            return super().run(job)

    def writing() -> bool:
        return any(output.glob(".b.png.*.part"))

    with RayPool(SETTINGS, worker=HangsWriting) as pool:
        pool.start(2)
        for _job, result in pool.run(_jobs(folder, output)):
            assert isinstance(result, FileSummary)
            deadline = time.monotonic() + 60
            while not writing() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert writing()
            break  # as Ctrl-C would, with b.png half written
    assert sorted(p.name for p in output.iterdir()) == ["a.png"]


def test_a_file_that_kills_every_worker_is_reported_and_the_rest_done(
    ray_cluster, folder, tmp_path
):
    class AlwaysDies(FileWorker):
        def run(self, job):
            if job.source.name == "b.png":
                os._exit(1)
            return super().run(job)

    with RayPool(SETTINGS, worker=AlwaysDies) as pool:
        pool.start(3)
        results = {job.source.name: result for job, result in pool.run(_jobs(folder, tmp_path))}
    assert "its Ray worker died 3 times" in str(results["b.png"])
    assert isinstance(results["a.png"], FileSummary) and isinstance(results["d.png"], FileSummary)
    assert not (tmp_path / "b.png").exists()


def test_a_model_workers_cannot_load_is_one_line(ray_cluster):
    pool = RayPool(WorkerSettings("default", 5, {}))
    with pool, pytest.raises(SuperresError, match="could not load.*no shipped weights for compact"):
        pool.start(1)


def test_a_gpu_the_cluster_lacks_is_one_line_not_a_wait(ray_cluster):
    pool = RayPool(WorkerSettings("default", 2, {"device": "cuda"}))
    with pool, pytest.raises(SuperresError, match="--device cuda was asked for, but the Ray"):
        pool.start(1)


def test_without_ray_the_extra_is_named(monkeypatch, capsys, folder, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when it is absent
    code, stderr = run_main(
        monkeypatch, capsys, "upscale", folder, "-o", tmp_path, "--executor", "ray"
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "pip install 'superres[distributed]'" in stderr
    assert not any(tmp_path.glob("*.png"))


def _closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_that_does_not_answer_is_one_line(folder, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    completed = run_superres(
        "upscale",
        str(folder),
        "-o",
        str(tmp_path / "o"),
        "--executor",
        "ray",
        "--ray-address",
        address,
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and f"the Ray cluster at {address} does not answer" in lines[0]
    assert not (tmp_path / "o").exists()


def test_an_unknown_executor_is_refused(folder, tmp_path):
    result = upscale_cli(folder, "-o", tmp_path, "--executor", "spark")
    assert result.exit_code == 2 and "'spark' is not one of" in result.output
