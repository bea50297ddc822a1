"""Why: admins create, list and revoke API keys from the shell as well as over HTTP; a new key is
printed alone on stdout (shown once, stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.apikeys import ApiKeyStore
from gateway.cli.common import DataDir, fail, load_settings, require_data_dir
from gateway.errors import GatewayError
from gateway.settings import Settings

__all__ = ["apikey_app"]

apikey_app = typer.Typer(help="Manage API keys (stored hashed; a key is shown once).", no_args_is_help=True)


def _store(settings: Settings) -> ApiKeyStore:
    from gateway.db import make_engine

    require_data_dir(settings)  # never create a data dir (and new keys) to list nothing
    return ApiKeyStore(make_engine(settings.resolved_database_url), settings.operator_tenant)


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
    role: Annotated[str, typer.Option(help="generator | registrar | auditor | admin")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a key and print it alone on stdout (it is shown only once)."""
    try:
        _, key = _store(load_settings(data_dir)).create(tenant, role, name)
    except GatewayError as exc:
        raise fail(exc.message) from None
    typer.echo(key)


@apikey_app.command("list")
def apikey_list(data_dir: DataDir = None, tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """List keys (ids, tenants, roles; never the secrets)."""
    for k in _store(load_settings(data_dir)).list(tenant):
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        typer.echo(f"{k.id}\t{k.tenant}\t{k.role}\t{k.created_at}\t{state}\t{k.name}")


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke a key by id."""
    try:
        info = _store(load_settings(data_dir)).revoke(key_id)
    except GatewayError as exc:
        raise fail(exc.message) from None
    typer.echo(f"revoked {info.id}")
