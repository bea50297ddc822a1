"""Why: admins edit policies on a live gateway. The manager validates a changed bundle in full
(schema, registered models, loadable models, labels, signature when a trust key is set) and only
then swaps it in atomically; a bad change is refused, logged and reported while the last good
bundle keeps serving (keep-last-good, as OPA does). It polls the directory digest and reloads on
SIGHUP."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gateway.policy.loader import PolicyBundle, PolicyError, bundle_digest, load_bundle
from gateway.policy.runtime import ModelPool, PolicyRuntime
from gateway.policy.tighten import loosenings

log = logging.getLogger("consentgate.policy")


@dataclass(frozen=True)
class ActivePolicy:
    bundle: PolicyBundle
    runtime: PolicyRuntime
    overlay_runtimes: dict[str, PolicyRuntime]
    # What other parts build from the same bundle bytes (e.g. "routes": the route table), so they
    # go live in the same swap as the policies: one reference, never one without the other.
    attachments: dict[str, object] = field(default_factory=dict)

    def for_tenant(self, tenant: str) -> PolicyRuntime:
        return self.overlay_runtimes.get(tenant, self.runtime)


SignatureCheck = Callable[[Path, str], None]


class PolicyManager:
    def __init__(
        self,
        directory: Path,
        pool: ModelPool,
        *,
        policy_name: str = "default",
        signature_check: SignatureCheck | None = None,
        on_result: Callable[[str], None] | None = None,
        on_activate: Callable[[ActivePolicy], None] | None = None,
    ):
        self.directory = Path(directory)
        self.pool = pool
        self.policy_name = policy_name
        self.signature_check = signature_check
        self.on_result = on_result
        self.on_activate = on_activate
        self.validators: list[Callable[[ActivePolicy], None]] = []
        # name → build(active) from the bundle's bytes; raises PolicyError to refuse the bundle.
        self.attachers: dict[str, Callable[[ActivePolicy], object]] = {}
        self.active: ActivePolicy | None = None
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_digest: str | None = None
        self.retry_interval_s = 5.0
        self._next_retry = 0.0

    def build(self) -> ActivePolicy:
        bundle = load_bundle(self.directory, policy_name=self.policy_name, is_registered=self.pool.registry)
        if self.signature_check is not None:
            self.signature_check(self.directory, bundle.digest)
        # Load the base's and every overlay's models, collecting every problem before refusing: an
        # overlay inherits the base's values, so a mistake of the base is reported once, at its line.
        errors: list[str] = []
        runtime: PolicyRuntime | None = None
        try:
            runtime = self.pool.build(bundle.policy, source=f"{self.directory}/{self.policy_name}.yaml",
                                      locate=bundle.locator(None))
        except PolicyError as exc:
            errors.extend(exc.errors)
        overlays: dict[str, PolicyRuntime] = {}
        for tenant, policy in bundle.overlays.items():
            try:
                overlays[tenant] = self.pool.build(policy, source=f"{self.directory}/tenants/{tenant}.yaml",
                                                   locate=bundle.locator(tenant))
            except PolicyError as exc:
                errors.extend(e for e in exc.errors if e not in errors)
        if errors or runtime is None:
            raise PolicyError(errors)
        active = ActivePolicy(bundle, runtime, overlays)
        self._check_removed_overlays(bundle)
        for name, attach in self.attachers.items():
            active.attachments[name] = attach(active)  # raises PolicyError to refuse the bundle
        for validate in self.validators:
            validate(active)  # raises PolicyError to refuse the bundle
        return active

    def _check_removed_overlays(self, bundle: PolicyBundle) -> None:
        """A tenant whose overlay disappeared (file deleted, or `applies_to` no longer names this
        policy) falls back to the base: a loosening like any other, refused unless every setting it
        loosens is listed under the base's `tenant_may_loosen.settings` (issue #15.10). Allowed
        removals are logged loudly. The comparison is with the active bundle: across a restart only
        a signed bundle (`CONSENTGATE_POLICY_TRUST_KEY`) shows that a file went missing."""
        previous = self.active
        if previous is None:
            return
        allowed = set(bundle.policy.tenant_may_loosen.settings)
        errors: list[str] = []
        for tenant in sorted(set(previous.bundle.overlays) - set(bundle.overlays)):
            loosened = [(s, why) for s, why in loosenings(previous.bundle.overlays[tenant], bundle.policy)
                        if not any(s == a or s.startswith(a + ".") for a in allowed)]
            where = f"{self.directory}/tenants/{tenant}.yaml"
            if loosened:
                what = "; ".join(f"{s} ({why})" for s, why in loosened[:10])
                errors.append(f"{where}:?: tenant {tenant!r}: removing its overlay would loosen its policy: {what}; "
                              "restore the file, or list those settings under tenant_may_loosen.settings in the base")
            else:
                log.warning("POLICY OVERLAY REMOVED: tenant %r now gets the base policy %r (%s is gone)",
                            tenant, bundle.policy.name, where)
        if errors:
            raise PolicyError(errors)

    def reload(self) -> bool:
        """Validate and activate the bundle on disk; False (and last good kept) when refused."""
        with self._lock:
            try:
                self._seen_digest = self._fingerprint() if self.directory.is_dir() else None
                active = self.build()
            except PolicyError as exc:
                self.last_error = str(exc)
                self.last_error_at = datetime.now(UTC)
                log.error("policy bundle refused, %s stays active:\n%s",
                          self.active.bundle.digest[:12] if self.active else "nothing", exc)
                if self.on_result:
                    self.on_result("refused")
                return False
            except Exception as exc:  # noqa: BLE001 - any surprise refuses the bundle, never crashes
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_error_at = datetime.now(UTC)
                log.exception("policy bundle refused")
                if self.on_result:
                    self.on_result("refused")
                return False
            previous = self.active.bundle.digest if self.active is not None else None
            changed = previous != active.bundle.digest
            if self.on_activate is not None:
                self.on_activate(active)
            self.active = active
            self.last_error = None
            self.last_error_at = None
            if changed:  # every successful (re)load is logged with the new digest (and the one it replaced)
                log.info("policy bundle %s active: digest %s (was %s), %d file(s), tenant overlays: %s",
                         active.bundle.policy.name, active.bundle.digest, previous or "nothing",
                         len(active.bundle.files), ", ".join(sorted(active.bundle.overlays)) or "none")
            if self.on_result:
                self.on_result("ok")
            return True

    def _fingerprint(self) -> str:
        """The bundle digest plus the signature file's bytes: signing a refused bundle (the digest
        unchanged, only `bundle.sig` new) must trigger a reload too."""
        try:
            sig = (self.directory / "bundle.sig").read_bytes()
        except OSError:
            sig = b""
        return f"{bundle_digest(self.directory)}:{hashlib.sha256(sig).hexdigest()}"

    def poll_once(self) -> None:
        try:
            digest = self._fingerprint()
        except (OSError, PolicyError):
            return
        # Nothing active yet (e.g. the model workers were unreachable at start): try again now and
        # then, so the gateway becomes ready by itself once they answer.
        retry = self.active is None and time.monotonic() >= self._next_retry
        if digest != self._seen_digest or retry:
            if retry:
                self._next_retry = time.monotonic() + self.retry_interval_s
            self.reload()

    def start_watching(self, interval_s: float) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.poll_once()

        self._thread = threading.Thread(target=loop, name="policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> dict[str, object]:
        active = self.active
        return {
            "name": active.bundle.policy.name if active else None,
            "digest": active.bundle.digest if active else None,
            "loaded_at": active.bundle.loaded_at.isoformat() if active else None,
            "files": list(active.bundle.files) if active else [],
            "tenants": sorted(active.bundle.overlays) if active else [],
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }
