"""Why: a signed checkpoint kept only in the operator's own database defends nothing against the
operator — a split view (one history shown to one auditor, another to the next) needs checkpoints
to leave the log's hands. Every signed checkpoint is published to a directory (served statically,
synced, or watched by a witness) or POSTed to a URL (a witness, a transparency service), and
witnesses (`witness.py`) keep the last one they saw and check each new one extends it.

Publishing is apart from durability: a failed publication is logged and retried with the next
checkpoint, never failing an append. Formats (SPEC.md §10):

    <dir>/checkpoint              the latest signed note (written atomically: temp file + rename)
    <dir>/checkpoints/<size>      every published note, by tree size
    POST <url>                    body: the signed note, `content-type: text/plain; charset=utf-8`
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .errors import AuditConfigError
from .notes import Checkpoint, tree_size_of

_log = logging.getLogger(__name__)

Publish = Callable[[Checkpoint], None]


def publish_to_directory(directory: str | os.PathLike[str]) -> Publish:
    root = Path(directory)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)

    def publish(checkpoint: Checkpoint) -> None:
        data = checkpoint.note.encode("utf-8")
        (root / "checkpoints" / str(checkpoint.tree_size)).write_bytes(data)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".checkpoint.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            current = root / "checkpoint"
            try:  # never move the published head backwards (an older checkpoint published late)
                if current.exists() and tree_size_of(current.read_text("utf-8")) > checkpoint.tree_size:
                    return
            except (OSError, ValueError):
                pass
            os.replace(tmp, current)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    return publish


def publish_to_url(url: str, timeout_s: float = 5.0) -> Publish:
    if not url.startswith(("http://", "https://")):
        raise AuditConfigError(f"publish URL must be http(s): {url!r}")

    def publish(checkpoint: Checkpoint) -> None:
        request = urllib.request.Request(url, data=checkpoint.note.encode("utf-8"), method="POST",  # noqa: S310
                                         headers={"content-type": "text/plain; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
            if response.status >= 300:
                raise OSError(f"publish URL answered {response.status}")

    return publish


def publisher_for(target: str) -> Publish:
    """`CONSENTGATE_AUDIT_PUBLISH`: an http(s) URL, else a directory path."""
    if target.startswith(("http://", "https://")):
        return publish_to_url(target)
    return publish_to_directory(target)


class BackgroundPublisher:
    """Runs a `Publish` on its own thread so a slow target never holds an append; keeps at most
    `backlog` checkpoints waiting (dropping the oldest: the newest covers them)."""

    def __init__(self, publish: Publish, backlog: int = 64) -> None:
        self._publish = publish
        self._queue: queue.Queue[Checkpoint | None] = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._run, name="audit-publisher", daemon=True)
        self._thread.start()

    def __call__(self, checkpoint: Checkpoint) -> None:
        while True:
            try:
                self._queue.put_nowait(checkpoint)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._publish(item)
            except Exception:  # noqa: BLE001 - publication is apart from durability
                _log.warning("could not publish checkpoint %d", item.tree_size, exc_info=True)

    def close(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)
