"""Helpers shared by several test modules (imported, unlike conftest's fixtures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from superres.training.trainer import TrainConfig


def run_superres(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (sys.executable,),
) -> subprocess.CompletedProcess[str]:
    """``LAUNCHER -m superres ARGS`` as a user runs it (the launcher may be torchrun's)."""
    return subprocess.run(
        [*launcher, "-m", "superres", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def tiny_config(folder: Path, **overrides: object) -> TrainConfig:
    """A training run of a few steps of a one-block compact model on ``folder``."""
    settings: dict[str, object] = dict(
        model="compact",
        scale=2,
        train=[str(folder)],
        val=str(folder),
        steps=8,
        epoch_steps=4,
        batch_size=4,
        patch_size=24,
        lr=2e-3,
        seed=7,
        hyper={"width": 8, "blocks": 1},
    )
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]
