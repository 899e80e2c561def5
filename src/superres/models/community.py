"""Model files from other projects (ESRGAN, Real-ESRGAN Compact, SPAN, SwinIR, HAT, OmniSR...).

spandrel (``pip install 'superres[community]'``) recognises the architecture from the weights
and describes the model. This module refuses what superres cannot run correctly and wraps the
rest in a network with a :class:`NetworkContract`, so that the Upscaler tiles it and handles
colour, alpha, bit depth and metadata exactly as for the shipped models. spandrel is imported
here only, when such a file is loaded: ``import superres`` never pays for it.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from superres.atomic import replacing
from superres.errors import ModelError, first_sentence
from superres.extras import require
from superres.models.contract import NetworkContract
from superres.models.registry import LoadedModel

# Tile overlap, in input pixels, where an architecture's reach is unbounded (attention, global
# pooling) or longer: ESRGAN's 23 blocks reach about 350 pixels, but their influence fades
# within a few tens (Real-ESRGAN's own tiling overlaps by 10).
MAX_MARGIN = 32
CHANNEL_NAMES = {1: "greyscale", 3: "RGB", 4: "RGBA"}


def spandrel_module(path: Path) -> ModuleType:
    return require("spandrel", "community", f"{path}, another project's model file,")


def reach(model: nn.Module, architecture: str) -> int | None:
    """Input pixels on each side that an output pixel depends on, from the hyper-parameters, for
    architectures made only of convolutions and pixel-wise operations; None for the others."""
    hyper = getattr(model, "hyperparameters", {})
    if architecture == "Compact":  # a 3x3 convolution, num_conv more, a last one; nearest skip
        return hyper["num_conv"] + 2
    if architecture == "SPAN":  # 3x3 convolutions: conv_1, 6 blocks of 3, conv_2, upsampler
        return 21
    if architecture == "ESRGAN":
        # The first and trunk convolutions, 3 dense blocks of 5 per RRDB, then the upsampling
        # and HR convolutions (a pixel of a finer grid each, counted as a whole one). A pixel
        # unshuffle by f makes each pixel the trunk sees f input pixels wide.
        factor = hyper.get("shuffle_factor") or 1
        upsamplings = math.ceil(math.log2(hyper["scale"])) if hyper["scale"] > 1 else 0
        return factor * (2 + 15 * hyper["num_blocks"] + upsamplings + 2)
    return None


def tile_margin(descriptor: Any) -> int:
    """The overlap that makes tiled output equal an untiled run where the reach is known and
    at most :data:`MAX_MARGIN`; that bound elsewhere (the Upscaler rounds it up to the model's
    size multiple, so attention windows fall on the same grid in every tile)."""
    known = reach(descriptor.model, descriptor.architecture.id)
    return MAX_MARGIN if known is None else min(known, MAX_MARGIN)


def recognise(state: dict[str, Any], path: Path) -> Any:
    """spandrel's descriptor of the weights in ``state``: architecture, scale, channels, size
    requirements, tiling, precisions, purpose. Detection is spandrel's own registry order."""
    spandrel = spandrel_module(path)
    state = spandrel.canonicalize_state_dict(state)
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        name = support.architecture.name
        try:
            if support.detect(state):
                return support.architecture.load(state)
        except Exception as error:  # spandrel parsing an unknown file: any failure is the file's
            raise ModelError(
                f"{path}: looks like {name} to spandrel but does not load as one "
                f"({type(error).__name__}: {first_sentence(error)})"
            ) from None
    raise ModelError(
        f"{path}: not a model file spandrel {spandrel.__version__} recognises (it knows "
        f"{len(spandrel.MAIN_REGISTRY)} architectures, such as ESRGAN, SPAN, SwinIR and HAT)"
    )


def refusal(descriptor: Any) -> str | None:
    """Why superres cannot run this model correctly, or None if it can."""
    arch = descriptor.architecture.name
    if descriptor.purpose == "Inpainting":
        return f"{arch} fills in a masked region (inpainting), and superres has no masks"
    if descriptor.purpose == "FaceSR":
        return f"{arch} restores faces from aligned face crops, which superres does not make"
    channels = (descriptor.input_channels, descriptor.output_channels)
    if channels != (3, 3):
        named = [CHANNEL_NAMES.get(c, f"{c}-channel") for c in channels]
        return (
            f"this {arch} model takes {channels[0]} channels ({named[0]}) and gives "
            f"{channels[1]} ({named[1]}); superres runs other projects' models on RGB only"
        )
    return None


