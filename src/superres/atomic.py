"""Outputs that appear complete or not at all: every file superres writes goes through here."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from superres.errors import ImageWriteError


def create_temporary(target: Path) -> tuple[int, Path]:
    """A new hidden file next to ``target`` (same filesystem, so the final rename is atomic).

    os.open with mode 0o666 rather than mkstemp, so the result gets the usual umask-based
    permissions instead of mkstemp's owner-only 0o600.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = target.with_name(f".{target.name[:200]}.{secrets.token_hex(4)}.part")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``target`` that replaces it only if the block succeeds.

    For writers that want a path of their own (FFmpeg, Pillow's multi-frame savers, ONNX,
    safetensors, torch.save). The temporary (``.NAME.xxxx.part``) is synced before the rename,
    so a crash leaves the old file or the new one; on any failure, Ctrl-C included, it is
    removed.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = create_temporary(target)
        os.close(descriptor)
    except OSError as error:
        raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
        raise
