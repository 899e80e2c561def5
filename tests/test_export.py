import onnx
import pytest
import torch

from superres.engine.export import OnnxRuntimeNetwork, export_onnx, max_difference, onnx_bytes
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
