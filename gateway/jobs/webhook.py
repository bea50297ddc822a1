"""Why: a client that submits a long video should not have to poll. It may name a webhook URL;
when the job finishes (done or failed) the gateway POSTs `{job_id, state, decision,
decision_id}` there once, with a short timeout. A webhook is a courtesy, not part of the
decision: a failure is logged and noted on the job, never fatal, never retried in a loop.

The gateway calls the URL from inside its network, so a webhook is a server-side request a client
chooses — an SSRF vector (issue #15.7: a webhook to `http://127.0.0.1:<port>/` was delivered).
Hence:

- webhooks go only to hosts on an allowlist (`CONSENTGATE_WEBHOOK_HOSTS`, settings extra
  `jobs_webhook_hosts`: comma-separated host names, a leading dot for a domain suffix, or IP
  literals); without an allowlist, webhooks are off (422 at submission);
- the host name is resolved **once** at delivery and the connection is pinned to that address (the
  `Host` header and TLS SNI keep the name), so a DNS answer cannot change between check and use;
- an address that is not globally routable (loopback, private, link-local — the cloud metadata
  service 169.254.169.254 among them —, shared, reserved, multicast) is refused unless the URL's
  host is listed *exactly* (the name or the IP, never through a `.suffix` entry);
- redirects are not followed (a 3xx is a failure), and the job shows only a coarse status
  (`delivered` / `failed`): the answer of an internal server never reaches the client.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from gateway.errors import Invalid

__all__ = ["DELIVERED", "FAILED", "Resolver", "check_webhook_url", "resolve_host", "send_webhook"]

log = logging.getLogger("consentgate.jobs")

DELIVERED = "delivered"
FAILED = "failed"
Resolver = Callable[[str, int], list[str]]


def _entries(allowed: Sequence[str]) -> list[str]:
    return [e.strip().lower().rstrip(".") for e in allowed if e.strip()]


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in _entries(allowed):
        if host == entry.lstrip(".") or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def _listed_exactly(host: str, allowed: Sequence[str]) -> bool:
    return host.lower().rstrip(".") in [e for e in _entries(allowed) if not e.startswith(".")]


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (IP literals resolve to themselves)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


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
    if not _entries(allowed_hosts):
        raise Invalid("webhooks are off on this gateway: the operator allows them per host "
                      "(CONSENTGATE_WEBHOOK_HOSTS)")
    if not _host_allowed(parts.hostname, allowed_hosts):
        raise Invalid(f"webhook_url host {parts.hostname!r} is not allowed on this gateway")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not _public(str(literal)) and not _listed_exactly(parts.hostname, allowed_hosts):
        raise Invalid(f"webhook_url host {parts.hostname!r} is not allowed on this gateway (a non-public address)")
    return url


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`url` with its host replaced by `address`, the Host header, and the TLS SNI name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port
    ip = address.split("%")[0]
    netloc = f"[{ip}]" if ":" in ip else ip
    if port is not None:
        netloc += f":{port}"
    host_header = parts.netloc.rpartition("@")[2]
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host_header}, extensions


def send_webhook(url: str, payload: dict[str, Any], *, timeout_s: float, allowed_hosts: Sequence[str] = (),
                 transport: httpx.BaseTransport | None = None,
                 resolve: Resolver = resolve_host) -> str:
    """POST `payload` as JSON to the pinned address; returns `delivered` or `failed` for the job row
    (the reason is logged, never shown to the client)."""
    job_id = payload.get("job_id")
    try:
        check_webhook_url(url, allowed_hosts)  # the rules may have changed since submission
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolve(host, port)
        if not addresses:
            raise OSError("the host resolves to no address")
        address = addresses[0]
        if not _public(address) and not _listed_exactly(host, allowed_hosts):
            log.warning("webhook for job %s refused: %s resolves to the non-public address %s", job_id, host, address)
            return FAILED
        target, headers, extensions = _pinned(url, address)
        with httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport) as client:
            response = client.post(target, json=payload, extensions=extensions,
                                   headers={"User-Agent": "consentgate-webhook/1", **headers})
        if 200 <= response.status_code < 300:
            return DELIVERED
        log.warning("webhook for job %s answered %s", job_id, response.status_code)
        return FAILED
    except Invalid as exc:
        log.warning("webhook for job %s refused: %s", job_id, exc.message)
        return FAILED
    except (httpx.HTTPError, OSError, ValueError) as exc:
        log.warning("webhook for job %s failed: %s", job_id, type(exc).__name__)
        return FAILED
