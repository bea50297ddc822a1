"""Why: everything has a CLI as well as an HTTP API. This package is the `consentgate` command; one
module per command group, registered explicitly here:

    server.py    init, serve                      (act on the data dir)
    apikey.py    apikey create|list|revoke
    policy.py    policy validate|test|explain|sign|keygen|schema|shadow-report
    registry.py  registry subject ...|enroll|grant|revoke|reembed
    audit.py     audit export|verify
    keys.py      keys init
    models.py    models list|calibrate|compare|face-ready
    client.py    check, release, provenance verify (talk to a running gateway: --url/--api-key)
    common.py    the shared options, settings loading and error exit

`app` holds the root commands; `register(app)` adds the groups (`main` does both)."""

from __future__ import annotations

import sys

import typer

from gateway.cli import server
from gateway.cli.apikey import apikey_app

__all__ = ["app", "main", "register"]

app = typer.Typer(help="consentgate: safety and consent moderation gateway for generative media.",
                  no_args_is_help=True, add_completion=False)
app.command()(server.init)
app.command()(server.serve)
app.add_typer(apikey_app, name="apikey")


def register(root: typer.Typer) -> None:
    """Add the command groups beyond init/serve/apikey to `root`."""
    from gateway.cli.audit import audit_app
    from gateway.cli.client import register as register_client  # check, release, provenance verify
    from gateway.cli.keys import keys_app
    from gateway.cli.models import models_app
    from gateway.cli.policy import policy_app
    from gateway.cli.registry import registry_app

    root.add_typer(policy_app, name="policy")
    root.add_typer(audit_app, name="audit")
    root.add_typer(keys_app, name="keys")
    root.add_typer(models_app, name="models")
    root.add_typer(registry_app, name="registry")
    register_client(root)


def main() -> None:
    register(app)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
