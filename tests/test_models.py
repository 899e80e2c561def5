import json

import numpy as np
import pytest
import torch

from superres.api import upscale
from superres.errors import ModelError
from superres.models import ARCHITECTURES, create_model, load_model, load_weights_file, save_weights
from superres.models.fsrcnn import SubPixelDeconvolution
from superres.models.layers import MatlabBicubicUpsample
from superres.models.registry import pair_for_denoise, shipped_scales
from superres.quality.degrade import imresize_matlab


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_layer_equals_matlab_imresize(scale):
    image = np.random.default_rng(scale).random((13, 17))
    layer = MatlabBicubicUpsample(scale)
    out = layer(torch.from_numpy(image).float()[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, imresize_matlab(image, scale=scale), atol=1e-5)


def test_srcnn_parameter_counts_match_the_paper_and_tutorial():
    # 9-5-5: 64*81 + 64 + 32*64*25 + 32 + 32*25 + 1; tutorial: 85,889 (peers README)
    assert create_model("srcnn-955", 3).parameters == 57_281
    assert create_model("srcnn-915", 3).parameters == 8_129
    assert create_model("srcnn-tutorial", 2).parameters == 85_889


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_architecture_maps_lr_to_sr_size(name, scale):
    model = create_model(name, scale)
    with torch.no_grad():
        out = model.network(torch.rand(1, model.channels, 11, 14))
    assert out.shape == (1, model.channels, 11 * scale, 14 * scale)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("scale", [2, 4])
def test_contract_context_bounds_what_an_output_pixel_sees(name, scale):
    """Pixels farther than ``contract.context`` from an LR pixel never change its output block,
    which is what makes tiles with that overlap equal the whole image."""
    model = create_model(name, scale)
    contract = model.contract
    assert (contract.scale, contract.channels) == (scale, model.channels)
    side = 2 * (contract.context + 8) * contract.size_multiple
    centre = side // 2
    image = torch.rand(1, model.channels, side, side, generator=torch.Generator().manual_seed(1))
    changed = torch.rand(image.shape, generator=torch.Generator().manual_seed(2))
    near = slice(centre - contract.context, centre + contract.context + 1)
    changed[..., near, near] = image[..., near, near]
    block = slice(centre * scale, (centre + 1) * scale)
    with torch.no_grad():
        before = model.network(image)[..., block, block]
        after = model.network(changed)[..., block, block]
    torch.testing.assert_close(before, after, atol=1e-5, rtol=0)
    with torch.no_grad():  # and the test can fail: a change inside the context does show
        changed[..., centre, centre] += 0.5
        assert not torch.allclose(model.network(changed)[..., block, block], before)


@pytest.mark.parametrize(
    "name,last", [("compact", "tail"), ("fsrcnn", "deconvolution"), ("espcn", "conv3")]
)
def test_untrained_residual_models_start_near_bicubic(name, last):
    model = create_model(name, 2)
    for p in getattr(model.network, last).parameters():
        torch.nn.init.zeros_(p)
    low = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        np.testing.assert_allclose(model.network(low), MatlabBicubicUpsample(2)(low), atol=1e-6)


def test_paper_variants_have_no_bicubic_skip():
    low = torch.rand(1, 1, 10, 10)
    for name, last in [("fsrcnn", "deconvolution"), ("espcn", "conv3")]:
        model = create_model(name, 2, residual=False)
        for p in getattr(model.network, last).parameters():
            torch.nn.init.zeros_(p)
        with torch.no_grad():
            assert not model.network(low).any()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_subpixel_deconvolution_equals_the_transposed_convolution(scale):
    torch.manual_seed(scale)
    layer = SubPixelDeconvolution(7, scale)
    x = torch.randn(2, 7, 9, 12)
    expected = torch.nn.functional.conv_transpose2d(
        x, layer.weight, layer.bias, stride=scale, padding=4, output_padding=scale - 1
    )
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_weights_round_trip_through_safetensors(tmp_path):
    model = create_model("srcnn-955", 3)
    model.metadata["steps"] = "7"
    path = tmp_path / "w.safetensors"
    save_weights(path, model)
    loaded = load_weights_file(path)
    assert (loaded.name, loaded.scale, loaded.metadata["steps"]) == ("srcnn-955", 3, "7")
    for a, b in zip(
        model.network.state_dict().values(), loaded.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_unknown_model_and_scale_and_bad_file_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'vdsr'"):
        load_model("vdsr", 3)
    with pytest.raises(ModelError, match="scales 2, 3 and 4"):
        create_model("srcnn", 5)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable safetensors"):
        load_weights_file(bad)
    with pytest.raises(ModelError, match="no such weights"):
        load_weights_file(tmp_path / "missing.safetensors")


def _shipped() -> list[tuple[str, int]]:
    from superres.models.registry import shipped_models

    return [(entry.name, entry.scale) for entry in shipped_models()]


@pytest.mark.parametrize("name,scale", _shipped())
def test_every_shipped_model_beats_bicubic_on_every_set5_image(dataset, name, scale):
    """On the inputs it was trained for: clean shrinks, or the real-world model's degraded
    validation track (it is not meant to sharpen clean inputs, and does not much)."""
    from superres.engine.evaluation import bicubic_enlarger, enlarger_for, evaluate, load_references

    references = load_references(dataset("Set5"))
    training = json.loads(load_model(name, scale).metadata.get("training", "{}"))
    track = training.get("val_track", "clean")
    ours = evaluate(enlarger_for(name, scale), references, scale, degradation=track)
    bicubic = evaluate(bicubic_enlarger(scale), references, scale, degradation=track)
    if track == "clean":
        for mine, theirs in zip(ours.images, bicubic.images, strict=True):
            assert mine.scores.psnr > theirs.scores.psnr + 0.1, mine.image
        return
    # Degraded inputs: better in SSIM on every image and by half a dB of PSNR on the mean. Per
    # image, PSNR within 1 dB of bicubic's: the smooth baby under noise is where cleaning costs
    # (x2 measured 31.97 against bicubic's 32.62 dB, with SSIM 0.884 against 0.845; x4 +0.06).
    for mine, theirs in zip(ours.images, bicubic.images, strict=True):
        assert mine.scores.psnr > theirs.scores.psnr - 1.0, mine.image
        assert mine.scores.ssim > theirs.scores.ssim, mine.image
    assert ours.psnr > bicubic.psnr + 0.5


def test_a_file_keeps_the_variant_it_was_saved_as(tmp_path):
    # Files record their full hyper-parameters; one written before FSRCNN/ESPCN gained their
    # bicubic skip (no "residual" key) is still the paper's network.
    for name, last in [("fsrcnn", "deconvolution"), ("espcn", "conv3")]:
        model = create_model(name, 2, residual=False)
        for p in getattr(model.network, last).parameters():
            torch.nn.init.zeros_(p)
        model.metadata["hyper"] = "{}"
        save_weights(tmp_path / f"{name}.safetensors", model)
        loaded = load_weights_file(tmp_path / f"{name}.safetensors")
        assert loaded.network.upsample is None
        assert json.loads(create_model(name, 2).metadata["hyper"]) == {"residual": True}


def _paired(tmp_path):
    """A tiny real model whose two weight sets differ, saved and loaded back as one file."""
    clean = create_model("real", 2, width=8, blocks=1)
    keep = create_model("real", 2, width=8, blocks=1)
    with torch.no_grad():
        for a, b in zip(clean.network.parameters(), keep.network.parameters(), strict=True):
            a.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
            b.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    save_weights(tmp_path / "pair.safetensors", pair_for_denoise(clean, keep))
    return clean, keep, load_weights_file(tmp_path / "pair.safetensors")


def test_denoise_blends_the_two_weight_sets_smoothly(tmp_path):
    clean, keep, paired = _paired(tmp_path)
    image = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ends = [m.network(image) for m in (keep, clean)]
        outs = [paired.with_denoise(s).network(image) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    torch.testing.assert_close(outs[0], ends[0])
    torch.testing.assert_close(outs[-1], ends[1])
    distances = [float((out - ends[0]).abs().mean()) for out in outs]
    assert distances == sorted(distances) and distances[0] < distances[-1]  # monotonic
    assert paired.with_denoise(0.5).weights_digest() == paired.weights_digest()


def test_denoise_is_refused_without_a_control_or_out_of_range(tmp_path):
    with pytest.raises(ModelError, match="no denoise control"):
        create_model("compact", 2).with_denoise(0.5)
    _, _, paired = _paired(tmp_path)
    for strength in (-0.1, 1.5, float("nan")):
        with pytest.raises(ModelError, match="between 0 and 1"):
            paired.with_denoise(strength)
    with pytest.raises(ModelError, match="not the same network"):
        pair_for_denoise(create_model("real", 2), create_model("real", 4))


TINY_SHAPES = [(1, 1), (1, 1, 3), (1, 6, 3), (6, 1), (2, 2, 3), (3, 7, 4), (1, 3, 2)]


@pytest.mark.parametrize(
    "name,scale",
    [(name, scale) for name in sorted(ARCHITECTURES) for scale in shipped_scales(name)],
)
def test_every_shipped_model_enlarges_images_from_one_pixel_up(name, scale):
    """Any image at least 1x1 is valid: each comes out exactly scale times larger, and a flat
    image stays flat: mirrored out to the network's receptive field, it never sees the zeros
    its convolutions pad with (srcnn and espcn were off by up to 32 levels on these)."""
    for shape in TINY_SHAPES:
        pixels = np.full(shape, 120, np.uint8)
        out = upscale(pixels, model=name, scale=scale, tile=None)
        assert out.shape == (shape[0] * scale, shape[1] * scale, *shape[2:]), shape
        assert np.abs(out.astype(int) - 120).max() <= 1, shape


def test_stray_files_in_the_weights_folder_are_ignored_and_named(tmp_path, monkeypatch):
    from superres.models.registry import shipped_models, stray_weight_files

    save_weights(tmp_path / "compact-x2.safetensors", create_model("compact", 2, width=8))
    (tmp_path / "compact-xbig.safetensors").write_bytes(b"junk")
    (tmp_path / "notes.safetensors").write_bytes(b"junk")
    monkeypatch.setenv("SUPERRES_WEIGHTS_DIR", str(tmp_path))
    assert shipped_scales("compact") == [2]
    assert [m.scale for m in shipped_models()] == [2]
    assert [p.name for p in stray_weight_files()] == [
        "compact-xbig.safetensors",
        "notes.safetensors",
    ]


def test_auto_names_real_where_shipped_and_default_elsewhere() -> None:
    from superres.models.registry import AUTO_MODEL, resolve_model, shipped_scales

    for scale in (2, 3, 4):
        expected = "real" if scale in shipped_scales("real") else "compact"
        assert resolve_model(AUTO_MODEL, scale) == expected
    assert resolve_model(AUTO_MODEL, 4) == "real"  # shipped: photos get the real-world model
    assert resolve_model("srcnn", 4) == "srcnn-955"


def test_a_damaged_weights_file_is_named_and_hides_no_other(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from superres.apps.cli import app
    from superres.models.registry import shipped_models

    save_weights(tmp_path / "compact-x2.safetensors", create_model("compact", 2, width=8))
    (tmp_path / "compact-x3.safetensors").write_bytes(b"junk")
    monkeypatch.setenv("SUPERRES_WEIGHTS_DIR", str(tmp_path))
    unreadable: list[str] = []
    assert [m.scale for m in shipped_models(unreadable)] == [2]
    assert len(unreadable) == 1 and "compact-x3.safetensors: not a readable" in unreadable[0]
    with pytest.raises(ModelError, match="compact-x3.safetensors"):
        shipped_models()
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "ignored " in result.output and "compact-x3.safetensors" in result.output
    assert "x2" in result.output


def test_models_lists_every_architecture_with_the_settings_hyper_takes():
    from typer.testing import CliRunner

    from superres.apps.cli import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = result.output.split("architectures")[1]
    for name in ARCHITECTURES:
        assert f" {name} " in table, name
    assert "blocks=24: a whole number from 0 to 64" in table  # large's default and bound
    assert "widths: 2 whole numbers from 1 to 512" in table  # a setting without a default
