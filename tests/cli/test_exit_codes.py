"""A CLI scripts can trust (#22.6): `provenance verify` exits 0 only when something valid was found,
1 when what was found is invalid, 2 when nothing was found; list commands print a header or JSON;
`registry uses SUBJECT`; `main()` imports only the group its command line names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.client import provenance_outcome
from tests.support.cli import REPO, app, cli_data_dir, runner

FOUND = {"decision_id": "d1", "decision": "allow", "audit_index": 4}
OUTCOMES: list[tuple[str, dict[str, Any], int, str]] = [
    ("signed and logged", {"c2pa": {"state": "Trusted"}, "watermark": {"found": True, "image_matches_release": True},
                           "decisions": [FOUND]}, 0, "found: d1 (allow, audit index 4) via C2PA Trusted and watermark"),
    ("mark only (manifest stripped)", {"c2pa": {"state": "ManifestNotFound"},
                                       "watermark": {"found": True, "image_matches_release": True},
                                       "decisions": [FOUND]}, 0, "via watermark"),
    ("broken manifest", {"c2pa": {"state": "Invalid", "validation_errors": ["assertion.dataHash.mismatch"]},
                         "watermark": None, "decisions": []}, 1, "dataHash.mismatch"),
    ("mark copied onto other content", {"c2pa": {"state": "ManifestNotFound"},
                                        "watermark": {"found": True, "image_matches_release": False,
                                                      "pdq_distance": 120}, "decisions": [FOUND]},
     1, "not that render"),
    ("decision missing from the log", {"c2pa": {"state": "Trusted"}, "watermark": None,
                                       "decisions": [{"decision_id": "d9"}]}, 1, "not in the audit log"),
    ("nothing", {"c2pa": {"state": "ManifestNotFound"}, "watermark": {"found": False}, "decisions": []},
     2, "nothing found"),
    ("someone else's valid manifest", {"c2pa": {"state": "Valid"}, "watermark": None, "decisions": []},
     2, "nothing found"),
]


@pytest.mark.parametrize(("answer", "code", "words"), [o[1:] for o in OUTCOMES], ids=[o[0] for o in OUTCOMES])
def test_provenance_verify_exit_codes(answer: dict[str, Any], code: int, words: str) -> None:
    got, line = provenance_outcome(answer)
    assert got == code and words in line


def test_list_commands_have_headers_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli_data_dir(tmp_path, monkeypatch, init=True)
    table = runner.invoke(app, ["apikey", "list"]).stdout.splitlines()
    assert table[0] == "ID\tTENANT\tROLE\tCREATED_AT\tSTATE\tUSES\tNAME" and len(table) == 3
    keys = json.loads(runner.invoke(app, ["apikey", "list", "--json"]).stdout)
    assert sorted(k["tenant"] for k in keys) == ["demo", "operator"] and all("secret" not in k for k in keys)
    sid = json.loads(runner.invoke(app, ["registry", "subject", "add", "Someone"]).stdout)["id"]
    subjects = runner.invoke(app, ["registry", "subject", "list"]).stdout.splitlines()
    assert subjects[0] == "ID\tDISPLAY_NAME\tPROTECTED\tTEMPLATES" and subjects[1].startswith(sid)
    assert json.loads(runner.invoke(app, ["registry", "subject", "list", "--json"]).stdout)[0]["id"] == sid
    uses = runner.invoke(app, ["registry", "uses", sid])
    assert uses.exit_code == 0, uses.output
    page = json.loads(uses.stdout)
    assert page["subject_id"] == sid and page["uses"] == [] and page["next_cursor"] is None
    both = runner.invoke(app, ["registry", "uses", sid, "--grant", "g1"])
    assert both.exit_code == 2


def test_a_model_free_command_imports_no_model_or_http_stack(tmp_path: Path) -> None:
    code = ("import sys; sys.argv = ['consentgate', 'apikey', 'list', '--data-dir', sys.argv[1]]\n"
            "from gateway.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'torch', 'onnxruntime', 'dlib', 'httpx', 'classifiers', 'PIL',"
            " 'gateway.pipeline', 'gateway.policy.runtime') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True,  # noqa: S603
                         text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_models_list_and_policy_test_json() -> None:
    table = runner.invoke(app, ["models", "list"]).stdout.splitlines()
    assert table[0] == "FAMILY\tNAME\tWEIGHTS\tINSTALL" and any(line.startswith("nsfw\tnudenet\t") for line in table)
    adapters = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert {"family": "face", "name": "dlib", "weights": "package", "install": "default"} in adapters
    result = runner.invoke(app, ["policy", "test", str(REPO / "policies"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] == 0 and report["passed"] == len(report["cases"]) > 0
