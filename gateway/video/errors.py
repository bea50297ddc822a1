"""Why: video refusals and interruptions are typed, so callers map them without reading messages.

    VideoError       a video we refuse at intake or that does not decode; `status` (413 / 415 / 400)
                     and a stable `code` — the HTTP layer maps it (gateway.api.errors)
    PassCancelled    a decode pass was stopped on request (shutdown, a lost job lease)
"""

from __future__ import annotations

__all__ = ["PassCancelled", "VideoError"]


class VideoError(Exception):
    """A video we refuse. `status` is the HTTP status the API answers with; `code` is stable."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"VideoError({self.status}, {self.code!r}, {self.message!r})"


class PassCancelled(Exception):
    """`should_stop()` asked the pass to stop (e.g. the gateway is shutting down)."""
