"""Schemathesis against the gateway's own OpenAPI, on a real server on 127.0.0.1, with a valid key of
each role: every operation gets schema-valid (positive) and schema-violating (negative) requests,
bounded in count (CONSENTGATE_FUZZ_EXAMPLES per operation and mode, default 10); every operation is
always reached (a wall-clock budget made coverage depend on how loaded the machine was), and the
pytest timeout bounds a role's sweep. Checks: never a 5xx; the response body conforms
to the documented schema and content type where the status is documented."""

from __future__ import annotations

import collections
import os
from typing import Any

import pytest

from tests.hardening.conftest import Served, bearer

EXAMPLES = int(os.environ.get("CONSENTGATE_FUZZ_EXAMPLES", "10"))
# (operation, schemathesis failure type) the sweep tolerates: each is pinned by a strict xfail below.
METRICS_DOC = (
    "gateway/api/health.py: GET /metrics answers text/plain (Prometheus exposition) but its OpenAPI "
    "entry documents application/json"
)
KNOWN: dict[tuple[str, str], str] = {}  # the /metrics content type is documented now
INT64 = (
    "an integer outside the signed 64-bit range in a path or query parameter reaches the database driver "
    "(OverflowError on SQLite, out of range on PostgreSQL) and the API answers 500 (gateway/api/audit.py, "
    "gateway/api/registry.py, gateway/audit/reader.py cursor parsing: no range check)"
)
INT64_OPERATIONS = {
    "GET /v1/audit/entries/{index}",
    "GET /v1/audit/entries",
    "GET /v1/subjects",
    "GET /v1/subjects/{subject_id}/uses",
}


NUL_ON_PG = (
    "on PostgreSQL a NUL (U+0000) in an id or filter is a database error answered 500/503 "
    "(pinned by tests/hardening/test_text_input.py)"
)


def _nul_on_postgres(case: Any, served: Served) -> bool:
    if served.gw.engine.dialect.name != "postgresql":
        return False
    for params in (case.path_parameters or {}, case.query or {}):
        for value in params.values():
            if "\x00" in str(value):
                return True
    return False


def _outside_int64(case: Any) -> bool:
    for params in (case.path_parameters or {}, case.query or {}):
        for value in params.values():
            try:
                number = int(str(value))
            except ValueError:
                continue
            if not -(2**63) <= number < 2**63:
                return True
    return False


ROLES = ("generator", "admin", "registrar", "auditor", "tenant_auditor")


@pytest.fixture(scope="module")
def schema(served: Served) -> Any:
    import schemathesis

    spec = served.http.get(served.url + "/openapi.json").json()
    return schemathesis.openapi.from_dict(spec)


def _run_operation(
    operation: Any,
    mode: Any,
    served: Served,
    key: str,
    examples: int,
    statuses: collections.Counter[tuple[str, int]],
    failures: list[str],
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import checks
    from schemathesis.core.failures import FailureGroup

    wanted = [checks.not_a_server_error, checks.response_schema_conformance, checks.content_type_conformance]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=served.url, headers=bearer(key), timeout=60)
        statuses[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=wanted)
        except FailureGroup as group:  # collect every failing check, report them together
            for failure in group.exceptions:
                known = KNOWN.get((operation.label, type(failure).__name__))
                if (
                    type(failure).__name__ == "ServerError"
                    and operation.label in INT64_OPERATIONS
                    and _outside_int64(case)
                ):
                    known = INT64
                if type(failure).__name__ == "ServerError" and _nul_on_postgres(case, served):
                    known = NUL_ON_PG
                if known is None:
                    failures.append(
                        f"{operation.label} [{mode.value}] -> {response.status_code}: "
                        f"{type(failure).__name__}: {str(failure)[:600]}"
                    )

    try:
        run()
    except Unsatisfiable:
        assert mode.value == "negative"  # nothing to violate (an operation without parameters or body)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ROLES)
def test_openapi_operations_never_5xx_and_conform(served: Served, schema: Any, role: str) -> None:
    from schemathesis import GenerationMode

    key = served.keys.by_role()[role]
    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    covered = 0
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(operation, mode, served, key, EXAMPLES, statuses, failures)
        covered += 1
    summary = "\n".join(f"{label} {code}: {n}" for (label, code), n in sorted(statuses.items()))
    assert not failures, "\n\n".join(failures[:20]) + f"\n\nstatuses:\n{summary}"
    # The run reached every operation, and the key was accepted somewhere (not a wall of 401s).
    assert covered == len(operations) > 0
    assert any(200 <= code < 300 for (_, code) in statuses), summary
    # (/v1/blobs answers 401 to a link without a valid signature, whoever asks)
    assert not any(code == 401 for (label, code) in statuses if "/v1/blobs/" not in label), summary


def test_metrics_content_type_is_documented(served: Served, schema: Any) -> None:
    from schemathesis import checks

    operation = schema["/metrics"]["GET"]
    case = operation.Case()
    response = case.call(base_url=served.url, timeout=30)
    assert response.status_code == 200
    case.validate_response(response, checks=[checks.content_type_conformance])


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("auditor", "/v1/audit/entries/9223372036854775808"),
        ("auditor", "/v1/audit/entries/-9223372036854775809"),
        ("auditor", "/v1/audit/entries?cursor=9223372036854775808"),
        ("registrar", "/v1/subjects?offset=9223372036854775808"),
        ("registrar", "/v1/subjects/someone/uses?cursor=9223372036854775808"),
    ],
)
def test_integers_beyond_int64_are_4xx(served: Served, role: str, path: str) -> None:
    response = served.get(path, served.keys.by_role()[role])
    assert 400 <= response.status_code < 500, response.text
