"""``superres serve``: a web page and an HTTP API for upscaling, a thin shell over superres.

Uploads are parsed and processed in memory, so nothing is written to disk. A request goes
through three stages, and only the last uses a worker:

1. its body is read, within ``client_timeout`` seconds, the bytes received counting against
   the memory budget as they arrive (a slow or stalled upload holds no worker and no place);
2. the image's header gives its size, so its cost is known before anything is decoded: the
   memory it will need (upload, decoded input, result, the encoder's copy) and its work
   (output pixels x the model's multiply-adds per pixel). Over a per-request limit: 413;
3. it joins the work queue if the memory budget and the pending-work budget both still hold
   it, else it gets 503 with ``Retry-After``. Its claim lasts until the result is sent.

The queue is therefore as long as the budgets allow: many small images, or one large one.
A job whose client has gone is dropped from the queue, or stopped at its next tile.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import dataclasses
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import cache, partial
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field as FormField
from python_multipart.multipart import File as FormFile
from python_multipart.multipart import parse_options_header
from skimage import data as sample_data
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from superres.api import get_upscaler
from superres.apps.web import DEFAULT_LIMITS
from superres.apps.web.media import RESULT_TYPES, Media, probe_media, upscale_media
from superres.engine.inference import ENSEMBLE_SIZES, Upscaler
from superres.engine.runtime import AUTO
from superres.errors import ImageTooLargeError, NotAnImageError, SuperresError
from superres.imageio.files import (
    ENCODER_MAX_SIDE,
    deep_bit_depth,
    encode_image,
    format_notes,
    header_formats,
    output_path_for,
    read_image_bytes,
    require_format,
)
from superres.imageio.video import VideoLimits
from superres.models.complexity import multiply_adds_per_output_pixel
from superres.models.files import model_labels
from superres.models.registry import (
    ALIASES,
    ARCHITECTURES,
    AUTO_MODEL,
    LoadedModel,
    load_model,
    shipped_models,
)
from superres.quality.degrade import MAX_FACTOR

# (name, scale) -> Upscaler; called with ``denoise=`` and ``ensemble=`` too when a request
# sets them.
UpscalerFactory = Callable[..., Upscaler]
ModelLister = Callable[[], list[dict[str, Any]]]
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
    "heic": "image/heic",
    "jxl": "image/jxl",
}
# The form's names -> Pillow's; heic and jxl need superres[formats].
ENCODERS = {
    "png": "PNG",
    "jpg": "JPEG",
    "webp": "WEBP",
    "avif": "AVIF",
    "heic": "HEIF",
    "jxl": "JXL",
}
DEFAULT_SCALE = 4
MEGABYTE = 1_000_000
GIGA = 1e9
# Room in a request for the multipart headers and the small form fields besides the image.
FORM_ALLOWANCE = 16 * 1024
# A result may hold up to 16 times the input limit's pixels: the largest input at x4.
OUTPUT_GROWTH = 16
# Work every model does per output pixel besides its network (bicubic chroma, colour
# conversion, PNG encoding), in multiply-adds: PNG encoding alone took about half as long per
# pixel as compact x2's 40,000-multiply-add network on the 2-core machine it was measured on.
PIXEL_OVERHEAD_MACS = 20_000
# Pillow holds RGB as 4 bytes a pixel, and its encoders work on a copy of the result.
ENCODER_BYTES_PER_PIXEL = 4
SEND_CHUNK = 256 * 1024  # the result goes out in pieces, each within the client timeout
# The astronaut's face, 128x128: small enough that the sample runs in a moment on any CPU.
SAMPLE_CROP = (slice(20, 148), slice(170, 298))
# The page loads nothing but its own files; results are shown from blob: URLs.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# On every response, a 500 too.
GUARD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": PAGE_POLICY}
# Host names answered by default: a page elsewhere that rebinds its own name to 127.0.0.1
# (DNS rebinding) still sends its own name, and is refused.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("", "0.0.0.0", "::")  # binding these does not say which name clients use
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ModelInfo(BaseModel):
    """A model the server can run, as ``GET /api/models`` lists it."""

    name: str
    aliases: list[str] = []
    scale: int
    parameters: int
    val_psnr_db: float | None = Field(
        None, description="Validation PSNR (standard protocol) from the weights' metadata."
    )
    val_dataset: str | None = Field(None, description="What val_psnr_db was measured on.")
    denoise: bool = Field(False, description="Whether the model takes a denoise strength.")
    speed_mpx_per_s: float | None = Field(
        None,
        description="Input megapixels per second of work (decode, enlarge, encode), measured "
        "on the requests this server has served; absent until it has served one.",
    )


class UpscaleForm(BaseModel):
    """The form fields of ``POST /api/upscale`` besides the file ``image``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        AUTO_MODEL,
        description="A name or alias from /api/models; auto: real (made for photos) where it "
        "has the scale, default elsewhere.",
    )
    scale: int | None = Field(
        None,
        ge=1,
        description=f"The model's scale. Default {DEFAULT_SCALE}; with outscale alone, the "
        "smallest offered scale reaching it (else the largest).",
    )
    outscale: float | None = Field(
        None,
        gt=0,
        le=MAX_FACTOR,
        description="Final size factor: the result is resampled to it.",
    )
    format: Literal["png", "jpg", "webp", "avif", "heic", "jxl"] = Field(
        "png", description="Encoding of the result (heic and jxl: if superres[formats] is here)."
    )
    denoise: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Models with a denoise control (see /api/models): 0 keeps the input's "
        "texture and noise, 1 (their default) cleans them.",
    )
    ensemble: int = Field(
        1,
        description=f"Self-ensemble, {' or '.join(map(str, ENSEMBLE_SIZES))}: the model "
        "averaged over this many flips and transposes of the input (that many times the time "
        "for up to about 0.1 dB); 1: none.",
    )

    @field_validator("ensemble")
    @classmethod
    def _ensemble_size(cls, size: int) -> int:
        if size not in ENSEMBLE_SIZES:
            raise ValueError(f"must be {', '.join(map(str, ENSEMBLE_SIZES))}")
        return size


