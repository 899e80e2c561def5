"""Helpers shared by several test modules (imported, unlike conftest's fixtures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner, Result

import superres.apps.cli
from superres.training.trainer import TrainConfig

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ORIENTATION, MAKE = 0x0112, 0x010F  # EXIF tags


def exif_bytes(orientation: int = 1) -> bytes:
    """EXIF with an orientation and a camera make, to see both applied or carried."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "TestCam"
    return exif.tobytes()


def exif_tags(exif: bytes | None) -> dict[int, object]:
    assert exif is not None
    parsed = Image.Exif()
    parsed.load(exif)
    return dict(parsed)


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


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object
) -> tuple[int, str]:
    """The real entry point (`superres ...`) in this process: its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["superres", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        superres.apps.cli.main()
    return exit_info.value.code, capsys.readouterr().err


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


def upscale_cli(*args: object, scale: int = 2) -> Result:
    """`superres upscale ARGS --scale 2 --model default` through typer's runner: the clean
    default named, so results can be compared with ``Upscaler("default")`` (`auto` would pick
    the real-world model where it is shipped)."""
    arguments = ["upscale", *map(str, args), "--scale", str(scale), "--model", "default"]
    return CliRunner().invoke(superres.apps.cli.app, arguments)
