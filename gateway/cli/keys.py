"""Why: `consentgate keys init` creates the development keys (KEK, audit signing key, C2PA root
CA + signing certificate) idempotently; production keys come from files or a KMS (SECURITY.md).

On a data dir whose keys all exist (the usual case: scripts run it to print the verifier key) it
creates nothing, so it imports neither the bootstrap (SQLAlchemy) nor the provenance package (c2pa,
the watermark models' numpy and OpenCV), whose `__init__` loads everything: it must start in < 0.5 s
(#22.6). Anything missing, or a signing key of another algorithm, goes through
`gateway.provenance.keys.init_dev_pki`, which creates it or says what is wrong (`error: ...`, exit 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import DataDir, fail, load_settings

keys_app = typer.Typer(help="Key material.", no_args_is_help=True)

# gateway.provenance.keys's file names (tests/cli/test_cli.py checks they are the same).
PKI_FILES = ("c2pa-root.pem", "c2pa-signing-chain.pem", "c2pa-signing.key", "c2pa-root.key")


def _existing_pki(directory: Path, alg: str) -> tuple[Path, Path] | None:
    """(root cert, signing chain) when the four PKI files exist and the signing key is an ALG key (what
    `init_dev_pki` returns then, without creating anything); None when it must run."""
    paths = [directory / name for name in PKI_FILES]
    if not all(p.is_file() for p in paths):
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(paths[2].read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    found = ("ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else
             "es256" if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1) else None)
    return (paths[0], paths[1]) if found == alg else None


@keys_app.command("init")
def keys_init(
    data_dir: DataDir = None,
    alg: Annotated[str, typer.Option(help="C2PA signing algorithm: es256 or ed25519.")] = "es256",
) -> None:
    """Create missing keys under DATA_DIR/keys (never overwrites)."""
    from gateway.audit.notes import generate_signing_key, load_signer
    from gateway.registry.envelope import FileKek

    settings = load_settings(data_dir)
    keys, audit_key, kek = settings.keys_dir, settings.keys_dir / "audit_ed25519.key", settings.keys_dir / "kek.key"
    keys.mkdir(parents=True, exist_ok=True)
    if not audit_key.exists():
        generate_signing_key(audit_key)
    if not kek.exists():
        FileKek.create(kek)
    pki = _existing_pki(keys / "c2pa", alg)
    if pki is None:
        from gateway.provenance.errors import PkiError
        from gateway.provenance.keys import init_dev_pki

        try:
            made = init_dev_pki(keys / "c2pa", alg=alg)  # type: ignore[arg-type]
        except PkiError as exc:  # another algorithm's key there, a partial PKI, an unknown --alg: say so, exit 1
            raise fail(str(exc)) from None
        pki = (made.root_cert, made.signing_cert_chain)
    signer = load_signer(audit_key, settings.audit_origin)
    typer.echo(json.dumps({
        "kek": str(kek),
        "audit_signing_key": str(audit_key),
        "audit_verifier_key": signer.vkey,
        "c2pa_root": str(pki[0]),
        "c2pa_signing_chain": str(pki[1]),
    }, indent=2))
