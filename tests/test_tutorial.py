"""The Keras SRCNN tutorial: weight conversion (on an .h5 the test writes) and its deploy path."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from superres.apps.cli import app
from superres.engine.tutorial import import_keras_weights, tutorial_deploy
from superres.errors import ModelError
from superres.imageio.files import load_pixels
from superres.models import load_weights_file

SHAPES = {
    "convolution2d_1": ((9, 9, 1, 128), (128,)),
    "convolution2d_2": ((3, 3, 128, 64), (64,)),
    "convolution2d_3": ((5, 5, 64, 1), (1,)),
}


def write_keras_h5(path, rng):
    """A Keras-1 weights file laid out like the tutorial's 3051crop_weight_200.h5."""
    arrays = {}
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name in SHAPES]
        for name, (kernel_shape, bias_shape) in SHAPES.items():
            group = handle.create_group(name)
            kernel = rng.normal(0, 0.05, kernel_shape).astype(np.float32)
            bias = rng.normal(0, 0.01, bias_shape).astype(np.float32)
            group.create_dataset(f"{name}_W:0", data=kernel)
            group.create_dataset(f"{name}_b:0", data=bias)
            arrays[name] = (kernel, bias)
    return arrays


def test_converted_network_equals_keras_cross_correlation(tmp_path):
    arrays = write_keras_h5(tmp_path / "w.h5", np.random.default_rng(0))
    model = import_keras_weights(tmp_path / "w.h5")
    image = np.random.default_rng(1).random((20, 22)).astype(np.float32)
    ours = model.network.mapping(torch.from_numpy(image)[None, None])[0, 0].detach().numpy()

    def keras_conv(x, kernel, bias, same):  # Keras: out[y,x,o] = sum k[i,j,c,o] * in[y+i,x+j,c]
        kh, kw = kernel.shape[:2]
        if same:
            x = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        h, w = x.shape[0] - kh + 1, x.shape[1] - kw + 1
        out = np.zeros((h, w, kernel.shape[3]))
        for i in range(kh):
            for j in range(kw):
                out += x[i : i + h, j : j + w] @ kernel[i, j]
        return out + bias

    x = image[..., None].astype(np.float64)
    x = np.maximum(keras_conv(x, *arrays["convolution2d_1"], same=False), 0)
    x = np.maximum(keras_conv(x, *arrays["convolution2d_2"], same=True), 0)
    x = keras_conv(x, *arrays["convolution2d_3"], same=False)[..., 0]
    assert ours.shape == x.shape == (8, 10)
    np.testing.assert_allclose(ours, x, atol=1e-4)


def test_import_keras_cli_writes_loadable_safetensors(tmp_path):
    write_keras_h5(tmp_path / "w.h5", np.random.default_rng(2))
    result = CliRunner().invoke(
        app, ["import-keras", str(tmp_path / "w.h5"), "-o", str(tmp_path / "w.safetensors")]
    )
    assert result.exit_code == 0, result.output
    loaded = load_weights_file(tmp_path / "w.safetensors")
    assert loaded.name == "srcnn-tutorial" and loaded.parameters == 85_889


def test_wrong_h5_is_a_model_error(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_group("dense_1")
    with pytest.raises(ModelError, match="not the tutorial's Keras SRCNN weights"):
        import_keras_weights(tmp_path / "other.h5")


def test_deploy_path_shapes_and_shave(tmp_path, astronaut):
    write_keras_h5(tmp_path / "w.h5", np.random.default_rng(3))
    result = tutorial_deploy(import_keras_weights(tmp_path / "w.h5"), astronaut[:95, :94])
    # modcrop 3 -> 93x93, then a 6-pixel shave on every side -> 81x81
    assert result.output.shape == result.reference.shape == result.degraded.shape == (81, 81, 3)


def test_real_tutorial_weights_beat_their_input_on_every_set5_image(tmp_path, dataset, peers):
    h5 = peers / "srcnn-keras" / "3051crop_weight_200.h5"
    if not h5.is_file():
        pytest.skip("../shared/peers/srcnn-keras is absent (third-party weights are not shipped)")
    set5 = dataset("Set5")
    runner = CliRunner()
    converted = tmp_path / "tutorial.safetensors"
    assert runner.invoke(app, ["import-keras", str(h5), "-o", str(converted)]).exit_code == 0
    model = load_weights_file(converted)
    for path in sorted(set5.glob("*.png")):
        result = tutorial_deploy(model, load_pixels(path))
        assert result.output_scores.psnr > result.degraded_scores.psnr, path.name
    cli = runner.invoke(
        app,
        ["tutorial-deploy", str(set5), "--weights", str(converted), "-o", str(tmp_path / "out")],
    )
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "out" / "srcnn" / "bird.png").is_file()
