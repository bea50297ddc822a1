"""Why: on PostgreSQL a batch of the audit log is two round trips, and psycopg's cursor machinery
(query conversion, the prepare manager, result loaders) cost ~70 us of client CPU per round trip on
these machines — as much again as libpq sending the message and reading the results. The log's own
connections send their simple-protocol messages here, straight through libpq, and read the few
text-format values they need (issue #21.1). Nothing here is used unless the log's database is
PostgreSQL (psycopg is imported only then).
"""

from __future__ import annotations

from binascii import unhexlify
from typing import Any


def simple(dc: Any, query: bytes) -> list[Any]:
    """Send `query` (one simple-protocol message, several statements allowed) on the psycopg
    connection `dc` and return its results (libpq PGresults, text format). A statement that
    failed raises its psycopg error (the server ran none after it; the caller discards the
    connection or its transaction)."""
    from psycopg import errors, generators
    from psycopg.pq import ExecStatus

    pgconn = dc.pgconn
    pgconn.send_query(query)
    results: list[Any] = dc.wait(generators.execute(pgconn))
    for res in results:
        if res.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
            raise errors.error_from_result(res)
    return results


def bytea(value: bytes) -> bytes:
    """A bytea column in text format (hex output: `\\x0a1b...`) as bytes."""
    if not value.startswith(b"\\x"):
        raise ValueError("expected a bytea in hex output format")
    return unhexlify(value[2:])
