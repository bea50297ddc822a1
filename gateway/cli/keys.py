"""Why: `consentgate keys init` creates the development keys (KEK, audit signing key, C2PA root
CA + signing certificate) idempotently; production keys come from files or a KMS (SECURITY.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from gateway.cli.common import DataDir, load_settings

keys_app = typer.Typer(help="Key material.", no_args_is_help=True)


@keys_app.command("init")
def keys_init(
    data_dir: DataDir = None,
    alg: Annotated[str, typer.Option(help="C2PA signing algorithm: es256 or ed25519.")] = "es256",
) -> None:
    """Create missing keys under DATA_DIR/keys (never overwrites)."""
    from gateway.audit import generate_signing_key, load_signer
    from gateway.bootstrap import audit_key_path, c2pa_dir, kek_path
    from gateway.provenance.keys import init_dev_pki
    from gateway.registry.crypto import FileKek

    settings = load_settings(data_dir)
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    if not audit_key_path(settings).exists():
        generate_signing_key(audit_key_path(settings))
    if not kek_path(settings).exists():
        FileKek.create(kek_path(settings))
    pki = init_dev_pki(c2pa_dir(settings), alg=alg)  # type: ignore[arg-type]
    signer = load_signer(audit_key_path(settings), settings.audit_origin)
    typer.echo(json.dumps({
        "kek": str(kek_path(settings)),
        "audit_signing_key": str(audit_key_path(settings)),
        "audit_verifier_key": signer.vkey,
        "c2pa_root": str(pki.root_cert),
        "c2pa_signing_chain": str(pki.signing_cert_chain),
    }, indent=2))
