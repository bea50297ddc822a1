"""Why: the write commands (`apikey create|revoke|restrict`, `registry subject add|grant|revoke`) write through
sqlite3 or SQLAlchemy Core (`gateway.cli.writekeys`, `gateway.cli.writelite`, `gateway.cli.writedb`) instead of
the ORM stores and the registry service, so that they
start fast (#22.6). Whoever reads those rows later — the gateway, an auditor — must not be able to tell which
path wrote them: the same columns with the same stored forms, the same answer printed, and consent ledger
entries identical in form that verify. Each test here writes through both paths on one database (SQLite,
and PostgreSQL under `-m db` with CONSENTGATE_TEST_DATABASE_URL) and compares."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.apikeys import ApiKeyStore
from gateway.audit import verify_database
from gateway.cli.registry import local_registry
from gateway.cli.writedb import TABLES, open_writer, policy_uses
from gateway.cli.writekeys import create_api_key, restrict_api_key, revoke_api_key
from gateway.cli.writelite import ERASED, open_lite_writer
from gateway.db import make_engine
from gateway.errors import Invalid, NotFound
from gateway.registry.errors import GrantNotFound, SubjectNotFound
from gateway.registry.grant_guard import UnknownTenant, UnknownUse
from gateway.settings import Settings
from tests.support.cli import REPO, cli_data_dir, invoke, run
from tests.support.gateway import database_url

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d{1,6})?([+-]\d\d(:?\d\d)?)?$")


def _orm_tables() -> dict[str, sa.Table]:
    from sqlmodel import SQLModel

    import gateway.apikeys
    import gateway.registry.models  # noqa: F401 - the SQLModel tables register on import

    return dict(SQLModel.metadata.tables)


def _kind(column: sa.Column[Any]) -> tuple[str, bool | None]:
    """What decides how a value is bound and stored: the type family (a TypeDecorator's implementation)
    and, for timestamps, whether the column keeps a zone."""
    t = column.type
    impl = getattr(t, "impl_instance", None) or getattr(t, "impl", None)
    t = impl if isinstance(impl, sa.types.TypeEngine) else t
    for family in (sa.DateTime, sa.JSON, sa.LargeBinary, sa.Boolean, sa.Integer, sa.String):
        if isinstance(t, family):
            return family.__name__, getattr(t, "timezone", None) if family is sa.DateTime else None
    raise AssertionError(f"{column}: unexpected type {t!r}")


def test_the_core_tables_are_the_orm_tables() -> None:
    """Every column of each table the write path declares, and no other, with the ORM's type family."""
    orm = _orm_tables()
    for table in TABLES:
        assert table.name in orm, table.name
        mine = {c.name: _kind(c) for c in table.columns}
        theirs = {c.name: _kind(c) for c in orm[table.name].columns}
        assert mine == theirs, table.name
        assert [c.name for c in table.primary_key] == [c.name for c in orm[table.name].primary_key]


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Settings]:
    path = cli_data_dir(tmp_path, monkeypatch, init=True, database_url=database_url(tmp_path))
    return path, Settings.from_env()


