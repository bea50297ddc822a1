#!/usr/bin/env bash
# Why: the README's second command. Installs everything (scripts/install.sh), then runs the
# static checks (ruff; mypy, strict on decision, audit, pipeline, policy and registry; the layer
# contracts of lint-imports and the no-cycle check of docs/architecture.md), the policy test cases
# and the whole test suite on SQLite, then the database-facing tests (marked `db`) again on
# PostgreSQL when one answers on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=.venv/bin/python
echo "== ruff"; .venv/bin/ruff check gateway classifiers consentgate_client tests bench examples
echo "== mypy (gateway; strict on decision, audit, pipeline, policy, registry)"; .venv/bin/mypy gateway consentgate_client
echo "== lint-imports (layers and independence contracts, pyproject.toml)"; .venv/bin/lint-imports --no-cache
echo "== import cycles (none allowed)"; $PY -m tests.architecture.graph
echo "== policy validate + test"
.venv/bin/consentgate policy validate policies
.venv/bin/consentgate policy test policies
echo "== pytest (SQLite)"
$PY -m pytest -q -p no:cacheprovider "$@"
echo "== extras venv (torch 2.14.1 + torchvision 0.29.1): optional model adapters (open_clip, MTCNN, insightface)"
if [ "${CONSENTGATE_SKIP_EXTRAS:-}" = "1" ]; then
  echo "skipped (CONSENTGATE_SKIP_EXTRAS=1)"
else
  bash scripts/install_extras.sh
  .venv-extras/bin/python -m pytest -q -p no:cacheprovider tests/models tests/classifiers/test_contracts.py \
    -k "torch_nsfw or not (nudenet or opennsfw or minilm or pdq)"
fi
PG_URL="${CONSENTGATE_TEST_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
if $PY - "$PG_URL" <<'PYEOF'
import sys
import sqlalchemy as sa
try:
    sa.create_engine(sys.argv[1]).connect().close()
except Exception as exc:
    print(f"PostgreSQL not reachable ({exc}); skipping the PostgreSQL pass")
    sys.exit(1)
PYEOF
then
  echo "== pytest -m db (PostgreSQL)"
  CONSENTGATE_TEST_DATABASE_URL="$PG_URL" $PY -m pytest -q -p no:cacheprovider -m db "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is required in CI" >&2; exit 1
fi
