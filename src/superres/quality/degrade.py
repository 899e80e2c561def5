"""Make low-resolution inputs: shrink by a factor, optionally enlarge back, modcrop.

OpenCV does ``nearest``/``bilinear``/``bicubic`` (the tutorials' resize). MATLAB's
antialiased bicubic ``imresize`` is written here because no maintained Python
library reproduces it: OpenCV and Pillow use other kernels and boundary rules, and
the literature's low-resolution images (hence every published PSNR) come from it.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np

from superres.errors import SuperresError

Method = Literal["nearest", "bilinear", "bicubic", "matlab-bicubic"]
METHODS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "matlab-bicubic")
# The largest resize factor anywhere, shrinking (degrade) or enlarging (outscale): beyond it, a
# few megapixels become gigapixels, or a photo a few pixels.
MAX_FACTOR = 16.0
_OPENCV_FLAGS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
}


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5, as MATLAB's imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def _resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Dense (out_len, in_len) weights of MATLAB's imresize along one axis.

    Antialiasing widens the kernel by 1/scale when shrinking; out-of-range taps
    are mirrored back inside (MATLAB's symmetric boundary rule).
    """
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(distance * scale) if antialias else cubic_kernel(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    source = mirror[np.mod(indices.astype(np.int64) - 1, mirror.size)]
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), source.ravel()), weights.ravel())
    return matrix


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) if image.dtype != np.float64 else image


def _from_float(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip back to an integer dtype (as MATLAB does); floats pass through."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def imresize_matlab(
    image: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking).

    Give ``scale`` (output = ceil(input * scale), as MATLAB) or ``size`` as
    (height, width). Integer images are computed in float64 and rounded once.
    """
    height, width = image.shape[:2]
    if size is None:
        if scale is None or scale <= 0:
            raise SuperresError("imresize_matlab needs a positive scale or an output size")
        size = (math.ceil(height * scale), math.ceil(width * scale))
        scale_h = scale_w = scale
    else:
        scale_h, scale_w = size[0] / height, size[1] / width
    rows = _resize_matrix(height, size[0], scale_h)
    cols = _resize_matrix(width, size[1], scale_w)
    values = np.tensordot(rows, _to_float(image), axes=(1, 0))
    values = np.moveaxis(np.tensordot(cols, values, axes=(1, 1)), 0, 1)
    return _from_float(values, image.dtype)


def resize(image: np.ndarray, size: tuple[int, int], method: Method) -> np.ndarray:
    """Resize to ``size`` = (height, width) with one of :data:`METHODS`."""
    if method == "matlab-bicubic":
        return imresize_matlab(image, size=size)
    if method not in _OPENCV_FLAGS:
        raise SuperresError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    height, width = size
    resized = cv2.resize(image, (width, height), interpolation=_OPENCV_FLAGS[method])
    return resized.reshape(resized.shape[:2] + image.shape[2:])  # OpenCV drops 1-channel axes


def check_scale(scale: float) -> float:
    """Refuse scales that cannot shrink or enlarge anything."""
    if not math.isfinite(scale) or scale <= 1.0 or scale > MAX_FACTOR:
        raise SuperresError(f"scale must be above 1 and at most {MAX_FACTOR:g}, got {scale}")
    return scale


def shrunk_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Low-resolution size after shrinking by ``scale``: floor, as the tutorials' ``h // 2``."""
    return max(1, int(height / scale)), max(1, int(width / scale))


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so both sides are multiples of ``scale`` (MATLAB ``modcrop``)."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


def downscale(image: np.ndarray, scale: float, method: Method = "matlab-bicubic") -> np.ndarray:
    """Shrink by ``scale``; MATLAB's rule is used for matlab-bicubic so sizes match the papers."""
    check_scale(scale)
    if method == "matlab-bicubic":
        return imresize_matlab(image, scale=1.0 / scale)
    return resize(image, shrunk_size(*image.shape[:2], scale), method)


def degrade(
    image: np.ndarray,
    scale: float,
    method: Method = "matlab-bicubic",
    keep_size: bool = False,
) -> np.ndarray:
    """Shrink by ``scale``; with ``keep_size``, enlarge back to the input's size."""
    small = downscale(image, scale, method)
    return resize(small, image.shape[:2], method) if keep_size else small
