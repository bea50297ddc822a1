"""`consentgate audit verify` fails on a log no signed checkpoint covers and on a saved checkpoint
the log does not extend (`--checkpoint FILE`); `audit prove checkpoint|inclusion|consistency`
check a checkpoint, a receipt and a consistency proof with only the public key (#17.6, #17.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit import CheckpointSigner, MemoryTree
from gateway.cli.audit import open_local_log
from gateway.cli.common import load_settings
from tests.support.cli import app, cli_data_dir, runner


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return cli_data_dir(tmp_path, monkeypatch, init=True)


def _vkey(tmp_path: Path) -> Path:
    keys = runner.invoke(app, ["keys", "init"])
    assert keys.exit_code == 0, keys.output
    path = tmp_path / "log.vkey"
    path.write_text(json.loads(keys.stdout)["audit_verifier_key"])
    return path


def _append(count: int, *, checkpoint: bool) -> dict[str, object]:
    log = open_local_log(load_settings(None))
    try:
        for i in range(count):
            log.append({"kind": "decision", "decision_id": f"{i:032x}", "tenant": "acme",
                        "created_at": "2026-12-07T00:00:00Z"})
        return log.publish_checkpoint().as_dict() if checkpoint else {}
    finally:
        log._timer = None  # noqa: SLF001 - leave the tail uncovered: no final checkpoint on close
        log.close()


def test_verify_fails_without_a_covering_checkpoint_and_checks_saved_ones(env: Path, tmp_path: Path) -> None:
    saved = _append(3, checkpoint=True)
    (tmp_path / "cp.json").write_text(json.dumps(saved))
    ok = runner.invoke(app, ["audit", "verify", "--checkpoint", str(tmp_path / "cp.json")])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout[: ok.stdout.rindex("}") + 1])["saved_checked"] == 1
    _append(2, checkpoint=False)
    pending = runner.invoke(app, ["audit", "verify"])
    assert pending.exit_code == 1 and "no signed checkpoint covers the whole log" in pending.output
    bad = tmp_path / "garbage.txt"
    bad.write_text("{\"size\": 3}")
    refused = runner.invoke(app, ["audit", "verify", "--checkpoint", str(bad)])
    assert refused.exit_code == 1 and "cannot read the saved checkpoint" in refused.output


def test_prove_commands_check_with_only_the_public_key(env: Path, tmp_path: Path) -> None:
    first = _append(5, checkpoint=True)
    second = _append(4, checkpoint=True)
    vkey = _vkey(tmp_path)
    log = open_local_log(load_settings(None))
    try:
        receipt = log.receipt(2)
        proof = log.consistency_proof(5, 9).as_dict()
        record = log.entry(2).record
    finally:
        log.close()
    files = {name: tmp_path / f"{name}.json" for name in ("first", "second", "receipt", "proof", "record")}
    for name, data in (("first", first), ("second", second), ("receipt", receipt), ("proof", proof),
                       ("record", record)):
        files[name].write_text(json.dumps(data))

    def prove(*args: str) -> tuple[int, dict[str, object]]:
        result = runner.invoke(app, ["audit", "prove", *args, "--key", str(vkey)])
        return result.exit_code, json.loads(result.stdout.splitlines()[0])

    code, out = prove("checkpoint", str(files["second"]))
    assert code == 0 and out["tree_size"] == 9
    code, out = prove("inclusion", str(files["receipt"]), "--record", str(files["record"]))
    assert code == 0 and out["index"] == 2 and out["tree_size"] == 9
    code, out = prove("consistency", str(files["proof"]), "--first", str(files["first"]),
                      "--second", str(files["second"]))
    assert code == 0 and out == {"ok": True, "first": 5, "second": 9, "signed": True}
    # Tampered: a receipt moved to another leaf, a proof whose second tree is not the signed one.
    receipt["leaf_hash"] = receipt["inclusion_proof"]["leaf_hash"] = MemoryTree([b"\x00" * 32]).root().hex()
    files["receipt"].write_text(json.dumps(receipt))
    code, out = prove("inclusion", str(files["receipt"]))
    assert code == 1 and out["ok"] is False
    code, out = prove("consistency", str(files["proof"]), "--second", str(files["first"]))
    assert code == 1 and out["ok"] is False
    other = CheckpointSigner.generate(vkey.read_text().split("+")[0]).vkey  # the same name, another key
    result = runner.invoke(app, ["audit", "prove", "checkpoint", str(files["first"]), "--key", other])
    assert result.exit_code == 1 and "no signature by key" in result.output
    unreadable = runner.invoke(app, ["audit", "prove", "checkpoint", str(files["first"]), "--key", "nonsense"])
    assert unreadable.exit_code == 2  # a bad key is not reported as a bad proof
