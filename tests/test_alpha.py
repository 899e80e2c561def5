"""Alpha through every module that reads pixels: LA, RGBA, P with transparency, 16-bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from superres.apps.cli import app
from superres.apps.report.figures import comparison_figure, detail_box
from superres.engine.evaluation import MethodOutput
from superres.engine.inference import Upscaler
from superres.imageio.alpha import colour_channel_count, split_alpha
from superres.imageio.color import as_rgb, luminance
from superres.imageio.files import load_pixels, write_image
from superres.models import create_model
from superres.quality.degrade import imresize_matlab
from superres.quality.metrics import score
from superres.training.data import load_training_image


def _layouts(astronaut: np.ndarray, folder) -> dict[str, np.ndarray]:
    """Each alpha layout, written to disk and read back as a user's file would be."""
    rgb = astronaut[:48, :40]
    grey = rgb.mean(axis=2).astype(np.uint8)
    alpha = np.linspace(0, 255, 40, dtype=np.uint8)[None, :].repeat(48, axis=0)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(folder / "la.png")
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "rgba.png")
    palette = Image.fromarray(rgb).quantize(16)
    palette.info["transparency"] = 0
    palette.save(folder / "p.png", transparency=0)
    write_image(folder / "rgba16.png", np.dstack([rgb, alpha]).astype(np.uint16) * 257)
    return {name: load_pixels(folder / f"{name}.png") for name in ("la", "rgba", "p", "rgba16")}


@pytest.fixture
def layouts(astronaut, tmp_path):
    return _layouts(astronaut, tmp_path)


def test_split_alpha_agrees_with_the_layouts(layouts):
    assert [layouts[k].shape[2] for k in ("la", "rgba", "p", "rgba16")] == [2, 4, 4, 4]
    for image in layouts.values():
        colour, alpha = split_alpha(image)
        assert alpha is not None and alpha.shape == image.shape[:2]
        assert colour.ndim == (2 if image.shape[2] == 2 else 3)
    assert [colour_channel_count(c) for c in (1, 2, 3, 4)] == [1, 1, 3, 3]


def test_metrics_colour_and_training_data_ignore_alpha(layouts):
    for image in layouts.values():
        colour, _ = split_alpha(image)
        assert score(image, image).psnr == float("inf") or score(image, image).mse == 0
        other = image.copy()
        other[..., -1] = 0  # alpha differs, colour the same: a perfect score
        assert score(image, other).mse == 0
        assert luminance(image).shape == image.shape[:2]
        assert as_rgb(image).shape == (*image.shape[:2], 3)
        for channels in (1, 3):
            assert load_training_image_from(image, channels).ndim == (2 if channels == 1 else 3)


def load_training_image_from(image: np.ndarray, channels: int) -> np.ndarray:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        write_image(path, image)
        return load_training_image(path, channels)


@pytest.mark.parametrize("model", ["compact", "real"])
def test_inference_enlarges_alpha_by_bicubic_beside_the_model(layouts, model):
    upscaler = Upscaler(create_model(model, 2, width=8, blocks=1), tile=None)
    for image in layouts.values():
        out = upscaler.upscale(image)
        assert out.shape == (image.shape[0] * 2, image.shape[1] * 2, image.shape[2])
        assert out.dtype == image.dtype
        expected = imresize_matlab(image[..., -1].astype(np.float64), scale=2)
        peak = np.iinfo(image.dtype).max
        np.testing.assert_allclose(out[..., -1], np.clip(np.round(expected), 0, peak), atol=1)


def test_compare_and_figures_take_grey_alpha(layouts, tmp_path):
    write_image(tmp_path / "ref.png", layouts["la"])
    write_image(tmp_path / "test.png", layouts["la"])
    result = CliRunner().invoke(
        app, ["compare", str(tmp_path / "ref.png"), str(tmp_path / "test.png")]
    )
    assert result.exit_code == 0, result.output
    image = layouts["la"]
    outputs = [MethodOutput("same", image, score(image, image))]
    comparison_figure("LA", image, image[::2, ::2], outputs, detail_box(image))
