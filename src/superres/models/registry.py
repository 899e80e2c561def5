"""Model registry: architectures by name, shipped weights, and a descriptor per loaded model.

Weights are safetensors only (never unpickled); their metadata says what they
are, so a file is self-describing and :func:`load_model` needs no side table.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from superres.atomic import replacing
from superres.errors import ModelError
from superres.models.autoencoder import Autoencoder
from superres.models.compact import CompactSR
from superres.models.contract import NetworkContract
from superres.models.espcn import ESPCN
from superres.models.fsrcnn import FSRCNN
from superres.models.srcnn import SRCNN


@dataclass(frozen=True)
class Bound:
    """What one hyper-parameter may be: a flag, a whole number in [low, high], or ``length``
    such numbers. Checked before a network is built, so crafted weights metadata can neither
    allocate terabytes (a width of 200000) nor reach a constructor with a wrong type."""

    low: int = 0
    high: int = 0
    length: int | None = None
    flag: bool = False

    def check(self, value: Any) -> bool:
        if self.flag:
            return isinstance(value, bool)
        values = value if self.length is not None else [value]
        if self.length is not None and (
            not isinstance(value, list | tuple) or len(value) != self.length
        ):
            return False
        return all(
            isinstance(v, int) and not isinstance(v, bool) and self.low <= v <= self.high
            for v in values
        )

    def describe(self) -> str:
        if self.flag:
            return "true or false"
        span = f"from {self.low} to {self.high}"
        return f"{self.length} whole numbers {span}" if self.length else f"a whole number {span}"


FLAG = Bound(flag=True)
WIDTH = Bound(1, 512)  # channels (the shipped models use 12 to 256)
DEPTH = Bound(0, 64)  # repeated blocks or layers


@dataclass(frozen=True)
class Architecture:
    """A network family member: how to build it, what it consumes, and the hyper-parameters
    (with their bounds) it accepts."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    hyper: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, Bound] = field(default_factory=dict)


def _srcnn(kernels: tuple[int, int, int], **extra: Any) -> Callable[..., nn.Module]:
    def build(scale: int, **hyper: Any) -> nn.Module:
        return SRCNN(scale, kernel_sizes=kernels, **{**extra, **hyper})

    return build


_SRCNN_PAPER = "Dong et al., SRCNN (TPAMI 2015)"
# Shipped SRCNN, FSRCNN and ESPCN add the bicubic-enlarged input to their output (the network
# learns only the missing detail, which trains far faster on a CPU); recorded explicitly so that
# weights say which variant they are.
_RESIDUAL = {"residual": True}
_SRCNN_BOUNDS = {"widths": Bound(1, 512, length=2), "residual": FLAG, "valid_outer": FLAG}
_COMPACT_BOUNDS = {"width": WIDTH, "blocks": DEPTH}
ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture(
            "srcnn-915",
            _srcnn((9, 1, 5)),
            f"{_SRCNN_PAPER}, 9-1-5, 64/32 filters",
            hyper=_RESIDUAL,
            bounds=_SRCNN_BOUNDS,
        ),
        Architecture(
            "srcnn-935",
            _srcnn((9, 3, 5)),
            f"{_SRCNN_PAPER}, 9-3-5, 64/32 filters",
            hyper=_RESIDUAL,
            bounds=_SRCNN_BOUNDS,
        ),
        Architecture(
            "srcnn-955",
            _srcnn((9, 5, 5)),
            f"{_SRCNN_PAPER}, 9-5-5, 64/32 filters",
            hyper=_RESIDUAL,
            bounds=_SRCNN_BOUNDS,
        ),
        Architecture(
            "srcnn-tutorial",
            _srcnn((9, 3, 5), widths=(128, 64), residual=False, valid_outer=True),
            "The Keras SRCNN tutorial's variant: 9-3-5, 128/64 filters, outer layers 'valid'",
            bounds=_SRCNN_BOUNDS,
        ),
        Architecture(
            "fsrcnn",
            FSRCNN,
            "Dong et al., FSRCNN (ECCV 2016), d=56, s=12, m=4, plus a bicubic skip",
            hyper=_RESIDUAL,
            bounds={"d": WIDTH, "s": WIDTH, "m": DEPTH, "residual": FLAG},
        ),
        Architecture(
            "espcn",
            ESPCN,
            "Shi et al., ESPCN (CVPR 2016), sub-pixel convolution, plus a bicubic skip",
            hyper=_RESIDUAL,
            bounds={"widths": Bound(1, 512, length=2), "residual": FLAG},
        ),
        Architecture(
            "autoencoder",
            Autoencoder,
            "Convolutional autoencoder with skip connections (second SR tutorial), RGB",
            bounds={"widths": Bound(1, 512, length=3)},
        ),
        Architecture(
            "compact",
            CompactSR,
            "superres's compact model: 8 residual blocks at low resolution, pixel shuffle",
            hyper={"width": 32, "blocks": 8},
            bounds=_COMPACT_BOUNDS,
        ),
        Architecture(
            "large",
            CompactSR,
            "superres's large model: the compact design three times as deep (24 residual "
            "blocks, 32 wide) at low resolution, plus a bicubic skip",
            hyper={"width": 32, "blocks": 24},
            bounds=_COMPACT_BOUNDS,
        ),
        Architecture(
            "real",
            partial(CompactSR, channels=3),
            "superres's real-world model: the compact design on RGB, 48 wide, 10 blocks (the "
            "shipped x3 and x4: 16), trained on real-world degradations (cleans noise and JPEG)",
            hyper={"width": 48, "blocks": 10},
            bounds=_COMPACT_BOUNDS,
        ),
    )
}
ALIASES = {"srcnn": "srcnn-955", "default": "compact"}


