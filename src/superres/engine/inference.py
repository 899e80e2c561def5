"""Run a model on a whole image of any size: colour handling, tiling, alpha, bit depth.

Every step (colour conversion, network, bicubic chroma and alpha) runs per tile,
so memory is bounded by the tile, not the image: only the 8- or 16-bit output
buffer is image-sized. Tiles overlap by the model's receptive field and only
their centres are kept, so the result equals an untiled run (for other projects'
models of longer reach, by a bounded margin that comes close to it: see
:mod:`superres.models.community`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from superres.engine.devices import AUTOCAST_DTYPES, release_cached_memory, resolve_device
from superres.engine.runtime import AUTO, MIN_TILE, WHOLE_IMAGE, resolve_runtime
from superres.errors import ImageTooLargeError, SuperresError
from superres.imageio.alpha import colour_channel_count
from superres.imageio.color import RGB_TO_YCBCR, YCBCR_OFFSET, YCBCR_TO_RGB
from superres.models import LoadedModel, load_model
from superres.models.layers import MatlabBicubicUpsample
from superres.quality.degrade import MAX_FACTOR

Progress = Callable[[int, int], None]

# The largest result made unless told otherwise (16 megapixels in at x4, as the web server's
# default): a few bytes of PNG can declare an image whose enlargement needs many gigabytes.
MAX_OUTPUT_PIXELS = 256_000_000

# Self-ensemble (EDSR's "+", Real-ESRGAN's "TTA"): the network run on flipped and transposed
# copies of each tile, each result turned back and all averaged. Ordered so that the first
# two are the cheapest pair and the first four keep the tile's orientation.
# (transpose, flip left-right, flip top-bottom)
_DIHEDRAL = (
    (False, False, False),
    (False, True, False),
    (False, False, True),
    (False, True, True),
    (True, False, False),
    (True, True, False),
    (True, False, True),
    (True, True, True),
)
ENSEMBLE_SIZES = (1, 2, 4, 8)


def _flipped(planes: torch.Tensor, left_right: bool, top_bottom: bool) -> torch.Tensor:
    dims = [dim for dim, flip in ((-1, left_right), (-2, top_bottom)) if flip]
    return planes.flip(dims) if dims else planes


def _enlarged_view(
    enlarge: Callable[[torch.Tensor], torch.Tensor],
    planes: torch.Tensor,
    transpose: bool,
    left_right: bool,
    top_bottom: bool,
) -> torch.Tensor:
    view = _flipped(planes, left_right, top_bottom)
    out = enlarge(view.transpose(-1, -2) if transpose else view)
    return _flipped(out.transpose(-1, -2) if transpose else out, left_right, top_bottom)


def self_ensemble(
    enlarge: Callable[[torch.Tensor], torch.Tensor], planes: torch.Tensor, size: int
) -> torch.Tensor:
    """``enlarge(planes)`` averaged over the first ``size`` dihedral views of ``planes``
    (N, C, H, W): the upscaler's ensemble, and a distilling trainer's teacher."""
    views = (_enlarged_view(enlarge, planes, *view) for view in _DIHEDRAL[:size])
    total = next(views)  # the identity: with no ensemble, the plain result
    for out in views:
        total.add_(out)
    return total.div_(size) if size > 1 else total


def check_ensemble(size: int) -> None:
    if size not in ENSEMBLE_SIZES:
        raise SuperresError(
            f"self-ensemble size must be {', '.join(map(str, ENSEMBLE_SIZES))} (flips and "
            f"transposes averaged), got {size}"
        )


def check_outscale(outscale: float | None, option: str = "outscale") -> None:
    """Refuse a factor outside (0, MAX_FACTOR], naming the option the user set."""
    if outscale is not None and not 0 < outscale <= MAX_FACTOR:
        raise SuperresError(f"{option} must be above 0 and at most {MAX_FACTOR:g}, got {outscale}")


_TO_YCBCR = torch.tensor(RGB_TO_YCBCR / 255.0, dtype=torch.float32)
_FROM_YCBCR = torch.tensor(YCBCR_TO_RGB * 255.0, dtype=torch.float32)
_OFFSET = torch.tensor(YCBCR_OFFSET / 255.0, dtype=torch.float32).view(3, 1, 1)


def check_output_size(height: int, width: int, factor: float, limit: int | None) -> None:
    """Refuse, before anything is allocated, a result of more than ``limit`` pixels."""
    big_h, big_w = round(height * factor), round(width * factor)
    if limit is not None and big_h * big_w > limit:
        raise ImageTooLargeError(
            f"enlarging {width}x{height} by {factor:g} makes {big_w}x{big_h} = "
            f"{big_h * big_w:,} pixels, over the limit of {limit:,} "
            "(--max-output-pixels, or max_output_pixels in Python, raises it)"
        )


def _mirror_out(image: np.ndarray, side: int) -> tuple[np.ndarray, int, int]:
    """``image`` mirrored (MATLAB's symmetric rule) until both sides reach ``side``; with the
    offset (top, left) of the original in it.

    Networks pad their convolutions with zeros. On an image narrower than their receptive
    field every pixel sees those zeros from both sides at once, which training never showed
    them: a flat 2x2 grey came back blotchy by up to 26 levels. Mirrored out, it stays flat,
    and the bicubic planes (chroma, alpha) are unchanged: they mirror the same way.
    """
    grow_h, grow_w = max(0, side - image.shape[0]), max(0, side - image.shape[1])
    if not grow_h and not grow_w:
        return image, 0, 0
    top, left = grow_h // 2, grow_w // 2
    pads = [(top, grow_h - top), (left, grow_w - left), (0, 0)]
    return np.pad(image, pads, mode="symmetric"), top, left


def _rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _TO_YCBCR, rgb) + _OFFSET


def _ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", _FROM_YCBCR, ycbcr - _OFFSET)


def _round_up(value: int, multiple: int) -> int:
    """Tiles and margins on the model's grid, so every tile sees what the whole image would."""
    return -(-value // multiple) * multiple


def _out_of_memory(error: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's or MPS's failure (plain RuntimeErrors:
    "can't allocate memory", "MPS backend out of memory")."""
    message = str(error)
    return (
        isinstance(error, torch.OutOfMemoryError)
        or "can't allocate memory" in message
        or "out of memory" in message
    )


def tile_boxes(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of tiles covering the image."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            yield top, left, min(top + tile, height), min(left + tile, width)


class Upscaler:
    """A model ready to enlarge images: numpy in, numpy out, same mode and bit depth."""

    def __init__(
        self,
        model: str | Path | LoadedModel = "default",
        scale: int | None = None,
        tile: int | str | None = AUTO,
        device: str = "cpu",
        threads: int | None = None,
        precision: str = AUTO,
        backend: str = AUTO,
        denoise: float | None = None,
        max_output_pixels: int | None = MAX_OUTPUT_PIXELS,
        ensemble: int = 1,
    ) -> None:
        """``model`` is a name or a weights file (its own scale; see ``load_model``). ``auto``
        precision, backend and tile are the measured defaults for these weights
        (see :mod:`superres.engine.runtime`); what was chosen is in ``.runtime``. ``denoise``
        (0: keep the input's texture and noise, 1: clean it fully) needs a model with that
        control, such as ``real``; None is the model as trained (1 for ``real``). A result
        over ``max_output_pixels`` (None: no limit) is refused before any work. ``ensemble``
        (2, 4 or 8) averages the network over that many flips and transposes of each tile:
        that many times the time for up to about a tenth of a dB (tiled still equals untiled).
        """
        check_ensemble(ensemble)
        self.ensemble = ensemble
        if max_output_pixels is not None and max_output_pixels < 1:
            raise SuperresError(f"max_output_pixels must be at least 1, got {max_output_pixels}")
        self.max_output_pixels = max_output_pixels
        if threads is not None:
            if threads < 1:
                raise SuperresError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.model = model if isinstance(model, LoadedModel) else load_model(model, scale)
        if denoise is not None:
            self.model = self.model.with_denoise(denoise)
        self.scale = self.model.scale
        self.device = resolve_device(device)
        self.runtime = resolve_runtime(self.model, self.device, precision, backend, tile)
        self.bicubic = MatlabBicubicUpsample(self.scale).to(self.device)
        self.network = self._network(threads)

    @property
    def precision(self) -> str:
        return self.runtime.precision

    @property
    def backend(self) -> str:
        return self.runtime.backend

    @property
    def tile(self) -> int:
        return self.runtime.tile

    def describe(self) -> str:
        """How this upscaler runs, for people: the runtime and any self-ensemble."""
        ensemble = f", self-ensemble x{self.ensemble}" if self.ensemble > 1 else ""
        return self.runtime.describe() + ensemble

    def _network(self, threads: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The model's network on the chosen backend; channels-last suits oneDNN's convolutions."""
        if self.backend == "onnxruntime":
            if self.precision != "fp32" or self.device.type != "cpu":
                raise SuperresError("the onnxruntime backend runs fp32 on the CPU only")
            from superres.engine.export import OnnxRuntimeNetwork, onnx_bytes

            return OnnxRuntimeNetwork(onnx_bytes(self.model), threads)
        if self.backend != "pytorch":
            raise SuperresError(
                f"unknown backend {self.backend!r}; choose auto, pytorch or onnxruntime"
            )
        network = self.model.network.to(self.device, memory_format=torch.channels_last).eval()

        dtype = AUTOCAST_DTYPES.get(self.precision)

        def run(planes: torch.Tensor) -> torch.Tensor:
            planes = planes.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype or torch.bfloat16, dtype is not None):
                return network(planes).float()

        return run

    def _enlarge_planes(self, planes: torch.Tensor) -> torch.Tensor:
        """Bicubic for every plane the network does not handle (chroma, alpha)."""
        n, c, h, w = planes.shape
        return self.bicubic(planes.reshape(n * c, 1, h, w)).reshape(
            n, c, h * self.scale, w * self.scale
        )

    def _enlarge_colour(self, colour: torch.Tensor) -> torch.Tensor:
        """Grey (1 channel) or RGB (3) in [0, 1] -> enlarged, by the model where it applies."""
        channels = colour.shape[1]
        if self.model.channels == 3:
            rgb = colour.expand(-1, 3, -1, -1) if channels == 1 else colour
            out = self.network(rgb)
            return out.mean(dim=1, keepdim=True) if channels == 1 else out
        if channels == 1:
            return self.network(colour)
        ycbcr = _rgb_to_ycbcr(colour)
        luma = self.network(ycbcr[:, :1])
        return _ycbcr_to_rgb(torch.cat([luma, self._enlarge_planes(ycbcr[:, 1:])], dim=1))

    @torch.inference_mode()
    def _process(self, tile: np.ndarray, peak: float) -> np.ndarray:
        """One LR tile (H, W, C) of integers -> its enlarged tile, rounded, as floats in [0, peak].

        Clamping, scaling and rounding happen in place on the network's output: for the small
        models these full-resolution passes cost as much as a convolution layer.
        """
        planes = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))
        planes = (planes.to(self.device, torch.float32) / peak).unsqueeze(0)
        colour_channels = colour_channel_count(planes.shape[1])
        out = self_ensemble(self._enlarge_colour, planes[:, :colour_channels], self.ensemble)
        if planes.shape[1] > colour_channels:
            out = torch.cat([out, self._enlarge_planes(planes[:, colour_channels:])], dim=1)
        out = out.clamp_(0.0, 1.0).mul_(peak).round_()
        return out.squeeze(0).permute(1, 2, 0).cpu().numpy()

    def _process_or_split(self, tile: np.ndarray, peak: float, cut: int) -> np.ndarray:
        """:meth:`_process`, or on out-of-memory the same region in smaller tiles (tiling is
        exact, so the result is the same): half of ``cut``, the side this tile was cut at, unless
        a failure meanwhile made the tile smaller still. Later tiles and images keep the size."""
        try:
            return self._process(tile, peak)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if not _out_of_memory(error):
                raise
            release_cached_memory(self.device)
            if cut >= WHOLE_IMAGE:
                height, width = tile.shape[:2]
                raise SuperresError(
                    f"{self.model.name} runs on whole images (its tiling is "
                    f"{self.model.metadata.get('tiling', 'discouraged')}), and {width}x{height} "
                    f"does not fit in memory on {self.device}: enlarge a smaller image, or set a "
                    "tile size (--tile) to tile it anyway, at the risk of seams"
                ) from None
            if self.tile >= cut:
                if cut <= MIN_TILE:
                    raise SuperresError(
                        f"out of memory on {self.device} even with {MIN_TILE}-pixel tiles"
                    ) from None
                self.runtime = replace(self.runtime, tile=max(MIN_TILE, cut // 2))
            return self._enlarge(tile)

    def upscale(
        self,
        pixels: np.ndarray,
        outscale: float | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Enlarge by the model's scale (or resample to ``outscale``), keeping mode and depth."""
        check_outscale(outscale)
        if pixels.dtype not in (np.uint8, np.uint16):
            raise SuperresError(f"expected 8- or 16-bit pixels, got {pixels.dtype}")
        squeeze = pixels.ndim == 2
        image = pixels[..., None] if squeeze else pixels
        height, width = image.shape[:2]
        check_output_size(height, width, max(self.scale, outscale or 0), self.max_output_pixels)
        contract, s = self.model.contract, self.scale
        receptive_field = _round_up(2 * contract.context + 1, contract.size_multiple)
        mirrored, top, left = _mirror_out(image, receptive_field)
        out = self._enlarge(mirrored, progress)
        out = np.ascontiguousarray(out[top * s : (top + height) * s, left * s : (left + width) * s])
        if outscale is not None:
            out = resample_to(out, (round(height * outscale), round(width * outscale)))
        return out[..., 0] if squeeze else out

    def _enlarge(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """The tiled run on an HxWxC image of integers: by the model's scale, same dtype."""
        height, width, channels = image.shape
        peak = float(np.iinfo(image.dtype).max)
        s, grid = self.scale, self.model.contract.size_multiple
        margin = _round_up(self.model.contract.context, grid)
        out = np.empty((height * s, width * s, channels), dtype=image.dtype)
        cut = self.tile
        boxes = list(tile_boxes(height, width, _round_up(cut, grid)))
        for done, (top, left, bottom, right) in enumerate(boxes, start=1):
            pad_top, pad_left = max(0, top - margin), max(0, left - margin)
            padded = image[
                pad_top : min(height, bottom + margin), pad_left : min(width, right + margin)
            ]
            result = self._process_or_split(padded, peak, cut)
            dy, dx = (top - pad_top) * s, (left - pad_left) * s
            core = result[dy : dy + (bottom - top) * s, dx : dx + (right - left) * s]
            out[top * s : bottom * s, left * s : right * s] = core  # already rounded
            if progress:
                progress(done, len(boxes))
        return out


def resample_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact output size from the native result: area when shrinking, bicubic when growing."""
    height, width = size
    if height < 1 or width < 1:
        raise SuperresError(f"output size {width}x{height} is empty")
    if (height, width) == image.shape[:2]:
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    flag = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=flag)
    return resized.reshape(resized.shape[:2] + image.shape[2:])
