"""Errors a user can cause. The CLI turns each into one line and a non-zero exit.

An error about a file names it itself, first (``photo.png: ...``), so the line says which
file without the CLI adding a path that the message may already hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SuperresError(Exception):
    """Base class for problems with the user's input, not bugs in superres."""


class ImageReadError(SuperresError):
    """A file that is missing, empty, corrupt, not an image, or too large."""


class ImageTooLargeError(ImageReadError):
    """An image with more pixels than allowed, refused before decoding (a server answers 413)."""


class NotAnImageError(ImageReadError):
    """Data no supported decoder recognises, as opposed to a recognised but corrupt image."""


class ImageWriteError(SuperresError):
    """An output that cannot be written (or would overwrite an input)."""


class ModelError(SuperresError):
    """An unknown model name, a scale a model does not support, or bad weights."""


class VideoReadError(ImageReadError):
    """A video that cannot be decoded: not a video, no video stream, corrupt or truncated."""


def first_sentence(error: BaseException) -> str:
    """The start of a third-party error's message (libraries' run to paragraphs), for one line."""
    lines = str(error).strip().splitlines()
    return lines[0].split(". ")[0] if lines else type(error).__name__


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Put ``path`` in front of the errors raised in the block: for code that cannot know the
    file it works for (the engine: "enlarging 52x40 by 2 ... over the limit"). Only around
    such code: reading and writing errors already name their file, and would name it twice."""
    try:
        yield
    except SuperresError as error:
        raise type(error)(f"{path}: {error}") from error