def resolve_name(name: str) -> str:
    """Canonical architecture name for ``name`` or an alias; unknown names are a user error."""
    canonical = ALIASES.get(name, name)
    if canonical not in ARCHITECTURES:
        known = ", ".join(sorted([*ARCHITECTURES, *ALIASES, AUTO_MODEL]))
        raise ModelError(f"unknown model {name!r}; known models: {known}")
    return canonical


@dataclass
class LoadedModel:
    """A network, its name and metadata, and the contract the engine runs it by."""

    name: str
    network: nn.Module
    metadata: dict[str, str]
    # The "keep the input's texture" end of a denoise control (same network, trained without
    # noise or JPEG); the loaded weights are the "clean fully" end. None: no such control.
    keep_texture: dict[str, torch.Tensor] | None = None
    digest: str | None = None  # SHA-256 of the file's weights, once computed (runtime table key)

    @property
    def contract(self) -> NetworkContract:
        return self.network.contract

    @property
    def scale(self) -> int:
        return self.contract.scale

    @property
    def channels(self) -> int:
        return self.contract.channels

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def weights_digest(self) -> str:
        """SHA-256 of the network's tensors: what a runtime.json entry was measured on.
        Computed once; a denoise blend keeps its file's digest (same network, same speed)."""
        if self.digest is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.network.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
            self.digest = digest.hexdigest()
        return self.digest

    def with_denoise(self, strength: float) -> LoadedModel:
        """The same model with weights ``strength * clean + (1 - strength) * keep_texture``:
        Real-ESRGAN's control, smooth because both ends come from one training run (the
        keep-texture end is fine-tuned from the clean one, so they share a basin)."""
        if self.keep_texture is None:
            raise ModelError(
                f"{self.name} x{self.scale} has no denoise control (only models trained with "
                "a keep-texture weight set do, such as real)"
            )
        if isinstance(strength, bool) or not 0.0 <= float(strength) <= 1.0:
            raise ModelError(f"denoise strength must be between 0 and 1, got {strength}")
        network = copy.deepcopy(self.network)
        clean = self.network.state_dict()
        network.load_state_dict(
            {k: strength * v + (1.0 - strength) * self.keep_texture[k] for k, v in clean.items()}
        )
        metadata = {**self.metadata, "denoise": f"{strength:g}"}
        return LoadedModel(
            self.name, network.eval(), metadata, self.keep_texture, self.weights_digest()
        )


def weights_dir() -> Path:
    """Where models are looked up: the package's shipped weights, or ``$SUPERRES_WEIGHTS_DIR``.

    The variable lets you use a private weights folder (files named ``NAME-xS.safetensors``,
    as ``save_weights`` writes them) without touching the installed package.
    """
    override = os.environ.get("SUPERRES_WEIGHTS_DIR")
    if override:
        return Path(override)
    return Path(str(resources.files("superres.models") / "weights"))


