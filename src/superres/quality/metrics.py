"""PSNR, MSE and SSIM, under the two conventions people quote.

``standard`` is the SR literature's (and BasicSR's): Y of BT.601 rounded to 8 bits
as MATLAB does, a border of ``scale`` pixels shaved, SSIM of Wang et al. with an
11x11 Gaussian window. ``tutorial`` is the classic SRCNN tutorial's: all channels
of the 8-bit image, no shave, scikit-image SSIM defaults, and MSE as the squared
error summed over channels divided by H*W.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

from superres.errors import SuperresError
from superres.imageio.alpha import colour_of
from superres.imageio.color import luminance

Protocol = Literal["standard", "tutorial"]
PROTOCOLS: tuple[str, ...] = ("standard", "tutorial")
# Sides of the SSIM windows: Wang et al.'s 11x11 Gaussian, scikit-image's default 7x7.
_GAUSSIAN_WINDOW = 11
_TUTORIAL_WINDOW = 7


@dataclass(frozen=True)
class Scores:
    psnr: float
    mse: float
    ssim: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _check_same_shape(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise SuperresError(
            f"images differ in shape: reference {reference.shape} vs test {test.shape}"
        )


def mse(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error over every element."""
    _check_same_shape(reference, test)
    diff = reference.astype(np.float64) - test.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(mean_squared_error: float, data_range: float = 255.0) -> float:
    return (
        math.inf
        if mean_squared_error == 0
        else 10.0 * math.log10(data_range**2 / mean_squared_error)
    )


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    return psnr_from_mse(mse(reference, test), data_range)


def _check_window(image: np.ndarray, side: int) -> None:
    """SSIM is a mean over windows: an image smaller than one has none."""
    height, width = image.shape[:2]
    if min(height, width) < side:
        raise SuperresError(
            f"{width}x{height} pixels (after any shaved border) is smaller than SSIM's "
            f"{side}x{side} window: no SSIM for it"
        )


def ssim_gaussian(reference: np.ndarray, test: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of Wang et al. (11x11 Gaussian, sigma 1.5, K1 0.01, K2 0.03) on one channel.

    scikit-image computes exactly this with these options: its Gaussian truncates
    at 3.5 sigma (an 11-tap window) and the mean is taken over the 'valid' region.
    """
    _check_same_shape(reference, test)
    _check_window(reference, _GAUSSIAN_WINDOW)
    return float(
        structural_similarity(
            reference.astype(np.float64),
            test.astype(np.float64),
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
        )
    )


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Drop ``border`` pixels from every side (the literature ignores them)."""
    if border <= 0:
        return image
    if min(image.shape[:2]) <= 2 * border:
        raise SuperresError(f"image {image.shape[:2]} is too small to shave {border} pixels")
    return image[border:-border, border:-border]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit view of an image: both protocols are defined on 8-bit data."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.round(image / 257.0).astype(np.uint8)
    return np.clip(np.round(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _standard_scores(reference: np.ndarray, test: np.ndarray, border: int) -> Scores:
    ref_y = shave(luminance(reference), border).astype(np.float64)
    test_y = shave(luminance(test), border).astype(np.float64)
    error = mse(ref_y, test_y)
    return Scores(psnr=psnr_from_mse(error), mse=error, ssim=ssim_gaussian(ref_y, test_y))


def _tutorial_scores(reference: np.ndarray, test: np.ndarray) -> Scores:
    channels = 1 if reference.ndim == 2 else reference.shape[2]
    error = mse(reference, test)
    _check_window(reference, _TUTORIAL_WINDOW)
    ssim_value = structural_similarity(
        reference, test, channel_axis=2 if reference.ndim == 3 else None
    )
    return Scores(psnr=psnr_from_mse(error), mse=error * channels, ssim=float(ssim_value))


def score(
    reference: np.ndarray,
    test: np.ndarray,
    protocol: Protocol = "standard",
    border: int = 0,
) -> Scores:
    """PSNR, MSE and SSIM of ``test`` against ``reference`` under ``protocol``.

    Alpha channels are ignored; both images are brought to 8 bits first.
    """
    reference, test = colour_of(to_uint8(reference)), colour_of(to_uint8(test))
    if reference.shape[:2] != test.shape[:2]:
        raise SuperresError(
            f"images differ in size: reference {reference.shape[1]}x{reference.shape[0]} "
            f"vs test {test.shape[1]}x{test.shape[0]}"
        )
    if protocol == "standard":
        return _standard_scores(reference, test, border)
    if protocol == "tutorial":
        _check_same_shape(reference, test)
        return _tutorial_scores(reference, test)
    raise SuperresError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
