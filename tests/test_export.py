import onnx
import pytest
import torch

from superres.engine.export import OnnxRuntimeNetwork, export_onnx, max_difference, onnx_bytes
from superres.engine.inference import Upscaler
from superres.models import create_model


@pytest.mark.parametrize("name,scale", [("compact", 3), ("srcnn-955", 2), ("fsrcnn", 4)])
def test_onnx_matches_pytorch_on_random_sizes(name, scale):
    torch.manual_seed(0)
    model = create_model(name, scale, **({"width": 8, "blocks": 2} if name == "compact" else {}))
    network = OnnxRuntimeNetwork(onnx_bytes(model))
    assert max_difference(model, network, [(9, 13), (31, 17), (20, 20)]) < 1e-4
    out = network(torch.rand(2, 1, 11, 7))
    assert out.shape == (2, 1, 11 * scale, 7 * scale)


def test_exported_file_carries_metadata(tmp_path):
    model = create_model("espcn", 2)
    model.metadata["steps"] = "123"
    path = export_onnx(model, tmp_path / "sub" / "espcn.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["architecture"] == "espcn" and props["scale"] == "2" and props["steps"] == "123"
    assert not list(path.parent.glob(".*.part"))


def test_a_missing_extra_is_named_in_one_line(monkeypatch, tmp_path):
    import sys

    from superres.engine.export import OnnxRuntimeNetwork, export_onnx
    from superres.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    model = create_model("compact", 2, width=8, blocks=1)
    with pytest.raises(MissingExtraError, match=r"pip install 'superres\[onnx\]'"):
        export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(MissingExtraError, match=r"pip install 'superres\[onnx\]'"):
        OnnxRuntimeNetwork(b"")
    assert not (tmp_path / "m.onnx").exists()
    # What `upscale --backend onnxruntime` runs: torch's exporter failed first, unexplained.
    with pytest.raises(MissingExtraError, match=r"pip install 'superres\[onnx\]'"):
        Upscaler(model, tile=None, backend="onnxruntime")
