"""Colours turned to sRGB for the formats written without an ICC profile here (BMP, JPEG XL).

Such a file is read as sRGB, so pixels in another profile (an iPhone's Display P3, Adobe RGB)
are converted to sRGB before they are encoded, with LittleCMS through Pillow's ImageCms: the
picture then looks as it did, rather than keeping its values and showing them desaturated.

Pillow's transforms take 8-bit samples only. 16-bit ones go through imagecodecs' LittleCMS
(the ``formats`` extra, which writes 16-bit colour JPEG XL), exact at 16 bits; without it, or
if it refuses the profile, through a table of Pillow's 8-bit transform, interpolated (see
:func:`_interpolated`). A profile LittleCMS cannot read or apply to these pixels (a grey profile
for colour, CMYK, Lab) leaves the pixels as they are, and the caller's note says sRGB is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image, ImageCms

# Relative colorimetric: colours inside sRGB keep their exact values (most of a photo's, even a
# P3 one's) and only those outside are clipped to its edge, as browsers and operating systems
# show a tagged image on an sRGB screen. Perceptual would shift every colour of a profile that
# has perceptual tables; the matrix-shaper profiles of cameras and phones (P3, Adobe RGB) have
# none, and LittleCMS gives them relative colorimetric anyway.
_INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC
_SRGB = ImageCms.createProfile("sRGB")  # LittleCMS's own, what imagecodecs' "srgb" is too
# The 16-bit fallback's table: 8-bit inputs every 3 levels (86 nodes a side, 3 * 85 = 255), so
# that every node is an exact 8-bit value (3 * 257 = 771 in 16-bit units) and the spacing even.
_STEP = 3
_NODES = 255 // _STEP + 1
_CHUNK = 1 << 18  # pixels interpolated at a time, to bound the float64 temporaries


def is_srgb(icc_profile: bytes) -> bool:
    """Whether a profile only says sRGB, what a file without one is taken as anyway: by its
    description, as most writers name it ("sRGB IEC61966-2.1") and libjxl names the profiles
    it makes for sRGB colour and grey (JPEG XL files always come with one)."""
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
        description = ImageCms.getProfileDescription(profile).strip()
    except (OSError, ImageCms.PyCMSError):
        return False
    return description.startswith("sRGB") or description == "Gra_D65_Rel_SRG"


@dataclass(frozen=True)
class _Conversion:
    description: str  # the source profile's, for the note
    mode: str  # how the colour samples are handed to LittleCMS: "RGB", or "L" for a grey profile
    transform: ImageCms.ImageCmsTransform  # 8-bit, to sRGB "RGB"


def srgb_conversion(icc_profile: bytes | None, pixels: np.ndarray) -> str | None:
    """The description of ``icc_profile`` if :func:`to_srgb` converts ``pixels`` from it,
    else None: no profile, sRGB, or one LittleCMS cannot read or apply to these pixels."""
    conversion = _conversion(icc_profile, pixels)
    return conversion.description if conversion else None


def to_srgb(pixels: np.ndarray, icc_profile: bytes | None) -> np.ndarray:
    """``pixels`` (uint8 or uint16, grey or colour, with or without alpha) turned from
    ``icc_profile`` to sRGB, alpha untouched; the same array where :func:`srgb_conversion`
    says None, and where the transform fails after all (never an exception)."""
    conversion = _conversion(icc_profile, pixels)
    if conversion is None or not icc_profile:
        return pixels
    channels = 1 if pixels.ndim == 2 or pixels.shape[2] <= 2 else 3
    colour = pixels if pixels.ndim == 2 else pixels[..., :channels]
    try:
        if channels == 1:
            converted = np.take(_grey_table(conversion, icc_profile, pixels.dtype), colour)
        elif pixels.dtype == np.uint8:
            converted = _pillow(conversion.transform, colour)
        else:
            converted = _deep_rgb(conversion, icc_profile, colour)
    except (OSError, ValueError, ImageCms.PyCMSError):
        return pixels
    if pixels.ndim == 2:
        return converted
    result = pixels.copy()
    result[..., :channels] = converted
    return result


def _conversion(icc_profile: bytes | None, pixels: np.ndarray) -> _Conversion | None:
    if not icc_profile or is_srgb(icc_profile):
        return None
    grey = pixels.ndim < 3 or pixels.shape[2] <= 2
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
        space = profile.profile.xcolor_space.strip()
        if space == "GRAY" and grey:
            mode = "L"
        elif space == "RGB":  # grey pixels in an RGB profile are its neutrals
            mode = "RGB"
        else:
            return None
        # Grey goes through a table of its levels, made once: worth LittleCMS's exact path,
        # which its 8-bit optimisation is not near black (1.9 levels off from gamma 1.8 grey).
        # Colour goes through it pixel by pixel: optimised, 10 times as fast, within 0.82 of a
        # level of the exact result (measured from Adobe RGB and Display P3).
        flags = ImageCms.Flags.NOOPTIMIZE if grey else ImageCms.Flags.NONE
        transform = ImageCms.buildTransform(profile, _SRGB, mode, "RGB", _INTENT, flags=flags)
        description = " ".join(ImageCms.getProfileDescription(profile).split())
    except (OSError, ValueError, ImageCms.PyCMSError):
        return None
    return _Conversion(description or "its ICC profile", mode, transform)


def _pillow(transform: ImageCms.ImageCmsTransform, samples: np.ndarray) -> np.ndarray:
    """8-bit samples through a Pillow transform: colour ...xWx3 (Nx3 is one row of N), or
    grey ...xW for a grey profile's; the sRGB result, ...x3."""
    if transform.input_mode == "L":
        image, shape = samples.reshape(-1, samples.shape[-1]), (*samples.shape, 3)
    else:
        image, shape = samples.reshape(-1, *samples.shape[-2:]), samples.shape
    return np.asarray(transform.apply(Image.fromarray(np.ascontiguousarray(image)))).reshape(shape)


