"""superres report and plot-training: files that decode, figures with every panel, numbers equal
to what ``superres compare`` computes, a crop on the detail, and a page that needs no network."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle
from skimage import data
from typer.testing import CliRunner

from superres.apps.cli import app
from superres.apps.report.figures import (
    comparison_figure,
    detail_box,
    score_label,
    training_curves_figure,
)
from superres.apps.report.html import build_report
from superres.apps.report.tables import format_number
from superres.engine.evaluation import (
    MethodOutput,
    bicubic_enlarger,
    load_references,
    low_resolution_pair,
)
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.imageio.files import load_pixels, write_image
from superres.models import create_model
from superres.quality.degrade import downscale, modcrop
from superres.quality.metrics import score

SCALE = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write_log(run: Path, rows: list[str]) -> Path:
    """A training run folder whose log.csv holds ``rows`` (epoch,step,loss,val_psnr,...)."""
    run.mkdir(parents=True)
    header = "epoch,step,loss,val_psnr,val_ssim,lr,seconds"
    (run / "log.csv").write_text("\n".join([header, *rows]) + "\n")
    return run


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Path:
    """Two 48x48 crops of the astronaut photo: a face and the textured suit."""
    folder = tmp_path_factory.mktemp("references")
    photo = data.astronaut()
    write_image(folder / "face.png", photo[60:108, 190:238])
    write_image(folder / "suit.png", photo[300:348, 120:168])
    return folder


@pytest.fixture(scope="module")
def enlargers():
    torch.manual_seed(0)
    tiny = Upscaler(create_model("compact", SCALE, width=8, blocks=1))
    return {"bicubic": bicubic_enlarger(SCALE), "tiny": tiny.upscale}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_log(
        tmp_path_factory.mktemp("runs") / "run-a",
        ["1,100,0.05,28.5,0.80,0.001,1.0", "2,200,0.04,29.5,0.83,0.0005,2.0"],
    )


@pytest.fixture(scope="module")
def report(references, enlargers, run_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return build_report(load_references(references), SCALE, enlargers, folder, runs=[run_dir])


def test_report_writes_every_file_and_each_decodes(report):
    folder = report.folder
    for name in ("face", "suit"):
        assert load_pixels(folder / "figures" / f"{name}.png").ndim == 3
        for method in ("bicubic", "tiny"):
            assert load_pixels(folder / "images" / method / f"{name}.png").shape == (48, 48, 3)
    for plot in ("quality-speed.png", "training-curves.png"):
        assert load_pixels(folder / plot).ndim == 3
    assert json.loads((folder / "report.json").read_text())["scale"] == SCALE
    assert (folder / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_comparison_figure_has_a_full_view_and_a_crop_per_panel(references, enlargers):
    high = modcrop(load_pixels(references / "face.png"), SCALE)
    low = downscale(high, SCALE)
    outputs = [
        MethodOutput(name, image, score(high, image, "standard", SCALE))
        for name, image in ((name, enlarge(low)) for name, enlarge in enlargers.items())
    ]
    box = detail_box(high)
    figure = comparison_figure("face", high, low, outputs, box)
    assert len(figure.axes) == 2 * (2 + len(outputs))
    full_views, crops = figure.axes[:4], figure.axes[4:]
    titles = [ax.get_title() for ax in full_views]
    assert titles[0].startswith("Original") and "nearest" in titles[1]
    for title, output in zip(titles[2:], outputs, strict=True):
        assert title == f"{output.method}\n{score_label(output.scores)}"
        assert f"PSNR {format_number(output.scores.psnr, 2)} dB" in title
    for ax in full_views:
        (rectangle,) = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert rectangle.get_width() == box.width and rectangle.get_height() == box.height
    np.testing.assert_array_equal(full_views[0].images[0].get_array(), high)  # RGB as given
    np.testing.assert_array_equal(crops[0].images[0].get_array(), box.crop(high))


def test_grey_images_are_drawn_in_grey(enlargers):
    grey = np.ascontiguousarray(data.camera()[200:248, 200:248])
    low = downscale(grey, SCALE)
    bicubic = MethodOutput("bicubic", enlargers["bicubic"](low), score(grey, grey))
    figure = comparison_figure("camera", grey, low, [bicubic], detail_box(grey))
    assert {ax.images[0].get_cmap().name for ax in figure.axes} == {"gray"}


def test_report_numbers_equal_score_and_the_compare_command(report, references, tmp_path):
    payload = json.loads((report.folder / "report.json").read_text())
    for method in ("bicubic", "tiny"):
        scores_json = tmp_path / f"{method}.json"
        images = report.folder / "images" / method
        result = invoke("compare", references, images, "--scale", SCALE, "--json", scores_json)
        assert result.exit_code == 0, result.output
        compared = {
            Path(row["image"]).name: row for row in json.loads(scores_json.read_text())["images"]
        }
        for entry in payload["images"]:
            ours = entry["scores"][method]
            output = report.folder / entry["outputs"][method]
            reference = modcrop(load_pixels(references / entry["image"]), SCALE)
            direct = score(reference, load_pixels(output), "standard", SCALE).as_dict()
            assert ours == direct
            assert ours == {k: compared[entry["image"]][k] for k in ("psnr", "mse", "ssim")}


def test_method_means_and_speeds_are_reported(report):
    payload = json.loads((report.folder / "report.json").read_text())
    assert [m["method"] for m in payload["methods"]] == ["bicubic", "tiny"]
    for method in payload["methods"]:
        psnrs = [image["scores"][method["method"]]["psnr"] for image in payload["images"]]
        assert method["psnr"] == pytest.approx(np.mean(psnrs))
        megapixels = 2 * 48 * 48 / 1e6
        assert method["seconds"] > 0
        assert method["megapixels_per_second"] == pytest.approx(megapixels / method["seconds"])


@pytest.mark.parametrize("top,left", [(60, 12), (8, 64)])
def test_crop_box_lies_on_the_most_detailed_region(top, left):
    image = np.full((96, 96, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    image[top : top + 24, left : left + 24] = noise
    box = detail_box(image)
    rows = min(box.top + box.height, top + 24) - max(box.top, top)
    cols = min(box.left + box.width, left + 24) - max(box.left, left)
    assert max(rows, 0) * max(cols, 0) >= 0.8 * box.height * box.width


def test_page_is_self_contained(report):
    page = report.page.read_text()
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    # Per image: its figure and the slider's two outputs; then the speed and training plots.
    assert len(sources) == 3 * len(report.images) + 2
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix) :]).startswith(PNG_SIGNATURE)
    assert page.count('class="slider') == len(report.images)
    tiny = next(m for m in report.methods if m.result.method == "tiny")
    assert f"<td>{format_number(tiny.result.psnr, 2)}</td>" in page


def test_report_command_with_the_tutorial_degradation(references, tmp_path):
    folder = tmp_path / "report"
    result = invoke(
        "report",
        references,
        "-s",
        SCALE,
        "--models",
        "bicubic",
        "--degrade",
        "bilinear",
        "-o",
        folder,
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((folder / "report.json").read_text())
    assert payload["degradation"] == "bilinear"
    high = modcrop(load_pixels(references / "face.png"), SCALE)
    upscaled = bicubic_enlarger(SCALE)(downscale(high, SCALE, "bilinear"))
    face = next(entry for entry in payload["images"] if entry["image"] == "face.png")
    assert face["scores"]["bicubic"] == score(high, upscaled, "standard", SCALE).as_dict()


def test_report_on_a_real_world_track_scores_the_tracks_own_input(references, tmp_path):
    """--degrade jpeg50: each method gets the track's JPEG input, made as the benchmark makes it."""
    folder = tmp_path / "report"
    args = ["report", references, "-s", SCALE, "--models", "bicubic", "--degrade", "jpeg50"]
    result = invoke(*args, "-o", folder)
    assert result.exit_code == 0, result.output
    payload = json.loads((folder / "report.json").read_text())
    assert payload["degradation"] == "jpeg50"
    high, low = low_resolution_pair(
        load_pixels(references / "face.png"), SCALE, "jpeg50", "face.png"
    )
    upscaled = bicubic_enlarger(SCALE)(low)
    face = next(entry for entry in payload["images"] if entry["image"] == "face.png")
    assert face["scores"]["bicubic"] == score(high, upscaled, "standard", SCALE).as_dict()
    clean = bicubic_enlarger(SCALE)(downscale(high, SCALE, "matlab-bicubic"))
    assert face["scores"]["bicubic"] != score(high, clean, "standard", SCALE).as_dict()
    assert "JPEG q50" in (folder / "index.html").read_text()


