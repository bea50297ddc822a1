#!/usr/bin/env bash
# Creates the secret files deploy/compose.yaml reads (once; existing files are kept):
#   deploy/secrets/db_password    a random PostgreSQL password
#   deploy/secrets/database_url   CONSENTGATE_DATABASE_URL for the gateways
#   deploy/secrets/keystore_url   CONSENTGATE_KEYSTORE_URL (the separate key-store database)
# The directory is 0700 and git-ignored (deploy/secrets/.gitignore). The files themselves are 0644:
# Docker Compose bind-mounts file secrets with their host mode, and the containers read them as
# other users (uid 10001 in the gateway, 70 in postgres).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
chmod 0700 secrets
if [ ! -s secrets/db_password ]; then
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > secrets/db_password
fi
password="$(tr -d '\r\n' < secrets/db_password)"
[ -s secrets/database_url ] || \
  echo "postgresql+psycopg://consentgate:${password}@postgres:5432/consentgate" > secrets/database_url
[ -s secrets/keystore_url ] || \
  echo "postgresql+psycopg://consentgate:${password}@postgres:5432/consentgate_keys" > secrets/keystore_url
chmod 0644 secrets/db_password secrets/database_url secrets/keystore_url
echo "secrets in $(pwd)/secrets: db_password database_url keystore_url"
