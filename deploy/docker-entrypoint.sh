#!/usr/bin/env bash
# consentgate container entrypoint.
#
#   serve [ARGS]          (default) run `consentgate init`, then the gateway on 0.0.0.0:$CONSENTGATE_PORT
#   init                  run `consentgate init` only (schema migrations, keys, first-run API keys) and exit
#   wait-for-schema       block until the database schema is at the Alembic head (Kubernetes initContainer)
#   install-keys SRC      copy the key files from SRC (a read-only Secret mount) into $CONSENTGATE_DATA_DIR/keys
#   anything else         `consentgate ARGS` (e.g. `apikey create --tenant operator --role admin`)
#
# Secrets can come from files: CONSENTGATE_DATABASE_URL_FILE, CONSENTGATE_KEYSTORE_URL_FILE and
# CONSENTGATE_REDIS_URL_FILE are read into the variables of the same name without _FILE.
#
# `consentgate init` prints the one-time first-run API keys; in a container that output lands in the
# log store, so it is redacted here. The keys are in $CONSENTGATE_DATA_DIR/first-run-keys.txt (0600).
set -euo pipefail
# Everything the gateway writes (SQLite files, keys, first-run keys) is private to its user.
umask 0077

DATA_DIR="${CONSENTGATE_DATA_DIR:-/data}"
PORT="${CONSENTGATE_PORT:-8080}"
LIB_DIR="${CONSENTGATE_ENTRYPOINT_LIB:-/usr/local/lib/consentgate}"
KEY_FILES=(kek.key audit_ed25519.key blob_url.key c2pa/c2pa-root.pem c2pa/c2pa-signing-chain.pem c2pa/c2pa-signing.key
           c2pa/c2pa-root.key)

die() { echo "docker-entrypoint: $*" >&2; exit 1; }

load_file_secrets() {
  local var file
  for var in CONSENTGATE_DATABASE_URL CONSENTGATE_KEYSTORE_URL CONSENTGATE_REDIS_URL; do
    file="${var}_FILE"
    if [ -n "${!file:-}" ]; then
      [ -z "${!var:-}" ] || die "set $var or $file, not both"
      [ -r "${!file}" ] || die "$file=${!file} is not readable"
      export "$var"="$(tr -d '\r\n' < "${!file}")"
    fi
    unset "$file"
  done
}

run_init() {
  consentgate init 2>&1 | sed -E 's/cg_[0-9a-f]+_[A-Za-z0-9_-]+/cg_<redacted>/g'
  if [ -f "$DATA_DIR/first-run-keys.txt" ]; then
    echo "docker-entrypoint: first-run API keys (shown once, redacted here) are in $DATA_DIR/first-run-keys.txt;" \
         "read it once, then delete it" >&2
  fi
}

install_keys() {
  local src="$1" dest="$DATA_DIR/keys" f
  [ -d "$src" ] || die "install-keys: $src is not a directory"
  for f in "${KEY_FILES[@]}"; do
    [ -s "$src/$f" ] || die "install-keys: $src/$f is missing or empty (see deploy/k8s/make-secrets.sh)"
  done
  mkdir -p "$dest/c2pa"
  chmod 0700 "$DATA_DIR" "$dest" "$dest/c2pa"
  for f in "${KEY_FILES[@]}"; do
    install -m 0600 "$src/$f" "$dest/$f"
  done
  echo "docker-entrypoint: installed ${#KEY_FILES[@]} key files into $dest"
}

cmd="${1:-serve}"
[ $# -gt 0 ] && shift
case "$cmd" in
  serve)
    load_file_secrets
    run_init
    exec consentgate serve --host 0.0.0.0 --port "$PORT" "$@"
    ;;
  init)
    load_file_secrets
    run_init
    ;;
  wait-for-schema)
    load_file_secrets
    exec python "$LIB_DIR/wait_for_schema.py" "$@"
    ;;
  install-keys)
    [ $# -eq 1 ] || die "usage: install-keys SRC_DIR"
    install_keys "$1"
    ;;
  *)
    load_file_secrets
    exec consentgate "$cmd" "$@"
    ;;
esac