def test_plot_training_draws_every_run(tmp_path, run_dir):
    other = write_log(
        tmp_path / "run-b", ["1,100,0.07,,,0.001,1.0", "2,200,0.06,27.0,0.8,0.0005,2.0"]
    )
    target = tmp_path / "curves.png"
    result = invoke("plot-training", run_dir, other, "-o", target)
    assert result.exit_code == 0, result.output
    assert load_pixels(target).ndim == 3
    loss_ax, psnr_ax = training_curves_figure([run_dir, other]).axes
    for ax in (loss_ax, psnr_ax):
        assert [line.get_label() for line in ax.get_lines()] == ["run-a", "run-b"]
        assert [line.get_xdata().tolist() for line in ax.get_lines()] == [[100, 200]] * 2
    assert loss_ax.get_lines()[1].get_ydata().tolist() == [0.07, 0.06]
    assert np.isnan(psnr_ax.get_lines()[1].get_ydata()[0])


def test_plot_training_without_a_log_is_a_clear_error(tmp_path):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    result = invoke("plot-training", empty, "-o", tmp_path / "curves.png")
    assert result.exit_code != 0
    assert isinstance(result.exception, SuperresError)
    assert "log.csv" in str(result.exception) and str(empty) in str(result.exception)
    assert not (tmp_path / "curves.png").exists()


def test_demo_shows_the_clean_protocol_and_a_real_world_photo(tmp_path):
    """The README's main command: a clean x3 report and a noisy-JPEG x4 one with `real`."""
    result = invoke("demo", "-o", tmp_path, "--models", "default")
    assert result.exit_code == 0, result.output
    clean = json.loads((tmp_path / "report.json").read_text())
    photo = json.loads((tmp_path / "real-photo" / "report.json").read_text())
    assert clean["degradation"] == "standard" and photo["degradation"] == "noise10-jpeg70"
    assert [m["method"] for m in photo["methods"]] == ["bicubic", "default", "real"]
    assert (tmp_path / "real-photo" / "figures" / "astronaut.png").read_bytes()[:8] == PNG_SIGNATURE
