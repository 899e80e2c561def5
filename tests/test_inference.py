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


def _random_model(name: str, scale: int, std: float = 0.05):
    torch.manual_seed(0)
    model = create_model(name, scale)
    for p in model.network.parameters():
        torch.nn.init.normal_(p, std=std)
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


def _views(image: np.ndarray):
    """The eight flips and transposes of an HxWxC image, each with its inverse."""
    for transpose in (False, True):
        for k in range(4):  # rotations by 0, 90, 180, 270 degrees, and their mirror images

            def forward(x, k=k, transpose=transpose):
                x = np.rot90(x, k)
                return np.ascontiguousarray(x.transpose(1, 0, 2) if transpose else x)

            def inverse(y, k=k, transpose=transpose):
                return np.rot90(y.transpose(1, 0, 2) if transpose else y, -k)

            yield forward, inverse


@pytest.mark.parametrize("name", ["compact", "srcnn-955"])
def test_self_ensemble_averages_the_model_over_flips_and_transposes(astronaut, name):
    image = astronaut[:, :80]  # not square: a transpose changes the shape
    model = _random_model(name, 2, std=0.02)  # detail that mostly stays in [0, 255]
    plain = Upscaler(model, tile=512, **EXACT)
    views = np.array([inverse(plain.upscale(forward(image))) for forward, inverse in _views(image)])
    ensembled = Upscaler(model, tile=512, ensemble=8, **EXACT).upscale(image)
    assert ensembled.shape == (192, 160, 3)
    # The upscaler averages before clamping and rounding, by hand the clamped and rounded
    # results: within a level wherever no view was clamped.
    unclamped = ((views > 0) & (views < 255)).all(axis=0)
    assert unclamped.mean() > 0.5
    assert np.abs(ensembled - views.mean(axis=0))[unclamped].max() <= 1.0
    assert np.abs(ensembled.astype(int) - plain.upscale(image)).max() > 2  # not the plain run


def test_self_ensemble_tiled_equals_untiled(astronaut):
    model = _random_model("compact", 3)
    whole = Upscaler(model, tile=512, ensemble=4, **EXACT).upscale(astronaut[:, :80])
    tiled = Upscaler(model, tile=20, ensemble=4, **EXACT).upscale(astronaut[:, :80])
    assert np.abs(whole.astype(int) - tiled).max() <= 1


@pytest.mark.parametrize("size", [0, 3, 16])
def test_self_ensemble_sizes_other_than_1_2_4_8_are_refused(size):
    with pytest.raises(SuperresError, match="self-ensemble size must be 1, 2, 4, 8"):
        Upscaler(_random_model("compact", 2), ensemble=size)
