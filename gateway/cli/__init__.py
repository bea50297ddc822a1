"""Why: everything has a CLI as well as an HTTP API. This package is the `consentgate` command; one
module per command group, registered explicitly here:

    server.py    init, serve                      (act on the data dir)
    apikey.py    apikey create|list|revoke
    policy.py    policy validate|test|explain|sign|keygen|schema|shadow-report
    registry.py  registry subject ...|enroll|grant|revoke|reembed|uses
    audit.py     audit export|verify
    keys.py      keys init
    models.py    models list|calibrate|compare|face-ready
    client.py    check, release, provenance verify (talk to a running gateway: --url/--api-key)
    common.py    the shared options, settings loading and error exit
    readdb.py    the list commands' read path: the DB-API (read-only sqlite3, or SQLAlchemy Core), no ORM
    writekeys.py the apikey write commands' path: sqlite3 on SQLite, SQLAlchemy Core elsewhere, no ORM
    writelite.py the registry write commands' path on SQLite (subject add, grant, revoke): sqlite3 + the ledger
    writedb.py   the same on PostgreSQL (SQLAlchemy Core + the ledger); policyuses.py: a grant's known uses
                 and retention's rules, cached per bundle digest
    retentionlite.py  registry retention run on SQLite: sqlite3 + writelite, the plan in registry.retention_plan
    auditread.py the audit readers' path (audit entries|verify, registry uses): sqlite3 on SQLite

`app` holds the root commands; `register(app)` adds every group. Scripts call the CLI in loops, so a
command that needs no model must start fast (< 0.5 s, `bench/cli_startup.py`): `main()` imports only
the group the command line names (`consentgate apikey list` never imports numpy, the models or the
HTTP client), and the group modules import their heavy parts inside the commands; the list commands
read through `readdb`, the audit readers through `auditread`, and the write commands write through
`writekeys` / `writelite` / `writedb` instead of the ORM.
Exit codes per command are in docs/cli.md."""

from __future__ import annotations

import sys
from importlib import import_module

import typer

__all__ = ["GROUPS", "app", "main", "register"]

app = typer.Typer(help="consentgate: safety and consent moderation gateway for generative media.",
                  no_args_is_help=True, add_completion=False)

# command-line word → (module, what it adds): a Typer attribute added as a group, or "root" (commands on `app`)
GROUPS: dict[str, tuple[str, str]] = {
    "init": ("gateway.cli.server", "root"),
    "serve": ("gateway.cli.server", "root"),
    "apikey": ("gateway.cli.apikey", "apikey_app"),
    "policy": ("gateway.cli.policy", "policy_app"),
    "audit": ("gateway.cli.audit", "audit_app"),
    "keys": ("gateway.cli.keys", "keys_app"),
    "models": ("gateway.cli.models", "models_app"),
    "registry": ("gateway.cli.registry", "registry_app"),
    "check": ("gateway.cli.client", "root"),
    "release": ("gateway.cli.client", "root"),
    "provenance": ("gateway.cli.client", "root"),
}
_added: set[str] = set()


def _add(root: typer.Typer, word: str) -> None:
    module_name, attr = GROUPS[word]
    key = f"{id(root)}:{module_name}:{attr}"
    if key in _added:
        return
    _added.add(key)
    module = import_module(module_name)
    if attr != "root":
        root.add_typer(getattr(module, attr), name=word)
    elif module_name == "gateway.cli.server":
        root.command()(module.init)
        root.command()(module.serve)
    else:
        module.register(root)  # check, release, provenance verify


def register(root: typer.Typer, words: list[str] | None = None) -> None:
    """Add the command groups WORDS names (default: every group) to `root`; idempotent."""
    for word in words if words is not None else list(GROUPS):
        _add(root, word)


def main() -> None:
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    register(app, [first] if first in GROUPS else None)  # only what this command line needs
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
