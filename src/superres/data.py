"""Training data: random HR patches with their LR counterparts made on the fly.

Images are decoded to their Y channel once and kept in a pool whose size is
bounded (``pool_megapixels``); a larger dataset is streamed through the pool by
swapping one image at a time, so memory stays flat whatever the folder holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from superres.color import luminance
from superres.degrade import imresize_matlab
from superres.errors import SuperresError
from superres.io import ImageReadError, find_images, load_pixels
from superres.metrics import to_uint8


def training_files(folders: list[Path]) -> list[Path]:
    """Every image below ``folders``; an empty or missing folder is a user error."""
    files, missing = find_images(folders)
    if missing:
        raise SuperresError(f"training folder not found: {', '.join(map(str, missing))}")
    if not files:
        raise SuperresError(f"no images in {', '.join(map(str, folders))}")
    return [path for path, _ in files]


def load_y(path: Path) -> np.ndarray:
    """8-bit Y (BT.601 studio range) of an image, the channel the models learn."""
    return luminance(to_uint8(load_pixels(path)))


def _pixel_count(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return image.width * image.height
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read image header ({error})") from error


@dataclass
class Batch:
    low_res: (
        np.ndarray
    )  # (N, 1, p/s, p/s) float32 in [0, 1], quantised to 8 bits like a real LR file
    high_res: np.ndarray  # (N, 1, p, p) float32 in [0, 1]


class PatchSampler:
    """Random patches with flips and rotations; the LR side by MATLAB bicubic."""

    def __init__(
        self,
        files: list[Path],
        scale: int,
        patch_size: int,
        rng: np.random.Generator,
        pool_megapixels: float = 64.0,
    ) -> None:
        if patch_size % scale:
            raise SuperresError(f"patch size {patch_size} must be a multiple of the scale {scale}")
        self.files = files
        self.scale = scale
        self.patch_size = patch_size
        self.rng = rng
        self.pool_indices = self._initial_pool(pool_megapixels)
        self.pool = {i: self._load(i) for i in self.pool_indices}
        self.streaming = len(self.pool_indices) < len(files)

    def _initial_pool(self, pool_megapixels: float) -> list[int]:
        budget = pool_megapixels * 1e6
        chosen, used = [], 0
        for index in self.rng.permutation(len(self.files)).tolist():
            pixels = _pixel_count(self.files[index])
            if chosen and used + pixels > budget:
                continue
            chosen.append(index)
            used += pixels
        return chosen

    def _load(self, index: int) -> np.ndarray:
        image = load_y(self.files[index])
        if min(image.shape) < self.patch_size:
            image = np.pad(
                image, [(0, max(0, self.patch_size - n)) for n in image.shape], "reflect"
            )
        return image

    def restore_pool(self, indices: list[int]) -> None:
        """Reload a pool saved in a checkpoint, so a resumed run draws the same patches."""
        self.pool_indices = list(indices)
        self.pool = {i: self.pool[i] if i in self.pool else self._load(i) for i in indices}

    def _swap_one(self) -> None:
        outside = sorted(set(range(len(self.files))) - set(self.pool_indices))
        slot = int(self.rng.integers(len(self.pool_indices)))
        incoming = outside[int(self.rng.integers(len(outside)))]
        del self.pool[self.pool_indices[slot]]
        self.pool_indices[slot] = incoming
        self.pool[incoming] = self._load(incoming)

    def _patch(self) -> np.ndarray:
        image = self.pool[self.pool_indices[int(self.rng.integers(len(self.pool_indices)))]]
        top = int(self.rng.integers(image.shape[0] - self.patch_size + 1))
        left = int(self.rng.integers(image.shape[1] - self.patch_size + 1))
        patch = image[top : top + self.patch_size, left : left + self.patch_size]
        patch = np.rot90(patch, int(self.rng.integers(4)))
        return patch[:, ::-1] if self.rng.integers(2) else patch

    def batch(self, size: int) -> Batch:
        if self.streaming:
            self._swap_one()
        high = np.stack([self._patch() for _ in range(size)]).astype(np.float64)
        low = np.stack([imresize_matlab(p, scale=1.0 / self.scale) for p in high])
        low = np.clip(np.round(low), 0, 255)
        return Batch(
            low_res=(low[:, None] / 255.0).astype(np.float32),
            high_res=(high[:, None] / 255.0).astype(np.float32),
        )
