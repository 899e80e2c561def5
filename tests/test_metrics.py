import math

import numpy as np
import pytest
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from superres.errors import SuperresError
from superres.imageio.color import rgb_to_y
from superres.quality.metrics import mse, psnr, score, shave, ssim_gaussian


@pytest.fixture(scope="module")
def noisy(astronaut):
    rng = np.random.default_rng(0)
    return np.clip(astronaut + rng.normal(0, 8, astronaut.shape), 0, 255).astype(np.uint8)


def test_psnr_and_mse_agree_with_scikit_image(astronaut, noisy):
    assert mse(astronaut, noisy) == pytest.approx(mean_squared_error(astronaut, noisy))
    assert psnr(astronaut, noisy) == pytest.approx(peak_signal_noise_ratio(astronaut, noisy))


def test_psnr_formula():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 16  # mse = 256 / 16 = 16
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16))


def test_gaussian_ssim_agrees_with_scikit_image_gaussian_options(astronaut, noisy):
    a, b = rgb_to_y(astronaut), rgb_to_y(noisy)
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim_gaussian(a, b) == pytest.approx(expected)


def test_gaussian_ssim_matches_direct_wang_formula():
    """Independent check: Wang et al.'s SSIM map with an 11x11 Gaussian, 'valid' region."""
    from scipy.signal import convolve2d

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (24, 24)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(x):
        return convolve2d(x, window, mode="valid")

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    assert ssim_gaussian(a, b) == pytest.approx(ssim_map.mean(), abs=1e-9)


def test_identical_images_score_inf_and_one(astronaut):
    for protocol in ("standard", "tutorial"):
        result = score(
            astronaut, astronaut.copy(), protocol, border=2 if protocol == "standard" else 0
        )
        assert math.isinf(result.psnr) and result.mse == 0 and result.ssim == pytest.approx(1.0)


def test_mismatched_shapes_are_a_clear_error(astronaut):
    with pytest.raises(SuperresError, match="differ in size"):
        score(astronaut, astronaut[:-1])
    with pytest.raises(SuperresError, match="differ in shape"):
        mse(astronaut, astronaut[..., 0])


def test_standard_protocol_is_y_with_border_shaved(astronaut, noisy):
    result = score(astronaut, noisy, "standard", border=3)
    a, b = shave(rgb_to_y(astronaut), 3), shave(rgb_to_y(noisy), 3)
    assert result.psnr == pytest.approx(psnr(a, b))
    assert result.mse == pytest.approx(mse(a, b))


def test_tutorial_mse_sums_channels(astronaut, noisy):
    result = score(astronaut, noisy, "tutorial")
    assert result.mse == pytest.approx(3 * mse(astronaut, noisy))
    assert result.psnr == pytest.approx(psnr(astronaut, noisy))
    assert result.ssim == pytest.approx(structural_similarity(astronaut, noisy, channel_axis=2))


def test_sixteen_bit_is_scored_on_its_eight_bit_equivalent(astronaut, noisy):
    wide = astronaut.astype(np.uint16) * 257
    assert score(wide, noisy).psnr == pytest.approx(score(astronaut, noisy).psnr)


def test_unknown_protocol(astronaut):
    with pytest.raises(SuperresError, match="unknown protocol"):
        score(astronaut, astronaut, "paper")  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "window"), [("standard", 11), ("tutorial", 7)])
def test_an_image_smaller_than_the_ssim_window_is_a_clear_error(protocol, window):
    rng = np.random.default_rng(0)
    fits = rng.integers(0, 256, (window, window + 3, 3), dtype=np.uint8)
    assert 0 < score(fits, fits[::-1], protocol).ssim < 1
    with pytest.raises(SuperresError, match=f"smaller than SSIM's {window}x{window} window"):
        score(fits[1:], fits[1:, ::-1], protocol)
