"""The command line as a user types it: results, files written, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from superres.apps.cli import app
from superres.imageio.files import load_pixels, write_image

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_tutorial_bird_figures_through_the_cli(tmp_path, dataset):
    """Set5 bird, bilinear x2 down and up, tutorial protocol: the tutorial's published numbers."""
    bird = dataset("Set5") / "bird.png"
    degraded = tmp_path / "degraded"
    result = invoke(
        "degrade", bird, "-o", degraded, "--scale", 2, "--method", "bilinear", "--keep-size"
    )
    assert result.exit_code == 0, result.output
    report = tmp_path / "scores.json"
    result = invoke(
        "compare", bird, degraded / "bird.png", "--protocol", "tutorial", "--json", report
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(report.read_text())["images"][0]
    assert round(scores["psnr"], 4) == 32.8966
    assert round(scores["mse"], 4) == 100.1238
    assert round(scores["ssim"], 5) == 0.95336


PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299),
    ("Set5", 3): (30.39, 0.8682),
    ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688),
    ("Set14", 3): (27.55, 0.7742),
    ("Set14", 4): (26.00, 0.7027),
}


@pytest.mark.parametrize("name,scale", sorted(PUBLISHED_BICUBIC))
def test_bicubic_baseline_matches_published_figures(tmp_path, dataset, name, scale):
    """degrade (matlab-bicubic, modcrop) then compare (standard) reproduces the literature."""
    folder = dataset(name)
    low, up = tmp_path / "lr", tmp_path / "up"
    assert invoke("degrade", folder, "-o", low, "-s", scale, "--modcrop").exit_code == 0
    result = invoke("degrade", folder, "-o", up, "-s", scale, "--modcrop", "--keep-size")
    assert result.exit_code == 0, result.output
    report = tmp_path / "scores.json"
    result = invoke("compare", folder, up, "--scale", scale, "--json", report)
    assert result.exit_code == 0, result.output
    mean = json.loads(report.read_text())["mean"]
    psnr, ssim = PUBLISHED_BICUBIC[(name, scale)]
    assert abs(mean["psnr"] - psnr) <= 0.02
    assert abs(mean["ssim"] - ssim) <= 0.001


@pytest.fixture
def messy_folder(tmp_path, astronaut):
    folder = tmp_path / "in"
    write_image(folder / "good.png", astronaut)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a JPEG")
    whole = tmp_path / "whole.png"
    write_image(whole, astronaut)
    data = whole.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    return folder


def _one_line_per_bad_file(output: str) -> None:
    for name in ("empty.png", "notes.jpg", "truncated.png"):
        lines = [line for line in output.splitlines() if name in line]
        assert len(lines) == 1, output
    assert "Traceback" not in output


def test_degrade_processes_good_files_and_reports_bad_ones(tmp_path, messy_folder):
    out = tmp_path / "out"
    result = invoke("degrade", messy_folder, "-o", out, "-s", 2)
    assert result.exit_code == 1
    _one_line_per_bad_file(result.output)
    assert load_pixels(out / "good.png").shape == (48, 48, 3)


def test_compare_processes_good_files_and_reports_bad_ones(tmp_path, messy_folder, astronaut):
    result = invoke("compare", messy_folder / "good.png", messy_folder)
    assert result.exit_code == 1
    _one_line_per_bad_file(result.output)
    assert "inf" in result.output  # good.png against itself


def test_compare_writes_csv_rows_and_json_means(tmp_path, astronaut):
    ref, test = tmp_path / "ref", tmp_path / "test"
    noisy = np.clip(astronaut.astype(int) + 5, 0, 255).astype(np.uint8)
    for name in ("a.png", "b.png"):
        write_image(ref / name, astronaut)
        write_image(test / name, noisy)
    csv_path, json_path = tmp_path / "s.csv", tmp_path / "s.json"
    result = invoke("compare", ref, test, "--csv", csv_path, "--json", json_path)
    assert result.exit_code == 0, result.output
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "image,psnr,mse,ssim" and len(lines) == 3
    payload = json.loads(json_path.read_text())
    assert payload["mean"]["psnr"] == pytest.approx(payload["images"][0]["psnr"])


def test_degrade_never_overwrites_its_input(tmp_path, astronaut):
    write_image(tmp_path / "photo.png", astronaut)
    result = invoke("degrade", tmp_path, "-o", tmp_path, "-s", 2)
    assert result.exit_code == 1
    assert "refusing to overwrite an input" in result.output
    np.testing.assert_array_equal(load_pixels(tmp_path / "photo.png"), astronaut)