def _raw(engine: sa.Engine, table: str, key: str, value: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(f"SELECT * FROM {table} WHERE {key} = '{value}'").mappings().one()  # noqa: S608
    return dict(row)


def _same_form(a: Any, b: Any, what: str) -> None:
    """Two stored values of one column written at different times: the same type, and timestamps as
    the same text pattern (SQLite keeps them as text)."""
    assert type(a) is type(b), (what, a, b)
    if isinstance(a, str) and _STAMP.match(a):
        assert _STAMP.match(b) and len(a) == len(b), (what, a, b)  # SQLAlchemy's text: always six-digit microseconds


@pytest.mark.db
def test_api_keys_written_by_the_cli_are_the_stores(data: tuple[Path, Settings]) -> None:
    _, settings = data
    engine = make_engine(settings.resolved_database_url)
    store = ApiKeyStore(engine, settings.operator_tenant)
    orm_info, orm_key = store.create("acme", "generator", "ci", ["txt2img", "img2img", "txt2img"])
    url = settings.resolved_database_url
    cli_info, cli_key = create_api_key(url, settings.operator_tenant, "acme", "generator", "ci",
                                       ["txt2img", "img2img", "txt2img"])
    assert store.authenticate(cli_key).uses == ("txt2img", "img2img")  # the gateway accepts the CLI's key
    assert re.fullmatch(r"cg_[0-9a-f]{12}_[A-Za-z0-9_-]{32}", cli_key) and len(cli_key) == len(orm_key)
    listed = {k.id: k for k in store.list()}
    assert listed[cli_info.id] == cli_info  # what the CLI printed is what the store reads back
    assert {**cli_info.__dict__, "id": "", "created_at": ""} == {**orm_info.__dict__, "id": "", "created_at": ""}

    orm_revoked, cli_revoked = store.revoke(orm_info.id), revoke_api_key(url, cli_info.id)
    assert cli_revoked == store.list()[[k.id for k in store.list()].index(cli_info.id)]
    assert revoke_api_key(url, cli_info.id).revoked_at == cli_revoked.revoked_at  # idempotent
    orm_restricted = store.restrict(orm_info.id, ["tts"])
    assert restrict_api_key(url, cli_info.id, ["tts"]).uses == orm_restricted.uses == ["tts"]
    assert restrict_api_key(url, cli_info.id, None).uses is None and store.restrict(orm_info.id, None).uses is None

    orm_row, cli_row = _raw(engine, "apikeys", "id", orm_info.id), _raw(engine, "apikeys", "id", cli_info.id)
    assert orm_row.keys() == cli_row.keys()
    for column in orm_row:
        _same_form(orm_row[column], cli_row[column], column)
    assert orm_revoked.revoked_at and cli_revoked.revoked_at

    with pytest.raises(Invalid, match="operator tenant"):
        create_api_key(url, settings.operator_tenant, "acme", "admin")
    with pytest.raises(Invalid, match="unknown role"):
        create_api_key(url, settings.operator_tenant, "acme", "root")
    with pytest.raises(NotFound):
        revoke_api_key(url, "0" * 12)
    with pytest.raises(NotFound):
        restrict_api_key(url, "0" * 12, ["tts"])
    engine.dispose()


def _ledger(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT record FROM audit_entries ORDER BY idx").scalars().all()
    return [json.loads(r) for r in rows]


def _shape(record: dict[str, Any], volatile: tuple[str, ...]) -> dict[str, Any]:
    """RECORD with the values that differ between two writes (ids, times) replaced by their type."""
    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        return type(node).__name__ if key in volatile else node
    shaped: dict[str, Any] = walk(record)
    return shaped


def _names(settings: Settings) -> int:
    engine = make_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        counter = int(conn.exec_driver_sql("SELECT names FROM registry_state WHERE id = 1").scalar_one())
    engine.dispose()
    return counter


_VOLATILE = ("created_at", "subjects", "grant_id", "valid_from", "revoked_at")


WRITERS = {"core": open_writer, "sqlite3": open_lite_writer}


@pytest.mark.db
@pytest.mark.parametrize("path_name", list(WRITERS))
def test_registry_writes_by_the_cli_are_the_services(data: tuple[Path, Settings], path_name: str) -> None:
    """A subject, a grant (end user, expiry) and its revocation through the registry service and through
    the CLI's write path (SQLAlchemy Core, or sqlite3 on SQLite): the same rows, the same printed answer as
    the service reads them back, ledger entries identical in form (the end user's pseudonym equal), and a
    log that verifies, fully covered."""
    path, settings = data
    if path_name == "sqlite3" and not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the sqlite3 write path is for a SQLite data dir")
    open_writer = WRITERS[path_name]
    until = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    known = policy_uses(settings)
    with local_registry(path, with_models=False) as (registry, _, _):
        orm_subject = registry.create_subject("Ada Lovelace", ["Ada", "Ada"], True, "cli")
        orm_grant = registry.grant(orm_subject.id, "demo", "user-1", ["txt2img", "img2img"], until, None, "cli")
        orm_revoked = registry.revoke(orm_grant.id, "cli")
    before, names = len(_ledger(make_engine(settings.resolved_database_url))), _names(settings)
    with open_writer(settings) as writer:
        assert writer is not None
        cli_subject = writer.create_subject("Ada Lovelace", ["Ada", "Ada"], True, "cli")
        cli_grant = writer.grant(cli_subject["id"], "demo", "user-1", ["txt2img", "img2img"], until, "cli",
                                 known_uses=known)
        cli_revoked = writer.revoke(cli_grant["id"], "cli")
        assert writer.revoke(cli_grant["id"], "cli") == cli_revoked  # idempotent: no second entry
        with pytest.raises(UnknownUse, match="its uses: .*txt2img"):
            writer.grant(cli_subject["id"], "demo", None, ["txt2imgg"], None, "cli", known_uses=known)
        with pytest.raises(UnknownTenant):
            writer.grant(cli_subject["id"], "studoi", None, ["txt2img"], None, "cli", known_uses=known)
        with pytest.raises(SubjectNotFound):
            writer.grant("nobody", "demo", None, ["txt2img"], None, "cli", known_uses=known)
        with pytest.raises(GrantNotFound):
            writer.revoke("nothing", "cli")

    with local_registry(path, with_models=False) as (registry, _, _):  # the service reads what the CLI wrote
        assert cli_subject == registry.get_subject(cli_subject["id"]).model_dump(mode="json")
        assert cli_revoked == registry.get_grant(cli_grant["id"]).model_dump(mode="json")
        facts = registry.grants_for([cli_subject["id"]])[cli_subject["id"]]
        assert [f.uses for f in facts] == [("txt2img", "img2img")] and facts[0].revoked_at is not None
    assert {**cli_subject, "id": "", "created_at": ""} == {
        **orm_subject.model_dump(mode="json"), "id": "", "created_at": ""}
    volatile = ("id", "subject_id", "valid_from", "created_at", "revoked_at")
    assert {k: v for k, v in cli_grant.items() if k not in volatile} == {
        k: v for k, v in orm_grant.model_dump(mode="json").items() if k not in volatile}
    assert cli_grant["expires_at"] == "2031-01-02T03:04:05Z" and cli_revoked["revoked_by"] == "cli"
    assert orm_revoked.revoked_at is not None

    engine = make_engine(settings.resolved_database_url)
    for table, orm_id, cli_id in (("registry_subjects", orm_subject.id, cli_subject["id"]),
                                  ("registry_grants", orm_grant.id, cli_grant["id"])):
        orm_row, cli_row = _raw(engine, table, "id", orm_id), _raw(engine, table, "id", cli_id)
        for column in orm_row:
            _same_form(orm_row[column], cli_row[column], f"{table}.{column}")
            if column in ("uses", "expires_at", "grantee_end_user", "protected", "created_by", "grantee_tenant"):
                assert orm_row[column] == cli_row[column], column

    ledger = _ledger(engine)
    orm_entries, cli_entries = ledger[before - 3:before], ledger[before:]
    assert [e["kind"] for e in cli_entries] == ["subject", "grant", "revocation"]
    assert [_shape(e, _VOLATILE) for e in cli_entries] == [_shape(e, _VOLATILE) for e in orm_entries]
    assert cli_entries[1]["grant"]["grantee_end_user"].startswith("hk1:")  # the end user only as its keyed hash
    assert cli_entries[1]["grant"]["grant_id"] == cli_grant["id"] and cli_entries[0]["subjects"] == [cli_subject["id"]]
    assert _names(settings) == names + 1  # the new subject bumped the `names` counter replicas poll

    from gateway.audit import load_signer
    from gateway.bootstrap import audit_key_path

    report = verify_database(engine, load_signer(audit_key_path(settings), settings.audit_origin),
                             check_canonical=True, require_covered=True)
    assert report.ok, report.message
    engine.dispose()


def test_the_policy_uses_are_revalidated_when_the_bundle_changes(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of validated uses is keyed by the bundle's digest (and the code's stamp): a new use is seen
    at once, and a bundle that no longer validates refuses the grant although its old uses are cached."""
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    cli_data_dir(tmp_path, monkeypatch, init=True)
    monkeypatch.setenv("CONSENTGATE_POLICIES", str(policies))
    sid = json.loads(run("registry", "subject", "add", "Ada"))["id"]
    run("registry", "grant", sid, "--tenant", "demo", "--use", "txt2img")
    assert "txt2img" in json.loads((tmp_path / "data" / "cache" / "policy-uses.json").read_text())["uses"]
    refused = invoke("registry", "grant", sid, "--tenant", "demo", "--use", "sketch2img")
    assert refused.exit_code == 1 and "sketch2img" in refused.output

    text = (policies / "default.yaml").read_text()
    (policies / "default.yaml").write_text(text.replace("\nuses:\n", "\nuses:\n  sketch2img: {}\n", 1))
    assert "sketch2img" in policy_uses(Settings.from_env())
    run("registry", "grant", sid, "--tenant", "demo", "--use", "sketch2img")

    (policies / "default.yaml").write_text(text + "\nnot_a_field: 1\n")
    broken = invoke("registry", "grant", sid, "--tenant", "demo", "--use", "txt2img")
    assert broken.exit_code == 1 and "cannot load the policy" in broken.output and "not_a_field" in broken.output


def test_uses_cached_by_other_code_are_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache names the code that validated the bundle: an entry written by another version of the
    policy code (here: a forged use under the same bundle digest) is revalidated, not believed."""
    cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    assert "sketch2img" not in policy_uses(settings)
    cache = tmp_path / "data" / "cache" / "policy-uses.json"
    entry = json.loads(cache.read_text())
    cache.write_text(json.dumps({**entry, "uses": [*entry["uses"], "sketch2img"]}))
    assert "sketch2img" in policy_uses(settings)  # the same code: the cache is what it reads
    cache.write_text(json.dumps({**entry, "code": "another-version", "uses": [*entry["uses"], "sketch2img"]}))
    assert "sketch2img" not in policy_uses(settings)
    assert json.loads(cache.read_text())["code"] == entry["code"]  # rewritten by this code


def test_write_commands_need_an_initialised_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = cli_data_dir(tmp_path, monkeypatch)
    for args in (["apikey", "create", "--tenant", "demo", "--role", "generator"], ["apikey", "revoke", "x"],
                 ["registry", "subject", "add", "Ada"], ["registry", "revoke", "g"],
                 ["registry", "grant", "s", "--tenant", "demo", "--use", "txt2img"]):
        result = invoke(*args)
        assert result.exit_code == 1 and "no data dir at" in result.output, (args, result.output)
    assert not data.exists()


def test_key_commands_print_json_for_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl-style: what a write command changed, as JSON, so a script need not parse `revoked ID`."""
    cli_data_dir(tmp_path, monkeypatch, init=True)
    made = json.loads(run("apikey", "create", "--tenant", "demo", "--role", "generator", "--uses", "txt2img", "--json"))
    assert made["key"].startswith(f"cg_{made['id']}_") and made["uses"] == ["txt2img"] and made["revoked_at"] is None
    assert run("apikey", "create", "--tenant", "demo", "--role", "generator").strip().startswith("cg_")  # key alone
    restricted = json.loads(run("apikey", "restrict", made["id"], "--uses", "txt2img,tts", "--json"))
    assert restricted["uses"] == ["txt2img", "tts"] and "key" not in restricted
    revoked = json.loads(run("apikey", "revoke", made["id"], "--json"))
    assert revoked["revoked_at"] and revoked["id"] == made["id"]
    assert json.loads(run("apikey", "revoke", made["id"], "--json"))["revoked_at"] == revoked["revoked_at"]
    missing = invoke("apikey", "revoke", "0" * 12, "--json")
    assert missing.exit_code == 1 and "no API key" in missing.output


def test_a_registry_older_than_the_ledger_is_written_through_the_service(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the ledger's one-time snapshot the write path writes nothing itself: the command opens the
    registry service, which appends the snapshot first, then the change — and the log still verifies."""
    cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    sid = json.loads(run("registry", "subject", "add", "Ada"))["id"]
    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM registry_ledger_state")
    with open_writer(settings) as writer:
        assert writer is None
    granted = json.loads(run("registry", "grant", sid, "--tenant", "demo", "--use", "txt2img"))
    kinds = [(e["kind"], e.get("object")) for e in _ledger(engine)]
    assert kinds[-3:] == [("subject", None), ("snapshot", "subject"), ("grant", None)], kinds
    assert _ledger(engine)[-1]["grant"]["grant_id"] == granted["id"]
    with open_writer(settings) as writer:
        assert writer is not None  # the snapshot is written: the write path takes over again
    from gateway.audit import load_signer
    from gateway.bootstrap import audit_key_path

    report = verify_database(engine, load_signer(audit_key_path(settings), settings.audit_origin),
                             check_canonical=True, require_covered=True)
    assert report.ok, report.message
    engine.dispose()


def _verified(settings: Settings) -> None:
    """The log verifies, fully covered, through SQLAlchemy and through sqlite3 alike."""
    from gateway.audit import load_signer
    from gateway.audit.sqlite import verify_sqlite
    from gateway.bootstrap import audit_key_path

    signer = load_signer(audit_key_path(settings), settings.audit_origin)
    engine = make_engine(settings.resolved_database_url)
    report = verify_database(engine, signer, check_canonical=True, require_covered=True)
    engine.dispose()
    assert report.ok, report.message
    path = settings.resolved_database_url.split("///", 1)[1]
    assert verify_sqlite(path, signer, check_canonical=True).as_dict() == report.as_dict()


def test_writes_through_every_path_mix_into_one_log(data: tuple[Path, Settings]) -> None:
    """sqlite3, Core and the service taking turns on one SQLite data dir: each appends after the other's
    entries (no fork, no gap) and leaves them covered by a checkpoint; the log verifies after each."""
    path, settings = data
    if not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the sqlite3 write path is for a SQLite data dir")
    known = policy_uses(settings)
    with local_registry(path, with_models=False) as (registry, _, _):  # a fresh registry: the ledger's snapshot
        registry.create_subject("Zed", [], False, "cli")
    with open_lite_writer(settings) as lite:
        assert lite is not None
        first = lite.create_subject("Ada", [], False, "cli")
        lite.grant(first["id"], "demo", None, ["txt2img"], None, "cli", known_uses=known)
    _verified(settings)
    with open_writer(settings) as core:
        assert core is not None
        grant = core.grant(first["id"], "demo", "user-2", ["img2img"], None, "cli", known_uses=known)
    _verified(settings)
    with open_lite_writer(settings) as lite:
        assert lite is not None
        assert lite.revoke(grant["id"], "cli")["revoked_at"] is not None
        second = lite.create_subject("Bo", ["B"], True, "cli")
    with local_registry(path, with_models=False) as (registry, _, _):
        registry.revoke(registry.list_grants(first["id"])[0].id, "cli")
        assert registry.get_subject(second["id"]).model_dump(mode="json") == second
    _verified(settings)
    kinds = [e["kind"] for e in _ledger(make_engine(settings.resolved_database_url))]
    assert kinds[-6:] == ["subject", "grant", "grant", "revocation", "subject", "revocation"], kinds


def test_cli_writes_while_the_gateway_appends_do_not_fork_the_log(data: tuple[Path, Settings]) -> None:
    """`registry subject add` processes (the sqlite3 path) while this process appends decisions through the
    gateway's `AuditLog` in threads: SQLite's lock sequences them into one log holding every entry once."""
    import subprocess
    import sys
    import threading

    from gateway.bootstrap import open_audit_log

    path, settings = data
    if not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the sqlite3 write path is for a SQLite data dir")
    with local_registry(path, with_models=False) as (registry, _, _):  # the ledger's snapshot: then sqlite3
        registry.create_subject("Zed", [], False, "cli")
    with open_lite_writer(settings) as lite:
        assert lite is not None
    engine = make_engine(settings.resolved_database_url)
    log = open_audit_log(settings, engine)
    stop, appended, errors = threading.Event(), list[int](), list[BaseException]()

    def gateway() -> None:
        try:
            while not stop.is_set():
                appended.append(log.append({"kind": "decision", "decision": "allow", "tenant": "demo",
                                            "decision_id": f"{len(appended):032x}",
                                            "created_at": "2026-12-07T17:00:00Z"}).index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=gateway) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        cli = [sys.executable, "-c", "from gateway.cli import main; main()", "registry", "subject", "add"]
        procs = [subprocess.Popen([*cli, f"Person {i}"], cwd=REPO, stdout=subprocess.PIPE,  # noqa: S603
                                  stderr=subprocess.PIPE, text=True) for i in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        stop.set()
        for t in threads:
            t.join()
        log.close()
    assert not errors and all(p.returncode == 0 for p in procs), outs
    ids = {json.loads(out)["id"] for out, _ in outs}
    ledger = _ledger(engine)
    engine.dispose()
    assert {e["subjects"][0] for e in ledger if e["kind"] == "subject"} >= ids
    assert len(appended) == len(set(appended)) and len(ledger) >= len(appended) + 3
    _verified(settings)


def test_a_failed_ledger_append_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed on the sqlite3 path: when the ledger entry cannot be appended (here: the stored tree no
    longer matches the head), `subject add` and `grant` exit 1 saying so, and leave no subject row, no subject
    key, no grant and no counter bump behind."""
    import sqlite3

    cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    sid = json.loads(run("registry", "subject", "add", "Zed"))["id"]  # the ledger's snapshot: then sqlite3
    db = str(settings.data_dir / "consentgate.db")

    def counts() -> tuple[int, ...]:
        conn, keys = sqlite3.connect(db), sqlite3.connect(str(settings.data_dir / "keys.db"))
        try:
            return (*(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                      for t in ("registry_subjects", "registry_grants", "audit_entries")),
                    conn.execute("SELECT names FROM registry_state").fetchone()[0],
                    keys.execute("SELECT count(*) FROM keystore_subject_keys").fetchone()[0])
        finally:
            conn.close()
            keys.close()

    before = counts()
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT root_hash FROM audit_head").fetchone()[0]
    with conn:
        conn.execute("UPDATE audit_head SET root_hash = zeroblob(32)")
    with open_lite_writer(settings) as lite:
        assert lite is not None  # the sqlite3 path is the one refusing below
    for args in (["registry", "subject", "add", "Ada"], ["registry", "grant", sid, "--tenant", "demo", "--use",
                                                         "txt2img"]):
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert "consent ledger entry could not be appended" in result.output and "damaged" in result.output
        assert counts() == before, args
    with conn:
        conn.execute("UPDATE audit_head SET root_hash = ?", (root,))
    conn.close()
    run("registry", "grant", sid, "--tenant", "demo", "--use", "txt2img")
    _verified(settings)


def test_policy_uses_are_the_bootstraps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`policy_uses` computes the bundle's uses itself (not to import the bootstrap): the same set as
    `gateway.bootstrap.bundle_uses`, for the repository's bundle with its overlays."""
    from gateway.bootstrap import bundle_uses
    from gateway.policy.loader import load_bundle

    cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    bundle = load_bundle(settings.policies_dir, policy_name=str(settings.extra.get("policy_name", "default")))
    assert bundle.overlays  # the repository's bundle has tenant overlays: their uses count too
    assert policy_uses(settings) == bundle_uses(bundle)


def _likeness(engine: sa.Engine, sid: str) -> None:
    """Rows of every kind an erasure deletes, for SID (the models that write the templates are not loaded here)."""
    t, b = "2026-01-01 00:00:00.000000", b"\x00" * 8
    with engine.begin() as conn:
        for sql in (
            "INSERT INTO registry_enrolments VALUES (:e, :s, 'n1', 'cli', 1, :t)",
            "INSERT INTO registry_enrolment_images (subject_id, enrolment_id, image_ct, created_at) "
             "VALUES (:s, :e, :b, :t)",
            "INSERT INTO registry_face_templates (subject_id, enrolment_id, model, model_version, dim, "
             "embedding_ct, created_at) VALUES (:s, :e, 'arcface', 'v1', 4, :b, :t)",
            "INSERT INTO registry_face_templates (subject_id, enrolment_id, model, model_version, dim, "
             "embedding_ct, created_at) VALUES (:s, :e, 'dlib', 'v1', 4, :b, :t)",
            "INSERT INTO registry_voice_enrolments VALUES (:v, :s, 'n1', 'cli', 1, :t)",
            "INSERT INTO registry_voice_clips (subject_id, enrolment_id, clip_ct, created_at) "
             "VALUES (:s, :v, :b, :t)",
            "INSERT INTO registry_voice_templates (subject_id, enrolment_id, model, model_version, dim, "
             "embedding_ct, created_at) VALUES (:s, :v, 'ecapa', 'v1', 4, :b, :t)",
            "INSERT INTO registry_hashes (subject_id, algorithm, hash_hex, source, created_by, created_at) "
             "VALUES (:s, 'pdq', 'ab', 'hex', 'cli', :t)",
            "INSERT INTO registry_access_tokens VALUES (:k, :s, 'x', 'cli', :t, :t)",
            "INSERT INTO registry_erasure_requests VALUES (:r, :s, :k, :t)",
        ):
            conn.execute(sa.text(sql), {"s": sid, "e": "e" + sid[:20], "v": "v" + sid[:20], "k": sid[:12],
                                        "r": "r" + sid[:12], "t": t, "b": b})


def _erasure_state(engine: sa.Engine, settings: Settings, sid: str) -> dict[str, Any]:
    """What is left of SID: every table's rows naming it, its key, and the tombstones' models."""
    with engine.connect() as conn:
        left = {table: conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {column} = ?",  # noqa: S608
                                            (sid,)).scalar_one() for _, table, column in ERASED}
    keys = make_engine(settings.resolved_keystore_url)
    with keys.connect() as conn:
        left["key"] = conn.exec_driver_sql("SELECT count(*) FROM keystore_subject_keys WHERE subject_id = ?",
                                           (sid,)).scalar_one()
    keys.dispose()
    return left


def _tombstones(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT template_seq, model FROM registry_template_removals ORDER BY seq").all()]


def _counters(engine: sa.Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.exec_driver_sql("SELECT faces, names, hashes FROM registry_state").one())


def test_erasure_by_the_cli_is_the_services(data: tuple[Path, Settings]) -> None:
    """`registry subject erase` on a SQLite data dir (sqlite3) and through the registry service, each on a subject
    with rows of every kind: the key gone from the key store, no row left, the same tombstones (face and voice
    templates), the same counter bumps, the same printed receipt (counts included) and a ledger entry identical
    in form; an unknown subject is refused with nothing written; the log verifies."""
    path, settings = data
    if not settings.resolved_database_url.startswith("sqlite"):
        pytest.skip("the sqlite3 write path is for a SQLite data dir")
    engine = make_engine(settings.resolved_database_url)
    with local_registry(path, with_models=False) as (registry, _, _):
        orm_sid = registry.create_subject("Ada", [], False, "cli").id
        cli_sid = registry.create_subject("Bo", [], False, "cli").id
        for sid in (orm_sid, cli_sid):
            registry.grant(sid, "demo", "user-1", ["txt2img"], None, None, "cli")
            _likeness(engine, sid)
    with local_registry(path, with_models=False) as (registry, _, _):
        before, counters = len(_ledger(engine)), _counters(engine)
        orm_receipt = registry.erase(orm_sid, "cli")
    orm_tombs, orm_bump = _tombstones(engine), [a - b for a, b in zip(_counters(engine), counters, strict=True)]
    counters = _counters(engine)
    with open_lite_writer(settings) as lite:
        assert lite is not None
        cli_receipt = lite.erase(cli_sid, "cli")
        with pytest.raises(SubjectNotFound):
            lite.erase(cli_sid, "cli")  # erased: nothing left to erase, nothing appended
    cli_tombs = _tombstones(engine)[len(orm_tombs):]
    assert [a - b for a, b in zip(_counters(engine), counters, strict=True)] == orm_bump == [1, 1, 1]
    assert [m for _, m in cli_tombs] == [m for _, m in orm_tombs] == ["arcface", "dlib", "voice/ecapa"]
    assert all(seq > 0 for seq, _ in cli_tombs)
    empty = dict.fromkeys([t for _, t, _ in ERASED], 0) | {"key": 0}
    assert _erasure_state(engine, settings, orm_sid) == _erasure_state(engine, settings, cli_sid) == empty
    assert cli_receipt["counts"] == orm_receipt["counts"] and list(cli_receipt["counts"]) == list(orm_receipt["counts"])
    assert cli_receipt["counts"]["subject_keys"] == 1 and cli_receipt["counts"]["voice_templates"] == 1
    volatile = ("created_at", "subjects", "receipt_id", "index")
    assert _shape(cli_receipt, volatile) == _shape(orm_receipt, volatile)
    assert list(cli_receipt) == list(orm_receipt)  # printed in the same order
    ledger = _ledger(engine)
    assert len(ledger) == before + 2 and cli_receipt["audit"]["index"] == before + 1
    assert _shape(ledger[-1], volatile) == _shape(ledger[-2], volatile) and ledger[-1]["subjects"] == [cli_sid]
    assert {k: v for k, v in cli_receipt.items() if k != "audit"} == ledger[-1]
    with local_registry(path, with_models=False) as (registry, _, _), pytest.raises(SubjectNotFound):
        registry.get_subject(cli_sid)
    engine.dispose()
    _verified(settings)


def test_the_erase_command_takes_the_sqlite3_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`consentgate registry subject erase --yes` on a SQLite data dir: the receipt printed as JSON, the key gone
    before the command answers; an unknown subject exits 1 with `error: ...`; without --yes, declining exits 1
    and erases nothing."""
    import sqlite3

    cli_data_dir(tmp_path, monkeypatch, init=True)
    settings = Settings.from_env()
    run("registry", "subject", "add", "Zed")  # the ledger's snapshot: then sqlite3
    sid = json.loads(run("registry", "subject", "add", "Ada"))["id"]
    from tests.support.cli import app, runner

    declined = runner.invoke(app, ["registry", "subject", "erase", sid], input="n\n")
    assert declined.exit_code == 1
    receipt = json.loads(run("registry", "subject", "erase", sid, "--yes"))
    assert receipt["kind"] == "erasure" and receipt["subjects"] == [sid] and receipt["counts"]["subjects"] == 1
    assert receipt["counts"]["subject_keys"] == 1 and isinstance(receipt["audit"]["index"], int)
    keys = sqlite3.connect(str(settings.data_dir / "keys.db"))
    assert keys.execute("SELECT count(*) FROM keystore_subject_keys WHERE subject_id = ?", (sid,)).fetchone() == (0,)
    keys.close()
    again = invoke("registry", "subject", "erase", sid, "--yes")
    assert again.exit_code == 1 and "error:" in again.output and sid in again.output
    _verified(settings)
