"""Why: real models take seconds to load; each (family, name) is built once per test session
from one registry and shared by the contract and behaviour tests (adapters are thread-safe and
stateless per call, so sharing cannot leak state between tests — fakes are built fresh)."""

from __future__ import annotations

from typing import Any

import pytest

from classifiers import ModelRegistry, builtin_registry


class ModelCache:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._built: dict[tuple[str, str], Any] = {}

    def get(self, family: str, name: str) -> Any:
        key = (family, name)
        if key not in self._built:
            self._built[key] = self.registry.create(family, name)
        return self._built[key]


@pytest.fixture(scope="session")
def models() -> ModelCache:
    return ModelCache(builtin_registry())
