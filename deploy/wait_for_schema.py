"""Why: several gateway replicas must not race one another through Alembic migrations. In Kubernetes
the migrations run once, in the `consentgate-init` Job; each replica's initContainer runs this and
waits until the database answers and its schema is at the Alembic head the image was built with.

Exit 0 when the schema is current, 1 after --timeout seconds (default CONSENTGATE_WAIT_TIMEOUT_S or 600).
A database that is *ahead* of this image (a newer release migrated it) is reported and refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def schema_state(url: str) -> tuple[set[str], set[str]]:
    """(current revisions in the database, head revisions of this image's migration scripts)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from gateway.migrations import alembic_config

    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    return current, heads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_timeout = float(os.environ.get("CONSENTGATE_WAIT_TIMEOUT_S", "600"))
    parser.add_argument("--timeout", type=float, default=default_timeout)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)

    from gateway.settings import Settings

    url = Settings.from_env().resolved_database_url
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        try:
            current, heads = schema_state(url)
            if current == heads:
                print(f"schema at head {sorted(heads)}")
                return 0
            unknown = current - heads
            if unknown:
                print(f"the database is at {sorted(current)}, unknown to this image (heads {sorted(heads)}): "
                      "a newer release migrated it", file=sys.stderr)
                return 1
            at = sorted(current) or "no schema"
            message = f"waiting for migrations: database at {at}, head {sorted(heads)}"
        except Exception as exc:  # noqa: BLE001 - the database may not answer yet
            message = f"waiting for the database: {type(exc).__name__}"
        if message != last:
            print(message, file=sys.stderr)
            last = message
        if time.monotonic() >= deadline:
            print(f"gave up after {args.timeout:g}s", file=sys.stderr)
            return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
