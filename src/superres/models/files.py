"""Models named by a file's path: superres's own safetensors (what ``superres train`` writes),
and, with ``superres[community]``, other projects' .safetensors, .pth, .ckpt and .pt files.

Nothing in a file runs. safetensors hold tensors only; pickles (.pth, .ckpt, .pt) are read by
PyTorch's weights-only unpickler, which refuses anything but tensors and plain containers, so
a file that would call a function is refused before any of it is used. TorchScript archives
hold code and are refused unless the caller allows them explicitly.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from superres.errors import ModelError, first_sentence
from superres.models import community
from superres.models.registry import (
    ALIASES,
    ARCHITECTURES,
    AUTO_MODEL,
    LoadedModel,
    load_weights_file,
    read_metadata,
)

SAFETENSORS = ".safetensors"
PICKLES = (".pth", ".ckpt", ".pt")
# How torch.save files start: a zip archive's signature, or (legacy ones) a pickle's PROTO.
TORCH_STARTS = (b"PK", b"\x80")
# A superres training checkpoint (RUN_DIR/checkpoint.pt): optimiser state, not a model to run.
CHECKPOINT_KEYS = {"step", "model", "optimizer", "config"}


def is_model_path(model: str | Path) -> bool:
    """Whether a ``--model`` value names a file rather than a shipped model: a Path, a value
    with a folder separator or a weights file's extension, or an existing file. Shipped names
    come first, so a file named ``compact`` in the current folder does not hide the model."""
    if isinstance(model, Path):
        return True
    if model in ARCHITECTURES or model in ALIASES or model == AUTO_MODEL:
        return False
    suffix = Path(model).suffix.lower()
    return (
        "/" in model
        or os.sep in model
        or suffix in (SAFETENSORS, *PICKLES)
        or Path(model).is_file()
    )


def is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (torch.save's have none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in f"/{name}" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _refusal_reason(error: pickle.UnpicklingError) -> str:
    called = re.search(r"GLOBAL (\S+)", str(error))
    if called:
        return f"unpickling it would call {called[1]}, which plain weights never need"
    detail = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()
    return f"it holds more than plain weights ({detail[0] if detail else 'unknown content'})"


def _unpickle(path: Path) -> Any:
    """torch.load with PyTorch's weights-only unpickler; a refusal names what was asked for."""
    with path.open("rb") as handle:
        start = handle.read(2)
    if not start.startswith(TORCH_STARTS):
        raise ModelError(f"{path}: not a PyTorch file (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes on pickle protocols: the outcome is what counts
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise ModelError(
                f"{path}: not a readable PyTorch file ({first_sentence(error)})"
            ) from None
        raise ModelError(
            f"{path}: refused: {_refusal_reason(error)}; nothing in it was run"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise ModelError(
            f"{path}: not a readable PyTorch file, truncated or corrupt? ({first_sentence(error)})"
        ) from None


def read_state_dict(path: Path, allow_torchscript: bool = False) -> dict[str, Any]:
    """The weights in a .safetensors, .pth, .ckpt or .pt file, read so that nothing in it runs
    (TorchScript only with ``allow_torchscript``)."""
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS:
        try:
            return load_file(str(path))
        except (OSError, SafetensorError) as error:
            raise ModelError(f"{path}: not a readable safetensors file ({error})") from None
    if suffix not in PICKLES:
        raise ModelError(
            f"{path}: not a model file superres reads (.safetensors, .pth, .ckpt or .pt)"
        )
    if is_torchscript(path):
        if not allow_torchscript:
            raise ModelError(
                f"{path}: refused: a TorchScript archive, whose code runs when it is loaded. If "
                "you trust it, convert it once: superres models --file "
                f"{path} --allow-torchscript --to-safetensors {path.with_suffix(SAFETENSORS)}"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as error:
            raise ModelError(
                f"{path}: not a loadable TorchScript file ({first_sentence(error)})"
            ) from None
    state = _unpickle(path)
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a model's weights")
    if state.keys() >= CHECKPOINT_KEYS:
        raise ModelError(
            f"{path}: a superres training checkpoint; run the weights beside it, "
            f"{path.with_name('model.safetensors')}"
        )
    return state


def is_superres_file(path: Path) -> bool:
    """A safetensors file whose metadata names one of superres's architectures."""
    if path.suffix.lower() != SAFETENSORS:
        return False
    name = read_metadata(path).get("architecture")
    return name in ARCHITECTURES or name in ALIASES


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file")
    if not path.is_file():
        raise ModelError(f"{path}: a folder, not a model file")
    return path


def load_model_file(
    path: str | Path, scale: int | None = None, allow_torchscript: bool = False
) -> LoadedModel:
    """The model in a weights file; ``scale``, if given, must be the file's own."""
    path = _existing(path)
    if is_superres_file(path):
        loaded = load_weights_file(path)
    else:
        loaded = community.load_community(read_state_dict(path, allow_torchscript), path)
    if scale is not None and scale != loaded.scale:
        raise ModelError(
            f"{path}: an x{loaded.scale} model, not x{scale}; leave the scale out to enlarge "
            f"x{loaded.scale} (with an outscale of {scale} for that final size)"
        )
    return loaded


def describe_model_file(path: str | Path, allow_torchscript: bool = False) -> list[tuple[str, str]]:
    """(field, value) rows saying what a weights file holds and whether superres runs it."""
    path = _existing(path)
    size = path.stat().st_size
    amount = f"{size / 2**20:,.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
    rows = [("file", f"{path} ({amount})")]
    if not is_superres_file(path):
        state = read_state_dict(path, allow_torchscript)
        return rows + community.describe(community.recognise(state, path))
    loaded = load_weights_file(path)
    meta = loaded.metadata
    planes = "RGB" if loaded.channels == 3 else "luminance (Y); chroma and alpha by bicubic"
    psnr = meta.get("val_psnr")
    where = meta.get("validation_data") or "its validation images"
    rows += [
        ("architecture", f"{loaded.name} (superres): {ARCHITECTURES[loaded.name].description}"),
        ("scale", f"x{loaded.scale}"),
        ("channels", planes),
        ("parameters", f"{loaded.parameters:,}"),
        ("hyper-parameters", meta.get("hyper", "{}")),
        ("validation PSNR", f"{psnr[:5]} dB on {where}" if psnr else "-"),
        ("training steps", meta.get("steps", "-")),
        ("denoise control", "yes" if loaded.keep_texture is not None else "no"),
        ("superres runs it", "yes"),
    ]
    return rows


def convert_to_safetensors(
    source: str | Path, target: Path, allow_torchscript: bool = False
) -> str:
    """Copy a pickled or TorchScript model's tensors to a safetensors file (which no loader
    can run code from); returns the architecture spandrel finds in the copy."""
    source = _existing(source)
    if source.suffix.lower() not in PICKLES:
        raise ModelError(f"{source}: only .pth, .ckpt and .pt files need converting")
    if target.suffix.lower() != SAFETENSORS or target.resolve() == source.resolve():
        raise ModelError(f"{target}: the copy needs its own name, ending in {SAFETENSORS}")
    state = read_state_dict(source, allow_torchscript)
    return community.write_safetensors(state, source, target)


def model_labels(paths: Sequence[Path], taken: Collection[str] = ()) -> list[str]:
    """Short names for model files, usable as file and folder names: the file name without
    its extension, with as many parent folders as it takes (joined by "-") to tell the files
    apart from each other and from ``taken`` (runs/a/model and runs/b/model: a-model, b-model;
    the whole path, which no shipped name is like, at worst)."""
    resolved = [path.resolve() for path in paths]
    if len(set(resolved)) < len(resolved):
        raise ModelError("the same model file is named twice")
    stems = [path.with_suffix("").parts for path in resolved]
    longest = max((len(parts) for parts in stems), default=1)
    for depth in range(1, longest + 1):
        labels = ["-".join(parts[-depth:]).lstrip(os.sep) for parts in stems]
        if depth == longest or (len(set(labels)) == len(labels) and not set(labels) & set(taken)):
            break
    return labels
