"""Why: admins create, list and revoke API keys from the shell as well as over HTTP; a new key is
printed alone on stdout (shown once, stored hashed). Scripts call these in loops, so none of them opens
the ORM: `list` reads through the DB-API (`readdb`), the writes go through `writekeys` (sqlite3 on SQLite,
SQLAlchemy Core elsewhere) under the same rules as `POST /v1/apikeys` (`gateway.apikey_rules`)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.common import DataDir, JsonOpt, echo_table, fail, load_settings, require_data_dir
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["apikey_app"]

apikey_app = typer.Typer(help="Manage API keys (stored hashed; a key is shown once).", no_args_is_help=True)


@contextmanager
def _writing(data_dir: Path | None) -> Iterator[tuple[str, str]]:
    """The data dir's database URL for a key write (`gateway.cli.writekeys`: sqlite3 on SQLite, SQLAlchemy
    Core elsewhere, never the ORM, so the command starts fast) and the operator tenant; a refused write or an
    unreachable database exits 1 with `error: ...`."""
    from gateway.cli.readdb import ReadError

    settings = require_data_dir(load_settings(data_dir))  # never create a data dir (and new keys) implicitly
    try:
        yield settings.resolved_database_url, settings.operator_tenant
    except GatewayError as exc:
        raise fail(exc.message) from None
    except ReadError as exc:
        raise fail(str(exc)) from None


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
    role: Annotated[str, typer.Option(help="generator | registrar | auditor | admin")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    uses: Annotated[str | None, typer.Option(
        help="Comma-separated uses the key may request (e.g. txt2img,img2img); another use is 403 "
             "use_not_allowed. Left out: every use.")] = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key with its id, tenant, role and uses as JSON.")
                       ] = False,
) -> None:
    """Create a key and print it alone on stdout (it is shown only once); --json: the key and what it is."""
    from gateway.cli.writekeys import create_api_key

    with _writing(data_dir) as (url, operator):
        info, key = create_api_key(url, operator, tenant, role, name, _split_uses(uses))
    typer.echo(json.dumps({"key": key, **asdict(info)}, indent=2) if as_json else key)


def _split_uses(uses: str | None) -> list[str] | None:
    return None if uses is None else [u.strip() for u in uses.split(",")]


@apikey_app.command("restrict")
def apikey_restrict(
    key_id: str,
    uses: Annotated[str, typer.Option(help="Comma-separated uses the key may request; `all` lifts the limit.")],
    data_dir: DataDir = None,
    as_json: JsonOpt = False,
) -> None:
    """Bind an existing key to the uses it may request (keys made without --uses may request every use)."""
    from gateway.cli.writekeys import restrict_api_key

    with _writing(data_dir) as (url, _):
        info = restrict_api_key(url, key_id, None if uses.strip() == "all" else _split_uses(uses))
    if as_json:
        typer.echo(json.dumps(asdict(info), indent=2))
        return
    typer.echo(f"{info.id}\tuses: {','.join(info.uses) if info.uses is not None else 'all'}")


@apikey_app.command("list")
def apikey_list(data_dir: DataDir = None, tenant: Annotated[str | None, typer.Option()] = None,
                as_json: JsonOpt = False) -> None:
    """List keys (ids, tenants, roles; never the secrets): a table with a header, or --json."""
    from gateway.cli.readdb import ReadError, list_api_keys, open_read  # the DB-API, not the ORM: starts fast

    settings = require_data_dir(load_settings(data_dir))
    try:
        with open_read(settings.resolved_database_url) as db:
            keys = list_api_keys(db, tenant)
    except ReadError as exc:
        raise fail(str(exc)) from None
    rows = [{"id": k.id, "tenant": k.tenant, "role": k.role, "created_at": k.created_at,
             "state": f"revoked {k.revoked_at}" if k.revoked_at else "active",
             "uses": ",".join(k.uses) if k.uses is not None else "all", "name": k.name} for k in keys]
    echo_table(rows, ["id", "tenant", "role", "created_at", "state", "uses", "name"], as_json)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, data_dir: DataDir = None, as_json: JsonOpt = False) -> None:
    """Revoke a key by id (again: no change, the first revocation's time stands)."""
    from gateway.cli.writekeys import revoke_api_key

    with _writing(data_dir) as (url, _):
        info = revoke_api_key(url, key_id)
    typer.echo(json.dumps(asdict(info), indent=2) if as_json else f"revoked {info.id}")
