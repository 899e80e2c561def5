"""``superres serve``: a web page and an HTTP API for upscaling, a thin shell over superres.

Uploads are parsed and processed in memory, so nothing is written to disk. The heavy work
(decode, enlarge, encode) runs on ``workers`` threads; a request is admitted before its upload
is read and at most ``workers + queue_size`` are in flight, so memory stays bounded and extra
requests get an immediate 503 with ``Retry-After`` instead of an ever longer wait.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field as FormField
from python_multipart.multipart import File as FormFile
from python_multipart.multipart import parse_options_header
from skimage import data as sample_data
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from superres.api import get_upscaler
from superres.engine.inference import Upscaler
from superres.engine.runtime import AUTO
from superres.errors import ImageTooLargeError, NotAnImageError, SuperresError
from superres.imageio.files import encode_image, read_image_bytes
from superres.models.registry import ALIASES, shipped_models

# (name, scale) -> Upscaler; called with ``denoise=`` too when a request sets it.
UpscalerFactory = Callable[..., Upscaler]
ModelLister = Callable[[], list[dict[str, Any]]]
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
DEFAULT_SCALE = 4
MEGABYTE = 1_000_000
# Room in a request for the multipart headers and the small form fields besides the image.
FORM_ALLOWANCE = 16 * 1024
# A result may hold up to 16 times the input limit's pixels: the largest input at x4.
OUTPUT_GROWTH = 16
# The astronaut's face, 128x128: small enough that the sample runs in a moment on any CPU.
SAMPLE_CROP = (slice(20, 148), slice(170, 298))
# The page loads nothing but its own files; results are shown from blob: URLs.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


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

    model: str = Field("default", description="A name or alias from /api/models.")
    scale: int | None = Field(
        None,
        ge=1,
        description=f"The model's scale. Default {DEFAULT_SCALE}; with outscale alone, the "
        "smallest offered scale reaching it (else the largest).",
    )
    outscale: float | None = Field(
        None, gt=0, le=16, description="Final size factor: the result is resampled to it."
    )
    format: Literal["png", "jpg", "webp"] = Field("png", description="Encoding of the result.")
    denoise: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Models with a denoise control (see /api/models): 0 keeps the input's "
        "texture and noise, 1 (their default) cleans them.",
    )


class ErrorDetail(BaseModel):
    """Every refusal: one line saying why."""

    detail: str


class Health(BaseModel):
    """Alive, and how full: a monitor can tell a busy server from a dead one."""

    status: Literal["ok"] = "ok"
    in_flight: int
    capacity: int


class Limits(BaseModel):
    """What the server accepts, so the page can refuse early with the same numbers."""

    max_upload_bytes: int
    max_pixels: int
    max_output_pixels: int


@dataclass(frozen=True)
class Upscaled:
    """A worker's result: the encoded image and the sizes the response headers report."""

    body: bytes
    input_size: tuple[int, int]  # width, height
    output_size: tuple[int, int]
    runtime: str  # how the model ran, e.g. "pytorch bf16, tile 512 (measured)"


class WorkPool:
    """``workers`` threads for the heavy work and room for ``queue_size`` requests waiting.

    The count of requests in flight is only touched on the event loop thread, so it needs no
    lock; the executor's own queue then never holds more than ``queue_size`` jobs.
    """

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.in_flight = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="superres-web")
        self._jobs = 0
        self._seconds = 0.0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.capacity:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1

    async def run(self, job: Callable[[], T]) -> tuple[T, float]:
        """``job()`` on a worker thread; returns its result and the seconds it worked."""

        def timed() -> tuple[T, float]:
            start = time.perf_counter()
            return job(), time.perf_counter() - start

        result, seconds = await asyncio.get_running_loop().run_in_executor(self._executor, timed)
        self._jobs += 1
        self._seconds += seconds
        return result, seconds

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: mean job time times the jobs per worker."""
        mean = self._seconds / self._jobs if self._jobs else 1.0
        return max(1, math.ceil(mean * self.in_flight / self.workers))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Catalogue:
    """The models on offer and the speed measured for each (name, scale) while serving."""

    def __init__(self, entries: list[ModelInfo]) -> None:
        self.entries = entries
        self._work: dict[tuple[str, int], tuple[int, float]] = {}  # (pixels, seconds) so far

    def resolve(self, form: UpscaleForm) -> tuple[str, int]:
        """(canonical name, scale) for a request; unknown model 404, unoffered scale 422."""
        matching = [e for e in self.entries if form.model in (e.name, *e.aliases)]
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


def shipped_catalogue() -> list[dict[str, Any]]:
    """The package's weights, described by their own metadata (loads each file once)."""
    return [
        {
            "name": model.name,
            "aliases": [alias for alias, name in ALIASES.items() if name == model.name],
            "scale": model.scale,
            "parameters": model.parameters,
            "val_psnr_db": model.metadata.get("val_psnr") or None,
            "val_dataset": model.metadata.get("validation_data") or None,
            "denoise": model.model.keep_texture is not None,
        }
        for model in shipped_models()
    ]


