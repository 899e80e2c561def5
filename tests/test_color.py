import numpy as np
import pytest

from superres.imageio.color import (
    rgb_to_y,
    rgb_to_ycbcr,
    rgb_to_ycrcb_opencv,
    ycbcr_to_rgb,
    ycrcb_opencv_to_rgb,
)


def test_ycbcr_matches_matlab_reference_values():
    # MATLAB: rgb2ycbcr(uint8([255 0 0])) = [81 90 240]; white [235 128 128]; black [16 128 128]
    pixels = np.array([[[255, 0, 0], [255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
    assert rgb_to_ycbcr(pixels).tolist() == [[[81, 90, 240], [235, 128, 128], [16, 128, 128]]]


def test_y_formula_on_floats():
    rgb = np.array([0.2, 0.5, 0.9])
    expected = (16 + 65.481 * 0.2 + 128.553 * 0.5 + 24.966 * 0.9) / 255
    assert rgb_to_y(rgb) == pytest.approx(expected)
    assert rgb_to_ycbcr(rgb)[0] == pytest.approx(expected)


def test_studio_range_round_trip_float_is_exact():
    rgb = np.random.default_rng(0).random((8, 8, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)


def test_studio_range_round_trip_uint8_within_one_level(astronaut):
    back = ycbcr_to_rgb(rgb_to_ycbcr(astronaut))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - astronaut).max() <= 2


def test_uint16_keeps_depth():
    rgb = np.full((2, 2, 3), 65535, dtype=np.uint16)
    ycbcr = rgb_to_ycbcr(rgb)
    assert ycbcr.dtype == np.uint16
    assert ycbcr[0, 0, 0] == round(235 * 257)


def test_opencv_ycrcb_is_full_range_and_round_trips(astronaut):
    ycrcb = rgb_to_ycrcb_opencv(astronaut)
    white = rgb_to_ycrcb_opencv(np.full((1, 1, 3), 255, np.uint8))
    assert white[0, 0].tolist() == [255, 128, 128]
    assert np.abs(ycrcb_opencv_to_rgb(ycrcb).astype(int) - astronaut).max() <= 3
