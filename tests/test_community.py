"""Other projects' model files through spandrel (``superres[community]``), with no downloads:
small models built from spandrel's own architecture classes with random weights, saved as
.pth and .safetensors, run through ``superres upscale --model FILE`` and compared with
spandrel's own output, tiled and untiled. CI runs this in .venv-community (see .ci/run)."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_main
from PIL import Image
from safetensors.torch import save_file
from skimage import data
from typer.testing import CliRunner

import superres
from superres.apps.cli import app
from superres.engine.inference import Upscaler
from superres.engine.runtime import resolve_runtime
from superres.errors import ModelError, SuperresError
from superres.imageio.files import load_pixels, write_image

spandrel = pytest.importorskip(
    "spandrel", reason="needs superres[community]: .ci/run tests it in .venv-community"
)
runner = CliRunner()
# Larger than every margin's reach (2 x 21 + 1 for SPAN): the engine mirrors smaller images
# out (zero-padded convolutions on tiny images go blotchy), which spandrel does not.
PHOTO = np.ascontiguousarray(data.astronaut()[180:228, 200:256])  # 48x56: tests stay fast


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def build(name: str) -> torch.nn.Module:
    """A small network of a spandrel architecture, with seeded random weights."""
    torch.manual_seed(0)
    arch = spandrel.architectures
    compact = arch.Compact.Compact
    networks = {
        "compact": lambda: compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=4, upscale=2),
        "compact-1x": lambda: compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=1),
        "compact-grey": lambda: compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2),
        "compact-rgba": lambda: compact(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2),
        "span": lambda: arch.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
        "esrgan": lambda: arch.ESRGAN.ESRGAN(num_filters=8, num_blocks=1, scale=2),
        "swinir": lambda: arch.SwinIR.SwinIR(
            in_chans=3,
            embed_dim=12,
            depths=[2],
            num_heads=[2],
            window_size=4,
            img_size=16,
            upscale=2,
            upsampler="pixelshuffledirect",
        ),
        "restoreformer": lambda: arch.RestoreFormer.RestoreFormer(
            n_embed=16,
            embed_dim=32,
            ch=32,
            ch_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            resolution=32,
            z_channels=32,
            head_size=2,
        ),
    }
    return networks[name]()


def save(folder: Path, name: str, suffix: str = ".pth") -> Path:
    path = folder / f"{name}{suffix}"
    state = build(name).state_dict()
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def spandrel_output(path: Path, pixels: np.ndarray) -> np.ndarray:
    """spandrel's own result on the whole image, rounded to the input's bit depth."""
    peak = float(np.iinfo(pixels.dtype).max)
    descriptor = spandrel.ModelLoader().load_from_file(path).eval()
    planes = torch.from_numpy(pixels.astype(np.float32) / peak).permute(2, 0, 1)[None]
    return (descriptor(planes)[0].permute(1, 2, 0).numpy() * peak).round()


def assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    """Equal but for a level where float rounding lands on the other side of a half."""
    difference = np.abs(ours.astype(np.float64) - reference)
    assert difference.max() <= 1 and difference.mean() < 0.01


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    write_image(path, PHOTO)
    return path


@pytest.mark.parametrize(
    "name,suffix",
    [("compact", ".pth"), ("compact", ".safetensors"), ("span", ".pth"), ("esrgan", ".pth")],
)
def test_upscale_matches_spandrel_tiled_and_untiled(tmp_path, models, photo, name, suffix):
    """The file's own scale without --scale; tiles (24 px, overlapping by the architecture's
    reach) give spandrel's whole-image result."""
    path = save(models, name, suffix)
    reference = spandrel_output(path, PHOTO)
    for tile in ("auto", "24"):
        target = tmp_path / f"tile-{tile}.png"
        result = invoke("upscale", photo, "-o", target, "--model", path, "--tile", tile)
        assert result.exit_code == 0, result.output
        assert_close(load_pixels(target), reference)


def test_margins_follow_each_architecture(models):
    """Exact reach where the architecture is known (Compact: num_conv + 2; SPAN: 21; ESRGAN:
    its dense blocks), the 32-pixel bound elsewhere, on the model's size grid."""
    margins = {
        name: superres.load_model(save(models, name)).contract
        for name in ("compact", "span", "esrgan", "swinir")
    }
    assert {name: c.context for name, c in margins.items()} == {
        "compact": 6,
        "span": 21,
        "esrgan": 20,
        "swinir": 32,
    }
    assert not margins["swinir"].tileable and margins["swinir"].precisions == {"fp32", "bf16"}
    assert all(
        c.tileable and c.precisions == {"fp32", "bf16", "fp16"}
        for n, c in margins.items()
        if n != "swinir"
    )


def test_tiling_discouraged_means_whole_images(models):
    swinir = superres.load_model(save(models, "swinir"))
    upscaler = Upscaler(swinir)
    assert upscaler.runtime.describe() == "pytorch fp32, whole images"
    photo = np.ascontiguousarray(data.astronaut()[180:248, 200:268])  # over 2 x 32 + 1
    assert_close(upscaler.upscale(photo), spandrel_output(save(models, "swinir"), photo))
    assert Upscaler(swinir, tile=16).tile == 16  # asked for explicitly: tiled anyway


def test_precisions_the_descriptor_lacks_are_refused(models):
    swinir = superres.load_model(save(models, "swinir"))
    with pytest.raises(SuperresError, match="SwinIR does not support fp16; use fp32"):
        resolve_runtime(swinir, torch.device("mps"), precision="fp16", backend="pytorch", tile=64)


