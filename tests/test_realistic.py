"""The real-world degradation: reproducible per seed, shaped and typed as promised, controllable."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from superres.apps.cli import app
from superres.errors import SuperresError
from superres.imageio.files import load_pixels, write_image
from superres.quality import realistic
from superres.quality.realistic import (
    PRESETS,
    STANDARD,
    TRACKS,
    degrade_realistic,
    jpeg,
    preset,
    random_blur_kernel,
    track,
)


def test_same_seed_same_bytes_other_seed_other_image(astronaut):
    first = degrade_realistic(astronaut, 4, seed=11)
    assert np.array_equal(first, degrade_realistic(astronaut, 4, seed=11))
    assert not np.array_equal(first, degrade_realistic(astronaut, 4, seed=12))
    assert first.shape == (24, 24, 3) and first.dtype == np.uint8


@pytest.mark.parametrize("shape", [(37, 50), (37, 50, 3), (37, 50, 2), (37, 50, 4), (1, 1, 3)])
def test_any_layout_keeps_its_channels_and_alpha(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = degrade_realistic(image, 2, seed=0)
    assert out.shape[:2] == (max(1, shape[0] // 2), max(1, shape[1] // 2))
    assert out.shape[2:] == shape[2:]


def test_alpha_is_shrunk_not_degraded():
    image = np.full((64, 64, 4), 128, np.uint8)
    image[..., 3] = 200
    out = degrade_realistic(image, 4, seed=5)
    assert np.all(out[..., 3] == 200)


def test_sixteen_bit_input_gives_eight_bit_photo():
    image = np.random.default_rng(1).integers(0, 65536, (40, 40, 3), dtype=np.uint16)
    assert degrade_realistic(image, 2, seed=1).dtype == np.uint8


def test_noise_grows_with_strength_and_no_noise_preset_has_none():
    flat = np.full((128, 128), 120, np.uint8)
    spread = {
        name: np.std(degrade_realistic(flat, 2, PRESETS[name], seed=3).astype(float))
        for name in ("no-noise", "light", "standard", "heavy")
    }
    assert spread["no-noise"] < 0.5  # blur and resize of a flat image stay flat
    assert spread["light"] < spread["standard"] < spread["heavy"]


@pytest.mark.parametrize("name,single_share", [("photo", 0.5), ("snapshot", 0.7), ("shared", 1.0)])
def test_photo_presets_reach_low_jpeg_quality_and_single_stage_photos(
    monkeypatch, astronaut, name, single_share
):
    """The photo presets cover JPEG q30-95 (light stops at 62) and send their share of draws
    through one shrink straight to the target size."""
    assert PRESETS["light"].first.jpeg_quality[0] > 50
    assert PRESETS[name].first.jpeg_quality == (30, 95)
    targets: list[tuple[int, int]] = []
    real_resize = realistic._resize

    def spy(image, size, mode):
        targets.append(tuple(size))
        return real_resize(image, size, mode)

    monkeypatch.setattr(realistic, "_resize", spy)
    single = 0
    draws = 60
    for seed in range(draws):
        targets.clear()
        out = degrade_realistic(astronaut[:64, :64], 4, PRESETS[name], seed=seed)
        assert out.shape == (16, 16, 3)
        single += len(targets) == 1 and targets[0] == (16, 16)
    assert abs(single / draws - single_share) < 0.2
    flat = np.full((64, 64), 120, np.uint8)
    assert np.std(degrade_realistic(flat, 4, PRESETS[f"{name}-no-noise"], seed=2)) < 0.5


def test_snapshot_preset_leaves_some_single_round_photos_without_noise():
    """Noise in 60% of first rounds: of 70% single-round draws, about 28% of all stay clean
    (a flat image blurred, shrunk and JPEG-compressed stays flat)."""
    flat = np.full((64, 64), 120, np.uint8)
    clean = sum(
        np.std(degrade_realistic(flat, 4, PRESETS["snapshot"], seed=seed)) < 0.1
        for seed in range(100)
    )
    assert 15 <= clean <= 42


def test_shared_preset_blurs_about_half_of_its_photos(monkeypatch, astronaut):
    blurred = []
    real_filter = realistic._filter

    def spy(image, kernel):
        blurred.append(True)
        return real_filter(image, kernel)

    monkeypatch.setattr(realistic, "_filter", spy)
    draws = 60
    share = 0
    for seed in range(draws):
        blurred.clear()
        degrade_realistic(astronaut[:64, :64], 4, PRESETS["shared"], seed=seed)
        share += bool(blurred)
    assert abs(share / draws - 0.5) < 0.2


def test_strength_bounds_and_unknown_names_are_user_errors():
    with pytest.raises(SuperresError):
        STANDARD.scaled(-1)
    with pytest.raises(SuperresError, match="preset"):
        preset("extreme")
    with pytest.raises(SuperresError, match="track"):
        track("nope")
    with pytest.raises(SuperresError, match="integer scale"):
        degrade_realistic(np.zeros((8, 8), np.uint8), 1.5)


def test_blur_kernels_are_normalised_and_sized_as_configured():
    rng = np.random.default_rng(0)
    for _ in range(50):
        kernel = random_blur_kernel(STANDARD.first.blur, rng)
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] in range(7, 22, 2)
        assert abs(kernel.sum() - 1.0) < 1e-6


def test_jpeg_is_a_real_lossy_round_trip(astronaut):
    pixels = astronaut.astype(np.float32) / 255.0
    low, high = jpeg(pixels, 20), jpeg(pixels, 95)
    assert np.abs(low - pixels).mean() > np.abs(high - pixels).mean() > 0


def test_tracks_are_fixed_per_image_name_and_vary_between_names(astronaut):
    noisy = TRACKS["noise10-jpeg70"]
    a = noisy.apply(astronaut, 2, key="a.png")
    assert np.array_equal(a, noisy.apply(astronaut, 2, key="a.png"))
    assert not np.array_equal(a, noisy.apply(astronaut, 2, key="b.png"))
    assert TRACKS["clean"].apply(astronaut, 2).shape == (48, 48, 3)


def test_cli_degrade_realistic_reproduces_by_seed_and_converts_format(tmp_path, astronaut):
    write_image(tmp_path / "photo.png", astronaut)
    runner = CliRunner()

    def degrade(folder, *extra):
        args = ["degrade", tmp_path / "photo.png", "-o", tmp_path / folder, "-s", "4"]
        result = runner.invoke(app, [str(a) for a in [*args, "--method", "realistic", *extra]])
        assert result.exit_code == 0, result.output

    degrade("a", "--seed", "9")
    degrade("b", "--seed", "9")
    degrade("c", "--seed", "10", "--format", "jpg")
    assert (tmp_path / "a/photo.png").read_bytes() == (tmp_path / "b/photo.png").read_bytes()
    assert load_pixels(tmp_path / "c/photo.jpg").shape == (24, 24, 3)
    result = runner.invoke(
        app, ["degrade", str(tmp_path / "photo.png"), "-o", str(tmp_path), "--method", "realistic"]
    )
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    result = runner.invoke(
        app,
        [
            "degrade",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "d"),
            "-s",
            "2.5",
            "--method",
            "realistic",
        ],
    )
    assert "integer --scale" in str(result.exception)
