"""Why: in Kubernetes the replicas' keys come from a Secret, not from `consentgate init` in each
pod (every pod would make its own KEK and audit key, and nothing could be decrypted or verified
across replicas). This creates the key files once — with the same code `consentgate init` uses —
in a directory you keep (it is the only copy of the KEK), and prints the two Secrets for
`kubectl apply -f -`:

    python deploy/k8s/make_secrets.py --out-dir ./k8s-keys \\
        --database-url 'postgresql+psycopg://USER:PASS@HOST:5432/consentgate' \\
        --keystore-url 'postgresql+psycopg://USER:PASS@OTHERHOST:5432/consentgate_keys' \\
        [--redis-url rediss://...] [--c2pa-chain CHAIN.pem --c2pa-key KEY.pem --c2pa-anchors ROOT.pem] \\
      | kubectl apply -f -

Existing key files in --out-dir are reused, never overwritten. Without --c2pa-* a development C2PA
PKI is created (verifiers report its signatures as Trusted only where its root is a trust anchor).
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "consentgate"
# Secret key -> path under the data dir's keys/ folder (gateway/bootstrap.py).
KEY_FILES = {
    "kek.key": "kek.key",
    "audit_ed25519.key": "audit_ed25519.key",
    "blob_url.key": "blob_url.key",
    "c2pa-root.pem": "c2pa/c2pa-root.pem",
    "c2pa-signing-chain.pem": "c2pa/c2pa-signing-chain.pem",
    "c2pa-signing.key": "c2pa/c2pa-signing.key",
    "c2pa-root.key": "c2pa/c2pa-root.key",
}
PRODUCTION_ROOT_KEY_PLACEHOLDER = b"# unused: the CA key of a production C2PA chain stays with its CA\n"


def ensure_keys(keys_dir: Path, chain: Path | None, key: Path | None, anchors: Path | None) -> None:
    sys.path.insert(0, str(ROOT))
    from gateway.audit import generate_signing_key
    from gateway.blobs import UrlSigner
    from gateway.provenance.keys import init_dev_pki, load_private_key_alg
    from gateway.registry.crypto import FileKek

    keys_dir.mkdir(parents=True, exist_ok=True)
    keys_dir.chmod(0o700)
    if not (keys_dir / "audit_ed25519.key").exists():
        generate_signing_key(keys_dir / "audit_ed25519.key")
    FileKek.create(keys_dir / "kek.key")
    UrlSigner.from_file(keys_dir / "blob_url.key")
    c2pa = keys_dir / "c2pa"
    if chain is None:
        init_dev_pki(c2pa)
        return
    load_private_key_alg(key)  # type: ignore[arg-type]  # refuses a key c2pa cannot sign with
    c2pa.mkdir(mode=0o700, exist_ok=True)
    copies = ((chain, "c2pa-signing-chain.pem"), (key, "c2pa-signing.key"), (anchors, "c2pa-root.pem"))
    for src, name in copies:
        shutil.copyfile(src, c2pa / name)  # type: ignore[arg-type]
        (c2pa / name).chmod(0o600)
    root_key = c2pa / "c2pa-root.key"
    if not root_key.exists():
        root_key.write_bytes(PRODUCTION_ROOT_KEY_PLACEHOLDER)
        root_key.chmod(0o600)


def secret(name: str, data: dict[str, bytes]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "consentgate"}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def render(keys_dir: Path, database_url: str, keystore_url: str, redis_url: str | None) -> str:
    if database_url == keystore_url:
        raise SystemExit("--keystore-url must name another database than --database-url (SECURITY.md)")
    keys = {k: (keys_dir / rel).read_bytes() for k, rel in KEY_FILES.items()}
    db = {"database-url": database_url.encode(), "keystore-url": keystore_url.encode()}
    if redis_url:
        db["redis-url"] = redis_url.encode()
    docs = [secret("consentgate-keys", keys), secret("consentgate-db", db)]
    return yaml.safe_dump_all(docs, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, required=True,
                        help="where the key files are kept (keys/ inside)")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--keystore-url", required=True)
    parser.add_argument("--redis-url")
    parser.add_argument("--c2pa-chain", type=Path, help="production signing certificate chain (PEM)")
    parser.add_argument("--c2pa-key", type=Path, help="production signing key (PKCS#8 PEM)")
    parser.add_argument("--c2pa-anchors", type=Path, help="trust anchor(s) for verification (PEM)")
    args = parser.parse_args(argv)
    production = (args.c2pa_chain, args.c2pa_key, args.c2pa_anchors)
    if any(production) and not all(production):
        parser.error("--c2pa-chain, --c2pa-key and --c2pa-anchors go together")
    keys_dir = args.out_dir / "keys"
    ensure_keys(keys_dir, *production)
    sys.stdout.write(render(keys_dir, args.database_url, args.keystore_url, args.redis_url))
    print(f"key files kept in {keys_dir} (the only copy of the KEK: back it up apart from the database)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
