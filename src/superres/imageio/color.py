"""Colour conversions the two SR conventions need.

Studio-range BT.601 follows MATLAB's ``rgb2ycbcr``/``ycbcr2rgb`` (what published
PSNR/SSIM figures use); full-range YCrCb follows OpenCV's ``cvtColor`` (what the
classic SRCNN tutorial feeds its network).
"""

from __future__ import annotations

import cv2
import numpy as np

from superres.imageio.alpha import colour_of

# MATLAB rgb2ycbcr for R, G, B in [0, 1] -> Y, Cb, Cr in [0, 255].
RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
YCBCR_TO_RGB = np.linalg.inv(RGB_TO_YCBCR)


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    """Scale integer images to [0, 1]; floats are taken to be in [0, 1] already."""
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 65535.0
    return image.astype(np.float64)


def _restore_dtype(values_0_255: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return values on the 0..255 scale in ``dtype``, rounding as MATLAB does for integers."""
    if dtype == np.uint8:
        return np.clip(np.round(values_0_255), 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.clip(np.round(values_0_255 * 257.0), 0, 65535).astype(np.uint16)
    return (values_0_255 / 255.0).astype(dtype)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range YCbCr, as MATLAB's ``rgb2ycbcr``, keeping the input dtype.

    uint8 in gives uint8 out (rounded, as MATLAB); float in [0, 1] gives float in [0, 1].
    """
    ycbcr = _as_unit_float(rgb) @ RGB_TO_YCBCR.T + YCBCR_OFFSET
    return _restore_dtype(ycbcr, rgb.dtype)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, as MATLAB's ``ycbcr2rgb``."""
    rgb = (_as_unit_float(ycbcr) * 255.0 - YCBCR_OFFSET) @ YCBCR_TO_RGB.T
    return _restore_dtype(np.clip(rgb, 0.0, 1.0) * 255.0, ycbcr.dtype)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma only (BT.601 studio range), cheaper than a full conversion."""
    y = _as_unit_float(rgb) @ RGB_TO_YCBCR[0] + YCBCR_OFFSET[0]
    return _restore_dtype(y, rgb.dtype)


def luminance(image: np.ndarray) -> np.ndarray:
    """The Y channel the SR literature scores: grey images are taken as Y already."""
    colour = colour_of(image)
    return colour if colour.ndim == 2 else rgb_to_y(colour)


def rgb_to_ycrcb_opencv(rgb: np.ndarray) -> np.ndarray:
    """Full-range YCrCb (channel order Y, Cr, Cb) exactly as OpenCV computes it."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)


def ycrcb_opencv_to_rgb(ycrcb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycrcb_opencv`."""
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Colour view of any image: grey is repeated into three channels, alpha dropped."""
    colour = colour_of(image)
    return np.repeat(colour[..., None], 3, axis=2) if colour.ndim == 2 else colour
