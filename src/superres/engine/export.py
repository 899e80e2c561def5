"""ONNX export and an ONNX Runtime stand-in for a model's network.

Exported graphs take the low-resolution planes (N, C, h, w) in [0, 1] and return the
enlarged planes, with height and width dynamic, exactly like the PyTorch network; the
colour handling and tiling around them stay in :mod:`superres.engine.inference`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from superres.atomic import replacing
from superres.errors import ModelError
from superres.extras import require
from superres.models import LoadedModel

OPSET = 17


def onnx_bytes(model: LoadedModel) -> bytes:
    """The model's network as an ONNX graph with dynamic height and width."""
    if not model.contract.exportable:
        raise ModelError(
            f"{model.name}: ONNX export and the onnxruntime backend take superres's own models"
        )
    require("onnx", "onnx", "converting a model to ONNX")  # torch's exporter needs it
    sample = torch.rand(1, model.channels, 24, 24)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen
        _export(model, sample, buffer)
    return buffer.getvalue()


def _export(model: LoadedModel, sample: torch.Tensor, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        model.network.eval(),
        (sample,),
        buffer,
        dynamo=False,  # the TorchScript exporter handles dynamic sizes without onnxscript
        input_names=["low_res"],
        output_names=["high_res"],
        dynamic_axes={"low_res": {0: "n", 2: "h", 3: "w"}, "high_res": {0: "n", 2: "H", 3: "W"}},
        opset_version=OPSET,
    )


def export_onnx(model: LoadedModel, path: Path) -> Path:
    """Write the ONNX graph atomically, with the weights' metadata as model properties."""
    onnx = require("onnx", "onnx", "ONNX export")
    graph = onnx.load_from_string(onnx_bytes(model))
    for key, value in {
        **model.metadata,
        "architecture": model.name,
        "scale": str(model.scale),
    }.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    with replacing(path) as temporary:
        onnx.save(graph, str(temporary))
    return path


class OnnxRuntimeNetwork:
    """Calls an ONNX Runtime session like the torch network it was exported from."""

    def __init__(self, graph: bytes, threads: int | None = None) -> None:
        onnxruntime = require("onnxruntime", "onnx", "the onnxruntime backend")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, low_res: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(low_res.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"low_res": array})[0])


def max_difference(
    model: LoadedModel, network: OnnxRuntimeNetwork, sizes: list[tuple[int, int]], seed: int = 0
) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime over random inputs."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.inference_mode():
        for height, width in sizes:
            sample = torch.rand(1, model.channels, height, width, generator=generator)
            expected = model.network(sample)
            worst = max(worst, float((network(sample) - expected).abs().max()))
    return worst
