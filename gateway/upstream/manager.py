"""Why: routes change on a live gateway like policies do. The manager re-reads `routes.yaml`
when its bytes change (polled on use, at most once per interval — no thread to stop), swaps a
new table in only after it validated in full, and otherwise keeps the last good one serving and
reports why the change was refused.

Routes inside the policy directory are part of the policy bundle (issue #15.4): the gateway binds
the manager to the policy manager (`bind`), so the table comes from the *activated bundle's* bytes —
validated, signature-checked when a trust key is set, and swapped in together with the policies in
one reference. An edited but unsigned routes file is refused like a policy file: the last good
routes stay live and `/readyz` says why. Only a routes file configured outside the policy directory
(`routes_file`) is still watched on its own; under a trust key such a file is refused."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.policy.loader import PolicyError
from gateway.upstream.routes import RoutesFile, RouteTable, file_digest, load_routes

log = logging.getLogger("consentgate.routes")


class RouteManager:
    def __init__(self, path: Path, *, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.interval_s = interval_s
        self.clock = clock
        self.active = RouteTable(RoutesFile(), None, str(self.path))
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._seen: str | None = None
        self._checked_at: float | None = None
        self._lock = threading.Lock()
        self._bound: Callable[[], RouteTable | None] | None = None
        self._bound_error: Callable[[], str | None] | None = None
        self._bound_reload: Callable[[], bool] | None = None
        self.reload()

    def bind(self, table: Callable[[], RouteTable | None], last_error: Callable[[], str | None],
             reload: Callable[[], bool] | None = None) -> None:
        """Serve the table the policy bundle activated (`table()`; None: no bundle yet → no routes)
        instead of reading the file: routes then go live only with a verified bundle. `reload()`
        then reloads the whole bundle (`reload`, the policy manager's)."""
        self._bound, self._bound_error, self._bound_reload = table, last_error, reload
        self.active = RouteTable(RoutesFile(), None, str(self.path))
        self.last_error = None

    def refuse(self, why: str) -> None:
        """No routes at all, with `why` as the reported error (e.g. unsigned routes under a trust key)."""
        self._bound, self._bound_error = (lambda: None), (lambda: why)
        self.active = RouteTable(RoutesFile(), None, str(self.path))
        self.last_error = why

    def reload(self) -> bool:
        """Validate and activate the file on disk; False (last good kept) when refused."""
        if self._bound is not None:  # the routes are part of the policy bundle: reload that
            return self._bound_reload() if self._bound_reload is not None else True
        with self._lock:
            self._checked_at = self.clock()
            self._seen = file_digest(self.path)
            try:
                table = load_routes(self.path)
            except PolicyError as exc:
                self.last_error = str(exc)
                self.last_error_at = datetime.now(UTC)
                log.error("routes file refused, the last good routes stay active:\n%s", exc)
                return False
            except Exception as exc:  # noqa: BLE001 - any surprise refuses the file, never crashes
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_error_at = datetime.now(UTC)
                log.exception("routes file refused")
                return False
            if table.digest != self.active.digest:
                log.info(
                    "routes active: %s (digest %s)",
                    ", ".join(table.routes) or "none",
                    (table.digest or "-")[:12],
                )
            self.active = table
            self.last_error = None
            self.last_error_at = None
            return True

    def current(self) -> RouteTable:
        """The live table, after a reload if the file changed since the last look."""
        if self._bound is not None:
            return self._bound() or self.active
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.interval_s:
            self._checked_at = now
            if file_digest(self.path) != self._seen:
                self.reload()
        return self.active

    def status(self) -> dict[str, Any]:
        table = self.current()
        last_error = self._bound_error() if self._bound_error is not None else self.last_error
        return {
            "file": str(self.path),
            "digest": table.digest,
            "loaded_at": table.loaded_at.isoformat(),
            "routes": sorted(table.routes),
            "last_error": last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }
