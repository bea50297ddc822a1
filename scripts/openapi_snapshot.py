"""Why: the HTTP API is a contract (ARCHITECTURE.md). `tests/api/openapi.json` is the committed
snapshot of `/openapi.json`; tests/api/test_openapi_snapshot.py compares the live schema with it,
so any API change is a deliberate one — made, reviewed and committed together with the snapshot.

    .venv/bin/python -m scripts.openapi_snapshot          # rewrite the snapshot after a deliberate change
    .venv/bin/python -m scripts.openapi_snapshot --check  # exit 1 when the live schema differs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parents[1] / "tests" / "api" / "openapi.json"


def live_schema() -> dict[str, Any]:
    """The schema `create_app` serves at /openapi.json (built without starting the gateway)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data", policies_dir=Path(tmp) / "policies"))
        schema: dict[str, Any] = app.openapi()
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the committed /openapi.json snapshot.")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args(argv)
    text = render(live_schema())
    if args.check:
        same = SNAPSHOT.exists() and SNAPSHOT.read_text() == text
        print("openapi snapshot: " + ("unchanged" if same else f"DIFFERS from {SNAPSHOT}"))
        return 0 if same else 1
    SNAPSHOT.write_text(text)
    print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
