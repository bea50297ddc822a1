"""Why: a client that submits a long video should not have to poll. It may name a webhook URL;
when the job finishes (done or failed) the gateway POSTs `{job_id, state, decision,
decision_id}` there once, with a short timeout. A webhook is a courtesy, not part of the
decision: a failure is logged and noted on the job (`webhook_status`), never fatal, never
retried in a loop. Only http(s) URLs without credentials are accepted (checked at submission).

The gateway calls the URL from inside its network: operators who need to stop callers from
reaching internal addresses set `jobs_webhook_hosts` (comma-separated host names, a leading dot
for a domain suffix) to allow only those hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.errors import Invalid

__all__ = ["check_webhook_url", "send_webhook"]

log = logging.getLogger("consentgate.jobs")


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower()
        if not entry:
            continue
        if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def check_webhook_url(url: str | None, allowed_hosts: Sequence[str] = ()) -> str | None:
    """The URL if it may be called, else Invalid (422). None stays None."""
    if url is None or url == "":
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise Invalid(f"webhook_url is not a valid URL: {exc}") from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("webhook_url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Invalid("webhook_url must not carry credentials")
    if allowed_hosts and not _host_allowed(parts.hostname, allowed_hosts):
        raise Invalid(f"webhook_url host {parts.hostname!r} is not allowed on this gateway")
    return url


def send_webhook(url: str, payload: dict[str, Any], *, timeout_s: float,
                 transport: httpx.BaseTransport | None = None) -> str:
    """POST `payload` as JSON; returns a short status ("sent 200", "failed: ...") for the job row."""
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport) as client:
            response = client.post(url, json=payload, headers={"User-Agent": "consentgate-webhook/1"})
        status = f"sent {response.status_code}"
        if response.status_code >= 400:
            log.warning("webhook for job %s answered %s", payload.get("job_id"), response.status_code)
        return status
    except httpx.HTTPError as exc:
        log.warning("webhook for job %s failed: %s", payload.get("job_id"), type(exc).__name__)
        return f"failed: {type(exc).__name__}"