@cache
def sample_png() -> bytes:
    """A small built-in photo to try the page on, encoded once on first request."""
    return encode_image(sample_data.astronaut()[SAMPLE_CROP], "png")


def _upscale_upload(
    upload: bytes,
    name: str,
    model: str,
    scale: int,
    form: UpscaleForm,
    *,
    upscaler_for: UpscalerFactory,
    max_pixels: int,
    max_output_pixels: int,
) -> Upscaled:
    """Decode, check the result's size, enlarge and encode: a worker thread's whole job."""
    image = read_image_bytes(upload, name, max_pixels=max_pixels)
    height, width = image.pixels.shape[:2]
    factor = max(scale, form.outscale or 0)  # the native result is made even when resampled
    big_w, big_h = round(width * factor), round(height * factor)
    if big_w * big_h > max_output_pixels:
        raise ImageTooLargeError(
            f"{name}: enlarging {width}x{height} by {factor:g} makes {big_w}x{big_h} = "
            f"{big_w * big_h:,} pixels, over the limit of {max_output_pixels:,}"
        )
    options = {} if form.denoise is None else {"denoise": form.denoise}
    upscaler = upscaler_for(model, scale, **options)
    pixels = upscaler.upscale(image.pixels, form.outscale)
    body = encode_image(pixels, form.format, icc_profile=image.icc_profile, exif=image.exif)
    runtime = upscaler.runtime.describe()
    return Upscaled(body, (width, height), (pixels.shape[1], pixels.shape[0]), runtime)


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


