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


def test_bilinear_is_the_tutorials_resize_with_half_pixel_centres(astronaut):
    """The tutorial shrinks with OpenCV's bilinear, whose pixel centres sit at half-integers
    (x2 makes each pixel the mean of a 2x2 block, x3 picks each 3x3 block's centre) and which
    does not antialias; checked by that arithmetic, not against OpenCV itself."""
    h, w = astronaut.shape[:2]
    blocks = astronaut.reshape(h // 2, 2, w // 2, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(downscale(astronaut, 2, "bilinear"), np.floor(blocks + 0.5))
    np.testing.assert_array_equal(downscale(astronaut, 3, "bilinear"), astronaut[1::3, 1::3])


@pytest.mark.parametrize("scale", [1.0, 0.5, -2, float("nan"), 100])
def test_bad_scales_are_refused(astronaut, scale):
    with pytest.raises(SuperresError, match="scale"):
        degrade(astronaut, scale)


def test_unknown_method_is_refused(astronaut):
    with pytest.raises(SuperresError, match="unknown method"):
        degrade(astronaut, 2, "lanczos")  # type: ignore[arg-type]


# MATLAB's imresize (bicubic, antialiased when shrinking) on the inputs of bicubic_pytorch's
# MATLAB-checked test cases: the values are bicubic_pytorch 0.1.2.1's core.imresize output,
# rounded to 4 decimals; its repository (sanghyun-son/bicubic_pytorch) holds MATLAB's own
# results for these cases in test_answer/*.mat and checks them within 1e-3. None of this
# code computed them, and they need no data set.
_ARANGE_4 = np.arange(16.0).reshape(4, 4)
_ARANGE_8 = np.arange(64.0).reshape(8, 8)
_ARANGE_15 = np.arange(225.0).reshape(15, 15)
_TOPLEFT = np.zeros((4, 4))
_TOPLEFT[0, 0], _TOPLEFT[1, 0], _TOPLEFT[0, 1], _TOPLEFT[0, 3] = 100, 10, 1, 100
MATLAB_IMRESIZE = [
    (  # down_down_small_aa: to 3x3
        _ARANGE_4,
        {"size": (3, 3)},
        [
            [0.7506, 2.1004, 3.4503],
            [6.1501, 7.5, 8.8499],
            [11.5497, 12.8996, 14.2494],
        ],
    ),
    (  # down_down_x2_aa
        _ARANGE_8,
        {"scale": 1 / 2},
        [
            [4.043, 6.082, 8.1055, 10.1445],
            [20.3555, 22.3945, 24.418, 26.457],
            [36.543, 38.582, 40.6055, 42.6445],
            [52.8555, 54.8945, 56.918, 58.957],
        ],
    ),
    (  # down_down_x3_aa
        _ARANGE_15,
        {"scale": 1 / 3},
        [
            [14.4198, 17.5062, 20.5185, 23.5309, 26.6173],
            [60.7161, 63.8025, 66.8148, 69.8272, 72.9136],
            [105.9012, 108.9877, 112, 115.0124, 118.0988],
            [151.0864, 154.1729, 157.1852, 160.1976, 163.2839],
            [197.3827, 200.4691, 203.4815, 206.4938, 209.5802],
        ],
    ),
    (  # down_down_x4_aa
        _ARANGE_8,
        {"scale": 1 / 4},
        [[12.3838, 16.6318], [46.3682, 50.6162]],
    ),
    (  # up_up_topleft_noaa: enlarging, so no antialiasing; the mirrored border shows
        _TOPLEFT,
        {"size": (5, 5)},
        [
            [108.6852, 27.6971, -12.4466, 26.8842, 109.2025],
            [35.4714, 8.9708, -3.5896, 6.6374, 26.961],
            [-0.6503, -0.2122, 0.3945, -1.6079, -6.5313],
            [-0.7681, -0.1896, 0.0459, 0, 0],
            [0, 0, 0, 0, 0],
        ],
    ),
]


@pytest.mark.parametrize(("image", "resize", "matlab"), MATLAB_IMRESIZE)
def test_matlab_imresize_matches_matlabs_own_results(image, resize, matlab):
    np.testing.assert_allclose(imresize_matlab(image, **resize), matlab, atol=1e-3)
