"""Real-world degradations: what cameras, messengers and the web do to a photo.

:func:`degrade_realistic` is Real-ESRGAN's second-order model (Wang et al., ICCV-W 2021): two
rounds of blur, random resize, noise and JPEG, then a final resize to the target size with a
sinc (ringing) filter and a last JPEG in either order. Every random choice comes from one
``numpy.random.Generator``, so a seed reproduces a degradation exactly. The probabilities and
ranges are the paper's (:data:`STANDARD`); :meth:`RealisticConfig.scaled` makes them milder or
harsher, and :data:`PRESETS` names strengths and variants: ``photo`` sends half of its draws
through a single round, as a phone picture resized once and shared has had; ``shared`` (what
the shipped `real` x4 model was last trained on) sends all of them.

:class:`Track` is the other use: one fixed, named degradation (e.g. JPEG q50 after a bicubic
shrink) to score models on, the same for every model and run.

Kernels are built here (BasicSR's formulas: a few lines of numpy, not worth a dependency on a
training framework); filtering, resizing and JPEG are OpenCV's (libjpeg, 4:2:0 chroma, as
cameras and browsers write).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np
from scipy import special

from superres.errors import SuperresError
from superres.imageio.alpha import split_alpha
from superres.quality.degrade import check_scale, imresize_matlab

KernelShape = Literal[
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"
]
ResizeMode = Literal["area", "bilinear", "bicubic", "matlab"]
_CV2_RESIZE = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
_SHAPES: tuple[KernelShape, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


@dataclass(frozen=True)
class BlurConfig:
    probability: float = 1.0
    kernel_sizes: tuple[int, ...] = tuple(range(7, 22, 2))
    shape_probabilities: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # as _SHAPES
    sigma: tuple[float, float] = (0.2, 3.0)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    sinc_probability: float = 0.1


@dataclass(frozen=True)
class ResizeConfig:
    probabilities: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    scale: tuple[float, float] = (0.15, 1.5)
    modes: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class NoiseConfig:
    probability: float = 1.0
    gaussian_probability: float = 0.5  # otherwise Poisson
    gaussian_sigma: tuple[float, float] = (1.0, 30.0)  # on the 0-255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    grey_probability: float = 0.4  # the same noise in every channel (luminance-only noise)


@dataclass(frozen=True)
class StageConfig:
    blur: BlurConfig = field(default_factory=BlurConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_probability: float = 1.0


@dataclass(frozen=True)
class RealisticConfig:
    """Every probability and range of the second-order model, stage by stage."""

    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(
        default_factory=lambda: StageConfig(
            blur=BlurConfig(probability=0.8, sigma=(0.2, 1.5)),
            resize=ResizeConfig(probabilities=(0.3, 0.4, 0.3), scale=(0.3, 1.2)),
            noise=NoiseConfig(gaussian_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)),
        )
    )
    final_sinc_probability: float = 0.8
    # How often a photo went through one round only (blur, one shrink to the target, noise,
    # JPEG: a phone picture resized once and shared): the first stage's ranges, its shrink by
    # one of these modes ("matlab": antialiased bicubic, as most photo editors shrink).
    single_stage_probability: float = 0.0
    single_stage_modes: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic", "matlab")

    def scaled(self, strength: float) -> RealisticConfig:
        """The same model with blur widths and noise levels times ``strength``, random resizes
        and JPEG qualities moved proportionally away from 1 and 95 (0: almost clean; 1: the
        paper's)."""
        if not 0.0 <= strength <= 3.0 or not math.isfinite(strength):
            raise SuperresError(f"degradation strength must be in [0, 3], got {strength}")

        def stage(s: StageConfig) -> StageConfig:
            low_sigma, high_sigma = s.blur.sigma
            low_q, high_q = s.jpeg_quality
            return replace(
                s,
                blur=replace(s.blur, sigma=(low_sigma, max(low_sigma, high_sigma * strength))),
                noise=replace(
                    s.noise,
                    gaussian_sigma=tuple(v * strength for v in s.noise.gaussian_sigma),
                    poisson_scale=tuple(v * strength for v in s.noise.poisson_scale),
                ),
                jpeg_quality=(
                    max(10, round(95 - (95 - low_q) * strength)),
                    max(10, round(95 - (95 - high_q) * strength)),
                ),
                resize=replace(
                    s.resize,
                    scale=(
                        max(0.05, 1.0 - (1.0 - s.resize.scale[0]) * strength),
                        1.0 + (s.resize.scale[1] - 1.0) * strength,
                    ),
                ),
            )

        return replace(self, first=stage(self.first), second=stage(self.second))

    def without_noise(self) -> RealisticConfig:
        """Blur and resizing only: what a model that keeps the input's texture is trained on
        (the "0" end of the denoise control)."""

        def stage(s: StageConfig) -> StageConfig:
            return replace(s, noise=replace(s.noise, probability=0.0), jpeg_probability=0.0)

        return replace(self, first=stage(self.first), second=stage(self.second))


def _photo() -> RealisticConfig:
    """Half single-stage, half light second-order: the photos of the issue (JPEG q30 and up,
    colour noise up to sigma 15, blur up to sigma 2 in high-resolution pixels). Light's JPEG
    range (62-95) stops above the q50 that shared photos commonly have; this one covers it."""
    light = STANDARD.scaled(0.5)

    def stage(s: StageConfig, top_sigma: float) -> StageConfig:
        return replace(s, jpeg_quality=(30, 95), blur=replace(s.blur, sigma=(0.2, top_sigma)))

    return replace(
        light,
        first=stage(light.first, 2.0),
        second=stage(light.second, light.second.blur.sigma[1]),
        single_stage_probability=0.5,
    )


def _snapshot() -> RealisticConfig:
    """``photo`` with more single-round photos (70%) and noise in 60% of first rounds: a phone
    picture shrunk once and shared is often clean but for its JPEG, and a model that always
    expects noise smooths such pictures' texture away."""
    photo = _photo()
    noise = replace(photo.first.noise, probability=0.6)
    return replace(
        photo,
        first=replace(photo.first, noise=noise),
        single_stage_probability=0.7,
    )


def _shared() -> RealisticConfig:
    """``snapshot`` with every photo a single round, blur in half of them and an antialiased
    shrink (area or MATLAB bicubic): a picture shrunk once and shared, sharp as often as soft.
    Blurring every input (as ``snapshot`` does, sigma 0.2-2) teaches a sharpening that unblurred
    inputs do not need, and photo apps shrink with antialiasing filters, not by sampling."""
    first = SNAPSHOT.first
    return replace(
        SNAPSHOT,
        first=replace(first, blur=replace(first.blur, probability=0.5)),
        single_stage_probability=1.0,
        single_stage_modes=("area", "matlab"),
    )


STANDARD = RealisticConfig()
PHOTO = _photo()
SNAPSHOT = _snapshot()
SHARED = _shared()
PRESETS: dict[str, RealisticConfig] = {
    "light": STANDARD.scaled(0.5),
    "photo": PHOTO,
    "photo-no-noise": PHOTO.without_noise(),
    "snapshot": SNAPSHOT,
    "snapshot-no-noise": SNAPSHOT.without_noise(),
    "shared": SHARED,
    "shared-no-noise": SHARED.without_noise(),
    "standard": STANDARD,
    "heavy": STANDARD.scaled(1.5),
    "no-noise": STANDARD.without_noise(),
}


def preset(name: str) -> RealisticConfig:
    """A named variant of the second-order model; unknown names are a user error."""
    if name not in PRESETS:
        raise SuperresError(f"unknown degradation preset {name!r}; choose {', '.join(PRESETS)}")
    return PRESETS[name]


# --- kernels ---------------------------------------------------------------------------------
def _grid(size: int) -> np.ndarray:
    half = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(half, half)
    return np.stack([xx, yy], axis=-1)


def anisotropic_kernel(
    size: int, sigma_x: float, sigma_y: float, angle: float, shape: str = "gaussian", beta=1.0
) -> np.ndarray:
    """Normalised 2-D kernel exp(-q/2) (gaussian), exp(-q^b/2) (generalized) or 1/(1+q^b)
    (plateau), with q = x' S^-1 x and S the rotated diagonal covariance."""
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    grid = _grid(size)
    q = np.einsum("...i,ij,...j->...", grid, np.linalg.inv(covariance), grid)
    if shape == "gaussian":
        kernel = np.exp(-0.5 * q)
    elif shape == "generalized":
        kernel = np.exp(-0.5 * q**beta)
    elif shape == "plateau":
        kernel = 1.0 / (1.0 + q**beta)
    else:
        raise SuperresError(f"unknown kernel shape {shape!r}")
    return kernel / kernel.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """Circular low-pass (2-D sinc) kernel: the ringing and overshoot of sharpened photos."""
    radius = np.hypot(*np.moveaxis(_grid(size), -1, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = cutoff * special.j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return kernel / kernel.sum()


def _beta(rng: np.random.Generator, low: float, high: float) -> float:
    # BasicSR draws below and above 1 with equal odds, so both tails are explored.
    return float(rng.uniform(low, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, high))


def random_blur_kernel(blur: BlurConfig, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.choice(blur.kernel_sizes))
    if rng.uniform() < blur.sinc_probability:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return sinc_kernel(size, float(rng.uniform(low, math.pi)))
    shape = _SHAPES[int(rng.choice(len(_SHAPES), p=blur.shape_probabilities))]
    sigma_x = float(rng.uniform(*blur.sigma))
    if shape.split("_")[-1] == "iso":
        sigma_y, angle = sigma_x, 0.0
    else:
        sigma_y, angle = float(rng.uniform(*blur.sigma)), float(rng.uniform(-math.pi, math.pi))
    family = shape.split("_")[0] if "_" in shape else "gaussian"
    beta = 1.0
    if family == "generalized":
        beta = _beta(rng, *blur.generalized_beta)
    elif family == "plateau":
        beta = _beta(rng, *blur.plateau_beta)
    return anisotropic_kernel(size, sigma_x, sigma_y, angle, family, beta)


# --- the operations, on float32 RGB (or grey) images in [0, 1] -----------------------------------
def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(image, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape)


def _resize(image: np.ndarray, size: tuple[int, int], mode: ResizeMode) -> np.ndarray:
    height, width = max(1, size[0]), max(1, size[1])
    if mode == "matlab":
        return np.clip(imresize_matlab(image, size=(height, width)), 0.0, 1.0).astype(np.float32)
    out = cv2.resize(image, (width, height), interpolation=_CV2_RESIZE[mode])
    return out.reshape((height, width) + image.shape[2:])


def _add_noise(image: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    if rng.uniform() >= noise.probability:
        return image
    grey = image.ndim == 2 or rng.uniform() < noise.grey_probability
    plane_shape = image.shape[:2] + ((1,) if image.ndim == 3 else ())
    if rng.uniform() < noise.gaussian_probability:
        sigma = rng.uniform(*noise.gaussian_sigma) / 255.0
        values = rng.standard_normal(plane_shape if grey else image.shape) * sigma
    else:
        scale = rng.uniform(*noise.poisson_scale)
        source = image.mean(axis=2, keepdims=True) if grey and image.ndim == 3 else image
        source = np.clip(np.round(source * 255.0), 0, 255) / 255.0
        levels = 2 ** math.ceil(math.log2(max(2, len(np.unique(source)))))
        values = (rng.poisson(source * levels) / levels - source) * scale
    return np.clip(image + values.astype(np.float32), 0.0, 1.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with libjpeg (OpenCV) at ``quality``: the real blocks and ringing."""
    pixels = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SuperresError("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    decoded = decoded[..., ::-1] if decoded.ndim == 3 else decoded
    return (decoded.astype(np.float32) / 255.0).reshape(image.shape)


def _random_resize(
    image: np.ndarray, base: tuple[int, int], resize: ResizeConfig, rng: np.random.Generator
) -> np.ndarray:
    direction = int(rng.choice(3, p=resize.probabilities))
    factor = (
        rng.uniform(1.0, resize.scale[1])
        if direction == 0
        else rng.uniform(resize.scale[0], 1.0)
        if direction == 1
        else 1.0
    )
    mode = resize.modes[int(rng.integers(len(resize.modes)))]
    return _resize(image, (int(base[0] * factor), int(base[1] * factor)), mode)


def _stage(
    image: np.ndarray,
    stage: StageConfig,
    base: tuple[int, int],
    rng: np.random.Generator,
    jpeg_now: bool = True,
) -> np.ndarray:
    if rng.uniform() < stage.blur.probability:
        image = _filter(image, random_blur_kernel(stage.blur, rng))
    image = _random_resize(image, base, stage.resize, rng)
    image = _add_noise(image, stage.noise, rng)
    if jpeg_now and rng.uniform() < stage.jpeg_probability:
        image = jpeg(image, int(rng.integers(stage.jpeg_quality[0], stage.jpeg_quality[1] + 1)))
    return image


def _generator(seed: int | Sequence[int] | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _as_float(image: np.ndarray) -> tuple[np.ndarray, float]:
    if image.dtype not in (np.uint8, np.uint16):
        raise SuperresError(f"expected 8- or 16-bit pixels, got {image.dtype}")
    peak = float(np.iinfo(image.dtype).max)
    return image.astype(np.float32) / peak, peak


def degrade_realistic(
    image: np.ndarray,
    scale: int,
    config: RealisticConfig = STANDARD,
    seed: int | Sequence[int] | np.random.Generator | None = None,
) -> np.ndarray:
    """A high-resolution image (H, W[, C]) -> its (H//scale, W//scale) real-world-looking
    low-resolution version, 8-bit (JPEG is the last or second-last step, so 8 bits is what
    such a photo has). The same ``seed`` and input give the same bytes; ``None`` is random.
    An alpha channel (grey+alpha, RGBA) is only shrunk, by MATLAB bicubic: transparency is
    not what a camera degrades.
    """
    if isinstance(scale, bool) or int(scale) != scale:
        raise SuperresError(f"the realistic degradation needs an integer scale, got {scale}")
    scale = int(check_scale(scale))
    rng = _generator(seed)
    height, width = image.shape[:2]
    target = (max(1, height // scale), max(1, width // scale))
    colour, alpha_plane = split_alpha(image)
    if alpha_plane is not None:
        colour = degrade_realistic(colour, scale, config, rng)
        alpha = imresize_matlab(alpha_plane.astype(np.float64), size=target)
        alpha = np.clip(np.round(alpha * 255.0 / np.iinfo(image.dtype).max), 0, 255)
        colour = colour if colour.ndim == 3 else colour[..., None]
        return np.concatenate([colour, alpha.astype(np.uint8)[..., None]], axis=2)
    pixels, _ = _as_float(image)
    # Drawn only when the config has a single-stage share, so the paper's presets keep their
    # random stream (and a seed its bytes).
    if config.single_stage_probability and rng.uniform() < config.single_stage_probability:
        mode = config.single_stage_modes[int(rng.integers(len(config.single_stage_modes)))]
        first = replace(config.first, resize=ResizeConfig((0.0, 1.0, 0.0), (1.0, 1.0), (mode,)))
        pixels = _stage(pixels, first, target, rng)
        return np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
    pixels = _stage(pixels, config.first, (height, width), rng)
    pixels = _stage(pixels, config.second, target, rng, jpeg_now=False)
    # Stage 2 ends in one of two orders: resize + sinc then JPEG, or JPEG then resize + sinc.
    quality = int(rng.integers(config.second.jpeg_quality[0], config.second.jpeg_quality[1] + 1))
    jpeg_first = rng.uniform() < 0.5
    final_jpeg = rng.uniform() < config.second.jpeg_probability
    mode = config.second.resize.modes[int(rng.integers(len(config.second.resize.modes)))]
    sinc = None
    if rng.uniform() < config.final_sinc_probability:
        size = int(rng.choice(config.second.blur.kernel_sizes))
        sinc = sinc_kernel(size, float(rng.uniform(math.pi / 3, math.pi)))
    if jpeg_first and final_jpeg:
        pixels = jpeg(pixels, quality)
    pixels = _resize(pixels, target, mode)
    if sinc is not None:
        pixels = np.clip(_filter(pixels, sinc), 0.0, 1.0)
    if not jpeg_first and final_jpeg:
        pixels = jpeg(pixels, quality)
    return np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)


# --- fixed tracks for scoring ------------------------------------------------------------------
@dataclass(frozen=True)
class Track:
    """One fixed degradation for benchmarks: optional Gaussian blur of the original (the
    literature's "BD" model), MATLAB-bicubic shrink, optional colour Gaussian noise (seeded from
    the image's name, so every model sees the same noise), optional JPEG."""

    name: str
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None
    description: str = ""

    def apply(self, image: np.ndarray, scale: int, key: str = "") -> np.ndarray:
        pixels = image
        if self.blur_sigma:
            size = 2 * math.ceil(3 * self.blur_sigma) + 1
            blur = anisotropic_kernel(size, self.blur_sigma, self.blur_sigma, 0.0)
            pixels = _filter(image.astype(np.float32), blur)
        small = imresize_matlab(pixels.astype(np.float64), scale=1.0 / scale)
        small = small / float(np.iinfo(image.dtype).max)
        if self.noise_sigma:
            rng = np.random.default_rng(zlib.crc32(f"{self.name}/{key}".encode()))
            small = small + rng.standard_normal(small.shape) * (self.noise_sigma / 255.0)
        small = np.clip(small, 0.0, 1.0).astype(np.float32)
        if self.jpeg_quality is not None:
            small = jpeg(small, self.jpeg_quality)
        return np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)


TRACKS: dict[str, Track] = {
    t.name: t
    for t in (
        Track("clean", description="MATLAB bicubic shrink only (the standard protocol)"),
        Track("jpeg50", jpeg_quality=50, description="bicubic shrink, JPEG q50"),
        Track(
            "noise10-jpeg70",
            noise_sigma=10.0,
            jpeg_quality=70,
            description="bicubic shrink, colour Gaussian noise sigma 10, JPEG q70",
        ),
        Track(
            "blur1.6-noise5-jpeg60",
            blur_sigma=1.6,
            noise_sigma=5.0,
            jpeg_quality=60,
            description="Gaussian blur sigma 1.6, bicubic shrink, noise sigma 5, JPEG q60",
        ),
    )
}


def track(name: str) -> Track:
    if name not in TRACKS:
        raise SuperresError(f"unknown degradation track {name!r}; choose {', '.join(TRACKS)}")
    return TRACKS[name]