def _grey_table(conversion: _Conversion, icc_profile: bytes, dtype: np.dtype) -> np.ndarray:
    """Every grey level's sRGB grey, for np.take: the mean of the neutral the transform gives
    (its channels differ by rounding at most). 16 bits without imagecodecs: Pillow's 256
    levels, interpolated linearly: measured against imagecodecs over all 65536 levels, within
    129 16-bit units (half an 8-bit level, the table's rounding) from Adobe RGB and from gamma
    1.8 and 2.2 grey, 13 from Display P3, whose curve is sRGB's."""
    if dtype == np.uint16:
        neutral = _exact_16(conversion, icc_profile, _grey_samples(conversion, 65536, dtype))
        if neutral is not None:
            return np.round(neutral.mean(axis=1)).astype(np.uint16)
    samples = _grey_samples(conversion, 256, np.dtype(np.uint8))
    grey = _pillow(conversion.transform, samples).reshape(-1, 3).mean(axis=1)
    if dtype == np.uint8:
        return np.round(grey).astype(np.uint8)
    levels = np.arange(65536) / 257
    return np.round(np.interp(levels, np.arange(256), grey * 257)).astype(np.uint16)


def _grey_samples(conversion: _Conversion, count: int, dtype: np.dtype) -> np.ndarray:
    """Every grey level as the transform takes it: N for a grey profile, Nx3 for an RGB one."""
    levels = np.arange(count, dtype=dtype)
    return levels if conversion.mode == "L" else np.repeat(levels[:, None], 3, axis=1)


def _deep_rgb(conversion: _Conversion, icc_profile: bytes, rgb: np.ndarray) -> np.ndarray:
    """16-bit HxWx3 samples to sRGB: exactly through imagecodecs, else through the table."""
    exact = _exact_16(conversion, icc_profile, rgb.reshape(-1, 3))
    if exact is not None:
        return exact.reshape(rgb.shape)
    return _interpolated(conversion.transform, rgb)


def _exact_16(
    conversion: _Conversion, icc_profile: bytes, samples: np.ndarray
) -> np.ndarray | None:
    """Nx3 (or N grey) uint16 samples to sRGB Nx3 through imagecodecs' LittleCMS, which
    takes 16 bits; None without it or if it refuses the profile.

    NOOPTIMIZE: LittleCMS otherwise turns a 16-bit transform into a sampled table whose
    interpolation is off by up to 19 8-bit levels near sRGB's gamut edge (measured from Adobe
    RGB); evaluated whole it is within 0.06 of a level of the profiles' own arithmetic."""
    try:
        import imagecodecs
    except ImportError:
        return None
    if not getattr(getattr(imagecodecs, "CMS", None), "available", False):
        return None
    try:
        converted = imagecodecs.cms_transform(
            np.ascontiguousarray(samples[None]),  # one row
            icc_profile,
            ImageCms.ImageCmsProfile(_SRGB).tobytes(),
            colorspace="rgb" if conversion.mode == "RGB" else "gray",
            outcolorspace="rgb",
            intent=int(_INTENT),
            flags=imagecodecs.CMS.FLAGS.NOOPTIMIZE,
        )
    except (RuntimeError, ValueError, TypeError):  # imagecodecs' CmsError is a RuntimeError
        return None
    return np.asarray(converted, dtype=np.uint16).reshape(-1, 3)


def _interpolated(transform: ImageCms.ImageCmsTransform, rgb: np.ndarray) -> np.ndarray:
    """16-bit RGB without imagecodecs' LittleCMS: Pillow's 8-bit transform of a cube of nodes
    every _STEP levels, interpolated trilinearly in float64, then kept within one 8-bit level
    (257) of the 8-bit transform of the pixels rounded to 8 bits. The table alone misses most
    where a cell straddles sRGB's gamut edge, some corners clipped and some not.

    Measured on a million random colours from Adobe RGB and from Display P3 against imagecodecs'
    exact 16-bit LittleCMS, in 16-bit units: mean error 46 and 39, 99th percentile 153 and 166,
    at most 3226 and 2004 (12.6 and 7.8 8-bit levels), in the dark channel of saturated colours
    near the gamut edge, where the transform is so steep that the 8-bit route (round, transform,
    x 257) is itself off by up to 3483 and 2147, with a mean of 83 and 80. Against the 8-bit
    transform at the inputs it takes (multiples of 257): equal at the nodes, within 257 between.
    """
    axis = np.arange(0, 256, _STEP, dtype=np.uint8)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    table = _pillow(transform, grid).reshape(-1, 3).astype(np.float64) * 257
    strides = np.array([_NODES * _NODES, _NODES, 1])
    corners = [np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1]) for corner in range(8)]
    flat = rgb.reshape(-1, 3)
    result = np.empty_like(flat)
    for start in range(0, len(flat), _CHUNK):
        samples = flat[start : start + _CHUNK]
        position = samples / (_STEP * 257.0)
        low = np.minimum(position.astype(np.intp), _NODES - 2)
        fraction = position - low
        base = low @ strides
        total = np.zeros(fraction.shape)
        for offsets in corners:
            weight = np.prod(np.where(offsets, fraction, 1 - fraction), axis=1)
            total += weight[:, None] * table[base + offsets @ strides]
        eight = ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)  # = round(x / 257)
        nearest = _pillow(transform, eight).astype(np.float64) * 257
        total = np.clip(total, nearest - 257, nearest + 257)
        result[start : start + _CHUNK] = np.round(np.clip(total, 0, 65535))
    return result.reshape(rgb.shape)
