#!/usr/bin/env bash
# Why: the console's browser tests (tests/console/test_browser.py) drive Debian's chromium with
# Playwright; Playwright cannot download its own browser here, so chromium comes from apt (CI runs
# as root) and the tests pass its path. axe-core (the accessibility check) comes from npm, pinned by
# tests/console/npm/package-lock.json. Idempotent; called by scripts/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (apt) for the console's browser tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends chromium >/dev/null
  else
    echo "chromium is not installed and this is not root: the console's browser tests will be skipped" >&2
  fi
fi
if [ ! -f tests/console/npm/node_modules/axe-core/axe.min.js ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "== installing axe-core (npm ci) for the console's accessibility check"
    npm ci --prefix tests/console/npm --no-audit --no-fund -q >/dev/null
  else
    echo "npm is not installed: the console's accessibility check will be skipped" >&2
  fi
fi
