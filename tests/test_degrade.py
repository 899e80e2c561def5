import numpy as np
import pytest

from superres.errors import SuperresError
from superres.quality.degrade import degrade, downscale, imresize_matlab, modcrop, resize


def test_modcrop_trims_bottom_right():
    image = np.arange(7 * 10).reshape(7, 10)
    cropped = modcrop(image, 3)
    assert cropped.shape == (6, 9)
    np.testing.assert_array_equal(cropped, image[:6, :9])


def test_matlab_imresize_is_flip_equivariant_and_averages_when_shrinking():
    image = np.random.default_rng(0).random((12, 18))
    small = imresize_matlab(image, 1 / 3)
    np.testing.assert_allclose(imresize_matlab(image[::-1, ::-1], 1 / 3), small[::-1, ::-1])
    # The antialiasing kernel averages: far smoother than picking every third pixel.
    assert small.std() < image[1::3, 1::3].std() / 1.5


def test_matlab_imresize_preserves_constant_and_dtype():
    image = np.full((9, 12, 3), 77, dtype=np.uint8)
    small = imresize_matlab(image, 1 / 3)
    assert small.shape == (3, 4, 3) and small.dtype == np.uint8
    assert (small == 77).all()
    assert imresize_matlab(small, 3).shape == (9, 12, 3)


def test_matlab_upscale_interpolates_linear_ramp_in_interior():
    ramp = np.tile(np.arange(10, dtype=np.float64), (10, 1))
    big = imresize_matlab(ramp, 2)
    # Cubic convolution reproduces linear functions away from the mirrored border.
    centres = (np.arange(20) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(big[5, 4:16], centres[4:16], atol=1e-12)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "matlab-bicubic"])
def test_degrade_keep_size_returns_input_shape(astronaut, method):
    out = degrade(astronaut, 3, method, keep_size=True)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert not np.array_equal(out, astronaut)


def test_fractional_scale_and_grey():
    grey = np.random.default_rng(1).integers(0, 256, (30, 45), dtype=np.uint8)
    assert downscale(grey, 1.5, "bilinear").shape == (20, 30)
    assert downscale(grey, 1.5, "matlab-bicubic").shape == (20, 30)
    assert resize(grey, (7, 9), "nearest").shape == (7, 9)


def test_opencv_bilinear_is_the_tutorials_resize(astronaut):
    import cv2

    h, w = astronaut.shape[:2]
    small = cv2.resize(astronaut, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(downscale(astronaut, 2, "bilinear"), small)


@pytest.mark.parametrize("scale", [1.0, 0.5, -2, float("nan"), 100])
def test_bad_scales_are_refused(astronaut, scale):
    with pytest.raises(SuperresError, match="scale"):
        degrade(astronaut, scale)


def test_unknown_method_is_refused(astronaut):
    with pytest.raises(SuperresError, match="unknown method"):
        degrade(astronaut, 2, "lanczos")  # type: ignore[arg-type]
