"""Networks (one module per family) and the registry that names and loads them."""

from superres.models.registry import (
    ARCHITECTURES,
    LoadedModel,
    create_model,
    load_model,
    load_weights_file,
    resolve_name,
    save_weights,
)

__all__ = [
    "ARCHITECTURES",
    "LoadedModel",
    "create_model",
    "load_model",
    "load_weights_file",
    "resolve_name",
    "save_weights",
]
