"""``superres serve``: a web page and an HTTP API over the Python API (see :mod:`.server`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts and holds at once; the defaults of ``serve`` and ``create_app``
    (here, apart from :mod:`.server`, so the CLI shows them without the web extra)."""

    max_upload_mb: float = 20.0
    max_pixels: int = 16_000_000
    workers: int = 1
    memory_budget_mb: float = 2000.0  # memory all requests in flight may claim
    max_request_gmacs: float = 3000.0  # work one request may take (output pixels x model)
    max_pending_gmacs: float = 12000.0  # work all queued requests may take
    max_video_seconds: float = 30.0  # a video or an animation, before the work limit
    max_frames: int = 900


DEFAULT_LIMITS = ServerLimits()