class ErrorDetail(BaseModel):
    """Every refusal: one line saying why."""

    detail: str


class Health(BaseModel):
    """Alive, and how full: a monitor can tell a busy server from a dead one."""

    status: Literal["ok"] = "ok"
    in_flight: int = Field(description="Requests being received, queued, worked on or sent.")
    jobs: int = Field(description="Of those, the ones admitted to the work queue.")
    memory_promised_bytes: int
    memory_budget_bytes: int
    work_pending_gmacs: float
    max_pending_gmacs: float


class Limits(BaseModel):
    """What the server accepts, so the page can refuse early with the same numbers."""

    max_upload_bytes: int
    max_pixels: int
    max_output_pixels: int
    max_side: dict[str, int] = Field(description="Largest result side per format.")
    memory_budget_bytes: int = Field(description="Memory all requests in flight may claim.")
    max_request_gmacs: float = Field(
        description="Work one request may take: output pixels x the model's multiply-adds "
        f"per output pixel (plus {PIXEL_OVERHEAD_MACS:,} for encoding and the rest), in G."
    )
    max_pending_gmacs: float = Field(description="Work all queued requests may take, in G.")
    client_timeout_s: float = Field(
        description="Seconds an upload may take to arrive, and a client may stall the result."
    )
    max_video_seconds: float = Field(description="Longest video or animation accepted.")
    max_frames: int = Field(
        description="Most frames in a video or an animation (each within max_pixels)."
    )

    def media(self) -> VideoLimits:
        return VideoLimits(self.max_video_seconds, self.max_frames, self.max_pixels)


@dataclass(frozen=True)
class Upscaled:
    """A worker's result: the encoded image and the sizes the response headers report."""

    body: bytes
    input_size: tuple[int, int]  # width, height
    output_size: tuple[int, int]
    runtime: str  # how the model ran, e.g. "pytorch bf16, tile 512 (measured)"
    media_type: str | None = None  # a video's or an animation's; None: the form's format
    frames: int = 1
    notes: tuple[str, ...] = ()  # streams a video's container could not hold, and the like


class JobCancelled(Exception):
    """Raised between tiles in a job whose client has gone: nobody is left to read it."""


class OverBudget(Exception):
    """A request the memory or pending-work budget cannot hold now (answered 503)."""


def _memory_trimmer() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, which hands freed heap pages back to the system: without it
    the server's RSS stays near its peak long after a burst. A no-op without glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return partial(trim, 0)


trim_memory = _memory_trimmer()


class Lazy(Generic[T]):
    """A value computed once, on first use, on a thread. Concurrent first requests wait for
    that one computation instead of each starting their own (listing the shipped weights
    loads every file)."""

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._value: list[T] = []  # empty until computed

    async def get(self) -> T:
        if not self._value:
            await run_in_threadpool(self._compute_once)
        return self._value[0]

    def _compute_once(self) -> None:
        with self._lock:
            if not self._value:
                self._value.append(self._compute())


@dataclass(eq=False)  # claims are told apart by identity
class Claim:
    """One request's share of the budgets."""

    resident: int = 0  # bytes held until the response is sent: the upload, then the result
    working: int = 0  # bytes added while a worker runs it: decoded input, outputs, copies
    gmacs: float = 0.0  # its work, once admitted to the queue


class Ledger:
    """The memory and work promised to requests in flight, each kept within its budget.

    Every claim's resident bytes count, but only the largest ``workers`` working sets: no more
    jobs than that run at once. Only the event loop thread touches it, so it needs no lock.
    """

    def __init__(self, memory_budget: int, work_budget: float, workers: int) -> None:
        self.memory_budget = memory_budget
        self.work_budget = work_budget
        self.workers = workers
        self.claims: list[Claim] = []

    def open(self) -> Claim:
        claim = Claim()
        self.claims.append(claim)
        return claim

    def close(self, claim: Claim) -> None:
        self.claims.remove(claim)

    def memory_promised(self) -> int:
        running = sorted(claim.working for claim in self.claims)[-self.workers :]
        return sum(claim.resident for claim in self.claims) + sum(running)

    def work_pending(self) -> float:
        return sum(claim.gmacs for claim in self.claims)

    def jobs(self) -> int:
        return sum(1 for claim in self.claims if claim.gmacs)

    def try_claim(self, claim: Claim, resident: int, working: int = 0, gmacs: float = 0.0) -> bool:
        """Set the claim to these amounts if both budgets still hold; else leave it as it was."""
        before = dataclasses.astuple(claim)
        claim.resident, claim.working, claim.gmacs = resident, working, gmacs
        if self.memory_promised() <= self.memory_budget and self.work_pending() <= self.work_budget:
            return True
        claim.resident, claim.working, claim.gmacs = before
        return False