def shipped_weights_path(name: str, scale: int) -> Path:
    return weights_dir() / f"{resolve_name(name)}-x{scale}.safetensors"


_WEIGHTS_NAME = re.compile(r"(?P<name>.+)-x(?P<scale>\d+)")


def _named_weights() -> list[tuple[Path, str, int]]:
    """(path, name, scale) of each ``NAME-xS.safetensors`` in the weights folder."""
    found = []
    for path in sorted(weights_dir().glob("*.safetensors")):
        match = _WEIGHTS_NAME.fullmatch(path.stem)
        if match:
            found.append((path, match["name"], int(match["scale"])))
    return found


def stray_weight_files() -> list[Path]:
    """Files in the weights folder that are not named as weights are: ignored, and said so."""
    named = {path for path, _, _ in _named_weights()}
    return [p for p in sorted(weights_dir().glob("*.safetensors")) if p not in named]


def shipped_scales(name: str) -> list[int]:
    canonical = resolve_name(name)
    return sorted(scale for _, found, scale in _named_weights() if found == canonical)


KEEP_TEXTURE_PREFIX = "keep_texture."


def save_weights(path: Path, loaded: LoadedModel) -> None:
    """Write weights with self-describing metadata (all values must be strings); a
    keep-texture set is stored beside them under :data:`KEEP_TEXTURE_PREFIX`."""
    metadata = {**loaded.metadata, "architecture": loaded.name, "scale": str(loaded.scale)}
    state = {k: v.detach().contiguous() for k, v in loaded.network.state_dict().items()}
    if loaded.keep_texture is not None:
        state.update(
            {
                KEEP_TEXTURE_PREFIX + k: v.detach().contiguous()
                for k, v in loaded.keep_texture.items()
            }
        )
    with replacing(path) as temporary:  # a reader never sees half a file
        save_file(state, str(temporary), metadata=metadata)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{path}: not a readable safetensors file ({error})") from error


def create_model(name: str, scale: int, **hyper: Any) -> LoadedModel:
    """An untrained model (for training), with hyper-parameters recorded in its metadata."""
    canonical = resolve_name(name)
    return _build(canonical, scale, {**ARCHITECTURES[canonical].hyper, **hyper})


def check_hyper(canonical: str, hyper: Any) -> None:
    """Refuse, in one line, hyper-parameters the architecture does not take or that are out of
    bounds (see :class:`Bound`), before anything is allocated."""
    arch = ARCHITECTURES[canonical]
    if not isinstance(hyper, dict):
        raise ModelError(f"{canonical}: hyper-parameters must be a mapping, got {hyper!r}")
    unknown = sorted(set(hyper) - set(arch.bounds))
    if unknown:
        takes = ", ".join(sorted(arch.bounds)) or "none"
        names = ", ".join(map(repr, unknown))
        raise ModelError(f"{canonical} has no hyper-parameter {names} (it takes: {takes})")
    for key, value in sorted(hyper.items()):
        bound = arch.bounds[key]
        if not bound.check(value):
            raise ModelError(f"{canonical}: {key} must be {bound.describe()}, got {value!r}")


def _build(canonical: str, scale: int, hyper: dict[str, Any]) -> LoadedModel:
    arch = ARCHITECTURES[canonical]
    if scale not in (2, 3, 4):
        raise ModelError(f"{canonical} supports integer scales 2, 3 and 4, not {scale}")
    check_hyper(canonical, hyper)
    network = arch.build(scale=scale, **hyper)
    metadata = {"hyper": json.dumps(hyper, sort_keys=True)}
    return LoadedModel(canonical, network, metadata)


