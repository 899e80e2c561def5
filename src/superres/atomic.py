"""Outputs that appear complete or not at all: every file superres writes goes through here."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from superres.errors import ImageWriteError

try:
    import fcntl
except ImportError:  # Windows, where a file still open in its writer cannot be deleted anyway
    fcntl = None  # type: ignore[assignment]

_TOKEN_BYTES = 4  # a temporary is .NAME.<8 hex digits>.part
# The one definition of a temporary that every clean-up goes by (DOTALL: a name may hold a
# newline), so that no clean-up misses what another one removes.
_TEMPORARY = re.compile(rf"\.(?P<name>.+)\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.part", re.DOTALL)
# Folder -> target name -> the temporaries found there when this process first wrote to it.
_FOUND: dict[str, dict[str, list[str]]] = {}


def _kept_name(target: Path) -> str:
    """The NAME in ``target``'s temporaries: its name, cut short when very long so that the
    temporary's name leaves room for the rest."""
    return target.name[:200]


def _temporaries(folder: str) -> dict[str, list[str]]:
    """The temporaries in ``folder``, by the NAME of the target each one is for."""
    found: dict[str, list[str]] = {}
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if match := _TEMPORARY.fullmatch(entry.name):
                found.setdefault(match["name"], []).append(entry.name)
    return found


def remove_leftovers(target: Path) -> None:
    """Delete the temporaries of ``target`` that a killed writer (SIGKILL, a dead Ray worker)
    had no chance to remove. Only for a target that nobody is writing any more."""
    folder = os.path.abspath(target.parent)
    for name in _temporaries(folder).get(_kept_name(target), []):
        with suppress(OSError):
            os.unlink(os.path.join(folder, name))


def _remove_abandoned(target: Path) -> None:
    """Delete the temporaries of ``target`` left by a writer that was killed (kill -9, a power
    cut): every writer holds a lock on its own while it lives, so a locked one is left alone.
    A folder is listed once per process, so a batch of thousands of files stays linear."""
    folder = os.path.abspath(target.parent)
    if folder not in _FOUND:
        _FOUND[folder] = _temporaries(folder)
    for name in _FOUND[folder].pop(_kept_name(target), []):
        leftover = Path(folder, name)
        with suppress(OSError):
            if _unlocked(leftover):
                leftover.unlink()


def _unlocked(path: Path) -> bool:
    """Whether no living writer holds ``path``'s lock."""
    if fcntl is None:
        return True
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(descriptor)
    return True


def create_temporary(target: Path) -> tuple[int, Path]:
    """A new hidden file next to ``target`` (same filesystem, so the final rename is atomic),
    locked for as long as the returned descriptor is open.

    os.open with mode 0o666 rather than mkstemp, so the result gets the usual umask-based
    permissions instead of mkstemp's owner-only 0o600.
    """
    _remove_abandoned(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        token = secrets.token_hex(_TOKEN_BYTES)
        temporary = target.with_name(f".{_kept_name(target)}.{token}.part")
        try:
            descriptor = os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            with suppress(OSError):  # a filesystem without locks: writing works all the same
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        return descriptor, temporary


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
    except OSError as error:
        raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
    if fcntl is None:  # no lock to hold, and Windows renames no file that is open
        os.close(descriptor)
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
    finally:
        if fcntl is not None:  # the lock, held until the file is in place
            os.close(descriptor)
