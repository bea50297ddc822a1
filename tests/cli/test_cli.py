"""The CLI end to end on a temp data dir: init is idempotent and makes 0600 keys, apikey create
prints the key alone, the registry commands work and erasure lands in a verifiable audit log."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import app, run, runner


def test_init_is_idempotent_and_keys_are_private(env: Path) -> None:
    run("init")
    keys = sorted(p.name for p in (env / "keys").iterdir())
    assert {"audit_ed25519.key", "kek.key", "c2pa"} <= set(keys)
    before = {p: p.read_bytes() for p in (env / "keys").rglob("*") if p.is_file()}
    for path in [env / "keys" / "kek.key", env / "keys" / "audit_ed25519.key", env / "first-run-keys.txt"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((env / "consentgate.db").stat().st_mode) == 0o600
    run("init")
    after = {p: p.read_bytes() for p in (env / "keys").rglob("*") if p.is_file()}
    assert before == after  # nothing overwritten
    assert (env / "first-run-keys.txt").read_text().count("cg_") == 2


def test_apikey_create_prints_only_the_key(env: Path) -> None:
    run("init")
    out = run("apikey", "create", "--tenant", "acme", "--role", "generator").strip()
    assert out.startswith("cg_") and "\n" not in out
    listed = run("apikey", "list")
    assert "acme\tgenerator" in listed and out.split("_", 2)[2] not in listed
    key_id = out.split("_")[1]
    run("apikey", "revoke", key_id)
    assert "revoked" in run("apikey", "list", "--tenant", "acme")
    bad = runner.invoke(app, ["apikey", "create", "--tenant", "acme", "--role", "admin"])
    assert bad.exit_code != 0 and "operator" in bad.output


def test_registry_commands_and_erasure_receipt(env: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    run("init")
    image = tmp_path / "a.png"
    Image.fromarray(astronaut).save(image)
    subject = json.loads(run("registry", "subject", "add", "Eileen Collins", "--alias", "Commander Collins"))
    sid = subject["id"]
    enrolled = json.loads(run("registry", "enroll", sid, str(image), "--notice-version", "v1"))
    assert enrolled["templates"] == {"dlib": 1}
    grant = json.loads(run("registry", "grant", sid, "--tenant", "demo", "--use", "txt2img"))
    assert json.loads(run("registry", "subject", "show", sid))["grants"][0]["id"] == grant["id"]
    assert json.loads(run("registry", "uses", "--grant", grant["id"])) == {
        "subject_id": sid, "grant_id": grant["id"], "uses": [], "next_cursor": None}  # nothing made yet
    missing_grant = runner.invoke(app, ["registry", "uses", "--grant", "0" * 32])
    assert missing_grant.exit_code == 1 and "error" in missing_grant.output
    assert json.loads(run("registry", "revoke", grant["id"]))["revoked_at"]
    assert sid in run("registry", "subject", "list")
    receipt = json.loads(run("registry", "subject", "erase", sid, "--yes"))
    assert receipt["kind"] == "erasure" and receipt["subjects"] == [sid]
    assert "Eileen" not in json.dumps(receipt)
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    ledger = json.loads(run("audit", "entries", "--subject", sid))["entries"]
    assert [e["record"]["kind"] for e in ledger] == ["subject", "enrolment", "grant", "revocation", "erasure"]
    assert [e["record"]["kind"] for e in json.loads(run("audit", "entries", "--kind", "grant"))["entries"]] == ["grant"]
    missing = runner.invoke(app, ["registry", "subject", "show", sid])
    assert missing.exit_code == 1 and "error" in missing.output


def test_enrol_rejects_image_without_face(env: Path, tmp_path: Path, coffee: np.ndarray) -> None:
    run("init")
    image = tmp_path / "c.png"
    Image.fromarray(coffee).save(image)
    sid = json.loads(run("registry", "subject", "add", "Nobody"))["id"]
    result = runner.invoke(app, ["registry", "enroll", sid, str(image), "--notice-version", "v1"])
    assert result.exit_code == 1 and "face" in result.output.lower()


def test_audit_export_and_offline_verify(env: Path, tmp_path: Path) -> None:
    run("init")
    sid = json.loads(run("registry", "subject", "add", "Temp"))["id"]
    run("registry", "subject", "erase", sid, "--yes")
    out = tmp_path / "export"
    run("audit", "export", "--out", str(out))
    keys = json.loads(run("keys", "init"))
    vkey = tmp_path / "audit.vkey"
    vkey.write_text(keys["audit_verifier_key"])
    ok = runner.invoke(app, ["audit", "verify", "--export", str(out), "--key", str(vkey)])
    assert ok.exit_code == 0, ok.output
    entries = out / "entries.jsonl"
    lines = entries.read_text().splitlines()
    assert ['"kind":"subject"' in lines[0], '"kind":"erasure"' in lines[1]] == [True, True]  # the ledger
    lines[1] = lines[1].replace('"erasure"', '"retention"')
    entries.write_text("\n".join(lines) + "\n")
    bad = runner.invoke(app, ["audit", "verify", "--export", str(out), "--key", str(vkey)])
    assert bad.exit_code == 1 and "entry 1" in bad.output


# Sunlight's rule: no command but `init` (and `serve`, which says so) creates state. Each of these,
# pointed at a missing data dir, exits non-zero naming it and leaves the directory uncreated.
NO_STATE_COMMANDS = [
    ["apikey", "list"],
    ["apikey", "create", "--tenant", "acme", "--role", "generator"],
    ["apikey", "revoke", "abc"],
    ["registry", "subject", "list"],
    ["registry", "subject", "add", "Someone"],
    ["registry", "grant", "s1", "--tenant", "acme", "--use", "txt2img"],
    ["registry", "revoke", "g1"],
    ["audit", "export", "--out", "OUT"],
    ["audit", "verify"],
    ["policy", "shadow-report"],
    ["models", "face-ready", "--model", "dlib"],
]


@pytest.mark.parametrize("command", NO_STATE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_commands_never_create_a_data_dir(env: Path, tmp_path: Path, command: list[str]) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"no data dir at {env}" in result.output and "consentgate init" in result.output
    assert not env.exists()


def test_an_empty_data_dir_is_not_a_data_dir(env: Path) -> None:
    env.mkdir()
    result = runner.invoke(app, ["apikey", "list"])
    assert result.exit_code == 1 and f"no data dir at {env}" in result.output
    assert list(env.iterdir()) == []


def test_audit_verify_key_string_or_file_and_says_which_is_unreadable(env: Path, tmp_path: Path) -> None:
    run("init")
    sid = json.loads(run("registry", "subject", "add", "Temp"))["id"]
    run("registry", "subject", "erase", sid, "--yes")
    out = tmp_path / "export"
    run("audit", "export", "--out", str(out))
    vkey = json.loads(run("keys", "init"))["audit_verifier_key"]
    as_string = runner.invoke(app, ["audit", "verify", "--export", str(out), "--key", vkey])
    assert as_string.exit_code == 0, as_string.output
    on_db = runner.invoke(app, ["audit", "verify", "--key", vkey])
    assert on_db.exit_code == 0, on_db.output
    garbage = runner.invoke(app, ["audit", "verify", "--export", str(out), "--key", "not-a-key"])
    assert garbage.exit_code == 2
    assert "--key: 'not-a-key' is neither a file nor a key string" in garbage.output
    assert "export" not in garbage.output  # the export is not blamed for a bad key
    bad_file = tmp_path / "k.txt"
    bad_file.write_text("hello\n")
    from_file = runner.invoke(app, ["audit", "verify", "--export", str(out), "--key", str(bad_file)])
    assert from_file.exit_code == 2 and f"--key: the file {bad_file} holds no public key" in from_file.output


def test_keys_init_on_an_initialised_dir_creates_nothing_and_answers_the_same(env: Path) -> None:
    """The fast path of `keys init` (every key there: nothing imported from gateway.provenance) prints what
    `init_dev_pki` returns, and leaves the files as they were; a signing key of another algorithm still goes
    through `init_dev_pki`, which refuses it."""
    from gateway.cli.keys import PKI_FILES, _existing_pki
    from gateway.provenance import keys as pki_keys
    from gateway.provenance.errors import PkiError

    assert PKI_FILES == (pki_keys.ROOT_CERT, pki_keys.SIGNING_CHAIN, pki_keys.SIGNING_KEY, pki_keys.ROOT_KEY)
    first = json.loads(run("keys", "init"))
    c2pa = Path(first["c2pa_root"]).parent
    stamps = {p: p.stat().st_mtime_ns for p in c2pa.parent.rglob("*") if p.is_file()}
    assert _existing_pki(c2pa, "es256") is not None
    assert json.loads(run("keys", "init")) == first
    made = pki_keys.init_dev_pki(c2pa, alg="es256")
    assert (str(made.root_cert), str(made.signing_cert_chain)) == (first["c2pa_root"], first["c2pa_signing_chain"])
    assert {p: p.stat().st_mtime_ns for p in c2pa.parent.rglob("*") if p.is_file()} == stamps
    assert _existing_pki(c2pa, "ed25519") is None
    with pytest.raises(PkiError):
        pki_keys.init_dev_pki(c2pa, alg="ed25519")
    other = runner.invoke(app, ["keys", "init", "--alg", "ed25519"])  # one clean line, no traceback
    assert other.exit_code == 1 and isinstance(other.exception, SystemExit), other.output
    assert other.output.startswith("error: ") and "holds a es256 signing key (asked for ed25519)" in other.output
    assert "Traceback" not in other.output
    unknown = runner.invoke(app, ["keys", "init", "--alg", "rsa"])
    assert unknown.exit_code == 1 and unknown.output.startswith("error: ") and "(asked for rsa)" in unknown.output
    assert {p: p.stat().st_mtime_ns for p in c2pa.parent.rglob("*") if p.is_file()} == stamps
