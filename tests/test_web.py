"""The web API through FastAPI's TestClient, on tiny untrained models (no shipped weights)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin
from starlette.types import Message

from superres.api import get_upscaler
from superres.apps.web.server import (
    LOCAL_HOSTS,
    PAGE_POLICY,
    PIXEL_OVERHEAD_MACS,
    STATIC,
    Ledger,
    Plan,
    Probe,
    create_app,
    plan_request,
    probe_upload,
)
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.imageio.files import encode_image, read_image_bytes
from superres.models import create_model, save_weights
from superres.models.complexity import multiply_adds_per_output_pixel
from superres.models.registry import pair_for_denoise

LOCAL = "http://localhost"  # a name the server answers to by default
SCALES = (2, 4)
UPSCALERS = {scale: Upscaler(create_model("compact", scale, width=8, blocks=1)) for scale in SCALES}


def tiny_factory(name: str, scale: int) -> Upscaler:
    assert name == "compact"
    return UPSCALERS[scale]


def tiny_lister() -> list[dict]:
    return [
        {
            "name": "compact",
            "aliases": ["default"],
            "scale": scale,
            "parameters": upscaler.model.parameters,
            "val_psnr_db": 30.0 + scale,
            "val_dataset": "Set5",
        }
        for scale, upscaler in UPSCALERS.items()
    ]


def make_client(factory: Callable[[str, int], Upscaler] = tiny_factory, **options) -> TestClient:
    app = create_app(upscaler_factory=factory, model_lister=tiny_lister, **options)
    return TestClient(app, base_url=LOCAL)


@pytest.fixture
def client() -> TestClient:
    return make_client()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """80x72 (not square, so a swapped width and height shows)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[40:112, 180:260])


def png_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", **options)
    return buffer.getvalue()


def post(client: TestClient, upload: bytes, name: str = "photo.png", **fields) -> httpx.Response:
    return client.post(
        "/api/upscale",
        files={"image": (name, upload, "application/octet-stream")},
        data={key: str(value) for key, value in fields.items()},
    )


