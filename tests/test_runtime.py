"""``auto`` precision, backend and tile (issue 8): resolved from the measured runtime table.

A tiny compact x2 model with random weights is saved to a temporary weights folder with a
runtime.json written for it, so the table, the CPU's bf16 support and onnxruntime's presence
are all under the test's control.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import superres.apps.cli
from superres.api import get_upscaler
from superres.engine import runtime
from superres.engine.inference import Upscaler
from superres.engine.runtime import DEFAULT_TILE, RuntimeChoice, resolve_runtime
from superres.errors import SuperresError
from superres.imageio.files import write_image
from superres.models import LoadedModel, create_model, load_model, save_weights
from superres.models.registry import shipped_models

CPU = torch.device("cpu")


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A weights folder (SUPERRES_WEIGHTS_DIR) holding a tiny compact x2, without a table yet."""
    torch.manual_seed(0)
    model = create_model("compact", 2, width=8, blocks=1)
    for parameter in model.network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    save_weights(tmp_path / "compact-x2.safetensors", model)
    monkeypatch.setenv("SUPERRES_WEIGHTS_DIR", str(tmp_path))
    get_upscaler.cache_clear()
    yield tmp_path
    get_upscaler.cache_clear()


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """What the CPU and the install offer; tests flip these before resolving."""
    offers = {"bf16": True, "onnxruntime": True}
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: offers["bf16"])
    monkeypatch.setattr(runtime, "onnxruntime_available", lambda: offers["onnxruntime"])
    return offers


def measured(folder: Path, **changes: Any) -> LoadedModel:
    """Write a runtime.json entry for the folder's model (bf16 worth it, onnxruntime fastest
    at fp32, 512-pixel tiles) with ``changes`` applied; the loaded model."""
    model = load_model("compact", 2)
    entry = {
        "precision": "bf16",
        "backend": {"fp32": "onnxruntime", "bf16": "pytorch"},
        "tile": 512,
        "bf16_psnr_cost_db": 0.01,
        "weights_sha256": model.weights_digest(),
        "measured": "2026-01-01, 2 threads, avx512_bf16 amx_bf16",
        **changes,
    }
    (folder / "runtime.json").write_text(json.dumps({"compact-x2": entry}))
    return model


FALLBACK = RuntimeChoice("fp32", "pytorch", DEFAULT_TILE, measured=False)


def test_without_a_table_auto_is_fp32_pytorch_and_the_default_tile(weights, machine):
    assert resolve_runtime(load_model("compact", 2), CPU) == FALLBACK


def test_bf16_where_measured_faster_cheap_enough_and_native(weights, machine):
    model = measured(weights)
    assert resolve_runtime(model, CPU) == RuntimeChoice("bf16", "pytorch", 512, measured=True)


def test_a_cpu_without_native_bf16_gets_the_fastest_fp32_backend(weights, machine):
    model = measured(weights)
    machine["bf16"] = False
    assert resolve_runtime(model, CPU) == RuntimeChoice("fp32", "onnxruntime", 512, True)


def test_onnxruntime_missing_falls_back_to_pytorch(weights, machine):
    model = measured(weights, precision="fp32")
    machine["onnxruntime"] = False
    assert resolve_runtime(model, CPU) == RuntimeChoice("fp32", "pytorch", 512, True)


@pytest.mark.parametrize("cost", [0.05, 0.2, None])
def test_bf16_costing_too_much_or_unmeasured_stays_fp32(weights, machine, cost):
    model = measured(weights, bf16_psnr_cost_db=cost)
    assert resolve_runtime(model, CPU).precision == "fp32"


def test_bf16_measured_slower_stays_fp32(weights, machine):
    model = measured(weights, precision="fp32")
    assert resolve_runtime(model, CPU).precision == "fp32"


def test_other_weights_and_unknown_models_get_the_fallbacks(weights, machine):
    """An entry speaks only for the weights measured: retrained ones are unknown."""
    measured(weights)
    retrained = load_model("compact", 2)
    torch.nn.init.zeros_(next(retrained.network.parameters()))
    assert resolve_runtime(retrained, CPU) == FALLBACK
    other = create_model("espcn", 2)
    assert resolve_runtime(other, CPU) == FALLBACK


def test_measurements_do_not_speak_for_other_devices(weights, machine):
    model = measured(weights)
    assert resolve_runtime(model, torch.device("cuda")) == FALLBACK


