#!/usr/bin/env bash
# Why: try the gateway with its models on Ray Serve on one machine. Starts a local Ray cluster on
# 127.0.0.1 (RAY_CPUS CPUs, default all) with the model workers of deploy/ray/models.yaml (one
# deployment per model family, dynamic batching), then runs the gateway on 127.0.0.1:8080 with
# CONSENTGATE_MODEL_BACKEND=ray pointing at it. Ctrl-C stops the gateway, then the cluster and
# every process it started. Same data dir, policies and keys as scripts/run.sh.
#   RAY_CPUS=2 PORT=8080 bash scripts/run_ray.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/install.sh
LOG="$(mktemp -t consentgate-ray.XXXXXX)"
.venv/bin/python -m classifiers.rayserve local --num-cpus "${RAY_CPUS:-$(nproc)}" \
  --config "${RAY_WORKERS:-deploy/ray/models.yaml}" >"$LOG" 2>&1 &
CLUSTER=$!
trap 'kill -TERM "$CLUSTER" 2>/dev/null || true; wait "$CLUSTER" 2>/dev/null || true; rm -f "$LOG"' EXIT
echo "starting Ray and the model workers (log: $LOG) ..."
ADDRESS=""
for _ in $(seq 600); do
  ADDRESS="$(sed -n 's/^model workers ready: CONSENTGATE_RAY_ADDRESS=\([^ ]*\).*/\1/p' "$LOG")"
  [ -n "$ADDRESS" ] && break
  if ! kill -0 "$CLUSTER" 2>/dev/null; then cat "$LOG" >&2; exit 1; fi
  sleep 1
done
[ -n "$ADDRESS" ] || { echo "the model workers did not come up" >&2; cat "$LOG" >&2; exit 1; }
echo "model workers at $ADDRESS"
export CONSENTGATE_MODEL_BACKEND=ray CONSENTGATE_RAY_ADDRESS="$ADDRESS"
.venv/bin/consentgate init
.venv/bin/consentgate serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