class CommunityNetwork(nn.Module):
    """A spandrel model as a superres network: RGB in [0, 1] of any size in, the enlarged RGB
    out (spandrel pads to the model's size requirements and crops the result back)."""

    def __init__(self, descriptor: Any, contract: NetworkContract) -> None:
        super().__init__()
        self.model = descriptor.model  # a submodule: moved, counted and copied with this one
        self.descriptor = descriptor
        self.contract = contract

    def forward(self, low_res: torch.Tensor) -> torch.Tensor:
        return self.descriptor(low_res)


def contract_of(descriptor: Any) -> NetworkContract:
    precisions = {"fp32"}
    precisions |= {"bf16"} if descriptor.supports_bfloat16 else set()
    precisions |= {"fp16"} if descriptor.supports_half else set()
    return NetworkContract(
        scale=descriptor.scale,
        channels=3,
        context=tile_margin(descriptor),
        size_multiple=descriptor.size_requirements.multiple_of,
        tileable=descriptor.tiling.name == "SUPPORTED",
        precisions=frozenset(precisions),
        exportable=False,  # spandrel pads with Python arithmetic, which a traced graph freezes
    )


def load_community(state: dict[str, Any], path: Path) -> LoadedModel:
    """The model in ``state`` (read from ``path``), ready for the Upscaler; one line if
    spandrel does not know it or superres cannot run it."""
    descriptor = recognise(state, path)
    problem = refusal(descriptor)
    if problem:
        raise ModelError(f"{path}: refused: {problem}")
    metadata = {
        "file": str(path),
        "architecture": descriptor.architecture.name,
        "purpose": descriptor.purpose,
        "tags": " ".join(descriptor.tags),
        "tiling": descriptor.tiling.name.lower(),
    }
    network = CommunityNetwork(descriptor, contract_of(descriptor)).eval()
    return LoadedModel(descriptor.architecture.name, network, metadata)


def _size_rule(descriptor: Any) -> str:
    need = descriptor.size_requirements
    rules = [f"a multiple of {need.multiple_of}"] if need.multiple_of > 1 else []
    rules += [f"at least {need.minimum}"] if need.minimum > 0 else []
    rules += ["square"] if need.square else []
    return ", ".join(rules) + " (padded to it)" if rules else "any"


def describe(descriptor: Any) -> list[tuple[str, str]]:
    """What ``superres models --file`` shows of a file spandrel recognised."""
    import spandrel  # imported already: the descriptor is spandrel's

    contract = contract_of(descriptor)
    tags = f"; {', '.join(descriptor.tags)}" if descriptor.tags else ""
    if not contract.tileable:
        tiling = f"{descriptor.tiling.name.lower()}: whole images (unless --tile is given)"
    else:
        known = reach(descriptor.model, descriptor.architecture.id)
        exact = known is not None and known <= MAX_MARGIN
        how = "equal to an untiled run" if exact else "close to an untiled run"
        tiling = f"supported: tiles overlap by {contract.context} pixels ({how})"
    problem = refusal(descriptor)
    return [
        ("architecture", f"{descriptor.architecture.name} (spandrel {spandrel.__version__}{tags})"),
        ("purpose", f"{descriptor.purpose}, x{descriptor.scale}"),
        ("channels", f"{descriptor.input_channels} in, {descriptor.output_channels} out"),
        ("parameters", f"{sum(p.numel() for p in descriptor.model.parameters()):,}"),
        ("input size", _size_rule(descriptor)),
        ("tiling", tiling),
        ("precisions", ", ".join(p for p in ("fp32", "bf16", "fp16") if p in contract.precisions)),
        ("licence", "not recorded in the file, nor by spandrel: ask where it came from"),
        ("superres runs it", f"no: {problem}" if problem else "yes"),
    ]


def write_safetensors(state: dict[str, Any], source: Path, target: Path) -> str:
    """Write ``state``'s tensors (as spandrel reads them) to ``target``, then read the written
    file back and check that it is the same architecture, whose name is returned."""
    spandrel = spandrel_module(source)
    original = recognise(state, source)
    tensors = {
        key: value.detach().contiguous().clone()  # tensors sharing storage cannot be written
        for key, value in spandrel.canonicalize_state_dict(state).items()
        if isinstance(value, torch.Tensor)
    }
    with replacing(target) as temporary:
        save_file(tensors, str(temporary), metadata={"converted_from": source.name})
    copy = recognise(load_file(str(target)), target)
    if copy.architecture.id != original.architecture.id:
        raise ModelError(f"{target}: the copy reads as {copy.architecture.name}; do not use it")
    return copy.architecture.name