async def _read_upload(request: Request, limit: int) -> tuple[bytes, str, UpscaleForm]:
    """The multipart body parsed in memory as it streams in: (image bytes, file name, form)."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "send multipart/form-data with the file in a field 'image'")
    fields: dict[str, str] = {}
    files: list[tuple[str, str, bytes]] = []  # field name, file name, data

    def on_field(field: FormField) -> None:
        fields[bytes(field.field_name or b"").decode()] = (field.value or b"").decode()

    def on_file(file: FormFile) -> None:
        name, file_name = bytes(file.field_name or b""), file.file_name or b""
        files.append((name.decode(), file_name.decode(), file.file_object.getvalue()))

    parser = FormParser(
        "multipart/form-data",
        on_field,
        on_file,
        boundary=options[b"boundary"],
        config={"MAX_MEMORY_FILE_SIZE": float("inf")},  # the body limit below bounds it
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + FORM_ALLOWANCE:
                raise _too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except (FormParserError, UnicodeDecodeError) as error:
        raise HTTPException(422, f"malformed multipart body ({error})") from error
    if [field for field, _, _ in files] != ["image"]:
        raise HTTPException(422, "send exactly one file, in the field 'image'")
    _, file_name, upload = files[0]
    try:
        form = UpscaleForm.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(422, _one_line(error)) from None
    return upload, PurePosixPath(file_name.replace("\\", "/")).name or "upload", form


async def _discard_body(request: Request, limit: int) -> None:
    """Read and drop an upload we refuse, so the client is not reset before it sees why."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            return


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "Unknown model."},
    413: {
        "model": ErrorDetail,
        "description": "Upload over the byte limit, or input or result over the pixel limit.",
    },
    415: {"model": ErrorDetail, "description": "Not multipart, or the file is not an image."},
    422: {
        "model": ErrorDetail,
        "description": "Bad form fields, a scale the model lacks, or a corrupt image.",
    },
    503: {
        "model": ErrorDetail,
        "description": "Busy: workers + queue_size requests are already in flight.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
        },
    },
}
_SIZE_HEADER = {"schema": {"type": "string", "pattern": r"^\d+x\d+$"}}
_UPSCALE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The enlarged image, in the requested format.",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in MEDIA_TYPES.values()
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
    max_upload_mb: float = 20.0,
    max_pixels: int = 16_000_000,
    workers: int = 1,
    queue_size: int = 4,
    upscaler_factory: UpscalerFactory = get_upscaler,
    model_lister: ModelLister = shipped_catalogue,
) -> FastAPI:
    """The app. ``upscaler_factory(name, scale)`` and ``model_lister()`` default to the shipped
    weights; tests inject tiny untrained models through them.
    """
    if max_upload_mb <= 0 or max_pixels < 1 or workers < 1 or queue_size < 0:
        raise SuperresError(
            "need max_upload_mb > 0, max_pixels >= 1, workers >= 1 and queue_size >= 0"
        )
    max_upload_bytes = int(max_upload_mb * MEGABYTE)
    limits = Limits(
        max_upload_bytes=max_upload_bytes,
        max_pixels=max_pixels,
        max_output_pixels=max_pixels * OUTPUT_GROWTH,
    )
    pool = WorkPool(workers, queue_size)
    catalogue: Catalogue | None = None

    async def get_catalogue() -> Catalogue:
        """Listed on first use: listing shipped weights loads every file."""
        nonlocal catalogue
        if catalogue is None:
            listed = await run_in_threadpool(model_lister)
            catalogue = Catalogue([ModelInfo.model_validate(entry) for entry in listed])
        return catalogue

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
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is left to read it

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health(in_flight=pool.in_flight, capacity=pool.capacity)

    @app.get("/api/limits")
    async def get_limits() -> Limits:
        return limits

    @app.get("/api/models", response_model_exclude_none=True)
    async def list_models() -> list[ModelInfo]:
        return (await get_catalogue()).listing()

    @app.get(
        "/api/sample.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A 128x128 photo."}},
    )
    async def sample() -> Response:
        return Response(await run_in_threadpool(sample_png), media_type="image/png")

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
        if not pool.try_acquire():
            await _discard_body(request, max_upload_bytes + FORM_ALLOWANCE)
            raise HTTPException(
                503,
                f"busy: {pool.in_flight} images in progress; try again shortly",
                {"Retry-After": str(pool.retry_after())},
            )
        try:
            upload, name, form = await _read_upload(request, max_upload_bytes)
            models = await get_catalogue()
            model, scale = models.resolve(form)
            job = partial(
                _upscale_upload,
                upload,
                name,
                model,
                scale,
                form,
                upscaler_for=upscaler_factory,
                max_pixels=max_pixels,
                max_output_pixels=limits.max_output_pixels,
            )
            result, seconds = await pool.run(job)
        except SuperresError as error:
            raise _refusal(error) from None
        finally:
            pool.release()
        width, height = result.input_size
        models.record(model, scale, width * height, seconds)
        return Response(
            result.body,
            media_type=MEDIA_TYPES[form.format],
            headers={
                "X-Input-Size": "{}x{}".format(*result.input_size),
                "X-Output-Size": "{}x{}".format(*result.output_size),
                "X-Elapsed-Ms": str(round(seconds * 1000)),
                "X-Model": f"{model}-x{scale}",
                "X-Runtime": result.runtime,
            },
        )

    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 20.0,
    max_pixels: int = 16_000_000,
    workers: int = 1,
    precision: str = AUTO,
    backend: str = AUTO,
    tile: int | str | None = AUTO,
) -> None:
    """Serve until interrupted: what ``superres serve`` runs."""
    import uvicorn

    app = create_app(
        max_upload_mb=max_upload_mb,
        max_pixels=max_pixels,
        workers=workers,
        upscaler_factory=partial(get_upscaler, tile=tile, precision=precision, backend=backend),
    )
    uvicorn.run(app, host=host, port=port)
