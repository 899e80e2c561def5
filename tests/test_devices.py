"""Devices (issue 15): auto's order, absent or unknown devices as one line, GPU tiles that fit
and shrink on out-of-memory. This machine has no GPU: CUDA is simulated where the logic can be
checked without one, and the test that really runs on CUDA skips here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import superres.apps.cli
from superres.engine import devices
from superres.engine.devices import MAX_GPU_TILE, fitting_tile, resolve_device
from superres.engine.inference import Upscaler
from superres.engine.runtime import MIN_TILE
from superres.errors import SuperresError
from superres.imageio.files import write_image
from superres.models import create_model


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> dict[str, int | bool]:
    """What the machine appears to offer: no CUDA and no MPS until a test says otherwise."""
    offers: dict[str, int | bool] = {"cuda": 0, "mps": False}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: offers["cuda"] > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: offers["cuda"])
    monkeypatch.setattr(devices, "_mps_available", lambda: offers["mps"])
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # restored after the test
    return offers


def test_auto_takes_cuda_then_mps_then_the_cpu(gpus):
    assert resolve_device("auto") == torch.device("cpu")
    gpus["mps"] = True
    assert resolve_device("auto") == torch.device("mps")
    gpus["cuda"] = 2
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert torch.backends.cudnn.allow_tf32 is False  # fp32 means fp32 on CUDA too


@pytest.mark.parametrize(
    "device,offers,message",
    [
        ("cuda", {}, "--device cuda was asked for, but no CUDA device is available"),
        ("cuda:2", {"cuda": 2}, "this machine has 2 CUDA device(s): cuda:0 to cuda:1"),
        ("mps", {}, "--device mps was asked for, but MPS is not available here"),
        ("tpu", {}, "unknown device 'tpu'; choose auto, cpu, cuda, cuda:N or mps"),
        ("cpu:1", {}, "unknown device 'cpu:1'"),
        ("cuda:x", {"cuda": 1}, "unknown device 'cuda:x'"),
        ("meta", {}, "unknown device 'meta'"),
    ],
)
def test_absent_or_unknown_devices_are_refused_never_replaced(gpus, device, offers, message):
    gpus.update(offers)
    with pytest.raises(SuperresError) as error:
        resolve_device(device)
    assert message in str(error.value)


@pytest.fixture
def photo_and_data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_image(tmp_path / "data" / "a.png", rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    return tmp_path


@pytest.mark.skipif(torch.cuda.is_available(), reason="this test needs a machine without CUDA")
@pytest.mark.parametrize(
    "command",
    [
        ["upscale", "{data}/a.png", "-o", "{tmp}/out.png"],
        ["train", "--model", "compact", "--scale", "2", "--train", "{data}", "-o", "{tmp}/run"],
        ["benchmark", "--datasets", "{data}", "--models", "srcnn", "--scales", "2"],
        ["serve"],
    ],
    ids=["upscale", "train", "benchmark", "serve"],
)
def test_every_command_refuses_an_absent_device_in_one_line(
    photo_and_data, monkeypatch, capsys, command
):
    tmp = photo_and_data
    args = [a.format(data=tmp / "data", tmp=tmp) for a in command]
    monkeypatch.setattr(sys, "argv", ["superres", *args, "--device", "cuda"])
    with pytest.raises(SystemExit) as exit_info:
        superres.apps.cli.main()
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "no CUDA device is available" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp / "out.png").exists() and not (tmp / "run").exists()


@pytest.fixture
def tiny() -> Upscaler:
    torch.manual_seed(0)
    model = create_model("compact", 2, width=8, blocks=1)
    for parameter in model.network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    return Upscaler(model, tile=64, precision="fp32", backend="pytorch")


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2 GB"),
    ],
    ids=["cuda", "mps", "cpu"],
)
def test_out_of_memory_halves_the_tile_and_gives_the_same_image(tiny, monkeypatch, failure):
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    expected = tiny.upscale(image)
    process = tiny._process

    def small_memory(tile: np.ndarray, peak: float) -> np.ndarray:
        if max(tile.shape[:2]) > 40:
            raise failure
        return process(tile, peak)

    monkeypatch.setattr(tiny, "_process", small_memory)
    np.testing.assert_array_equal(tiny.upscale(image), expected)
    assert tiny.tile < 64  # and the next image starts at the size that fitted
    assert tiny.runtime.tile == tiny.tile


def test_out_of_memory_at_the_smallest_tile_is_one_clear_error(tiny, monkeypatch):
    def no_memory(tile: np.ndarray, peak: float) -> np.ndarray:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(tiny, "_process", no_memory)
    with pytest.raises(SuperresError, match=f"even with {MIN_TILE}-pixel tiles"):
        tiny.upscale(np.zeros((40, 40), dtype=np.uint8))


def test_the_gpu_tile_fits_the_free_memory(tiny, monkeypatch):
    network, cuda = tiny.model.network, torch.device("cuda", 0)
    per_pixel = devices.activation_bytes_per_pixel(network, 1, 2)
    sides = {}
    for free in (2**26, 2**28, 2**40):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda _device, f=free: (f, 2 * f))
        sides[free] = fitting_tile(network, 1, 2, cuda)
        assert sides[free] ** 2 * per_pixel <= free * devices.GPU_MEMORY_FRACTION
    assert sides[2**26] < sides[2**28] and sides[2**28] == pytest.approx(2 * sides[2**26], abs=1)
    assert sides[2**40] == MAX_GPU_TILE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_upscale_matches_the_cpu(tiny):
    image = np.random.default_rng(2).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    on_gpu = Upscaler(tiny.model, tile="auto", device="cuda", precision="fp32", backend="pytorch")
    difference = np.abs(on_gpu.upscale(image).astype(int) - tiny.upscale(image).astype(int))
    assert difference.max() <= 1
