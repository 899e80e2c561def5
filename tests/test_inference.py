import numpy as np
import pytest
import torch

from superres.engine.inference import Upscaler, resample_to
from superres.engine.runtime import cpu_has_native_bf16
from superres.errors import SuperresError
from superres.models import create_model
from superres.quality.degrade import imresize_matlab

# Exact comparisons pin what `auto` would otherwise choose per machine.
EXACT = {"precision": "fp32", "backend": "pytorch"}


def _random_model(name: str, scale: int):
    torch.manual_seed(0)
    model = create_model(name, scale)
    for p in model.network.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.mark.parametrize(
    "name,scale",
    [
        ("compact", 3),
        ("srcnn-955", 2),
        ("srcnn-tutorial", 2),
        ("fsrcnn", 3),
        ("espcn", 4),
        ("autoencoder", 2),
    ],
)
def test_tiled_equals_untiled_on_an_image_of_many_tiles(astronaut, name, scale):
    model = _random_model(name, scale)
    whole = Upscaler(model, tile=512, **EXACT).upscale(astronaut)
    tiled = Upscaler(model, tile=20, **EXACT).upscale(astronaut)  # 25 tiles
    assert whole.shape == (96 * scale, 96 * scale, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1


def test_zero_detail_model_is_exactly_matlab_bicubic_on_grey(astronaut):
    model = create_model("compact", 2)
    for p in model.network.tail.parameters():
        torch.nn.init.zeros_(p)
    grey = astronaut[..., 0]
    out = Upscaler(model, tile=32, **EXACT).upscale(grey)
    expected = imresize_matlab(grey, scale=2)
    assert out.shape == expected.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_is_enlarged_separately(astronaut, channels):
    model = _random_model("compact", 2)
    alpha = np.zeros(astronaut.shape[:2], np.uint8)
    alpha[:, 48:] = 255
    colour = astronaut[..., :1] if channels == 2 else astronaut
    image = np.dstack([colour, alpha])
    out = Upscaler(model).upscale(image)
    assert out.shape == (192, 192, channels)
    expected_alpha = imresize_matlab(alpha, scale=2)
    assert np.abs(out[..., -1].astype(int) - expected_alpha).max() <= 1


def test_sixteen_bit_stays_sixteen_bit(astronaut):
    model = _random_model("compact", 2)
    wide = astronaut.astype(np.uint16) * 257
    out = Upscaler(model, **EXACT).upscale(wide)
    eight = Upscaler(model, **EXACT).upscale(astronaut)
    assert out.dtype == np.uint16
    assert np.abs(out / 257.0 - eight).max() <= 1.0


@pytest.mark.parametrize("outscale,size", [(1.5, (144, 144)), (5, (480, 480)), (2.5, (240, 240))])
def test_outscale_gives_exact_size(astronaut, outscale, size):
    model = _random_model("compact", 2)
    assert Upscaler(model).upscale(astronaut, outscale=outscale).shape[:2] == size


def test_bad_inputs_are_clear_errors(astronaut):
    model = _random_model("compact", 2)
    with pytest.raises(SuperresError, match="8- or 16-bit"):
        Upscaler(model).upscale(astronaut.astype(np.float32))
    with pytest.raises(SuperresError, match="tile size"):
        Upscaler(model, tile=4)
    with pytest.raises(SuperresError, match="empty"):
        resample_to(astronaut, (0, 5))


def test_onnxruntime_backend_matches_pytorch(astronaut):
    model = _random_model("compact", 2)
    torch_result = Upscaler(model, tile=40, **EXACT).upscale(astronaut)
    onnx_result = Upscaler(model, tile=40, backend="onnxruntime").upscale(astronaut)
    assert np.abs(torch_result.astype(int) - onnx_result).max() <= 1


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_stays_close_to_fp32(astronaut):
    model = _random_model("compact", 2)
    fp32 = Upscaler(model, **EXACT).upscale(astronaut).astype(float)
    bf16 = Upscaler(model, precision="bf16").upscale(astronaut).astype(float)
    assert np.abs(fp32 - bf16).mean() < 2.0


def test_unknown_backend_and_precision_are_refused():
    model = _random_model("compact", 2)
    with pytest.raises(SuperresError, match="unknown backend"):
        Upscaler(model, backend="tensorrt")
    with pytest.raises(SuperresError, match="unknown precision"):
        Upscaler(model, precision="fp8")
