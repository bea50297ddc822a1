"""Why: the CLI groups beyond init/serve/apikey, registered explicitly in one place."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from gateway.cli_audit import audit_app
    from gateway.cli_keys import keys_app
    from gateway.cli_models import models_app
    from gateway.cli_policy import policy_app
    from gateway.cli_registry import registry_app

    app.add_typer(policy_app, name="policy")
    app.add_typer(audit_app, name="audit")
    app.add_typer(keys_app, name="keys")
    app.add_typer(models_app, name="models")
    app.add_typer(registry_app, name="registry")
    from gateway.cli_client import register as register_client  # check, release, provenance verify

    register_client(app)
