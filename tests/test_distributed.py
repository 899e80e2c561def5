"""Training on several processes (gloo on the CPU): the same result as one process with the same
global batch, rank 0 alone writing, and runs that resume with another number of processes."""

from __future__ import annotations

import csv
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_superres, tiny_config
from safetensors.torch import load_file
from skimage import data
from torch import multiprocessing

from superres.errors import SuperresError
from superres.imageio.files import write_image
from superres.training.distributed import World, join_world, leave_world
from superres.training.trainer import BEST_WEIGHTS, CHECKPOINT, LOG, RUN, WEIGHTS, Trainer

ATOL = 1e-5  # gradients summed in another order: float rounding, nothing more
# With a discriminator the same rounding shows larger (measured: 3e-5 in one of 4 losses and 2 of
# 576 weights): presumably Adam's first steps, about lr * sign(g), turn gradients that rounding
# alone decides into whole learning-rate steps.
ADVERSARIAL_ATOL = 1e-4


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    photo = data.astronaut()
    for index, (top, left) in enumerate([(0, 0), (200, 250), (300, 100)]):
        write_image(folder / f"crop{index}.png", photo[top : top + 96, left : left + 96])
    return folder


_config = tiny_config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log(run: Path) -> list[dict[str, str]]:
    with (run / LOG).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _assert_close(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = ATOL
) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0)


@pytest.mark.parametrize("degradation", ["bicubic", "realistic"])
def test_shares_of_a_batch_are_disjoint_and_make_up_the_whole_batch(
    image_folder: Path, tmp_path: Path, degradation: str
) -> None:
    whole = Trainer(_config(image_folder, degradation=degradation), tmp_path).sampler
    parts = [Trainer(_config(image_folder, degradation=degradation), tmp_path).sampler]
    parts.append(Trainer(_config(image_folder, degradation=degradation), tmp_path).sampler)
    for step in range(3):
        batch = whole.batch(4, step)
        halves = [part.batch(4, step, range(2 * r, 2 * r + 2)) for r, part in enumerate(parts)]
        np.testing.assert_array_equal(np.concatenate([h.high_res for h in halves]), batch.high_res)
        np.testing.assert_array_equal(np.concatenate([h.low_res for h in halves]), batch.low_res)
        assert not np.array_equal(halves[0].high_res, halves[1].high_res)


def test_the_global_batch_must_split_evenly() -> None:
    assert World(rank=1, size=2).share(16) == range(8, 16)
    with pytest.raises(SuperresError, match="multiple of 3"):
        World(rank=0, size=3).share(16)


def test_alone_the_world_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    world = join_world("cpu")
    assert (world.rank, world.size, world.main) == (0, 1, True)
    assert world.any(True) and world.mean(2.5) == 2.5


def _rank(rank: int, folder: Path, runs: Path, port: int, settings: dict) -> None:
    """One of two processes, as torchrun would start it; each is given its own run folder so
    that anything rank 1 writes would show."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    os.environ["WORLD_SIZE"] = "2"
    torch.set_num_threads(1)
    world = join_world("cpu")
    losses: list[float] = []
    try:
        trainer = Trainer(_config(folder, **settings), runs / f"rank{rank}", world)
        trainer.run(on_step=lambda _step, loss: losses.append(loss), until=4)
    finally:
        leave_world()
    (runs / f"losses{rank}.json").write_text(json.dumps(losses))  # the test's own record


@pytest.mark.parametrize(
    "settings",
    [{}, {"adversarial": 0.1, "feature_matching": 1.0}],
    ids=["plain", "adversarial"],  # the discriminator is a second DDP network, two passes a step
)
def test_two_processes_equal_one_and_resume_alone(
    image_folder: Path, tmp_path: Path, settings: dict
) -> None:
    multiprocessing.start_processes(
        _rank,
        args=(image_folder, tmp_path, _free_port(), settings),
        nprocs=2,
        start_method="spawn",
    )
    assert not (tmp_path / "rank1").exists()  # rank 1 wrote nothing
    two = tmp_path / "rank0"
    one = tmp_path / "one"
    losses: list[float] = []
    Trainer(_config(image_folder, **settings), one).run(
        on_step=lambda _s, v: losses.append(v), until=4
    )
    # Each rank's loss is over its own half of the batch; together, the whole batch's.
    halves = [json.loads((tmp_path / f"losses{rank}.json").read_text()) for rank in (0, 1)]
    assert halves[0] != halves[1]
    atol = ADVERSARIAL_ATOL if settings else ATOL
    np.testing.assert_allclose(np.mean(halves, axis=0), losses, atol=atol)
    saved = {
        name: torch.load(run / CHECKPOINT, weights_only=True)
        for name, run in (("two", two), ("one", one))
    }
    _assert_close(saved["two"]["model"], saved["one"]["model"], atol)
    assert saved["two"]["world_size"] == 2 and saved["two"]["step"] == 4
    [row_two], [row_one] = _log(two), _log(one)
    assert float(row_two["loss"]) == pytest.approx(float(row_one["loss"]), abs=atol)
    assert float(row_two["val_psnr"]) == pytest.approx(float(row_one["val_psnr"]), abs=1e-3)
    assert json.loads((two / RUN).read_text())["segments"][0]["world_size"] == 2

    resumed = Trainer(_config(image_folder, **settings), two)  # one process now
    resumed.resume()
    resumed.run()
    straight = Trainer(_config(image_folder, **settings), tmp_path / "straight")
    straight.run()
    _assert_close(resumed.network.state_dict(), straight.network.state_dict(), atol)
    assert [int(r["step"]) for r in _log(two)] == [4, 8]
    segments = json.loads((two / RUN).read_text())["segments"]
    assert [(s["from_step"], s["world_size"]) for s in segments] == [(0, 2), (4, 1)]


def _train_args(folder: Path, run: Path, *extra: str) -> list[str]:
    return [
        *("train", "--model", "compact", "--scale", "2", "--train", str(folder)),
        *("--val", str(folder), "-o", str(run), "--epoch-steps", "2", "--batch-size", "4"),
        *("--patch-size", "24", "--device", "cpu", *extra),
    ]


def test_torchrun_two_processes_then_one_through_the_cli(image_folder: Path, tmp_path: Path):
    """`torchrun --nproc-per-node 2 -m superres train ...`, then `--resume` in one process."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    rendezvous = ["--master-port", str(_free_port())]
    first = run_superres(
        *_train_args(image_folder, run, "--steps", "4"),
        env=env,
        launcher=(*torchrun, *rendezvous),
    )
    assert first.returncode == 0, first.stderr
    assert "2 processes (cpu): global batch 4 (2 per process)" in first.stdout
    assert first.stdout.count("weights:") == 1  # rank 0 alone prints
    assert [int(r["step"]) for r in _log(run)] == [2, 4]  # and writes: no doubled rows
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [BEST_WEIGHTS, CHECKPOINT, LOG, RUN, WEIGHTS]
    )

    second = run_superres("train", "-o", str(run), "--resume", "--steps", "6", env=env)
    assert second.returncode == 0, second.stderr
    assert "continuing to 6 steps (was 4)" in second.stdout
    assert [int(r["step"]) for r in _log(run)] == [2, 4, 6]
    assert load_file(str(run / WEIGHTS)).keys()
    segments = json.loads((run / RUN).read_text())["segments"]
    assert [(s["from_step"], s["world_size"]) for s in segments] == [(0, 2), (4, 1)]
