"""Why: the remote adapters must honour the same Protocols as the in-process ones. These are the
contract classes of tests/classifiers, unchanged, run against adapters that send their work to
the Ray Serve deployments (the `models` fixture of this folder builds them)."""

from __future__ import annotations

import pytest

from tests.classifiers import test_contracts as contracts

pytestmark = pytest.mark.ray


class TestRayNsfwContract(contracts.TestNsfwContract):
    pass


class TestRayFaceContract(contracts.TestFaceContract):
    pass


class TestRayTextContract(contracts.TestTextContract):
    pass


class TestRayHashContract(contracts.TestHashContract):
    pass


class TestRayVoiceContract(contracts.TestVoiceContract):
    pass