class WorkPool:
    """``workers`` threads for the heavy work, and the mean time a job takes there."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="superres-web")
        self._jobs = 0
        self._seconds = 0.0

    async def run(
        self, job: Callable[[], T], cancel: threading.Event, client_gone: Awaitable[None]
    ) -> tuple[T, float]:
        """``job()`` on a worker thread; its result and the seconds it worked.

        If ``client_gone`` completes first, the job is dropped from the queue or, if running,
        stopped at its next tile (``cancel``) and waited for, so that its memory is free when
        this raises ClientDisconnect.
        """

        def timed() -> tuple[T, float]:
            start = time.perf_counter()
            try:
                return job(), time.perf_counter() - start
            finally:
                trim_memory()

        submitted = self._executor.submit(timed)
        result = asyncio.wrap_future(submitted)
        gone = asyncio.ensure_future(client_gone)
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not result.done():
            cancel.set()
            if not submitted.cancel():
                with suppress(JobCancelled, SuperresError):
                    await result
            raise ClientDisconnect
        value, seconds = result.result()
        self._jobs += 1
        self._seconds += seconds
        return value, seconds

    def retry_after(self, jobs: int) -> int:
        """Seconds until room is likely: mean job time times the queued jobs per worker."""
        mean = self._seconds / self._jobs if self._jobs else 1.0
        return max(1, math.ceil(mean * jobs / self.workers))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Catalogue:
    """The models on offer, what each costs per pixel, and the speed measured while serving."""

    def __init__(self, entries: list[ModelInfo], model_cost: Callable[[str, int], float]) -> None:
        self.entries = entries
        self._model_cost = model_cost
        self._costs: dict[tuple[str, int], Lazy[float]] = {}
        self._work: dict[tuple[str, int], tuple[int, float]] = {}  # (pixels, seconds) so far

    def resolve(self, form: UpscaleForm) -> tuple[str, int]:
        """(canonical name, scale) for a request; unknown model 404, unoffered scale 422."""
        matching = [e for e in self.entries if form.model in (e.name, *e.aliases)]
        if form.model == AUTO_MODEL:
            matching = self._auto(form.scale or DEFAULT_SCALE)
        if not matching:
            offered = ", ".join(sorted({e.name for e in self.entries})) or "none are installed"
            raise HTTPException(404, f"unknown model {form.model!r}; models: {offered}")
        name, scales = matching[0].name, sorted(e.scale for e in matching)
        if form.scale is not None:
            scale = form.scale
        elif form.outscale is not None:
            scale = next((s for s in scales if s >= form.outscale), scales[-1])
        else:
            scale = DEFAULT_SCALE
        if scale not in scales:
            offered = ", ".join(f"x{s}" for s in scales)
            raise HTTPException(422, f"{name} has no x{scale} weights; scales: {offered}")
        entry = next(e for e in matching if e.scale == scale)
        if form.denoise is not None and not entry.denoise:
            raise HTTPException(422, f"{name} x{scale} has no denoise control")
        return name, scale

    def _auto(self, scale: int) -> list[ModelInfo]:
        """The entries of what ``auto`` names at ``scale`` (as the CLI and the API resolve it,
        from the models this server offers)."""
        for wanted in ("real", "default"):
            entries = [e for e in self.entries if wanted in (e.name, *e.aliases)]
            if any(e.scale == scale for e in entries):
                return entries
        return [e for e in self.entries if "default" in e.aliases]

    async def cost(self, name: str, scale: int) -> float:
        """Multiply-adds per output pixel of ``name`` x``scale``, counted on first use."""
        if (name, scale) not in self._costs:
            self._costs[name, scale] = Lazy(partial(self._model_cost, name, scale))
        return await self._costs[name, scale].get()

    def record(self, name: str, scale: int, pixels: int, seconds: float) -> None:
        done_pixels, done_seconds = self._work.get((name, scale), (0, 0.0))
        self._work[name, scale] = (done_pixels + pixels, done_seconds + seconds)

    def listing(self) -> list[ModelInfo]:
        listed = []
        for entry in self.entries:
            pixels, seconds = self._work.get((entry.name, entry.scale), (0, 0.0))
            speed = round(pixels / seconds / 1e6, 3) if seconds > 0 else None
            listed.append(entry.model_copy(update={"speed_mpx_per_s": speed}))
        return listed


def catalogue_entry(model: LoadedModel, name: str | None = None) -> dict[str, Any]:
    """What ``GET /api/models`` says of a model, from its weights' metadata, under its own
    name (with its aliases) or the name clients use for a model file."""
    name = name or model.name
    return {
        "name": name,
        "aliases": [alias for alias, target in ALIASES.items() if target == name],
        "scale": model.scale,
        "parameters": model.parameters,
        "val_psnr_db": model.metadata.get("val_psnr") or None,
        "val_dataset": model.metadata.get("validation_data") or None,
        "denoise": model.keep_texture is not None,
    }


def shipped_catalogue() -> list[dict[str, Any]]:
    """The package's weights, described by their own metadata (loads each file once); a
    damaged file is logged and left out rather than taking the others down with it."""
    unreadable: list[str] = []
    entries = [catalogue_entry(entry.model) for entry in shipped_models(unreadable)]
    for reason in unreadable:
        logging.getLogger("uvicorn.error").warning("not offered: %s", reason)
    return entries


def served_files(paths: Sequence[Path]) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """The operator's model files by the names clients use (the file name without extension:
    see :func:`~superres.models.files.model_labels`) and their catalogue entries. Each is
    loaded now, so a bad file stops the server before it starts."""
    names = model_labels(paths, {*ARCHITECTURES, *ALIASES, AUTO_MODEL})
    files = {name: path.resolve() for name, path in zip(names, paths, strict=True)}
    return files, [catalogue_entry(load_model(path), name) for name, path in files.items()]


def naming_files(files: Mapping[str, Path], factory: UpscalerFactory) -> UpscalerFactory:
    """``factory`` for the names the catalogue offers: a file's name stands for its path (a
    request names a model the catalogue lists, never a path)."""

    def build(name: str, scale: int, **options: Any) -> Upscaler:
        return factory(str(files.get(name, name)), scale, **options)

    return build


@cache
def sample_png() -> bytes:
    """A small built-in photo to try the page on, encoded once on first request."""
    return encode_image(sample_data.astronaut()[SAMPLE_CROP], "png")


@dataclass(frozen=True)
class Probe:
    """An upload's size and sample layout, as its header states them."""

    width: int
    height: int
    channels: int
    sample_bytes: int  # 1 or 2


