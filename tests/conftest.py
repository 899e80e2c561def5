"""Shared fixtures: paths to ../shared/datasets (skipped when absent) and small test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
PEERS = REPO.parent / "shared" / "peers"


def _dataset(name: str) -> Path:
    folder = DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"../shared/datasets/{name} is absent (benchmark data is not shipped)")
    return folder


@pytest.fixture
def dataset():
    """``dataset("Set5")``: a standard set from ../shared/datasets, or a clean skip without it."""
    return _dataset


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's bundled photo, cropped small so tests stay fast."""
    return np.ascontiguousarray(data.astronaut()[100:196, 150:246])


@pytest.fixture
def peers() -> Path:
    """../shared/peers (third-party models for comparison), or a clean skip without it."""
    if not PEERS.is_dir():
        pytest.skip("../shared/peers is absent (third-party models are not shipped)")
    return PEERS
