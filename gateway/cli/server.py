"""Why: `consentgate init` and `consentgate serve` must leave a gateway someone can call on a fresh
machine: `init` creates the data dir, keys and database (idempotently) and, on the first run, a
one-time admin key and a demo generator key; `serve` runs `init` and then the HTTP app."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli.common import DataDir, PoliciesDir, data_dir_missing, load_settings, write_secret_file
from gateway.settings import Settings  # light: dataclasses and os only

__all__ = ["init", "run_init", "serve"]


def run_init(settings: Settings, *, quiet: bool = False) -> dict[str, object]:
    from gateway.apikeys import ApiKeyStore
    from gateway.bootstrap import ensure_initialised
    from gateway.db import make_engine

    created: dict[str, object] = dict(ensure_initialised(settings))
    engine = make_engine(settings.resolved_database_url)
    try:
        store = ApiKeyStore(engine, settings.operator_tenant)
        first_keys = settings.data_dir / "first-run-keys.txt"
        if not store.list() and not first_keys.exists():
            _, admin_key = store.create(settings.operator_tenant, "admin", "first-run admin")
            _, demo_key = store.create("demo", "generator", "first-run demo generator")
            write_secret_file(first_keys, f"admin {admin_key}\ngenerator {demo_key}\n")
            created["first_run_keys"] = str(first_keys)
            if not quiet:
                typer.echo("First run: one-time keys (also written, 0600, to " f"{first_keys}):", err=True)
                typer.echo(f"  admin key (tenant {settings.operator_tenant}): {admin_key}", err=True)
                typer.echo(f"  generator key (tenant demo):     {demo_key}", err=True)
    finally:
        engine.dispose()
    return created


def init(data_dir: DataDir = None, policies: PoliciesDir = None) -> None:
    """Create the data dir, database, key-encryption key, audit signing key and a development
    C2PA PKI. Idempotent: existing keys and data are never overwritten."""
    settings = load_settings(data_dir, policies)
    created = run_init(settings)
    typer.echo(json.dumps({"data_dir": str(settings.data_dir), "created": created}, indent=2))


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
    if data_dir_missing(settings):  # serve initialises, like `init`, and says so (never silently)
        typer.echo(f"serve: no data dir at {settings.data_dir}; creating one as `consentgate init` does",
                   err=True)
    run_init(settings)
    log_config = _logging(settings)
    if workers > 1:
        # Each worker process builds its own app (its own models, or its own client of the model
        # workers with CONSENTGATE_MODEL_BACKEND=ray) from the environment, which carries the
        # options given here; replicas of one data dir share the audit log as separate replicas do.
        import os

        os.environ["CONSENTGATE_DATA_DIR"] = str(settings.data_dir)
        os.environ["CONSENTGATE_POLICIES"] = str(settings.policies_dir)
        uvicorn.run("gateway.cli.server:app_factory", factory=True, host=host, port=port, workers=workers,
                    log_level="info", log_config=log_config)
        return
    application = create_app(settings, background_start=True)
    _install_sighup(application)
    uvicorn.run(application, host=host, port=port, log_level="info", log_config=log_config)


def app_factory() -> object:
    """The app of one `serve --workers N` worker process (uvicorn's factory hook). The workers share
    one listening socket and a worker accepts from it only once its startup is over, so here startup
    waits for the models: a worker still loading never takes a request (and never answers 503 to a
    caller another, ready worker could serve). A worker whose start fails stays up and answers
    /readyz 503 (logged), as a single-process `serve` does, instead of exiting into uvicorn's
    restart loop."""
    from gateway.app import create_app

    application = create_app(Settings.from_env(), background_start=False, serve_start_errors=True)
    _install_sighup(application)
    return application


def _logging(settings: Settings) -> dict[str, object] | None:
    """CONSENTGATE_LOG_FORMAT=json: every log line (the gateway's, uvicorn's and the per-request
    lines of gateway.requestlog) is one JSON object on stderr; uvicorn's access log is left out
    (the request lines say more). Text: uvicorn's defaults, plus the request lines."""
    import uvicorn.config

    if settings.log_format != "json":
        config = dict(uvicorn.config.LOGGING_CONFIG)
        config["loggers"] = {**config["loggers"],
                             "consentgate.requests": {"handlers": ["default"], "level": "INFO", "propagate": False},
                             # the gateway's own lines (policy reloads with their digest, refusals, routes)
                             "consentgate": {"handlers": ["default"], "level": "INFO", "propagate": False}}
        return config
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "gateway.requestlog.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {"uvicorn.access": {"level": "WARNING"}},
    }


def _install_sighup(application: object) -> None:
    import signal

    def handler(_signum: int, _frame: object) -> None:
        gw = getattr(getattr(application, "state", None), "gateway", None)
        if gw is not None:
            gw.policies.reload()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)
