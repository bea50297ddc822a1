#!/usr/bin/env bash
# Why: the README's first command. Installs everything, initialises ./data (printing one-time
# admin and demo keys on first run), starts the reference upstream on 127.0.0.1:9090 so the proxy
# demo works, and runs the gateway on 127.0.0.1:8080 (SQLite, bundled models, ./policies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m examples.upstream --port 9090 &
UPSTREAM=$!
trap 'kill $UPSTREAM 2>/dev/null || true' EXIT
exec_args=(serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}")
.venv/bin/consentgate "${exec_args[@]}"
