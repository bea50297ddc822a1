"""Why: `registry retention run` on a SQLite data dir runs through sqlite3 (`gateway.cli.retentionlite`) instead of
the registry service, to start fast (#22.6). Retention deletes biometric data and leaves the consent ledger's
receipts, so the two paths must not be told apart: here both run on two copies of one database (expired grants,
retention-due face and voice enrolments, a subject losing one modality, kept subjects) and every registry table,
the key store and the ledger's records are compared; the log verifies; a dry run changes nothing; a second run
records no expiry twice; the rules come from the policy as the service path read them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.policyuses import policy_retention
from gateway.cli.registry import local_registry
from gateway.cli.retentionlite import run_retention
from gateway.cli.writelite import open_lite_writer
from gateway.registry.retention_plan import RuleValues
from gateway.settings import Settings
from tests.support.cli import cli_data_dir, invoke, run

NOW = datetime(2030, 6, 1, tzinfo=UTC)
RULES = {"face": RuleValues(), "voice": RuleValues(max_age_days=30)}
OLD = "2026-01-01 00:00:00.000000"


def _enrol(conn: sqlite3.Connection, sid: str, *, face: bool = True, voice: bool = True) -> None:
    """A face enrolment (image, 2 templates) and a voice enrolment (clip, template) for SID, enrolled at OLD."""
    b, e, v = b"\x00" * 8, "e" + sid[:20], "v" + sid[:20]
    with conn:
        if face:
            conn.execute("INSERT INTO registry_enrolments VALUES (?, ?, 'n1', 'cli', 1, ?)", (e, sid, OLD))
            conn.execute("INSERT INTO registry_enrolment_images (subject_id, enrolment_id, image_ct, created_at) "
                         "VALUES (?, ?, ?, ?)", (sid, e, b, OLD))
            for model in ("arcface", "dlib"):
                conn.execute("INSERT INTO registry_face_templates (subject_id, enrolment_id, model, model_version, "
                             "dim, embedding_ct, created_at) VALUES (?, ?, ?, 'v1', 4, ?, ?)", (sid, e, model, b, OLD))
        if voice:
            conn.execute("INSERT INTO registry_voice_enrolments VALUES (?, ?, 'n1', 'cli', 1, ?)", (v, sid, OLD))
            conn.execute("INSERT INTO registry_voice_clips (subject_id, enrolment_id, clip_ct, created_at) "
                         "VALUES (?, ?, ?, ?)", (sid, v, b, OLD))
            conn.execute("INSERT INTO registry_voice_templates (subject_id, enrolment_id, model, model_version, dim, "
                         "embedding_ct, created_at) VALUES (?, ?, 'ecapa', 'v1', 4, ?, ?)", (sid, v, b, OLD))


def _tables(path: Path, prefixes: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(str(path))
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                 if r[0].startswith(prefixes)]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}  # noqa: S608
    finally:
        conn.close()


def _records(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(str(path))
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT record FROM audit_entries ORDER BY idx")]
    finally:
        conn.close()


def _unstamped(node: Any) -> Any:
    """NODE with what differs between two runs (ledger times, receipt ids, audit indexes) blanked."""
    if isinstance(node, dict):
        return {k: "*" if k in ("created_at", "receipt_id") else _unstamped(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unstamped(v) for v in node]
    return node


def _service_run(path: Path, now: datetime, *, dry_run: bool = False) -> dict[str, Any]:
    from gateway.bootstrap import AuditActivity, open_audit_log

    with local_registry(path, with_models=False) as (registry, settings, engine):
        log = open_audit_log(settings, engine)
        try:
            report: dict[str, Any] = registry.retention_run(RULES, now, AuditActivity(log), dry_run=dry_run,
                                                             actor="cli")
        finally:
            log.close()
    return report


def _lite_run(settings: Settings, now: datetime, *, dry_run: bool = False) -> dict[str, Any]:
    with open_lite_writer(settings) as lite:
        assert lite is not None
        return run_retention(lite, RULES, now, dry_run=dry_run, actor="cli")


@pytest.fixture
def copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, str], Path, Path]]:
    """One data dir with subjects of every retention fate, copied: (subject ids by fate, original, copy)."""
    path = cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    if not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the sqlite3 retention path is for a SQLite data dir")
    future = datetime(2028, 1, 1, tzinfo=UTC)  # in force today, past at NOW
    with local_registry(path, with_models=False) as (registry, _, _):
        sids = {fate: registry.create_subject(fate, [], fate == "protected", "cli").id
                for fate in ("erased", "voice_only", "kept_by_grant", "protected", "grant_ended", "no_enrolment")}
        registry.grant(sids["voice_only"], "demo", None, ["txt2img"], None, None, "cli")
        registry.grant(sids["kept_by_grant"], "demo", "user-1", ["txt2img"], None, None, "cli")
        registry.grant(sids["kept_by_grant"], "demo", None, ["txt2img"], future, None, "cli")
        registry.grant(sids["grant_ended"], "demo", None, ["txt2img"], future, None, "cli")
        registry.grant(sids["no_enrolment"], "demo", None, ["txt2img"], future, None, "cli")
    conn = sqlite3.connect(str(path / "consentgate.db"))
    for fate in ("erased", "voice_only"):
        _enrol(conn, sids[fate])
    for fate in ("kept_by_grant", "protected", "grant_ended"):  # the voice's max_age_days would expire a voice
        _enrol(conn, sids[fate], voice=False)
    conn.close()
    shutil.copytree(path, tmp_path / "copy")
    yield sids, path, tmp_path / "copy"


def test_retention_by_the_cli_is_the_services(copies: tuple[dict[str, str], Path, Path]) -> None:
    """The service on one copy, sqlite3 on the other: the same report (verdicts, receipts, expiries), then every
    registry table and the key store identical, the same ledger records in the same order; a second run at the
    same time appends nothing on either; both logs verify."""
    from tests.cli.test_writedb import _verified

    sids, orm_path, lite_path = copies
    lite_settings = Settings.from_env().with_overrides(data_dir=lite_path)
    before = len(_records(orm_path / "consentgate.db"))
    orm = _service_run(orm_path, NOW)
    lite = _lite_run(lite_settings, NOW)
    assert _unstamped(lite) == _unstamped(orm)
    assert json.dumps(lite) != json.dumps(orm)  # receipt ids differ: both really ran
    actions = {s["subject_id"]: s["action"] for s in lite["subjects"]}
    assert actions == {sids["erased"]: "erase", sids["voice_only"]: "delete_modalities",
                       sids["kept_by_grant"]: "keep", sids["protected"]: "keep", sids["grant_ended"]: "erase"}
    assert lite["expiries"] == 3 and [r["kind"] for r in lite["receipts"]] == ["retention"] * 3
    assert [r["audit"]["index"] for r in lite["receipts"]] == [r["audit"]["index"] for r in orm["receipts"]]
    db, keys = ("registry_",), ("keystore_",)
    assert _tables(lite_path / "consentgate.db", db) == _tables(orm_path / "consentgate.db", db)
    assert _tables(lite_path / "keys.db", keys) == _tables(orm_path / "keys.db", keys)
    conn = sqlite3.connect(str(lite_path / "consentgate.db"))
    assert {r[0] for r in conn.execute("SELECT id FROM registry_subjects")} == {
        sids[f] for f in ("voice_only", "kept_by_grant", "protected", "no_enrolment")}
    voice_only, count = (sids["voice_only"],), "SELECT count(*) FROM {} WHERE subject_id = ?"
    assert conn.execute(count.format("registry_voice_templates"), voice_only).fetchone() == (0,)
    assert conn.execute(count.format("registry_face_templates"), voice_only).fetchone() == (2,)
    assert [m for (m,) in conn.execute("SELECT model FROM registry_template_removals ORDER BY seq")] == [
        "arcface", "dlib", "voice/ecapa", "voice/ecapa", "arcface", "dlib"]  # erased, voice_only, grant_ended
    conn.close()
    lite_records, orm_records = _records(lite_path / "consentgate.db"), _records(orm_path / "consentgate.db")
    assert [r["kind"] for r in lite_records[before:]] == ["expiry"] * 3 + ["retention"] * 3
    assert _unstamped(lite_records) == _unstamped(orm_records)
    assert {k: v for k, v in lite["receipts"][1].items() if k != "audit"} == lite_records[-2]
    again_orm, again_lite = _service_run(orm_path, NOW), _lite_run(lite_settings, NOW)
    assert again_lite["expiries"] == again_orm["expiries"] == 0
    assert again_lite["receipts"] == again_orm["receipts"] == []
    assert _unstamped(again_lite) == _unstamped(again_orm)
    assert len(_records(lite_path / "consentgate.db")) == len(lite_records)
    _verified(lite_settings)
    _verified(Settings.from_env())


def test_a_dry_run_changes_nothing(copies: tuple[dict[str, str], Path, Path]) -> None:
    """`--dry-run` on the sqlite3 path: the service's report, and not a row of the database (its log included) or
    of the key store changes."""
    _, orm_path, lite_path = copies
    lite_settings = Settings.from_env().with_overrides(data_dir=lite_path)
    files = [lite_path / "consentgate.db", lite_path / "keys.db"]
    before = [_tables(f, ("",)) for f in files]  # every row of every table, the log's included
    dry = _lite_run(lite_settings, NOW, dry_run=True)
    assert [_tables(f, ("",)) for f in files] == before
    assert _unstamped(dry) == _unstamped(_service_run(orm_path, NOW, dry_run=True))
    assert dry["dry_run"] is True and dry["receipts"] == [] and dry["expiries"] == 0
    assert {s["action"] for s in dry["subjects"]} == {"erase", "delete_modalities", "keep"}


def test_the_retention_command_takes_the_sqlite3_path(copies: tuple[dict[str, str], Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`consentgate registry retention run` on a SQLite data dir: the policy's rules (cached after the bundle
    validated once, the same values as the bundle's), the report printed as JSON; the log verifies."""
    from gateway.cli.registry import local_registry as _  # noqa: F401 - the service path exists beside it
    from gateway.policy.loader import load_bundle
    from tests.cli.test_writedb import _verified

    sids, path, _copy = copies
    settings = Settings.from_env()
    bundle = load_bundle(settings.policies_dir)
    expected = {m: RuleValues(**getattr(bundle.policy.retention, m).model_dump()) for m in ("face", "voice")}
    assert policy_retention(settings) == expected
    assert (settings.data_dir / "cache" / "policy-retention.json").is_file()
    assert policy_retention(settings) == expected  # from the cache
    dry = json.loads(run("registry", "retention", "run", "--dry-run", "--now", "2030-06-01T00:00:00Z"))
    assert dry["dry_run"] is True and sids["erased"] in {s["subject_id"] for s in dry["subjects"]}
    done = json.loads(run("registry", "retention", "run", "--now", "2030-06-01T00:00:00Z"))
    assert done["expiries"] == 3 and {r["kind"] for r in done["receipts"]} == {"retention"}
    assert invoke("registry", "retention", "run", "--now", "soon").exit_code == 1
    _verified(settings)