def decoded(response: httpx.Response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def assert_refused(response: httpx.Response, status: int, *fragments: str) -> None:
    """A refusal: the status, and JSON with one line that says why."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for fragment in fragments:
        assert fragment in detail


# ------------------------------------------------------------------------------ plain endpoints


def test_healthz_reports_the_budgets() -> None:
    client = make_client(memory_budget_mb=300, max_request_gmacs=10, max_pending_gmacs=40)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "in_flight": 0,
        "jobs": 0,
        "memory_promised_bytes": 0,
        "memory_budget_bytes": 300_000_000,
        "work_pending_gmacs": 0.0,
        "max_pending_gmacs": 40.0,
    }


def test_limits_follow_the_options() -> None:
    client = make_client(
        max_upload_mb=1.5,
        max_pixels=1000,
        memory_budget_mb=250,
        max_request_gmacs=7,
        max_pending_gmacs=21,
        client_timeout=9,
        max_video_seconds=12,
        max_frames=34,
    )
    assert client.get("/api/limits").json() == {
        "max_upload_bytes": 1_500_000,
        "max_pixels": 1000,
        "max_output_pixels": 16000,
        "max_side": {"jpg": 65535, "webp": 16383, "avif": 32768},
        "memory_budget_bytes": 250_000_000,
        "max_request_gmacs": 7.0,
        "max_pending_gmacs": 21.0,
        "client_timeout_s": 9.0,
        "max_video_seconds": 12.0,
        "max_frames": 34,
    }


def test_models_list_what_is_offered_and_speed_only_once_measured(client, photo) -> None:
    listed = client.get("/api/models").json()
    assert [(entry["name"], entry["scale"]) for entry in listed] == [("compact", 2), ("compact", 4)]
    assert listed[0]["aliases"] == ["default"]
    assert listed[0]["parameters"] == UPSCALERS[2].model.parameters
    assert listed[0]["val_psnr_db"] == 32.0 and listed[0]["val_dataset"] == "Set5"
    assert all("speed_mpx_per_s" not in entry for entry in listed)  # nothing measured yet

    assert post(client, png_bytes(photo), scale=2).status_code == 200
    speeds = {e["scale"]: e.get("speed_mpx_per_s") for e in client.get("/api/models").json()}
    assert speeds[2] > 0 and speeds[4] is None


def test_sample_is_a_small_png(client) -> None:
    response = client.get("/api/sample.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = decoded(response)
    assert (image.format, image.size, image.mode) == ("PNG", (128, 128), "RGB")


def test_page_and_its_files_load_nothing_from_elsewhere(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert sorted(assets) == ["/static/app.js", "/static/style.css"]
    for asset in assets:
        assert client.get(asset).status_code == 200
    for path in STATIC.iterdir():
        assert not re.search(r"https?://|url\(\s*['\"]?//", path.read_text()), path.name


def test_openapi_describes_the_api(client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/api/models", "/api/limits", "/api/sample.png", "/api/upscale"} <= set(
        spec["paths"]
    )
    upscale = spec["paths"]["/api/upscale"]["post"]
    body = upscale["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["image"]
    assert body["properties"]["image"] == {"type": "string", "format": "binary"}
    assert body["properties"]["format"]["enum"] == ["png", "jpg", "webp", "avif", "heic", "jxl"]
    assert {"model", "scale", "outscale"} <= set(body["properties"])
    responses = upscale["responses"]
    images = {"image/png", "image/jpeg", "image/webp", "image/avif", "image/heic", "image/jxl"}
    assert images <= set(responses["200"]["content"])
    assert {"X-Input-Size", "X-Output-Size", "X-Elapsed-Ms"} <= set(responses["200"]["headers"])
    assert {"404", "413", "415", "422", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]
    assert "application/json" in responses["413"]["content"]
    sample = spec["paths"]["/api/sample.png"]["get"]["responses"]["200"]["content"]
    assert list(sample) == ["image/png"]


# ----------------------------------------------------------------------------------- upscaling


@pytest.mark.parametrize("scale", SCALES)
def test_result_is_the_models_output_at_input_times_scale(client, photo, scale) -> None:
    response = post(client, png_bytes(photo), scale=scale)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-input-size"] == "80x72"
    assert response.headers["x-output-size"] == f"{80 * scale}x{72 * scale}"
    assert response.headers["x-model"] == f"compact-x{scale}"
    assert int(response.headers["x-elapsed-ms"]) >= 0
    assert response.headers["x-runtime"].startswith("pytorch fp32, tile ")  # untrained: no table
    result = np.asarray(decoded(response))
    assert result.shape == (72 * scale, 80 * scale, 3)
    np.testing.assert_array_equal(result, UPSCALERS[scale].upscale(photo))


def test_default_model_and_scale_are_the_alias_at_x4(client, photo) -> None:
    response = post(client, png_bytes(photo))
    assert response.status_code == 200
    assert response.headers["x-model"] == "compact-x4"


@pytest.mark.parametrize(
    ("outscale", "model_used"), [(1.5, "compact-x2"), (3, "compact-x4"), (5.5, "compact-x4")]
)
def test_outscale_picks_a_scale_and_resamples(client, photo, outscale, model_used) -> None:
    response = post(client, png_bytes(photo), outscale=outscale)
    assert response.status_code == 200, response.text
    assert response.headers["x-model"] == model_used
    expected = (round(80 * outscale), round(72 * outscale))
    assert decoded(response).size == expected
    assert response.headers["x-output-size"] == "{}x{}".format(*expected)


@pytest.mark.parametrize(
    ("fmt", "media_type", "pillow_format"),
    [
        ("png", "image/png", "PNG"),
        ("jpg", "image/jpeg", "JPEG"),
        ("webp", "image/webp", "WEBP"),
        ("avif", "image/avif", "AVIF"),
        ("heic", "image/heic", "HEIF"),
        ("jxl", "image/jxl", "JXL"),
    ],
)
def test_formats(client, photo, fmt, media_type, pillow_format) -> None:
    response = post(client, png_bytes(photo), scale=2, format=fmt)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    image = decoded(response)  # the server has registered the HEIF and JXL plugins by now
    assert (image.format, image.size) == (pillow_format, (160, 144))


def test_a_heic_burst_upload_gives_its_primary_image_and_says_so(client, photo) -> None:
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    encode_image(photo, "heic")  # registers Pillow's HEIF writer
    burst = io.BytesIO()
    frames[0].save(burst, format="HEIF", save_all=True, append_images=frames[1:])
    response = post(client, burst.getvalue(), "burst.heic", scale=2)
    assert response.status_code == 200, response.text
    assert response.headers["x-input-size"] == "80x72"
    assert response.headers["x-notes"] == "holds 2 images; only the primary one is upscaled"


# ------------------------------------------------------------------------------------ refusals


def test_upload_declared_over_the_byte_limit(photo) -> None:
    client = make_client(max_upload_mb=0.005)  # 5 kB
    response = post(client, png_bytes(np.tile(photo, (4, 4, 1)), compress_level=0))
    assert_refused(response, 413, "over the limit of 0.005 MB")


def test_streamed_upload_over_the_byte_limit(photo) -> None:
    """Without Content-Length (chunked), the limit is enforced while the body arrives."""
    client = make_client(max_upload_mb=0.005)
    request = client.build_request(
        "POST",
        "/api/upscale",
        files={"image": ("big.png", png_bytes(np.tile(photo, (4, 4, 1)), compress_level=0))},
    )
    body = request.read()
    chunks = (body[start : start + 4096] for start in range(0, len(body), 4096))
    response = client.post(
        "/api/upscale", content=chunks, headers={"content-type": request.headers["content-type"]}
    )
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "over the limit of 0.005 MB")


def test_input_over_the_pixel_limit(photo) -> None:
    response = post(make_client(max_pixels=80 * 72 - 1), png_bytes(photo), scale=2)
    assert_refused(response, 413, "photo.png: 80x72 = 5,760 pixels, over the limit of 5,759")


def test_result_over_the_output_pixel_limit(photo) -> None:
    client = make_client(max_pixels=80 * 72)  # results up to 16 times that: x4 fits, x4.5 not
    assert post(client, png_bytes(photo), scale=4).status_code == 200
    response = post(client, png_bytes(photo), outscale=4.5)
    assert_refused(response, 413, "makes 360x324", "over the limit of 92,160")


def test_refusals_free_their_slot(client, photo) -> None:
    """Each refusal below is also checked not to leak its place in the pool."""
    truncated = png_bytes(photo)[:300]
    cases = [
        (post(client, b"just some text\n", "notes.txt", scale=2), 415, "notes.txt: not an image"),
        (post(client, truncated, scale=2), 422, "photo.png: corrupt or truncated image data"),
        (post(client, b"", scale=2), 422, "photo.png: file is empty"),
        (post(client, png_bytes(photo), model="esrgan"), 404, "unknown model 'esrgan'"),
        (post(client, png_bytes(photo), scale=3), 422, "compact has no x3 weights; scales: x2, x4"),
        (post(client, png_bytes(photo), scale="two"), 422, "scale: Input should be a valid"),
        (post(client, png_bytes(photo), outscale=0), 422, "outscale: Input should be greater"),
        (post(client, png_bytes(photo), format="gif"), 422, "format: Input should be 'png'"),
        (post(client, png_bytes(photo), colour="red"), 422, "colour: Extra inputs"),
        (client.post("/api/upscale", files={"photo": ("a.png", b"")}), 422, "exactly one file"),
        (client.post("/api/upscale", data={"scale": "2"}), 415, "multipart/form-data"),
    ]
    for response, status, fragment in cases:
        assert_refused(response, status, fragment)
    assert client.get("/healthz").json()["in_flight"] == 0


@pytest.mark.parametrize(
    "options",
    [{"workers": 0}, {"memory_budget_mb": 0}, {"max_request_gmacs": 5, "max_pending_gmacs": 4}],
)
def test_bad_options_are_user_errors(options) -> None:
    with pytest.raises(SuperresError, match="above 0, and max_pending_gmacs >= max_request"):
        create_app(model_lister=tiny_lister, upscaler_factory=tiny_factory, **options)


# ---------------------------------------------------------------------- budgets and admission


def test_ledger_counts_every_claims_resident_bytes_but_only_the_workers_largest_working_sets():
    ledger = Ledger(memory_budget=100, work_budget=10, workers=1)
    first, second, third, fourth = (ledger.open() for _ in range(4))
    assert ledger.try_claim(first, 10, 50, 2)
    assert ledger.try_claim(second, 10, 50, 2)  # 20 resident + one working set of 50
    assert ledger.try_claim(third, 10, 60, 2)  # 30 + 60: the largest one counts
    assert ledger.memory_promised() == 90 and ledger.jobs() == 3
    assert not ledger.try_claim(fourth, 20, 10, 1)  # 50 + 60 > 100
    assert (fourth.resident, fourth.working, fourth.gmacs) == (0, 0, 0.0)  # left as it was
    assert not ledger.try_claim(fourth, 1, 1, 5)  # 11 G of work pending > 10
    ledger.close(third)
    assert ledger.try_claim(fourth, 20, 10, 1)  # 40 + 50
    assert ledger.work_pending() == 5


def test_plan_counts_memory_and_work_from_the_header() -> None:
    """80x72 RGB at x2 then resampled to x1.5: every image-sized buffer the request makes."""
    plan = plan_request(Probe(80, 72, 3, 1), 1000, 2, 1.5, macs_per_pixel=5000)
    assert plan.output_size == (120, 108) and plan.largest_size == (160, 144)
    assert plan.resident == 1000 + 120 * 108 * 3  # the upload, then the encoded result
    decoded, native, resampled, encoder_copy = (
        80 * 72 * 3,
        160 * 144 * 3,
        120 * 108 * 3,
        120 * 108 * 4,
    )
    assert plan.working == decoded + native + resampled + encoder_copy
    assert plan.gmacs == pytest.approx(160 * 144 * (5000 + PIXEL_OVERHEAD_MACS) / 1e9)
    wide = plan_request(Probe(80, 72, 4, 2), 1000, 2, None, macs_per_pixel=5000)
    assert wide.working == (80 * 72 + 160 * 144) * 8 + 160 * 144 * 4 * 2


@pytest.mark.parametrize(
    ("pixels", "channels", "sample_bytes"),
    [
        (np.zeros((6, 5, 3), np.uint16), 3, 2),
        (np.zeros((6, 5, 2), np.uint8), 2, 1),
        (np.zeros((6, 5), np.uint16), 1, 2),
        (np.zeros((6, 5, 4), np.uint8), 4, 1),
    ],
)
def test_probe_reads_size_and_layout_from_the_header(pixels, channels, sample_bytes) -> None:
    assert probe_upload(encode_image(pixels, "png"), "x.png", 1000) == Probe(
        5, 6, channels, sample_bytes
    )


def test_probe_of_a_palette_image_allows_for_alpha(photo) -> None:
    buffer = io.BytesIO()
    Image.fromarray(photo).quantize(16).save(buffer, "PNG")
    assert probe_upload(buffer.getvalue(), "p.png", 10**6) == Probe(80, 72, 4, 1)


def test_probe_of_a_deep_avif_counts_the_16_bits_it_is_decoded_to(monkeypatch) -> None:
    """Pillow opens a 10-bit AVIF as 8-bit RGB, but imagecodecs decodes it to uint16: 2 bytes a
    sample, as decoding gives; without imagecodecs it is read, and counted, at 8 bits."""
    imagecodecs = pytest.importorskip("imagecodecs")
    samples = np.linspace(0, 1023, 6 * 5 * 3).reshape(6, 5, 3).astype(np.uint16)
    upload = bytes(imagecodecs.avif_encode(samples, level=90, bitspersample=10))
    assert probe_upload(upload, "deep.avif", 1000) == Probe(5, 6, 3, 2)
    assert read_image_bytes(upload, "deep.avif").pixels.dtype == np.uint16
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    assert probe_upload(upload, "deep.avif", 1000) == Probe(5, 6, 3, 1)
    assert read_image_bytes(upload, "deep.avif").pixels.dtype == np.uint8


def test_probe_refuses_with_the_decoders_reason(photo) -> None:
    with pytest.raises(SuperresError, match="notes.txt: not an image"):
        probe_upload(b"some text", "notes.txt", 1000)
    with pytest.raises(SuperresError, match="over the limit of 100"):
        probe_upload(png_bytes(photo), "photo.png", 100)


def one_job(upload: bytes, scale: int = 2) -> Plan:
    """The server's own estimate for the test photo (80x72 RGB) on the tiny model."""
    cost = multiply_adds_per_output_pixel(UPSCALERS[scale].model)
    return plan_request(Probe(80, 72, 3, 1), len(upload), scale, None, cost)


class Blocking:
    """A factory whose upscalers wait for ``release`` (and announce that they started)."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.ran: list[int] = []  # the scales whose upscale ran

    def __call__(self, name: str, scale: int) -> Upscaler:
        outer = self

        class Waiting(Upscaler):
            def upscale(self, pixels, outscale=None, progress=None):
                outer.ran.append(scale)
                outer.started.set()
                assert outer.release.wait(30)
                return super().upscale(pixels, outscale, progress)

        return Waiting(UPSCALERS[scale].model)


def wait_for(client: TestClient, key: str, value: int) -> None:
    for _ in range(1000):
        if client.get("/healthz").json()[key] == value:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"/healthz never showed {key} = {value}")


@pytest.mark.parametrize("budget", ["memory", "work"])
def test_a_full_budget_is_refused_with_retry_after(photo, budget) -> None:
    """Budgets for exactly two such jobs: one runs, one waits, the third is turned away."""
    upload = png_bytes(photo)
    plan = one_job(upload)
    if budget == "memory":
        options = {"memory_budget_mb": (2 * plan.resident + plan.working) / 1e6}
    else:
        options = {"max_request_gmacs": plan.gmacs, "max_pending_gmacs": 2.5 * plan.gmacs}
    factory = Blocking()
    with make_client(factory, **options) as client, ThreadPoolExecutor(2) as pool:
        running = pool.submit(post, client, upload, scale=2)
        assert factory.started.wait(30)
        waiting = pool.submit(post, client, upload, scale=2)
        wait_for(client, "jobs", 2)
        refused = post(client, upload, scale=2)
        factory.release.set()
        assert running.result().status_code == 200
        assert waiting.result().status_code == 200
        assert client.get("/healthz").json()["in_flight"] == 0
    assert_refused(refused, 503, "busy: 2 requests hold", "try again shortly")
    assert int(refused.headers["retry-after"]) >= 1


def test_a_burst_beyond_the_old_fixed_queue_is_all_served(client, photo) -> None:
    upload = png_bytes(photo)
    with client, ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: post(client, upload, scale=2).status_code, range(12)))
    assert statuses == [200] * 12


def test_work_over_the_per_request_limit(photo) -> None:
    upload = png_bytes(photo)
    limit = one_job(upload, 4).gmacs * 0.9
    client = make_client(max_request_gmacs=limit)
    assert post(client, upload, scale=2).status_code == 200  # a quarter of the work
    response = post(client, upload, scale=4)
    assert_refused(
        response, 413, "photo.png: enlarging 80x72 by 4 with compact x4 is", f"limit of {limit:.0f}"
    )


def test_memory_over_the_budget(photo) -> None:
    upload = png_bytes(photo)
    needed = one_job(upload)
    response = post(make_client(memory_budget_mb=0.05), upload, scale=2)
    megabytes = (needed.resident + needed.working) / 1e6
    assert_refused(response, 413, f"needs about {megabytes:.1f} MB", "memory budget of 0.05 MB")


class NeverRuns(Upscaler):
    def upscale(self, pixels, outscale=None, progress=None):
        raise AssertionError("the work started")


@pytest.mark.parametrize(
    ("fmt", "side", "encoder", "limit"),
    [("webp", 8192, "WEBP", "16,383"), ("jpg", 32768, "JPEG", "65,535")],
)
def test_side_limit_of_the_format_is_refused_before_the_work(fmt, side, encoder, limit) -> None:
    """A 1-pixel-high strip, small in bytes and pixels, whose x2 result is too wide for fmt."""
    client = make_client(lambda name, scale: NeverRuns(UPSCALERS[scale].model))
    strip = png_bytes(np.zeros((1, side, 3), np.uint8))
    response = post(client, strip, "strip.png", scale=2, format=fmt)
    expected = f"makes {2 * side}x2, over {encoder}'s limit of {limit} pixels a side"
    assert_refused(response, 413, "strip.png: enlarging", expected)


# ------------------------------------------------------------ clients that are slow or leave


def multipart(upload: bytes, **fields) -> tuple[bytes, str]:
    """A form post's body and content type, as httpx would send them."""
    data = {key: str(value) for key, value in fields.items()}
    request = httpx.Request("POST", LOCAL, files={"image": ("photo.png", upload)}, data=data)
    return request.read(), request.headers["content-type"]


async def forever() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class Exchange:
    """One raw ASGI request: the body in ``pieces`` (the last marked final unless ``stall``),
    then whatever ``then`` returns; the response is recorded, read as slowly as ``read``."""

    def __init__(
        self,
        body: bytes,
        content_type: str,
        *,
        pieces: int = 1,
        stall: bool = False,
        then: Callable[[], Awaitable[Message]] = forever,
        read: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        step = -(-len(body) // pieces)
        chunks = [body[start : start + step] for start in range(0, len(body), step)]
        self.messages = [
            {"type": "http.request", "body": chunk, "more_body": stall or n < len(chunks) - 1}
            for n, chunk in enumerate(chunks)
        ]
        self.content_type, self.then, self.read = content_type, then, read
        self.status = 0
        self.body = b""

    async def receive(self) -> Message:
        return self.messages.pop(0) if self.messages else await self.then()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif self.read is not None:
            await self.read()
        else:
            self.body += message.get("body", b"")

    async def run(self, app) -> Exchange:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/upscale",
            "raw_path": b"/api/upscale",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost"), (b"content-type", self.content_type.encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("localhost", 80),
        }
        await app(scope, self.receive, self.send)
        return self


async def health(app) -> dict:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
        return (await client.get("/healthz")).json()


def test_a_stalled_upload_holds_no_worker(photo) -> None:
    """Half an upload, then silence: it holds only its bytes, and others are served."""
    upload = png_bytes(photo)
    plan = one_job(upload)
    app = create_app(
        upscaler_factory=tiny_factory,
        model_lister=tiny_lister,
        max_request_gmacs=plan.gmacs,
        max_pending_gmacs=plan.gmacs,  # room in the queue for one job only
    )
    body, kind = multipart(upload, scale=2)

    async def scenario() -> tuple[Exchange, dict, dict]:
        stalled = asyncio.ensure_future(Exchange(body[: len(body) // 2], kind, stall=True).run(app))
        for _ in range(100):
            await asyncio.sleep(0)
        during = await health(app)
        served = await Exchange(body, kind).run(app)
        stalled.cancel()  # the connection drops
        with suppress(asyncio.CancelledError):
            await stalled
        return served, during, await health(app)

    served, during, after = asyncio.run(scenario())
    assert served.status == 200
    assert during["in_flight"] == 1 and during["jobs"] == 0
    assert 0 < during["memory_promised_bytes"] <= len(body)
    assert after["in_flight"] == 0


def test_an_upload_that_does_not_arrive_in_time_gets_408(photo) -> None:
    app = create_app(upscaler_factory=tiny_factory, model_lister=tiny_lister, client_timeout=0.05)
    body, kind = multipart(png_bytes(photo), scale=2)

    async def scenario() -> tuple[Exchange, dict]:
        return await Exchange(body, kind, pieces=3, stall=True).run(app), await health(app)

    stalled, after = asyncio.run(scenario())
    assert stalled.status == 408 and b"did not arrive within 0.05 s" in stalled.body
    assert after["in_flight"] == 0


def test_a_queued_job_whose_client_left_never_runs(photo) -> None:
    factory = Blocking()
    app = create_app(upscaler_factory=factory, model_lister=tiny_lister)
    first = multipart(png_bytes(photo), scale=2)
    second = multipart(png_bytes(photo), scale=4)

    async def scenario() -> tuple[Exchange, Exchange, dict]:
        loop = asyncio.get_running_loop()
        running = asyncio.ensure_future(Exchange(*first).run(app))
        assert await loop.run_in_executor(None, factory.started.wait, 30)

        async def leave() -> Message:  # asked only once the job is queued
            return {"type": "http.disconnect"}

        gone = await Exchange(*second, then=leave).run(app)
        factory.release.set()
        return await running, gone, await health(app)

    running, gone, after = asyncio.run(scenario())
    assert running.status == 200 and gone.status == 400
    assert factory.ran == [2]  # the x4 job was dropped from the queue
    assert after["in_flight"] == 0


def test_a_running_job_whose_client_left_stops_between_tiles(photo) -> None:
    first_tile = threading.Event()
    tiles: list[int] = []

    class Watched(Upscaler):
        def upscale(self, pixels, outscale=None, progress=None):
            def watch(done: int, total: int) -> None:
                tiles.append(done)
                first_tile.set()
                for _ in range(3000):  # until the server's own check says to stop
                    progress(done, total)
                    threading.Event().wait(0.01)
                raise AssertionError("the job went on after its client left")

            return super().upscale(pixels, outscale, watch)

    upscaler = Watched(UPSCALERS[2].model, tile=16)  # 80x72 in 16-pixel tiles: 25 tiles
    app = create_app(upscaler_factory=lambda name, scale: upscaler, model_lister=tiny_lister)
    body, kind = multipart(png_bytes(photo), scale=2)

    async def leave_after_a_tile() -> Message:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, first_tile.wait, 30)
        return {"type": "http.disconnect"}

    async def scenario() -> tuple[Exchange, dict]:
        return await Exchange(body, kind, then=leave_after_a_tile).run(app), await health(app)

    gone, after = asyncio.run(scenario())
    assert gone.status == 400 and tiles == [1]
    assert after["in_flight"] == 0


def test_a_client_that_stops_reading_the_result_frees_its_claim(photo) -> None:
    app = create_app(upscaler_factory=tiny_factory, model_lister=tiny_lister, client_timeout=0.2)
    body, kind = multipart(png_bytes(photo), scale=4)

    async def scenario() -> tuple[Exchange, dict]:
        return await Exchange(body, kind, read=forever).run(app), await health(app)

    stalled, after = asyncio.run(scenario())
    assert stalled.status == 200 and after["in_flight"] == 0


def test_concurrent_first_requests_list_the_models_once() -> None:
    calls: list[int] = []

    def lister() -> list[dict]:
        calls.append(1)
        threading.Event().wait(0.05)  # slow, like loading every weights file: room for a race
        return tiny_lister()

    app = create_app(upscaler_factory=tiny_factory, model_lister=lister)

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as client:
            responses = await asyncio.gather(*(client.get("/api/models") for _ in range(8)))
        return [response.status_code for response in responses]

    assert asyncio.run(scenario()) == [200] * 8
    assert calls == [1]


# ------------------------------------------------------------------------------ HTTP hardening


def test_every_response_says_nosniff_and_carries_the_policy(client, photo) -> None:
    responses = [
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/api/models"),
        client.get("/no/such/page"),
        post(client, b"not an image", "notes.txt"),
        post(client, png_bytes(photo), scale=2),
        client.get("/healthz", headers={"host": "elsewhere.example"}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 415, 200, 400]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == PAGE_POLICY


def test_a_bug_is_a_500_with_the_same_headers(photo) -> None:
    class Broken(Upscaler):
        def upscale(self, pixels, outscale=None, progress=None):
            raise RuntimeError("a bug")

    app = create_app(
        upscaler_factory=lambda n, s: Broken(UPSCALERS[s].model), model_lister=tiny_lister
    )
    client = TestClient(app, base_url=LOCAL, raise_server_exceptions=False)
    response = post(client, png_bytes(photo), scale=2)
    assert_refused(response, 500, "internal error")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == PAGE_POLICY


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 5), (6, 1, 4), (2, 3, 2)])
def test_images_from_one_pixel_up_are_served(client, shape) -> None:
    response = post(client, png_bytes(np.full(shape, 90, np.uint8)), scale=2)
    assert response.status_code == 200, response.text
    assert response.headers["x-output-size"] == f"{shape[1] * 2}x{shape[0] * 2}"
    assert decoded(response).size == (shape[1] * 2, shape[0] * 2)


@pytest.mark.parametrize(
    ("host", "allowed", "status"),
    [
        ("localhost:8000", LOCAL_HOSTS, 200),
        ("127.0.0.1", LOCAL_HOSTS, 200),
        ("[::1]:8000", LOCAL_HOSTS, 200),
        ("LocalHost", LOCAL_HOSTS, 200),
        ("attacker.example:8000", LOCAL_HOSTS, 400),  # a rebound name
        ("", LOCAL_HOSTS, 400),
        ("sr.lan:8000", ("sr.lan",), 200),
        ("anything.example", ("*",), 200),
    ],
)
def test_host_header_must_name_this_server(host, allowed, status) -> None:
    response = make_client(allowed_hosts=allowed).get("/api/limits", headers={"host": host})
    assert response.status_code == status
    if status == 400:
        assert_refused(response, 400, f"host {host!r} is not one this server answers to")


@pytest.mark.parametrize(
    ("origin", "status"),
    [(None, 200), ("http://localhost", 200), ("http://evil.example", 403), ("null", 403)],
)
def test_posts_from_other_origins_are_refused(client, photo, origin, status) -> None:
    headers = {} if origin is None else {"origin": origin}
    response = client.post(
        "/api/upscale",
        files={"image": ("photo.png", png_bytes(photo))},
        data={"scale": "2"},
        headers=headers,
    )
    assert response.status_code == status
    if status == 403:
        assert_refused(response, 403, f"from the page at {origin} is refused")
    assert client.get("/api/limits", headers=headers).status_code == 200  # reading is fine


def test_an_image_part_without_a_filename_is_named_plainly(client, photo) -> None:
    boundary = "superres-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"\r\n\r\n'.encode()
        + png_bytes(photo)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/api/upscale",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_refused(response, 422, "the part 'image' has no filename", "curl -F image=@photo.png")


# ---------------------------------------------------------------------- the command, no extra


def test_serve_without_the_web_extra_names_it(monkeypatch, capsys) -> None:
    from superres.apps import cli

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "superres.apps.web.server")
    monkeypatch.setattr(sys, "argv", ["superres", "serve"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pip install 'superres[web]'" in lines[0], lines


# --------------------------------------------------------------------------------- no disk use


@pytest.fixture
def no_temporary_files(tmp_path, monkeypatch) -> Iterator[Path]:
    """Any temporary file (named or not) fails loudly; the temp and working folders stay empty."""
    temp, work = tmp_path / "temp", tmp_path / "work"
    temp.mkdir()
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.chdir(work)

    def refuse(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    yield temp
    assert os.listdir(temp) == [] and os.listdir(work) == []


def test_large_upload_is_processed_in_memory(client, photo, no_temporary_files) -> None:
    """Over 1 MiB, where multipart parsers usually spill uploads to disk."""
    info = PngImagePlugin.PngInfo()
    for index in range(3):  # text chunks make the file big while the image stays small
        info.add_text(f"padding{index}", "x" * 400_000)
    upload = png_bytes(photo, pnginfo=info)
    assert len(upload) > 1024 * 1024
    response = post(client, upload, scale=2)
    assert response.status_code == 200, response.text
    assert decoded(response).size == (160, 144)


# -------------------------------------------------------------------------- the shipped wiring


def test_default_wiring_reads_weights_and_their_metadata(tmp_path, monkeypatch, photo) -> None:
    """create_app() without injections: the registry's weights folder and get_upscaler."""
    model = create_model("compact", 2, width=8, blocks=1)
    model.metadata.update({"val_psnr": "33.2100", "validation_data": "Set5"})
    save_weights(tmp_path / "compact-x2.safetensors", model)
    monkeypatch.setenv("SUPERRES_WEIGHTS_DIR", str(tmp_path))
    get_upscaler.cache_clear()
    try:
        client = TestClient(create_app(), base_url=LOCAL)
        listed = client.get("/api/models").json()
        assert listed == [
            {
                "name": "compact",
                "aliases": ["default"],
                "scale": 2,
                "parameters": model.parameters,
                "val_psnr_db": 33.21,
                "val_dataset": "Set5",
                "denoise": False,
            }
        ]
        response = post(client, png_bytes(photo), scale=2)
        assert response.status_code == 200
        np.testing.assert_array_equal(np.asarray(decoded(response)), Upscaler(model).upscale(photo))
    finally:
        get_upscaler.cache_clear()


def test_denoise_reaches_models_that_have_it_and_is_refused_elsewhere(photo) -> None:
    clean = create_model("real", 2, width=8, blocks=1)
    keep = create_model("real", 2, width=8, blocks=1)
    with torch.no_grad():
        for parameter in keep.network.parameters():
            parameter.add_(0.05)
    paired = pair_for_denoise(clean, keep)
    asked: list[float | None] = []

    def factory(name: str, scale: int, denoise: float | None = None) -> Upscaler:
        asked.append(denoise)
        if name == "real":
            return Upscaler(paired, tile=None, denoise=denoise)
        return tiny_factory(name, scale)

    def lister() -> list[dict]:
        entry = {"name": "real", "scale": 2, "parameters": paired.parameters, "denoise": True}
        return [*tiny_lister(), entry]

    app = create_app(upscaler_factory=factory, model_lister=lister)
    with TestClient(app, base_url=LOCAL) as client:
        listed = {(m["name"], m["scale"]): m for m in client.get("/api/models").json()}
        assert listed["real", 2]["denoise"] and not listed["compact", 2]["denoise"]
        upload = png_bytes(photo)
        results = [post(client, upload, model="real", scale=2, denoise=s) for s in (0, 1)]
        assert [r.status_code for r in results] == [200, 200]
        assert asked == [None, 0.0, 1.0]  # None: once, to count the network's multiply-adds
        assert results[0].content != results[1].content
        refused = post(client, upload, model="compact", scale=2, denoise=0.5)
        assert refused.status_code == 422 and "no denoise control" in refused.json()["detail"]
        assert post(client, upload, model="real", scale=2, denoise=2).status_code == 422


def test_self_ensemble_reaches_the_upscaler_and_other_sizes_are_refused(photo) -> None:
    asked: list[int] = []

    def factory(name: str, scale: int, ensemble: int = 1) -> Upscaler:
        asked.append(ensemble)
        return Upscaler(tiny_factory(name, scale).model, tile=None, ensemble=ensemble)

    app = create_app(upscaler_factory=factory, model_lister=tiny_lister)
    with TestClient(app, base_url=LOCAL) as client:
        upload = png_bytes(photo)
        results = [post(client, upload, model="compact", scale=2, ensemble=n) for n in (1, 8)]
        assert [r.status_code for r in results] == [200, 200]
        assert asked[-2:] == [1, 8]
        assert results[0].content != results[1].content
        assert "self-ensemble x8" in results[1].headers["x-runtime"]
        assert post(client, upload, model="compact", scale=2, ensemble=3).status_code == 422


def test_auto_model_is_real_where_it_has_the_scale_and_default_elsewhere(photo) -> None:
    """No model named: the real-world model at x4 (its scale), the clean default at x2."""
    asked: list[tuple[str, int]] = []

    def factory(name: str, scale: int) -> Upscaler:
        asked.append((name, scale))
        return UPSCALERS[scale]

    def lister() -> list[dict]:
        real = {**tiny_lister()[-1], "name": "real", "aliases": []}
        return [*tiny_lister(), real]

    client = TestClient(create_app(upscaler_factory=factory, model_lister=lister), base_url=LOCAL)
    small = png_bytes(photo[:16, :16])
    assert post(client, small, scale=4).status_code == 200
    assert post(client, small, scale=2).status_code == 200
    assert post(client, small, model="default", scale=4).status_code == 200
    assert list(dict.fromkeys(asked)) == [("real", 4), ("compact", 2), ("compact", 4)]
