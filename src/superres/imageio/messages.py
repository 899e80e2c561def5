"""One line of text from an exception, for the one-line errors of superres.imageio.

Codec messages can run over several lines; every ImageReadError and ImageWriteError here is one
line that names the file, so the CLI and the web page can show it as is.
"""

from __future__ import annotations

import re

__all__ = ["one_line"]


def one_line(error: BaseException) -> str:
    return re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__
