"""The typed contract between a network and the engine that runs it.

Tiling, padding and colour handling need a few facts about a network; each network states them
once, in a :class:`NetworkContract`, instead of the engine reading loose attributes off modules.
Networks loaded from other projects' files (spandrel) get a contract from their descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from superres.errors import ModelError


@dataclass(frozen=True)
class NetworkContract:
    """What a network consumes and how it may be cut into tiles.

    ``context`` is how many low-resolution pixels on each side an output pixel depends on (the
    tile overlap that makes tiled output equal whole-image output); ``size_multiple`` is what
    input sides and tile origins must be multiples of (pooling or window grids), 1 for none.
    Networks from other projects may ask for whole images (``tileable`` False: they rely on
    global context), run in fewer precisions, and have no ONNX export (``exportable``).
    """

    scale: int
    channels: int  # 1: the luminance plane (chroma is enlarged by bicubic); 3: RGB
    context: int
    size_multiple: int = 1
    tileable: bool = True
    precisions: frozenset[str] = frozenset({"fp32", "bf16", "fp16"})
    exportable: bool = True

    def __post_init__(self) -> None:
        if self.scale < 1 or self.channels not in (1, 3):
            raise ModelError(f"invalid network contract: {self}")
        if self.context < 0 or self.size_multiple < 1:
            raise ModelError(f"invalid network contract: {self}")


class ContractedNetwork(Protocol):
    """Any ``nn.Module`` the engine can run: it states its contract."""

    contract: NetworkContract
