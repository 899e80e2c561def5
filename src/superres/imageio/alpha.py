"""One rule for where colour ends and alpha begins, for every module that handles pixels.

Arrays follow :func:`superres.imageio.files.read_image`'s layouts: HxW grey, HxWx1 grey,
HxWx2 grey+alpha, HxWx3 RGB, HxWx4 RGBA. Metrics, colour conversion, training data,
inference and figures work on the colour part and treat alpha separately (enlarged by
bicubic, or ignored when scoring), so they all agree on what alpha is.
"""

from __future__ import annotations

import numpy as np

from superres.errors import SuperresError

_COLOUR_CHANNELS = {1: 1, 2: 1, 3: 3, 4: 3}


def colour_channel_count(channels: int) -> int:
    """How many of ``channels`` (the last axis) are colour: 1 for grey(+alpha), else 3."""
    if channels not in _COLOUR_CHANNELS:
        raise SuperresError(f"images have 1 to 4 channels, not {channels}")
    return _COLOUR_CHANNELS[channels]


def has_alpha(image: np.ndarray) -> bool:
    return image.ndim == 3 and image.shape[2] in (2, 4)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour, alpha): colour is HxW grey or HxWx3 RGB, alpha HxW or None (views, no copy)."""
    if image.ndim == 2:
        return image, None
    if image.ndim != 3:
        raise SuperresError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    colour_count = colour_channel_count(image.shape[2])
    colour = image[..., 0] if colour_count == 1 else image[..., :3]
    return colour, image[..., -1] if has_alpha(image) else None


def colour_of(image: np.ndarray) -> np.ndarray:
    """The colour part alone (alpha dropped, grey as HxW)."""
    return split_alpha(image)[0]
