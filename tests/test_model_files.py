"""``--model PATH``: the weights ``superres train`` writes run wherever a shipped name does, and
bad or unsafe files are refused in one line. Runs in both venvs: none of it needs spandrel."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers import run_main, tiny_config
from PIL import Image
from skimage import data
from typer.testing import CliRunner

import superres
from superres.api import get_upscaler
from superres.apps.cli import app
from superres.apps.report.html import method_enlargers
from superres.apps.web.server import create_app, naming_files, served_files
from superres.engine.inference import Upscaler
from superres.errors import ModelError
from superres.extras import MissingExtraError
from superres.imageio.files import load_pixels, write_image
from superres.models import load_weights_file
from superres.models.files import is_model_path, model_labels
from superres.training.trainer import CHECKPOINT, WEIGHTS, Trainer

SPANDREL = importlib.util.find_spec("spandrel") is not None
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real (tiny) `superres train` run: RUN_DIR/model.safetensors and checkpoint.pt."""
    images = tmp_path_factory.mktemp("images")
    for index, (top, left) in enumerate([(0, 0), (200, 250)]):
        write_image(images / f"crop{index}.png", data.astronaut()[top : top + 48, left : left + 48])
    run = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(images), run).run()
    return run


@pytest.fixture(scope="module")
def weights(run_dir) -> Path:
    return run_dir / WEIGHTS


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "photo.png"
    write_image(path, data.astronaut()[180:204, 200:230])
    return path


def test_trained_weights_run_through_upscale(tmp_path, weights, photo):
    """The file's own scale (x2) without --scale, the same pixels as the engine gives."""
    result = invoke("upscale", photo, "-o", tmp_path / "big.png", "--model", weights)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("compact x2: ")
    expected = Upscaler(load_weights_file(weights)).upscale(load_pixels(photo))
    np.testing.assert_array_equal(load_pixels(tmp_path / "big.png"), expected)


def test_python_api_takes_a_path(weights, photo):
    loaded = superres.load_model(weights)
    assert (loaded.name, loaded.scale) == ("compact", 2)
    image = Image.open(photo)
    enlarged = superres.upscale(image, model=str(weights))
    assert enlarged.size == (image.width * 2, image.height * 2)
    with pytest.raises(ModelError, match="an x2 model, not x4; leave the scale out"):
        superres.upscale(image, model=str(weights), scale=4)
    with pytest.raises(ModelError, match="pretrained=False takes a shipped model's name"):
        superres.load_model(weights, pretrained=False)


def test_names_and_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compact").write_bytes(b"")  # a file named like a model does not hide it
    assert not is_model_path("compact") and not is_model_path("auto")
    assert all(map(is_model_path, ["x.pth", "m.SAFETENSORS", "runs/a", Path("compact")]))
    assert not is_model_path("vdsr")  # an unknown name stays a name: "unknown model"


def _truncated(tmp_path: Path, weights: Path) -> Path:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(weights.read_bytes()[:300])
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda tmp, w: tmp / "missing.safetensors", "no such model file"),
        (lambda tmp, w: tmp, "a folder, not a model file"),
        (_truncated, "not a readable safetensors file"),
        (lambda tmp, w: w, "an x2 model, not x4"),
        (lambda tmp, w: w.parent / CHECKPOINT, "a superres training checkpoint; run the weights"),
    ],
    ids=["missing", "folder", "truncated", "scale", "checkpoint"],
)
def test_bad_model_files_get_one_line(monkeypatch, capsys, tmp_path, weights, photo, make, message):
    model = make(tmp_path, weights)
    code, stderr = run_main(
        monkeypatch, capsys, "upscale", photo, "-o", tmp_path / "o.png", "--model", model, "-s", 4
    )
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr


def test_unsupported_file_type(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelError, match=r"not a model file superres reads \(\.safetensors"):
        superres.load_model(tmp_path / "model.onnx")


class Payload:
    """Unpickling this calls os.system: what a malicious .pth does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "x": Payload(marker)}, path)
    with pytest.raises(ModelError, match=r"refused: unpickling it would call posix\.system"):
        superres.load_model(path)
    assert not marker.exists()


def test_torchscript_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.trace(torch.nn.Conv2d(3, 3, 3), torch.rand(1, 3, 8, 8)), path)
    with pytest.raises(ModelError, match="refused: a TorchScript archive, whose code runs"):
        superres.load_model(path)


@pytest.mark.skipif(SPANDREL, reason="spandrel is installed: the missing-extra line cannot show")
def test_other_projects_files_name_the_extra(tmp_path):
    path = tmp_path / "esrgan.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(MissingExtraError, match=r"pip install 'superres\[community\]'"):
        superres.load_model(path)


def test_import_superres_does_not_import_spandrel():
    check = "import sys, superres; print('spandrel' in sys.modules, 'torchvision' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert output.stdout.split() == ["False", "False"]


def test_models_file_describes_trained_weights(weights):
    result = invoke("models", "--file", weights)
    assert result.exit_code == 0, result.output
    assert "compact (superres)" in result.output and "x2" in result.output
    assert "training steps    8" in result.output


def test_benchmark_and_export_take_a_path(tmp_path, weights, photo):
    result = invoke("benchmark", "--datasets", photo.parent, "--models", weights, "--scales", 2)
    assert result.exit_code == 0, result.output
    assert str(weights) in result.output
    result = invoke("benchmark", "--datasets", photo.parent, "--models", weights)
    assert result.exit_code != 0 and "an x2 model, not x3" in str(result.exception)
    result = invoke("export", "--model", weights, "-o", tmp_path / "model.onnx")
    assert result.exit_code == 0, result.output
    assert "compact x2; matches PyTorch" in " ".join(result.output.split())  # as rich wraps it


def test_model_files_get_short_distinct_labels(tmp_path):
    paths = [tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors"]
    assert model_labels(paths) == ["a-model", "b-model"]
    assert model_labels([tmp_path / "x" / "srcnn.pth"], {"srcnn"}) == ["x-srcnn"]
    with pytest.raises(ModelError, match="the same model file is named twice"):
        model_labels([paths[0], paths[0]])


def test_report_names_a_file_by_its_label(weights):
    enlargers = method_enlargers(["srcnn", str(weights)], 2)
    assert list(enlargers) == ["bicubic", "srcnn", "model"]  # a folder name, not a path


def test_serve_offers_allow_listed_files_by_name_only(weights, photo):
    files, entries = served_files([weights])
    (name,) = files
    app = create_app(
        upscaler_factory=naming_files(files, get_upscaler), model_lister=lambda: entries
    )
    client = TestClient(app, base_url="http://localhost")
    assert [m["name"] for m in client.get("/api/models").json()] == [name]
    upload = {"image": ("photo.png", photo.read_bytes(), "image/png")}
    answer = client.post("/api/upscale", files=upload, data={"model": name, "scale": "2"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model"] == f"{name}-x2"
    refused = client.post("/api/upscale", files=upload, data={"model": str(weights)})
    assert refused.status_code == 404
