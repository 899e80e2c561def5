"""The web API through FastAPI's TestClient, on tiny untrained models (no shipped weights)."""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from superres.api import get_upscaler
from superres.apps.web.server import STATIC, WorkPool, create_app
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.models import create_model, save_weights
from superres.models.registry import pair_for_denoise

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
    return TestClient(create_app(upscaler_factory=factory, model_lister=tiny_lister, **options))


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


def test_healthz_reports_capacity() -> None:
    response = make_client(workers=2, queue_size=3).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "in_flight": 0, "capacity": 5}


def test_limits_follow_the_options() -> None:
    limits = make_client(max_upload_mb=1.5, max_pixels=1000).get("/api/limits").json()
    assert limits == {"max_upload_bytes": 1_500_000, "max_pixels": 1000, "max_output_pixels": 16000}


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
    assert body["properties"]["format"]["enum"] == ["png", "jpg", "webp"]
    assert {"model", "scale", "outscale"} <= set(body["properties"])
    responses = upscale["responses"]
    assert set(responses["200"]["content"]) == {"image/png", "image/jpeg", "image/webp"}
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
    [("png", "image/png", "PNG"), ("jpg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")],
)
def test_formats(client, photo, fmt, media_type, pillow_format) -> None:
    response = post(client, png_bytes(photo), scale=2, format=fmt)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    image = decoded(response)
    assert (image.format, image.size) == (pillow_format, (160, 144))


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


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(SuperresError, match="workers >= 1"):
        create_app(workers=0, model_lister=tiny_lister, upscaler_factory=tiny_factory)


# -------------------------------------------------------------------------------- the work pool


def test_work_pool_admits_workers_plus_queue() -> None:
    pool = WorkPool(workers=2, queue_size=1)
    assert [pool.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert pool.retry_after() == 2  # 3 in flight over 2 workers, 1 s assumed per job
    pool.release()
    assert pool.try_acquire()
    pool.close()


def test_full_queue_is_refused_with_retry_after(photo) -> None:
    """workers=1, queue_size=1: one runs, one waits, the third is turned away at once."""
    started, release = threading.Event(), threading.Event()

    def slow_factory(name: str, scale: int) -> Upscaler:
        started.set()
        assert release.wait(30)
        return tiny_factory(name, scale)

    upload = png_bytes(photo)
    with make_client(slow_factory, workers=1, queue_size=1) as client, ThreadPoolExecutor(2) as ex:
        running = ex.submit(post, client, upload, scale=2)
        assert started.wait(30)
        waiting = ex.submit(post, client, upload, scale=2)
        for _ in range(300):
            if client.get("/healthz").json()["in_flight"] == 2:
                break
            threading.Event().wait(0.01)
        refused = post(client, upload, scale=2)
        release.set()
        assert running.result().status_code == 200
        assert waiting.result().status_code == 200
    assert_refused(refused, 503, "busy: 2 images in progress")
    assert int(refused.headers["retry-after"]) >= 1


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
        client = TestClient(create_app())
        listed = client.get("/api/models").json()
        assert listed == [
            {
                "name": "compact",
                "aliases": ["default"],
                "scale": 2,
                "parameters": model.parameters,
                "val_psnr_db": 33.21,
                "val_dataset": "Set5",
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
    with TestClient(app) as client:
        listed = {(m["name"], m["scale"]): m for m in client.get("/api/models").json()}
        assert listed["real", 2]["denoise"] and not listed["compact", 2]["denoise"]
        upload = png_bytes(photo)
        results = [post(client, upload, model="real", scale=2, denoise=s) for s in (0, 1)]
        assert [r.status_code for r in results] == [200, 200] and asked == [0.0, 1.0]
        assert results[0].content != results[1].content
        refused = post(client, upload, model="compact", scale=2, denoise=0.5)
        assert refused.status_code == 422 and "no denoise control" in refused.json()["detail"]
        assert post(client, upload, model="real", scale=2, denoise=2).status_code == 422