def test_alpha_and_16_bit_as_for_every_model(tmp_path, models):
    """RGB through the model at 16 bits, alpha enlarged by bicubic exactly as a shipped
    model's is."""
    path = save(models, "compact")
    alpha = np.linspace(0, 65535, PHOTO.shape[0] * PHOTO.shape[1]).reshape(PHOTO.shape[:2])
    rgba = np.dstack([PHOTO.astype(np.uint16) * 257, alpha.astype(np.uint16)])
    write_image(tmp_path / "deep.png", rgba)
    result = invoke("upscale", tmp_path / "deep.png", "-o", tmp_path / "big.png", "--model", path)
    assert result.exit_code == 0, result.output
    big = load_pixels(tmp_path / "big.png")
    assert big.dtype == np.uint16 and big.shape == (96, 112, 4)
    assert_close(big[..., :3], spandrel_output(path, rgba[..., :3]))
    np.testing.assert_array_equal(big[..., 3], Upscaler("default", 2).upscale(rgba)[..., 3])


def test_exif_and_icc_are_kept(tmp_path, models):
    profile = b"\0" * 128  # the bytes are carried, not interpreted
    exif = Image.Exif()
    exif[0x010F] = "superres test camera"
    Image.fromarray(PHOTO).save(tmp_path / "shot.jpg", exif=exif, icc_profile=profile)
    path = save(models, "compact")
    result = invoke("upscale", tmp_path / "shot.jpg", "-o", tmp_path / "big.jpg", "--model", path)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "big.jpg") as big:
        assert big.info.get("icc_profile") == profile
        assert big.getexif()[0x010F] == "superres test camera"


def test_grey_images_go_through_rgb_models(models):
    grey = np.ascontiguousarray(data.camera()[200:248, 200:256])
    path = save(models, "compact")
    result = superres.upscale(grey, model=str(path))
    reference = spandrel_output(path, np.repeat(grey[..., None], 3, axis=2))
    assert result.shape == (96, 112)
    assert np.abs(result - reference.mean(axis=2)).max() <= 1


def test_restoration_models_run_at_1x(models):
    path = save(models, "compact-1x")
    model = superres.load_model(path)
    assert (model.scale, model.metadata["purpose"]) == (1, "Restoration")
    assert_close(superres.upscale(PHOTO, model=str(path)), spandrel_output(path, PHOTO))


@pytest.mark.parametrize(
    "name,message",
    [
        ("compact-grey", "takes 1 channels (greyscale) and gives 1 (greyscale)"),
        ("compact-rgba", "takes 4 channels (RGBA) and gives 4 (RGBA)"),
        ("restoreformer", "RestoreFormer restores faces from aligned face crops"),
    ],
)
def test_models_superres_cannot_run_are_refused(
    monkeypatch, capsys, tmp_path, models, name, message
):
    path = save(models, name)
    code, stderr = run_main(
        monkeypatch, capsys, "upscale", tmp_path, "-o", tmp_path / "out", "--model", path
    )
    assert code == 2 and stderr.count("\n") == 1 and message in stderr and "refused" in stderr


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_files_spandrel_does_not_know(tmp_path, suffix):
    path = tmp_path / f"mystery{suffix}"
    weights = {"encoder.weight": torch.zeros(4, 4)}
    if suffix == ".safetensors":
        save_file(weights, str(path))
    else:
        torch.save(weights, path)
    with pytest.raises(ModelError, match="not a model file spandrel 0.4.2 recognises"):
        superres.load_model(path)


def test_truncated_and_mismatched_files(tmp_path, models):
    path = save(models, "compact")
    (tmp_path / "cut.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a readable PyTorch file, truncated or corrupt"):
        superres.load_model(tmp_path / "cut.pth")
    with pytest.raises(ModelError, match=r"an x2 model, not x4"):
        superres.load_model(path, 4)


def test_models_file_describes_and_converts_torchscript_on_request(tmp_path, models):
    result = invoke("models", "--file", save(models, "swinir"))
    assert result.exit_code == 0, result.output
    assert "SwinIR (spandrel 0.4.2" in result.output
    assert "discouraged: whole images" in result.output and "fp32, bf16\n" in result.output
    face = invoke("models", "--file", save(models, "restoreformer"))
    assert "superres runs it  no: RestoreFormer restores faces" in face.output
    scripted = tmp_path / "compact.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices
        traced = torch.jit.trace(build("compact").eval(), torch.rand(1, 3, 8, 8))
        torch.jit.save(traced, scripted)
    refused = invoke("models", "--file", scripted, "--to-safetensors", tmp_path / "c.safetensors")
    assert refused.exit_code != 0 and not (tmp_path / "c.safetensors").exists()
    copy = tmp_path / "c.safetensors"
    args = ("models", "--file", scripted, "--allow-torchscript", "--to-safetensors", copy)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "overlap by 6 pixels (equal to an untiled run)" in result.output
    assert_close(
        superres.upscale(PHOTO, model=str(copy)), spandrel_output(save(models, "compact"), PHOTO)
    )


def test_benchmark_a_community_file(models, photo):
    result = invoke(
        "benchmark", "--datasets", photo.parent, "--models", save(models, "compact"), "--scales", 2
    )
    assert result.exit_code == 0, result.output
    assert "compact.pth" in result.output


def test_a_png_renamed_pth_is_not_read_as_weights(tmp_path):
    buffer = BytesIO()
    Image.fromarray(PHOTO).save(buffer, format="PNG")
    (tmp_path / "photo.pth").write_bytes(buffer.getvalue())
    with pytest.raises(ModelError, match="photo.pth: not a PyTorch file"):
        superres.load_model(tmp_path / "photo.pth")
