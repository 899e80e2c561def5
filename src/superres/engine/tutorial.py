"""The classic Keras SRCNN tutorial, reproduced: its weights, degradation and deploy path.

The tutorial's pretrained weights are a Keras-1 HDF5 file; they are converted to
safetensors here (h5py reads the arrays; nothing is unpickled). Its deploy path
is modcrop 3, OpenCV full-range YCrCb, the network on Y, chroma untouched, and a
6-pixel shave, scored on all channels (the ``tutorial`` protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from superres.errors import ModelError
from superres.imageio.color import as_rgb, rgb_to_ycrcb_opencv, ycrcb_opencv_to_rgb
from superres.models import LoadedModel, create_model
from superres.quality.degrade import degrade, modcrop
from superres.quality.metrics import Scores, score, shave, to_uint8

# Keras layer name -> our SRCNN module, in the tutorial's order.
_KERAS_LAYERS = {
    "convolution2d_1": "features",
    "convolution2d_2": "nonlinear",
    "convolution2d_3": "reconstruct",
}
TUTORIAL_SCALE = 2  # the tutorial degrades by 2 with bilinear
TUTORIAL_MODCROP = 3


def import_keras_weights(path: str | Path, arch: str = "srcnn-tutorial") -> LoadedModel:
    """Load the tutorial's Keras HDF5 weights into our network (kernels (h, w, in, out))."""
    path = Path(path)
    model = create_model(arch, TUTORIAL_SCALE)
    state = {}
    try:
        with h5py.File(path, "r") as handle:
            for keras_name, ours in _KERAS_LAYERS.items():
                group = handle[keras_name]
                kernel = np.asarray(group[f"{keras_name}_W:0"])
                bias = np.asarray(group[f"{keras_name}_b:0"])
                state[f"{ours}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                state[f"{ours}.bias"] = torch.from_numpy(bias.copy())
    except (OSError, KeyError) as error:
        raise ModelError(f"{path}: not the tutorial's Keras SRCNN weights ({error})") from error
    try:
        model.network.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{path}: weights do not fit {arch}: {error}") from error
    model.metadata.update(
        {"source": path.name, "training_data": "SRCNN Keras tutorial (91 images)"}
    )
    model.network.eval()
    return model


def tutorial_degrade(reference: np.ndarray) -> np.ndarray:
    """The tutorial's input: OpenCV bilinear down by 2 and back up to the same size."""
    return degrade(reference, TUTORIAL_SCALE, "bilinear", keep_size=True)


@dataclass(frozen=True)
class DeployResult:
    reference: np.ndarray  # modcropped and shaved, as the tutorial scores it
    degraded: np.ndarray
    output: np.ndarray
    degraded_scores: Scores
    output_scores: Scores


@torch.inference_mode()
def tutorial_deploy(model: LoadedModel, reference: np.ndarray) -> DeployResult:
    """Run the tutorial's deploy path on one image (as 8-bit RGB, as the tutorial reads it)."""
    reference = modcrop(as_rgb(to_uint8(reference)), TUTORIAL_MODCROP)
    degraded = tutorial_degrade(reference)
    ycrcb = rgb_to_ycrcb_opencv(degraded)
    luma = torch.from_numpy(ycrcb[..., 0].astype(np.float32) / 255.0)[None, None]
    predicted = model.network.mapping(luma)[0, 0].numpy() * 255.0
    border = model.network.shrink
    ycrcb = shave(ycrcb, border).copy()
    ycrcb[..., 0] = np.clip(predicted, 0, 255).astype(np.uint8)  # the tutorial truncates
    output = ycrcb_opencv_to_rgb(ycrcb)
    reference, degraded = shave(reference, border), shave(degraded, border)
    return DeployResult(
        reference,
        degraded,
        output,
        score(reference, degraded, "tutorial"),
        score(reference, output, "tutorial"),
    )
