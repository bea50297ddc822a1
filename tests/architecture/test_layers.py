"""Why: the structure of gateway/ is a contract (issue #16, docs/architecture.md): no import cycle
between any two of its modules (function-level and TYPE_CHECKING imports count), the import-linter
layer and independence contracts of pyproject.toml hold, and the independent parts really are:
`gateway.audit` imports nothing of the gateway, `gateway.decision` only its own modules and the
policy schema, `classifiers` nothing of the gateway, the pipeline no web framework."""

from __future__ import annotations

import grimp
import pytest
from importlinter import cli as importlinter_cli

from tests.architecture.graph import build, cycles


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return build()


def _imports_of(graph: grimp.ImportGraph, package: str) -> set[str]:
    """Every gateway/classifiers module the package's modules import directly."""
    modules = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    return {n for m in modules for n in graph.find_modules_directly_imported_by(m)} - modules


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


def test_audit_imports_nothing_of_gateway(graph: grimp.ImportGraph) -> None:
    assert {m for m in _imports_of(graph, "gateway.audit") if m.startswith("gateway")} == set()


def test_decision_imports_only_the_policy_schema(graph: grimp.ImportGraph) -> None:
    assert {m for m in _imports_of(graph, "gateway.decision") if m.startswith("gateway")} <= {
        "gateway.policy.schema"}


def test_classifiers_import_nothing_of_gateway(graph: grimp.ImportGraph) -> None:
    assert {m for m in _imports_of(graph, "classifiers") if m.startswith("gateway")} == set()


def test_the_cycle_finder_finds_a_cycle() -> None:
    g = grimp.ImportGraph()
    for module in ("gateway", "gateway.a", "gateway.b", "gateway.c"):
        g.add_module(module)
    g.add_import(importer="gateway.a", imported="gateway.b")
    g.add_import(importer="gateway.b", imported="gateway.c")
    g.add_import(importer="gateway.c", imported="gateway.a")
    assert cycles(g) == [["gateway.a", "gateway.b", "gateway.c"]]


def test_import_linter_contracts_are_kept() -> None:
    assert importlinter_cli.lint_imports(config_filename="pyproject.toml", no_cache=True) == 0