def probe_upload(upload: bytes, name: str, max_pixels: int) -> Probe:
    """The header's size and layout, so a request's cost is known before it is decoded.

    Where Pillow cannot read the header, or the image is over ``max_pixels``, decoding is
    tried instead: it refuses with the reason (before decoding, if it is the size).
    """
    try:
        with Image.open(BytesIO(upload), formats=header_formats()) as image:
            width, height = image.size
            channels = 4 if image.mode == "P" else len(image.getbands())  # palettes: maybe alpha
            wide = (
                image.mode in ("I", "F")
                or any("16" in str(tile.args) for tile in image.tile)
                or image.info.get("bit_depth", 8) > 8  # a 10/12-bit HEIC, read as 16 bits
                or deep_bit_depth(image, BytesIO(upload)) > 8  # a 10/12-bit AVIF too (imagecodecs)
            )
    except Exception:  # any decoder failure; decoding below names it
        pass
    else:
        if width * height <= max_pixels:
            return Probe(width, height, channels, 2 if wide else 1)
    pixels = read_image_bytes(upload, name, max_pixels=max_pixels).pixels
    return Probe(
        pixels.shape[1],
        pixels.shape[0],
        pixels.size // pixels.shape[0] // pixels.shape[1],
        pixels.itemsize,
    )


@dataclass(frozen=True)
class Plan:
    """What a request will cost, worked out from its header."""

    input_size: tuple[int, int]  # width, height
    factor: float  # the largest enlargement made: the model's scale, or outscale above it
    output_size: tuple[int, int]
    resident: int
    working: int
    gmacs: float

    @property
    def largest_size(self) -> tuple[int, int]:
        width, height = self.input_size
        return round(width * self.factor), round(height * self.factor)


def plan_request(
    probe: Probe, upload_bytes: int, scale: int, outscale: float | None, macs_per_pixel: float
) -> Plan:
    """Sizes, memory and work of enlarging ``probe`` by ``scale`` (then to ``outscale``)."""
    width, height = probe.width, probe.height
    per_pixel = probe.channels * probe.sample_bytes
    native = width * scale * height * scale
    if outscale is None:
        output_size = (width * scale, height * scale)
    else:
        output_size = (round(width * outscale), round(height * outscale))
    output = output_size[0] * output_size[1]
    resampled = 0 if outscale is None else output * per_pixel
    working = (
        (width * height + native) * per_pixel
        + resampled
        + output * ENCODER_BYTES_PER_PIXEL * probe.sample_bytes
    )
    return Plan(
        input_size=(width, height),
        factor=max(scale, outscale or 0),
        output_size=output_size,
        resident=upload_bytes + output * per_pixel,  # the upload, then the encoded result
        working=working,
        gmacs=native * (macs_per_pixel + PIXEL_OVERHEAD_MACS) / GIGA,
    )


def plan_media(
    media: Media, upload_bytes: int, scale: int, outscale: float | None, macs_per_pixel: float
) -> Plan:
    """A video's or an animation's cost: one frame's, its work times the frames. The whole
    result is held, encoded: a video's estimated as the upload grown with the pixels, an
    animation's at its raw size; Pillow's writers but GIF's also hold every enlarged frame."""
    frame = Probe(media.width, media.height, media.channels, 1)
    one = plan_request(frame, upload_bytes, scale, outscale, macs_per_pixel)
    width, height = one.output_size
    if media.kind == "video":
        result = round(upload_bytes * width * height / (media.width * media.height))
    else:
        result = media.frames * width * height * media.channels
    held = media.frames * width * height * ENCODER_BYTES_PER_PIXEL if media.holds_frames else 0
    return dataclasses.replace(
        one,
        resident=upload_bytes + result,
        working=one.working + held,
        gmacs=one.gmacs * media.frames,
    )