def load_weights_file(path: str | Path) -> LoadedModel:
    """Build the model a safetensors file describes and load its weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    metadata = read_metadata(path)
    try:
        name, scale = metadata["architecture"], int(metadata["scale"])
        hyper = json.loads(metadata.get("hyper", "{}"))
    except (KeyError, ValueError) as error:
        raise ModelError(f"{path}: weights lack superres metadata ({error})") from error
    # A file's hyper-parameters are complete as written (create_model records the registry's
    # defaults too), so they are used alone: a default changed later must not reinterpret
    # older files (FSRCNN and ESPCN files without "residual" are the paper's networks).
    loaded = _build(resolve_name(name), scale, hyper)
    loaded.metadata = metadata
    try:
        tensors = load_file(str(path))
        keep = {
            k.removeprefix(KEEP_TEXTURE_PREFIX): v
            for k, v in tensors.items()
            if k.startswith(KEEP_TEXTURE_PREFIX)
        }
        loaded.network.load_state_dict(
            {k: v for k, v in tensors.items() if not k.startswith(KEEP_TEXTURE_PREFIX)}
        )
        if keep and keep.keys() != loaded.network.state_dict().keys():
            raise ModelError(f"{path}: its keep-texture weights do not fit {name}")
        loaded.keep_texture = keep or None
    except (RuntimeError, SafetensorError) as error:
        raise ModelError(f"{path}: weights do not fit {name}: {error}") from error
    loaded.network.eval()
    return loaded


def pair_for_denoise(clean: LoadedModel, keep_texture: LoadedModel) -> LoadedModel:
    """One model whose ``with_denoise`` blends ``clean`` (strength 1) and ``keep_texture``
    (strength 0); both must be the same architecture, scale and hyper-parameters."""
    describe = [(m.name, m.scale, m.metadata.get("hyper")) for m in (clean, keep_texture)]
    if describe[0] != describe[1]:
        raise ModelError(f"cannot pair {describe[0]} with {describe[1]}: not the same network")
    state = {k: v.detach().clone() for k, v in keep_texture.network.state_dict().items()}
    metadata = {
        **clean.metadata,
        "keep_texture_training": keep_texture.metadata.get("training", ""),
    }
    return LoadedModel(clean.name, clean.network, metadata, state)


# What `superres upscale`, the API and the web page run when no model is named. People's photos
# are JPEG-compressed, noisy and a little blurred, and the clean-trained models sharpen exactly
# that, so: the real-world model where it is shipped for the scale, the clean default elsewhere.
# The benchmark protocol names its models, so its numbers never depend on this choice.
AUTO_MODEL = "auto"


def resolve_model(name: str, scale: int) -> str:
    """Canonical name of ``name`` at ``scale``; :data:`AUTO_MODEL` picks per scale."""
    if name == AUTO_MODEL:
        name = "real" if scale in shipped_scales("real") else "default"
    return resolve_name(name)


DEFAULT_SCALE = 4  # a shipped model's scale when none is given, as `superres upscale` has it


def load_model(
    name: str | Path,
    scale: int | None = None,
    pretrained: bool = True,
    *,
    allow_torchscript: bool = False,
) -> LoadedModel:
    """A shipped model by name (``srcnn``, ``compact``, ``auto``...) for ``scale`` (default
    :data:`DEFAULT_SCALE`), or the model in a weights file (:mod:`superres.models.files`) at
    its own scale, another ``scale`` being refused. ``allow_torchscript`` lets a TorchScript
    file's code run, for files from a source you trust."""
    from superres.models.files import is_model_path, load_model_file  # it builds on this module

    if is_model_path(name):
        if not pretrained:
            raise ModelError("pretrained=False takes a shipped model's name, not a file")
        return load_model_file(name, scale, allow_torchscript)
    scale = DEFAULT_SCALE if scale is None else scale
    canonical = resolve_model(name, scale)
    if not pretrained:
        return create_model(canonical, scale)
    path = shipped_weights_path(canonical, scale)
    if not path.is_file():
        scales = shipped_scales(canonical)
        offered = ", ".join(f"x{s}" for s in scales) or "none"
        raise ModelError(f"no shipped weights for {canonical} at x{scale} (shipped: {offered})")
    return load_weights_file(path)


@dataclass(frozen=True)
class ShippedModel:
    model: LoadedModel  # loaded once, for callers that go on to run or measure it
    file_kib: float

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def parameters(self) -> int:
        return self.model.parameters

    @property
    def metadata(self) -> dict[str, str]:
        return self.model.metadata


def shipped_models(unreadable: list[str] | None = None) -> list[ShippedModel]:
    """Every weights file in the package, described from its own metadata. With a list for
    ``unreadable``, a file that does not load is said there in one line and left out, so one
    damaged file does not hide the others; without, it is an error."""
    models = []
    for path, _, _ in _named_weights():
        try:
            models.append(ShippedModel(load_weights_file(path), path.stat().st_size / 1024))
        except ModelError as error:
            if unreadable is None:
                raise
            unreadable.append(str(error))
    return models
