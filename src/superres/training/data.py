"""Training data: random HR patches with their LR counterparts made on the fly.

Images are decoded once (to their Y channel, or to RGB for colour models such as
the autoencoder) and kept in a pool whose size is
bounded (``pool_megapixels``); a larger dataset is streamed through the pool by
swapping one image at a time, so memory stays flat whatever the folder holds.
With ``rescales`` each image is also kept shrunk by those factors (VDSR's and IDN's "291 images
with scale augmentation": 0.6-0.9 make more, and coarser, textures from the same photos).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superres.errors import SuperresError
from superres.imageio.color import as_rgb, luminance
from superres.imageio.files import find_images, image_size, load_pixels, why_missing
from superres.quality.degrade import imresize_matlab
from superres.quality.metrics import to_uint8
from superres.quality.realistic import RealisticConfig, Track, degrade_realistic


def training_files(folders: list[Path]) -> list[Path]:
    """Every image below ``folders``; an empty or missing folder is a user error."""
    files, missing = find_images(folders)
    if missing:
        raise SuperresError("; ".join(f"{path}: {why_missing(path)}" for path in missing))
    if not files:
        raise SuperresError(f"no images in {', '.join(map(str, folders))}")
    return [path for path, _ in files]


def load_training_image(path: Path, channels: int) -> np.ndarray:
    """8-bit Y (BT.601 studio range) for luminance models, 8-bit RGB (H, W, 3) for colour ones."""
    pixels = to_uint8(load_pixels(path))
    return luminance(pixels) if channels == 1 else as_rgb(pixels)


def _pixel_count(path: Path) -> int:
    width, height = image_size(path)
    return width * height


@dataclass
class Batch:
    low_res: np.ndarray  # (N, C, p/s, p/s) float32 in [0, 1], quantised to 8 bits like a file
    high_res: np.ndarray  # (N, C, p, p) float32 in [0, 1]


@dataclass(frozen=True)
class Crop:
    """Where one patch comes from: a pool image (and which of its rescaled versions), its
    top-left corner, rotation and flip."""

    image: int
    top: int
    left: int
    turns: int
    flip: bool
    version: int = 0


class PatchSampler:
    """Random patches with flips and rotations; the LR side by MATLAB bicubic, or by the
    real-world model when ``degradation`` is given (patch ``k`` of step ``t`` seeded by
    ``(seed, t, k)``, so a resumed run degrades exactly as an uninterrupted one), or by one
    fixed track (a specialist for a known degradation, as the literature's BD and DN models;
    its noise seeded the same way).

    A batch is the same whatever the number of training processes: every process draws the
    crops of the whole (global) batch from the shared stream, cheap integers, then cuts and
    degrades only its ``share``. Shares are disjoint, and their union is the one-process batch.
    """

    def __init__(
        self,
        files: list[Path],
        scale: int,
        patch_size: int,
        rng: np.random.Generator,
        pool_megapixels: float = 64.0,
        channels: int = 1,
        degradation: RealisticConfig | Track | None = None,
        seed: int = 0,
        rescales: tuple[float, ...] = (1.0,),
        grey: float = 0.0,
    ) -> None:
        """``grey``: the share of RGB patches made black-and-white (BT.601 luma, as Pillow's
        ``convert("L")``) and degraded as one plane, as a grey JPEG file is: old photos and
        scans are common inputs, and colour training photos alone never show a network an
        image without chroma."""
        if patch_size % scale:
            raise SuperresError(f"patch size {patch_size} must be a multiple of the scale {scale}")
        if not rescales or not all(0.1 <= factor <= 1.0 for factor in rescales):
            raise SuperresError(f"rescale factors must be in [0.1, 1], got {list(rescales)}")
        if not 0.0 <= grey <= 1.0 or (grey and channels != 3):
            raise SuperresError(f"the grey share must be in [0, 1], for RGB models; got {grey}")
        self.rescales = tuple(rescales)
        self.grey = grey
        self.files = files
        self.scale = scale
        self.patch_size = patch_size
        self.channels = channels
        self.rng = rng
        self.degradation = degradation
        self.seed = seed
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

    def _load(self, index: int) -> list[np.ndarray]:
        """The image at each rescale factor, padded to at least a patch."""
        image = load_training_image(self.files[index], self.channels)
        return [self._padded(_rescaled(image, factor)) for factor in self.rescales]

    def _padded(self, image: np.ndarray) -> np.ndarray:
        if min(image.shape[:2]) < self.patch_size:
            short = [(0, max(0, self.patch_size - n)) for n in image.shape[:2]]
            image = np.pad(image, short + [(0, 0)] * (image.ndim - 2), "reflect")
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

    def _draw(self) -> Crop:
        index = self.pool_indices[int(self.rng.integers(len(self.pool_indices)))]
        # Drawn only with several versions, so runs without rescaling keep their stream.
        version = int(self.rng.integers(len(self.rescales))) if len(self.rescales) > 1 else 0
        height, width = self.pool[index][version].shape[:2]
        top = int(self.rng.integers(height - self.patch_size + 1))
        left = int(self.rng.integers(width - self.patch_size + 1))
        turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        return Crop(index, top, left, turns, flip, version)

    def _cut(self, crop: Crop) -> np.ndarray:
        image = self.pool[crop.image][crop.version]
        patch = image[
            crop.top : crop.top + self.patch_size, crop.left : crop.left + self.patch_size
        ]
        patch = np.rot90(patch, crop.turns)
        return patch[:, ::-1] if crop.flip else patch

    def _greyed(self, patch: np.ndarray, step: int, index: int) -> np.ndarray:
        """``patch`` as one grey plane for a ``grey`` share of (step, index), else unchanged;
        drawn from its own stream, so runs without it keep their degradations."""
        if (
            not self.grey
            or np.random.default_rng([self.seed, step, index, 1]).uniform() >= self.grey
        ):
            return patch
        luma = patch.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)

    def _low_res(self, patch: np.ndarray, step: int, index: int) -> np.ndarray:
        if self.degradation is None:
            low = imresize_matlab(patch.astype(np.float64), scale=1.0 / self.scale)
            return np.clip(np.round(low), 0, 255)
        if isinstance(self.degradation, Track):
            key = f"{self.seed}/{step}/{index}"
            return self.degradation.apply(patch, self.scale, key).astype(np.float64)
        rng = np.random.default_rng([self.seed, step, index])
        return degrade_realistic(patch, self.scale, self.degradation, rng).astype(np.float64)

    def batch(self, size: int, step: int = 0, share: range | None = None) -> Batch:
        """Patches ``share`` (default: all) of the ``size``-patch batch of ``step``."""
        if self.streaming:
            self._swap_one()
        crops = [self._draw() for _ in range(size)]
        indices = range(size) if share is None else share
        patches = [self._greyed(self._cut(crops[k]), step, k) for k in indices]
        low = [self._low_res(p, step, k) for p, k in zip(patches, indices, strict=True)]
        if self.grey:  # grey planes back to three equal channels, as the upscaler feeds them
            patches, low = ([_as_rgb(p) for p in ps] for ps in (patches, low))
        low = np.stack(low)
        return Batch(low_res=_planes(low), high_res=_planes(np.stack(patches).astype(np.float64)))


def _rescaled(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` shrunk by ``factor`` with MATLAB bicubic, 8-bit like the file it came from."""
    if factor == 1.0:
        return image
    smaller = imresize_matlab(image.astype(np.float64), scale=factor)
    return np.clip(np.round(smaller), 0, 255).astype(np.uint8)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _planes(patches: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) 8-bit values -> (N, C, H, W) float32 in [0, 1]."""
    planes = patches[:, None] if patches.ndim == 3 else patches.transpose(0, 3, 1, 2)
    return (planes / 255.0).astype(np.float32)