def check_plan(plan: Plan, name: str, model: str, fmt: str, limits: Limits) -> None:
    """Refuse a request over any per-request limit, with this server's numbers, before work."""
    width, height = plan.input_size
    big_w, big_h = plan.largest_size
    enlarging = f"{name}: enlarging {width}x{height} by {plan.factor:g}"
    if big_w * big_h > limits.max_output_pixels:
        raise ImageTooLargeError(
            f"{enlarging} makes {big_w}x{big_h} = {big_w * big_h:,} pixels, over the limit of "
            f"{limits.max_output_pixels:,}"
        )
    side = limits.max_side.get(fmt)
    if side is not None and max(plan.output_size) > side:
        raise ImageTooLargeError(
            "{} makes {}x{}, over {}'s limit of {:,} pixels a side; ask for png".format(
                enlarging, *plan.output_size, ENCODERS[fmt], side
            )
        )
    if plan.gmacs > limits.max_request_gmacs:
        raise ImageTooLargeError(
            f"{enlarging} with {model} is {plan.gmacs:,.1f} G multiply-adds of work, over this "
            f"server's limit of {limits.max_request_gmacs:,.0f} G per request"
        )
    needed = plan.resident + plan.working
    if needed > limits.memory_budget_bytes:
        raise ImageTooLargeError(
            f"{enlarging} needs about {needed / MEGABYTE:,.1f} MB, over this server's memory "
            f"budget of {limits.memory_budget_bytes / MEGABYTE:g} MB"
        )


def _upscale_upload(
    upload: bytes,
    name: str,
    model: str,
    scale: int,
    form: UpscaleForm,
    *,
    upscaler_for: UpscalerFactory,
    max_pixels: int,
    cancel: threading.Event,
    media: Media | None = None,
    media_limits: VideoLimits | None = None,
) -> Upscaled:
    """Decode, enlarge and encode: a worker thread's whole job, given up once ``cancel`` is set
    (checked before each stage and after each tile). ``media``: a video or an animation, each
    frame enlarged, the whole within ``media_limits``."""

    def check(*_: int) -> None:
        if cancel.is_set():
            raise JobCancelled

    check()
    options: dict[str, Any] = {} if form.denoise is None else {"denoise": form.denoise}
    if form.ensemble > 1:
        options["ensemble"] = form.ensemble
    if media is not None:
        upscaler = upscaler_for(model, scale, **options)

        def enlarge(pixels: np.ndarray) -> np.ndarray:
            return upscaler.upscale(pixels, form.outscale, progress=check)

        done = upscale_media(upload, name, media, enlarge, media_limits or VideoLimits())
        runtime = upscaler.describe()
        first = (media.width, media.height)
        notes = tuple(done.notes)
        return Upscaled(done.body, first, done.size, runtime, media.media_type, done.frames, notes)
    image = read_image_bytes(upload, name, max_pixels=max_pixels)
    upscaler = upscaler_for(model, scale, **options)
    pixels = upscaler.upscale(image.pixels, form.outscale, progress=check)
    check()
    body = encode_image(pixels, form.format, icc_profile=image.icc_profile, exif=image.exif)
    runtime = upscaler.describe()
    height, width = image.pixels.shape[:2]
    result = output_path_for("result", form.format)
    notes = (*image.notes, *format_notes(result, pixels, image.icc_profile, image.exif))
    size = (pixels.shape[1], pixels.shape[0])
    return Upscaled(body, (width, height), size, runtime, notes=notes)


async def _until_disconnected(receive: Receive) -> None:
    """Returns when the client closes the connection (its body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class SentResponse(Response):
    """The result, sent in pieces so that a client that stops reading holds no more than its
    claim covers; ``on_sent`` runs once all is sent, or once the client has stalled for
    ``stall_timeout`` seconds (the server then drops the connection)."""

    def __init__(
        self, content: bytes, *, on_sent: Callable[[], None], stall_timeout: float, **options: Any
    ) -> None:
        super().__init__(content, **options)
        self._on_sent = on_sent
        self._stall_timeout = stall_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        try:
            await send({**start, "headers": self.raw_headers})
            body = memoryview(self.body)
            for offset in range(0, len(body), SEND_CHUNK):
                piece = bytes(body[offset : offset + SEND_CHUNK])
                async with asyncio.timeout(self._stall_timeout):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except TimeoutError:
            pass  # returning with the response incomplete makes the server close the connection
        finally:
            self._on_sent()


class Guard:
    """Headers on every response and refusals before any route.

    Every response gets ``nosniff`` and the page's CSP. A Host not allowed (DNS rebinding: a
    hostile page whose name now points here) gets 400; anything but GET, HEAD and OPTIONS
    from a page of another origin (a cross-site form post) gets 403.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str]) -> None:
        self.app = app
        self.allowed_hosts = {host.lower() for host in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(GUARD_HEADERS)
            await send(message)

        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send_guarded)
        else:
            status, detail = refusal
            await JSONResponse({"detail": detail}, status)(scope, receive, send_guarded)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # e.g. an unclosed [ for an IPv6 address
            name = ""
        if "*" not in self.allowed_hosts and name not in self.allowed_hosts:
            return 400, (
                f"host {host!r} is not one this server answers to "
                f"(allowed: {', '.join(sorted(self.allowed_hosts))})"
            )
        origin, method = headers.get("origin"), scope["method"]
        foreign = origin is not None and urlsplit(origin).netloc.lower() != host.lower()
        if foreign and method not in SAFE_METHODS:
            return 403, f"a {method} from the page at {origin} is refused: it is another origin"
        return None