def test_the_retention_rules_are_revalidated_when_the_bundle_changes(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The cached rules are keyed by the bundle's digest: an edited rule is read at once, and a bundle that no
    longer validates refuses the run (exit 1, `error: cannot load the policy ...`) although rules are cached."""
    from tests.support.cli import REPO

    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    cli_data_dir(tmp_path, monkeypatch, init=True)
    monkeypatch.setenv("CONSENTGATE_POLICIES", str(policies))
    assert policy_retention(Settings.from_env()) == {"face": RuleValues(), "voice": RuleValues()}
    text = (policies / "default.yaml").read_text()
    assert "\nretention:" not in text
    (policies / "default.yaml").write_text(text + "\nretention:\n  voice:\n    max_age_days: 7\n")
    assert policy_retention(Settings.from_env())["voice"] == RuleValues(max_age_days=7)
    run("registry", "retention", "run", "--dry-run")
    (policies / "default.yaml").write_text(text + "\nnot_a_field: 1\n")
    broken = invoke("registry", "retention", "run", "--dry-run")
    assert broken.exit_code == 1 and "cannot load the policy for its retention rules" in broken.output
    assert "not_a_field" in broken.output


def test_without_the_sqlite3_path_the_command_opens_the_service(copies: tuple[dict[str, str], Path, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Where `open_lite_writer` declines (PostgreSQL, a registry older than the ledger) the command runs the
    registry service with the same cached rules: the same report as the sqlite3 path on the other copy."""
    from contextlib import contextmanager

    import gateway.cli.writelite as writelite

    _, _, lite_path = copies
    lite = json.loads(run("registry", "retention", "run", "--now", "2030-06-01T00:00:00Z", "--data-dir",
                          str(lite_path)))

    @contextmanager
    def declined(settings: Settings) -> Iterator[None]:
        yield None

    monkeypatch.setattr(writelite, "open_lite_writer", declined)
    orm = json.loads(run("registry", "retention", "run", "--now", "2030-06-01T00:00:00Z"))
    assert _unstamped(orm) == _unstamped(lite) and orm["expiries"] == 3 and len(orm["receipts"]) == 2  # default rules
