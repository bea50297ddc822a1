"""Why: everything has a CLI as well as an HTTP API. Local commands (init, serve, apikey, policy,
registry, audit, keys) act on the data dir; `check`/`release`/`provenance verify` talk to a
running gateway with --url/--api-key (env CONSENTGATE_URL, CONSENTGATE_API_KEY)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.settings import Settings

app = typer.Typer(help="consentgate: safety and consent moderation gateway for generative media.",
                  no_args_is_help=True, add_completion=False)
apikey_app = typer.Typer(help="Manage API keys (stored hashed; a key is shown once).", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (env CONSENTGATE_DATA_DIR).")]
PoliciesDir = Annotated[Path | None, typer.Option("--policies", help="Policy directory (env CONSENTGATE_POLICIES).")]


def load_settings(data_dir: Path | None = None, policies: Path | None = None) -> Settings:
    return Settings.from_env().with_overrides(data_dir=data_dir, policies_dir=policies)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _write_secret_file(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, 0o600)


def run_init(settings: Settings, *, quiet: bool = False) -> dict[str, object]:
    from gateway.apikeys import ApiKeyStore
    from gateway.bootstrap import ensure_initialised
    from gateway.db import make_engine

    created = ensure_initialised(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        store = ApiKeyStore(engine, settings.operator_tenant)
        first_keys = settings.data_dir / "first-run-keys.txt"
        if not store.list() and not first_keys.exists():
            _, admin_key = store.create(settings.operator_tenant, "admin", "first-run admin")
            _, demo_key = store.create("demo", "generator", "first-run demo generator")
            _write_secret_file(first_keys, f"admin {admin_key}\ngenerator {demo_key}\n")
            created["first_run_keys"] = str(first_keys)
            if not quiet:
                typer.echo("First run: one-time keys (also written, 0600, to " f"{first_keys}):", err=True)
                typer.echo(f"  admin key (tenant {settings.operator_tenant}): {admin_key}", err=True)
                typer.echo(f"  generator key (tenant demo):     {demo_key}", err=True)
    finally:
        engine.dispose()
    return created


@app.command()
def init(data_dir: DataDir = None, policies: PoliciesDir = None) -> None:
    """Create the data dir, database, key-encryption key, audit signing key and a development
    C2PA PKI. Idempotent: existing keys and data are never overwritten."""
    settings = load_settings(data_dir, policies)
    created = run_init(settings)
    typer.echo(json.dumps({"data_dir": str(settings.data_dir), "created": created}, indent=2))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    data_dir: DataDir = None,
    policies: PoliciesDir = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the gateway (runs `init` first when needed)."""
    import uvicorn

    from gateway.app import create_app

    settings = load_settings(data_dir, policies)
    run_init(settings)
    application = create_app(settings, background_start=True)
    _install_sighup(application)
    uvicorn.run(application, host=host, port=port, workers=workers if workers == 1 else 1, log_level="info")


def _install_sighup(application: object) -> None:
    import signal

    def handler(_signum: int, _frame: object) -> None:
        gw = getattr(getattr(application, "state", None), "gateway", None)
        if gw is not None:
            gw.policies.reload()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from gateway.apikeys import ApiKeyStore
    from gateway.bootstrap import ensure_initialised
    from gateway.db import make_engine

    ensure_initialised(settings)
    return ApiKeyStore(make_engine(settings.resolved_database_url), settings.operator_tenant)


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
    role: Annotated[str, typer.Option(help="generator | registrar | auditor | admin")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create a key and print it alone on stdout (it is shown only once)."""
    from gateway.errors import GatewayError

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
    from gateway.errors import GatewayError

    try:
        info = _store(load_settings(data_dir)).revoke(key_id)
    except GatewayError as exc:
        raise fail(exc.message) from None
    typer.echo(f"revoked {info.id}")


def main() -> None:
    from gateway import cli_more  # registers the policy/registry/audit/keys/provenance/check groups

    cli_more.register(app)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