def _refusal(error: SuperresError) -> HTTPException:
    """The status a user error deserves: too large 413, not an image 415, the rest 422."""
    if isinstance(error, ImageTooLargeError):
        return HTTPException(413, str(error))
    if isinstance(error, NotAnImageError):
        return HTTPException(415, str(error))
    return HTTPException(422, str(error))


def _too_large(limit: int) -> HTTPException:
    # The rest of the body is never read, so the connection cannot be reused.
    return HTTPException(
        413, f"upload is over the limit of {limit / MEGABYTE:g} MB", {"Connection": "close"}
    )


def _one_line(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'form'}: {item['msg']}"
        for item in error.errors()
    )


async def _read_upload(
    request: Request, limit: int, hold: Callable[[int], bool]
) -> tuple[bytes, str, UpscaleForm]:
    """The multipart body parsed in memory as it streams in: (image bytes, file name, form).

    ``hold(n)`` is asked to cover the n bytes received so far. When it cannot, the rest is
    read and dropped, so that the client sees the answer, and OverBudget is raised.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "send multipart/form-data with the file in a field 'image'")
    fields: dict[str, str] = {}
    files: list[tuple[str, str, bytes]] = []  # field name, file name, data

    def on_field(field: FormField) -> None:
        name = bytes(field.field_name or b"").decode(errors="replace")
        if name == "image":
            raise HTTPException(
                422,
                "the part 'image' has no filename, so it reads as a text field: send it as a "
                "file (curl -F image=@photo.png)",
            )
        try:
            fields[name] = (field.value or b"").decode()
        except UnicodeDecodeError:
            raise HTTPException(422, f"form field {name!r} is not UTF-8 text") from None

    def on_file(file: FormFile) -> None:
        name, file_name = bytes(file.field_name or b""), file.file_name or b""
        files.append(
            (
                name.decode(errors="replace"),
                file_name.decode(errors="replace"),
                file.file_object.getvalue(),
            )
        )

    parser = FormParser(
        "multipart/form-data",
        on_field,
        on_file,
        boundary=options[b"boundary"],
        config={"MAX_MEMORY_FILE_SIZE": float("inf")},  # the body limit below bounds it
    )
    received = 0
    over_budget = False
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + FORM_ALLOWANCE:
                raise _too_large(limit)
            over_budget = over_budget or not hold(received)
            if not over_budget:
                parser.write(chunk)
        if over_budget:
            raise OverBudget
        parser.finalize()
    except FormParserError as error:
        raise HTTPException(422, f"malformed multipart body ({error})") from error
    if [field for field, _, _ in files] != ["image"]:
        raise HTTPException(422, "send exactly one file, in the field 'image'")
    _, file_name, upload = files[0]
    try:
        form = UpscaleForm.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(422, _one_line(error)) from None
    return upload, PurePosixPath(file_name.replace("\\", "/")).name or "upload", form


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "A Host header this server does not answer to."},
    403: {"model": ErrorDetail, "description": "A post from a page of another origin."},
    404: {"model": ErrorDetail, "description": "Unknown model."},
    408: {"model": ErrorDetail, "description": "The upload did not arrive in time."},
    413: {
        "model": ErrorDetail,
        "description": "Upload over the byte limit; input or result over the pixel or side "
        "limit; a video or animation over the length or frame limit; or more work or memory "
        "than one request may have.",
    },
    415: {"model": ErrorDetail, "description": "Not multipart, or the file is not an image."},
    422: {
        "model": ErrorDetail,
        "description": "Bad form fields, a scale the model lacks, or a corrupt image or video.",
    },
    503: {
        "model": ErrorDetail,
        "description": "Busy: the memory budget or the pending-work budget is full.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}
_SIZE_HEADER = {"schema": {"type": "string", "pattern": r"^\d+x\d+$"}}
_UPSCALE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The enlarged image, in the requested format; a video (by its file "
        "name: .mp4, .mkv, .webm...) or an animation (GIF, APNG, WebP, multi-page TIFF) in its "
        "own, every frame enlarged, other streams copied.",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in (*MEDIA_TYPES.values(), *RESULT_TYPES)
        },
        "headers": {
            "X-Input-Size": {"description": "Input WxH.", **_SIZE_HEADER},
            "X-Output-Size": {"description": "Result WxH.", **_SIZE_HEADER},
            "X-Elapsed-Ms": {
                "description": "Milliseconds of work: decode, enlarge, encode (not upload, "
                "not waiting for a worker).",
                "schema": {"type": "integer"},
            },
            "X-Model": {"description": "The model and scale that ran, e.g. compact-x4."},
            "X-Runtime": {
                "description": "How it ran: backend, precision, tile, e.g. "
                "'pytorch bf16, tile 512 (measured)'."
            },
            "X-Frames": {
                "description": "Videos and animations: the frames written.",
                "schema": {"type": "integer"},
            },
            "X-Notes": {
                "description": "Videos: streams not copied, timestamps repaired; images: what "
                "the format could not keep (16 bits, an ICC profile), a HEIC's other images."
            },
        },
    },
    **_ERRORS,
}
_UPSCALE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    **UpscaleForm.model_json_schema()["properties"],
                },
            }
        }
    },
}


def create_app(
    max_upload_mb: float = DEFAULT_LIMITS.max_upload_mb,
    max_pixels: int = DEFAULT_LIMITS.max_pixels,
    workers: int = DEFAULT_LIMITS.workers,
    memory_budget_mb: float = DEFAULT_LIMITS.memory_budget_mb,
    max_request_gmacs: float = DEFAULT_LIMITS.max_request_gmacs,
    max_pending_gmacs: float = DEFAULT_LIMITS.max_pending_gmacs,
    client_timeout: float = 60.0,
    allowed_hosts: Collection[str] = LOCAL_HOSTS,
    max_video_seconds: float = DEFAULT_LIMITS.max_video_seconds,
    max_frames: int = DEFAULT_LIMITS.max_frames,
    upscaler_factory: UpscalerFactory = get_upscaler,
    model_lister: ModelLister = shipped_catalogue,
) -> FastAPI:
    """The app. ``upscaler_factory(name, scale)`` and ``model_lister()`` default to the shipped
    weights; tests inject tiny untrained models through them. ``allowed_hosts`` are the names
    clients may use for the server (``*``: any).
    """
    sizes = (max_upload_mb, max_pixels, workers, memory_budget_mb, max_request_gmacs)
    media = (client_timeout, max_video_seconds, max_frames)
    if min(*sizes, *media) <= 0 or max_pending_gmacs < max_request_gmacs:
        raise SuperresError(
            "need max_upload_mb, max_pixels, workers, memory_budget_mb, max_request_gmacs, "
            "client_timeout, max_video_seconds and max_frames above 0, and max_pending_gmacs "
            ">= max_request_gmacs"
        )
    max_upload_bytes = int(max_upload_mb * MEGABYTE)
    limits = Limits(
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        max_output_pixels=max_pixels * OUTPUT_GROWTH,
        max_side={
            fmt: ENCODER_MAX_SIDE[name]
            for fmt, name in ENCODERS.items()
            if name in ENCODER_MAX_SIDE
        },
        memory_budget_bytes=int(memory_budget_mb * MEGABYTE),
        max_request_gmacs=max_request_gmacs,
        max_pending_gmacs=max_pending_gmacs,
        client_timeout_s=client_timeout,
        max_video_seconds=max_video_seconds,
        max_frames=max_frames,
    )
    pool = WorkPool(workers)
    ledger = Ledger(limits.memory_budget_bytes, max_pending_gmacs, workers)

    def release(claim: Claim) -> None:
        """Close the claim; once nothing is in flight, return the freed memory to the system
        (the results were freed here, on the event loop's thread, not by the workers)."""
        ledger.close(claim)
        if not ledger.claims:
            trim_memory()

    def model_cost(name: str, scale: int) -> float:
        """The network's multiply-adds per output pixel, counted on a CPU copy: the counting
        hooks on the shared network would also count a worker's tiles."""
        model = upscaler_factory(name, scale).model
        counted = dataclasses.replace(model, network=copy.deepcopy(model.network).cpu())
        return multiply_adds_per_output_pixel(counted)

    def list_catalogue() -> Catalogue:
        entries = [ModelInfo.model_validate(entry) for entry in model_lister()]
        return Catalogue(entries, model_cost)

    catalogue = Lazy(list_catalogue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(
        title="superres",
        summary="Single-image super-resolution on this machine.",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN; /openapi.json stays
        redoc_url=None,
    )
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is left to read it

    @app.exception_handler(Exception)
    async def failed(_: Request, __: Exception) -> Response:
        """A bug: one line, and the guard's headers, which it cannot add itself (this answer
        goes out from outside it); the server logs the traceback."""
        return JSONResponse({"detail": "internal error"}, 500, headers=GUARD_HEADERS)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health(
            in_flight=len(ledger.claims),
            jobs=ledger.jobs(),
            memory_promised_bytes=ledger.memory_promised(),
            memory_budget_bytes=ledger.memory_budget,
            work_pending_gmacs=round(ledger.work_pending(), 3),
            max_pending_gmacs=ledger.work_budget,
        )

    @app.get("/api/limits")
    async def get_limits() -> Limits:
        return limits

    @app.get("/api/models", response_model_exclude_none=True)
    async def list_models() -> list[ModelInfo]:
        return (await catalogue.get()).listing()

    @app.get(
        "/api/sample.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A 128x128 photo."}},
    )
    async def sample() -> Response:
        return Response(await run_in_threadpool(sample_png), media_type="image/png")

    async def serve_upload(request: Request, claim: Claim) -> Response:
        """Receive, plan, queue and run one upload under ``claim``; the response releases it."""
        try:
            async with asyncio.timeout(client_timeout):
                upload, name, form = await _read_upload(
                    request, max_upload_bytes, lambda received: ledger.try_claim(claim, received)
                )
        except TimeoutError:
            raise HTTPException(
                408,
                f"the upload did not arrive within {client_timeout:g} s",
                {"Connection": "close"},
            ) from None
        models = await catalogue.get()
        model, scale = models.resolve(form)
        require_format(form.format)  # a missing extra is refused before the work
        media = await run_in_threadpool(probe_media, upload, name, limits.media())
        if media is None:
            probe = await run_in_threadpool(probe_upload, upload, name, max_pixels)
            cost = await models.cost(model, scale)
            plan = plan_request(probe, len(upload), scale, form.outscale, cost)
            check_plan(plan, name, f"{model} x{scale}", form.format, limits)
        else:
            if "format" in form.model_fields_set:
                kept = f"{media.kind}s come back as they came ({media.media_type})"
                raise HTTPException(422, f"{name}: format is for still images; {kept}")
            cost = await models.cost(model, scale)
            plan = plan_media(media, len(upload), scale, form.outscale, cost)
            label = f"{name} ({media.frames} frames)"
            check_plan(plan, label, f"{model} x{scale}", "", limits)
        if not ledger.try_claim(claim, plan.resident, plan.working, plan.gmacs):
            raise OverBudget
        cancel = threading.Event()
        job = partial(
            _upscale_upload,
            upload,
            name,
            model,
            scale,
            form,
            upscaler_for=upscaler_factory,
            max_pixels=max_pixels,
            cancel=cancel,
            media=media,
            media_limits=limits.media(),
        )
        result, seconds = await pool.run(job, cancel, _until_disconnected(request.receive))
        claim.working, claim.gmacs = 0, 0.0  # what remains is the result, until it is sent
        width, height = result.input_size
        models.record(model, scale, width * height * result.frames, seconds)
        headers = {
            "X-Input-Size": "{}x{}".format(*result.input_size),
            "X-Output-Size": "{}x{}".format(*result.output_size),
            "X-Elapsed-Ms": str(round(seconds * 1000)),
            "X-Model": f"{model}-x{scale}",
            "X-Runtime": result.runtime,
        }
        if media is not None:
            headers["X-Frames"] = str(result.frames)
        if result.notes:  # header values are Latin-1
            notes = "; ".join(result.notes).encode("latin-1", "replace").decode("latin-1")
            headers["X-Notes"] = notes
        return SentResponse(
            result.body,
            on_sent=partial(release, claim),
            stall_timeout=client_timeout,
            media_type=result.media_type or MEDIA_TYPES[form.format],
            headers=headers,
        )

    @app.post(
        "/api/upscale",
        response_class=Response,
        responses=_UPSCALE_RESPONSES,
        openapi_extra={"requestBody": _UPSCALE_BODY},
    )
    async def upscale(request: Request) -> Response:
        """Enlarge the uploaded image; the result comes back in the body, sizes in headers."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes + FORM_ALLOWANCE:
            raise _too_large(max_upload_bytes)
        claim = ledger.open()
        try:
            return await serve_upload(request, claim)
        except BaseException as error:
            release(claim)
            if isinstance(error, SuperresError):
                raise _refusal(error) from None
            if isinstance(error, OverBudget):
                raise HTTPException(
                    503,
                    f"busy: {len(ledger.claims)} requests hold "
                    f"{ledger.memory_promised() / MEGABYTE:,.0f} of "
                    f"{ledger.memory_budget / MEGABYTE:g} MB and "
                    f"{ledger.work_pending():,.0f} of {ledger.work_budget:,.0f} G multiply-adds "
                    "of work; try again shortly",
                    {"Retry-After": str(pool.retry_after(ledger.jobs()))},
                ) from None
            raise

    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = DEFAULT_LIMITS.max_upload_mb,
    max_pixels: int = DEFAULT_LIMITS.max_pixels,
    workers: int = DEFAULT_LIMITS.workers,
    precision: str = AUTO,
    backend: str = AUTO,
    tile: int | str | None = AUTO,
    device: str = "cpu",
    memory_budget_mb: float = DEFAULT_LIMITS.memory_budget_mb,
    max_request_gmacs: float = DEFAULT_LIMITS.max_request_gmacs,
    max_pending_gmacs: float = DEFAULT_LIMITS.max_pending_gmacs,
    allow_hosts: Collection[str] = (),
    max_video_seconds: float = DEFAULT_LIMITS.max_video_seconds,
    max_frames: int = DEFAULT_LIMITS.max_frames,
    model_files: Sequence[Path] = (),
) -> None:
    """Serve until interrupted: what ``superres serve`` runs. Clients may name the server by
    the localhost names, ``host`` (unless it is a wildcard address) and ``allow_hosts``;
    ``model_files`` are offered beside the shipped models (see :func:`served_files`)."""
    named = () if host in ANY_ADDRESS else (host,)
    files, file_entries = served_files(model_files)
    app = create_app(
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        workers=workers,
        memory_budget_mb=memory_budget_mb,
        max_request_gmacs=max_request_gmacs,
        max_pending_gmacs=max_pending_gmacs,
        allowed_hosts=(*LOCAL_HOSTS, *named, *allow_hosts),
        max_video_seconds=max_video_seconds,
        max_frames=max_frames,
        upscaler_factory=naming_files(
            files,
            partial(
                get_upscaler,
                tile=tile,
                device=device,
                precision=precision,
                backend=backend,
                max_output_pixels=max_pixels * OUTPUT_GROWTH,  # this server's own limit, again
            ),
        ),
        model_lister=lambda: shipped_catalogue() + file_entries,
    )
    uvicorn.run(app, host=host, port=port)
