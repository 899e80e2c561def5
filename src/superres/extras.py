"""Optional dependencies: import them where needed, or say in one line which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from superres.errors import SuperresError


class MissingExtraError(SuperresError):
    """A feature whose optional dependencies are not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or one line naming ``pip install 'superres[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{feature} needs the {extra!r} extra: pip install 'superres[{extra}]' ({error})"
        ) from error