def test_explicit_values_override_the_table(weights, machine):
    model = measured(weights)
    chosen = resolve_runtime(model, CPU, "fp32", "pytorch", 64)
    assert chosen == RuntimeChoice("fp32", "pytorch", 64, measured=False)
    # auto fills only what is left: onnxruntime runs fp32, explicit bf16 runs on pytorch
    assert resolve_runtime(model, CPU, backend="onnxruntime").precision == "fp32"
    assert resolve_runtime(model, CPU, precision="bf16").backend == "pytorch"
    assert resolve_runtime(model, CPU, precision="fp32").backend == "onnxruntime"
    assert resolve_runtime(model, CPU, tile="300").tile == 300  # as typed on a command line


def test_explicit_bf16_on_a_cpu_without_it_is_still_refused(weights, machine):
    machine["bf16"] = False
    with pytest.raises(SuperresError, match="needs a CPU with AVX512-BF16 or AMX"):
        resolve_runtime(load_model("compact", 2), CPU, precision="bf16")


@pytest.mark.parametrize(
    "tile,message", [("8", "at least 16"), (4, "at least 16"), ("big", "number of pixels")]
)
def test_bad_tiles_are_refused(weights, tile, message):
    with pytest.raises(SuperresError, match=message):
        resolve_runtime(load_model("compact", 2), CPU, tile=tile)


def test_a_broken_table_is_a_clear_error(weights):
    (weights / "runtime.json").write_text("[1, 2]")
    with pytest.raises(SuperresError, match="runtime.json"):
        resolve_runtime(load_model("compact", 2), CPU)


def test_upscaler_and_api_show_what_they_chose(weights, machine):
    measured(weights)
    machine["bf16"] = False
    upscaler = Upscaler("compact", 2)
    assert (upscaler.precision, upscaler.backend, upscaler.tile) == ("fp32", "onnxruntime", 512)
    assert upscaler.runtime.describe() == "onnxruntime fp32, tile 512 (measured)"
    cached = get_upscaler("compact", 2)
    assert (cached.precision, cached.backend, cached.tile) == ("fp32", "onnxruntime", 512)
    pinned = get_upscaler("compact", 2, 64, precision="fp32", backend="pytorch")
    assert (pinned.precision, pinned.backend, pinned.tile) == ("fp32", "pytorch", 64)


def test_upscale_prints_the_resolved_choice(weights, machine, tmp_path):
    measured(weights)
    machine["bf16"] = False
    photo = np.zeros((24, 20, 3), np.uint8)
    write_image(tmp_path / "in.png", photo)
    args = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-s", "2"]
    result = CliRunner().invoke(superres.apps.cli.app, args)
    assert result.exit_code == 0, result.output
    assert "compact x2: onnxruntime fp32, tile 512 (measured)" in result.output.splitlines()
    result = CliRunner().invoke(
        superres.apps.cli.app,
        [*args, "--overwrite", "--precision", "fp32", "--backend", "pytorch", "--tile", "32"],
    )
    assert "compact x2: pytorch fp32, tile 32" in result.output.splitlines()


def test_shipped_runtime_table_is_for_the_shipped_weights():
    """runtime.json is written by benchmarks/speed.py --write-defaults; retraining a model
    without measuring it again would leave its entry stale (and silently unused)."""
    path = runtime.runtime_table_path()
    if not path.is_file():
        pytest.skip("no runtime.json: nothing measured yet, auto runs fp32 on pytorch")
    table = runtime.read_runtime_table()
    shipped = {f"{m.name}-x{m.scale}": m for m in shipped_models()}
    assert set(table) == set(shipped)
    for key, entry in table.items():
        measured_on = entry["weights_sha256"]
        assert measured_on == shipped[key].model.weights_digest(), f"{key}: re-run speed.py"
        assert entry["precision"] in ("fp32", "bf16")
        assert set(entry["backend"].values()) <= {"pytorch", "onnxruntime"}
        assert entry["tile"] >= runtime.MIN_TILE


CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    "cost,supported,expected", [(0.01, True, "bf16"), (0.2, True, "fp32"), (0.01, False, "fp32")]
)
def test_cuda_auto_takes_bf16_only_where_its_measured_cost_is_cheap(
    weights, machine, monkeypatch, cost, supported, expected
):
    """The table's bf16 quality cost speaks for a GPU (the rounding is the format's); its CPU
    speed figures (tile, onnxruntime) do not."""
    model = measured(weights, bf16_psnr_cost_db=cost)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    chosen = resolve_runtime(model, CUDA)
    assert (chosen.precision, chosen.backend, chosen.tile) == (expected, "pytorch", DEFAULT_TILE)


def test_fp16_is_for_gpus_and_never_automatic(weights, machine, monkeypatch):
    model = measured(weights)
    with pytest.raises(SuperresError, match="fp16 runs on CUDA or MPS"):
        resolve_runtime(model, CPU, precision="fp16")
    assert resolve_runtime(model, torch.device("mps"), precision="fp16").precision == "fp16"
    assert resolve_runtime(model, torch.device("mps")).precision == "fp32"