@pytest.mark.parametrize(
    "args,message",
    [
        (["degrade", "missing.png", "-o", "out"], "no such file"),
        (["degrade", "{img}", "-o", "out", "-s", "0.5"], "scale must be above 1"),
        (["degrade", "{img}", "-o", "out", "--method", "lanczos"], "'lanczos' is not one of"),
        (["compare", "{img}", "{img}", "--protocol", "paper"], "'paper' is not one of"),
        (["upscale", "{img}", "-o", "out", "--model", "nope"], "unknown model"),
        (["upscale", "{img}", "-o", "out", "--model", "srcnn", "--scale", "7"], "x7"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(tmp_path, astronaut, monkeypatch, args, message):
    import subprocess
    import sys

    write_image(tmp_path / "img.png", astronaut)
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{img}", str(tmp_path / "img.png")) for a in args]
    completed = subprocess.run(
        [sys.executable, "-m", "superres", *argv], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode != 0
    assert message in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and len(lines) <= 2, completed.stderr  # + a summary
    assert "Traceback" not in completed.stderr and "Usage:" not in completed.stderr


def test_degrade_names_each_file_it_cannot_take_and_does_the_rest(tmp_path, astronaut):
    """An animation in a folder was passed over in silence: now it is one line."""
    from PIL import Image

    folder = tmp_path / "in"
    write_image(folder / "photo.png", astronaut)
    frames = [Image.fromarray(astronaut[:8, :8]), Image.fromarray(astronaut[8:16, :8])]
    frames[0].save(folder / "moving.gif", save_all=True, append_images=frames[1:])
    (folder / "gone.png").symlink_to("nowhere.png")
    result = invoke("degrade", folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{folder / 'moving.gif'}: an animation or a video: only upscale reads it" in (
        result.output
    )
    assert f"{folder / 'gone.png'}: a broken symbolic link" in result.output
    assert "1 done, 2 failed" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo.png"]


def test_every_option_says_what_it_is_and_help_has_no_placeholder_noise():
    import typer

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts[0]} has no description"
        options = invoke(name, "--help").output.split("Options:", 1)[1]
        for noise in ("<str>", "<bool>", "list["):
            assert noise not in options, f"`superres {name} --help` shows {noise}"
    assert "--format <png|jpg|jpeg|webp|" in invoke("degrade", "--help").output
    refused = invoke("degrade", "photo.png", "-o", "out", "--format", "pgn")
    assert refused.exit_code != 0 and "'pgn' is not one of" in refused.output


def test_benchmark_passes_over_scales_a_model_is_not_shipped_at(tmp_path, astronaut):
    """The autoencoder is shipped at x2 only: asked for x2,x3 it scores x2 and says it skipped
    x3; asked for x3 alone it is one clear error. A list option may be repeated as well as
    comma-separated (a repeat adds, it does not replace)."""
    write_image(tmp_path / "set" / "a.png", astronaut[:48, :48])
    rows = tmp_path / "rows.json"
    result = invoke(
        "benchmark",
        "--datasets",
        tmp_path / "set",
        "--models",
        "bicubic",
        "--models",
        "autoencoder",
        "--scales",
        "2,3",
        "--json",
        rows,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "skip autoencoder x3 (not shipped at x3)" in result.output
    cells = {(row["method"], row["scale"]) for row in json.loads(rows.read_text())}
    assert cells == {("bicubic", 2), ("bicubic", 3), ("autoencoder", 2)}
    result = invoke(
        "benchmark", "--datasets", tmp_path / "set", "--models", "autoencoder", "--scales", 3
    )
    assert result.exit_code != 0 and "shipped: x2" in str(result.exception)


def test_benchmark_scores_a_self_ensemble(tmp_path, astronaut):
    """`--ensemble N` runs every model as a self-ensemble, labelled so, scoring differently."""
    write_image(tmp_path / "set" / "a.png", astronaut[:48, :48])

    def scores(*extra: str) -> dict[str, float]:
        rows = tmp_path / "rows.json"
        result = invoke(
            "benchmark", "--datasets", tmp_path / "set", "--models", "bicubic,default",
            "--scales", 2, "--device", "cpu", "--json", rows, *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return {row["method"]: row["psnr"] for row in json.loads(rows.read_text())}

    plain, ensembled = scores(), scores("--ensemble", "4")
    assert set(ensembled) == {"bicubic", "compact (self-ensemble x4)"}
    assert ensembled["bicubic"] == plain["bicubic"]
    assert abs(ensembled["compact (self-ensemble x4)"] - plain["compact"]) > 1e-4
    result = invoke("benchmark", "--datasets", tmp_path / "set", "--ensemble", "5")
    assert result.exit_code != 0 and "self-ensemble size must be" in str(result.exception)


def test_benchmark_scores_a_denoise_strength(tmp_path, astronaut):
    """`--denoise` runs real at that strength (labelled so) and bicubic as it is: strength 1 is
    the model as shipped, 0 its keep-texture end, which scores differently; a list with no
    such model is one clear error."""
    write_image(tmp_path / "set" / "a.png", astronaut[:48, :48])

    def scores(*extra: str) -> dict[str, float]:
        rows = tmp_path / "rows.json"
        result = invoke(
            "benchmark", "--datasets", tmp_path / "set", "--models", "bicubic,real",
            "--scales", 2, "--track", "jpeg50", "--device", "cpu", "--json", rows, *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return {row["method"]: row["psnr"] for row in json.loads(rows.read_text())}

    plain, full, keep = scores(), scores("--denoise", "1"), scores("--denoise", "0")
    assert set(full) == {"bicubic", "real (denoise 1)"}
    assert full["real (denoise 1)"] == pytest.approx(plain["real"], abs=1e-9)
    assert keep["bicubic"] == plain["bicubic"]
    assert abs(keep["real (denoise 0)"] - plain["real"]) > 0.01
    result = invoke(
        "benchmark", "--datasets", tmp_path / "set", "--models", "bicubic", "--scales", 2,
        "--denoise", "0.5",
    )  # fmt: skip
    assert result.exit_code != 0 and "has that control" in str(result.exception)
