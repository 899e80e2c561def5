"""Errors a user can cause. The CLI turns each into one line and a non-zero exit."""


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
