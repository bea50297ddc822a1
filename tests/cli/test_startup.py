"""Why: commands that need no model must start fast (#22.6: < 0.5 s; `bench/cli_startup.py` measures it).
Timing is not asserted here (the machine is shared); what makes them fast is: each command runs in a fresh
interpreter and must not import the model, web or ORM stacks, and the DB-API read path that replaces the
ORM for `apikey list` / `registry subject list` must return exactly what the ORM stores return, on the
same database (SQLite here, PostgreSQL under `-m db` with CONSENTGATE_TEST_DATABASE_URL)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.cli.readdb import (
    ReadError,
    ReadOnlyKeys,
    get_subject,
    list_api_keys,
    list_grants,
    list_subjects,
    open_read,
    sqlite_path,
)
from gateway.registry.errors import SubjectNotFound
from tests.support.cli import REPO, cli_data_dir
from tests.support.gateway import database_url

# Never imported by a command that needs no model: the models and their runtimes, the web stack,
# the composition root.
MODELS_WEB = ("numpy", "torch", "onnxruntime", "dlib", "cv2", "PIL", "classifiers", "fastapi", "starlette", "httpx",
              "uvicorn", "gateway.app", "gateway.pipeline", "gateway.policy.runtime")
HEAVY = (*MODELS_WEB, "gateway.bootstrap")
# the audit readers read a SQLite log through sqlite3 (gateway.audit.sqlite): not even SQLAlchemy, nor the
# log's writer, nor the bootstrap that opens it for the gateway
AUDIT_READ = (*MODELS_WEB, "sqlmodel", "sqlalchemy", "gateway.audit.log", "gateway.bootstrap", "gateway.db",
              "gateway.registry.service", "gateway.provenance", "gateway.policy")
# ... and the list commands read through the DB-API: no ORM, no SQLAlchemy at all on SQLite.
ORM = ("sqlmodel", "sqlalchemy", "gateway.apikeys", "gateway.registry.models", "gateway.registry.service")
# The registry write commands write a SQLite data dir through sqlite3 (gateway.cli.writelite): no SQLAlchemy, no
# ORM, no registry service, and a grant whose bundle was validated before reads its uses from the cache (no policy
# schema).
WRITE = (*MODELS_WEB, "sqlmodel", "sqlalchemy", "gateway.apikeys", "gateway.registry.models",
         "gateway.registry.service", "gateway.registry.admin", "gateway.registry.store", "gateway.registry.crypto",
         "gateway.audit.log", "gateway.bootstrap", "gateway.db", "gateway.cli.writedb", "gateway.policy.schema",
         "gateway.policy.loader")
# ... and the key commands, like the list commands, need no SQLAlchemy at all on SQLite (sqlite3: gateway.cli.writekeys)
# ... and retention, which reads the policy's rules (cached) and decides in gateway.registry.retention_plan: not the
# ORM's gateway.registry.retention, the classifiers' registry nor the policy runtime
RETENTION = (*WRITE, "gateway.registry.retention", "gateway.registry.voices", "gateway.policy.runtime")
KEY_WRITE = (*WRITE, "sqlalchemy", "gateway.bootstrap", "gateway.audit", "gateway.registry", "gateway.policy",
             "gateway.cli.writedb")


def _modules_after(args: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    """Run `consentgate ARGS` in a fresh interpreter; (exit code, the modules it imported, its output)."""
    code = ("import json, sys\nfrom gateway.cli import main\nsys.argv = ['consentgate', *sys.argv[1:]]\n"
            "try:\n    main()\n    rc = 0\nexcept SystemExit as exc:\n    rc = exc.code or 0\n"
            "print('MODULES=' + json.dumps({'rc': rc, 'mods': sorted(sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,  # noqa: S603
                         env=env, timeout=120)
    line = next(x for x in out.stdout.splitlines() if x.startswith("MODULES="))
    got = json.loads(line.removeprefix("MODULES="))
    return int(got["rc"]), list(got["mods"]), out.stdout + out.stderr


def _loaded(mods: list[str], names: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for m in mods if m == n or m.startswith(n + ".")})


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A data dir with keys (one revoked, one restricted) and a subject, made through the CLI."""
    tmp = tmp_path_factory.mktemp("startup")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "CONSENTGATE_DATA_DIR": str(tmp / "data"),
           "CONSENTGATE_POLICIES": str(REPO / "policies"), "HOME": str(tmp)}
    cli = [sys.executable, "-c", "from gateway.cli import main; main()"]
    out: dict[str, str] = {}
    for args in (["init"], ["apikey", "create", "--tenant", "demo", "--role", "generator", "--uses", "txt2img"],
                 ["registry", "subject", "add", "Ada Lovelace", "--alias", "Ada"],
                 ["registry", "grant", "<SUBJECT>", "--tenant", "demo", "--use", "txt2img"]):
        args = [out.get(a, a) for a in args]
        done = subprocess.run([*cli, *args], env=env, cwd=REPO, check=True, capture_output=True,  # noqa: S603
                              text=True, timeout=300)
        if args[:3] == ["registry", "subject", "add"]:
            out["<SUBJECT>"] = json.loads(done.stdout)["id"]
    (tmp / "subject_id").write_text(out["<SUBJECT>"])
    (tmp / "grant_id").write_text(json.loads(done.stdout)["id"])
    return tmp, env


NO_MODEL_COMMANDS: list[tuple[list[str], tuple[str, ...]]] = [
    (["apikey", "list"], HEAVY + ORM),
    (["apikey", "list", "--json"], HEAVY + ORM),
    (["registry", "subject", "list"], HEAVY + ORM),
    (["registry", "subject", "list", "--json"], HEAVY + ORM),
    (["registry", "subject", "show", "<SUBJECT>"], HEAVY + ORM),
    (["audit", "verify"], HEAVY + ("sqlmodel", "sqlalchemy", "gateway.audit.log", "gateway.db", "gateway.registry")),
    (["audit", "entries", "--limit", "5"], AUDIT_READ),
    (["audit", "export", "--out", "<OUT>"], AUDIT_READ),
    (["audit", "witness", "<DATA>", "--state", "<STATE>", "--key", "<AKEY>"], AUDIT_READ),
    (["policy", "keygen", "--out", "<KOUT>"], (*HEAVY, *ORM, "gateway.policy.schema", "gateway.policy.loader")),
    (["policy", "sign", "<POL>", "--key", "<SKEY>"], (*HEAVY, *ORM, "gateway.policy.schema", "gateway.policy.loader")),
    (["keys", "init"], (*AUDIT_READ, "gateway.registry.crypto", "gateway.audit.log")),
    (["registry", "uses", "<SUBJECT>"], AUDIT_READ),
    (["policy", "schema"], HEAVY + ORM),
    # the cases are fact tables: the adapter names are checked against the registry (`classifiers`), no model loads
    (["policy", "test", "<POL>"], (*(m for m in HEAVY if m != "classifiers"), *ORM)),
    (["--help"], HEAVY + ORM),
    (["apikey", "create", "--tenant", "acme", "--role", "auditor"], KEY_WRITE),
    (["apikey", "restrict", "<KEY>", "--uses", "tts"], KEY_WRITE),
    (["apikey", "revoke", "<KEY>"], KEY_WRITE),
    (["registry", "subject", "add", "Bob"], (*WRITE, "gateway.policy")),
    (["registry", "grant", "<SUBJECT>", "--tenant", "demo", "--use", "img2img"], WRITE),
    (["registry", "revoke", "<GRANT>"], (*WRITE, "gateway.policy")),
    (["registry", "subject", "erase", "<ERASE>", "--yes"], (*WRITE, "gateway.policy")),
    # sqlite3 (gateway.cli.retentionlite), the policy's rules from the cache once the bundle validated (a first run)
    (["registry", "retention", "run", "--dry-run"], RETENTION),
    (["registry", "retention", "run", "--now", "2031-01-01T00:00:00Z"], RETENTION),
]


@pytest.mark.parametrize(("args", "forbidden"), NO_MODEL_COMMANDS, ids=[" ".join(c[0]) for c in NO_MODEL_COMMANDS])
def test_no_model_commands_import_no_heavy_module(populated: tuple[Path, dict[str, str]], args: list[str],
                                                  forbidden: tuple[str, ...]) -> None:
    tmp, env = populated
    if "<KEY>" in args and not (tmp / "key_id").exists():  # a key of its own: the list test reads the others
        rc, _, made = _modules_after(["apikey", "create", "--tenant", "acme", "--role", "generator", "--name", "k"],
                                     env)
        (tmp / "key_id").write_text(made.split("_")[1])
    if "<ERASE>" in args:  # a subject of its own to erase: the other tests read the fixture's
        rc, _, made = _modules_after(["registry", "subject", "add", "Cy"], env)
        (tmp / "erase_id").write_text(json.loads(made[:made.index("MODULES=")])["id"])
    if args[:3] == ["registry", "retention", "run"]:  # a first run validates the bundle and caches its rules
        _modules_after(["registry", "retention", "run", "--dry-run"], env)
    if "<OUT>" in args:
        (tmp / "out").write_text(str(tmp / "export"))
    if "<POL>" in args and not (tmp / "pol").exists():  # a bundle of its own to sign, and a key
        import shutil

        from gateway.policy.signing import generate_keypair

        shutil.copytree(REPO / "policies", tmp / "pol")
        generate_keypair(tmp / "sign.key", tmp / "sign.key.pub")
    for name, value in (("kout_path", tmp / "policy.key"), ("pol_path", tmp / "pol"), ("skey_path", tmp / "sign.key"),
                        ("data_path", tmp / "data"), ("state_path", tmp / "witness.json"),
                        ("akey_path", tmp / "data" / "keys" / "audit_ed25519.key")):
        (tmp / name).write_text(str(value))
    names = {"<KOUT>": "kout_path", "<POL>": "pol_path", "<SKEY>": "skey_path", "<DATA>": "data_path",
             "<STATE>": "state_path", "<AKEY>": "akey_path", "<OUT>": "out", "<SUBJECT>": "subject_id",
             "<GRANT>": "grant_id", "<KEY>": "key_id", "<ERASE>": "erase_id"}
    args = [(tmp / names[a]).read_text() if a in names else a for a in args]
    rc, mods, output = _modules_after(args, env)
    assert rc == 0, output
    assert _loaded(mods, forbidden) == [], output[-2000:]
    if args[:3] in (["registry", "subject", "list"], ["registry", "subject", "show"]):
        assert "Ada Lovelace" in output  # the read path decrypted the name: it really read the subject
    if args[:2] in (["registry", "grant"], ["registry", "revoke"]):  # it really wrote the grant
        assert json.loads(output[:output.index("MODULES=")])["subject_id"] == (tmp / "subject_id").read_text()
    if args[:2] == ["audit", "export"]:  # it really exported the log
        assert json.loads(output[:output.index("MODULES=")])["entries"] > 0
        assert (tmp / "export" / "entries.jsonl").stat().st_size > 0
    if args[:2] == ["policy", "test"]:  # it really ran the bundle's cases
        assert " passed, 0 failed" in output
    if args[:2] == ["policy", "sign"]:  # it really signed the bundle
        assert (tmp / "pol" / "bundle.sig").is_file()
    if args[:2] == ["audit", "witness"]:  # it really checked the log's checkpoint
        assert json.loads(output[:output.index("MODULES=")])["ok"] is True
    if args[:3] == ["registry", "retention", "run"]:  # it really ran: a report, a dry run only when asked
        report = json.loads(output[:output.index("MODULES=")])
        assert report["dry_run"] is ("--dry-run" in args) and "subjects" in report
    if args[:3] == ["registry", "subject", "erase"]:  # it really erased the subject
        assert json.loads(output[:output.index("MODULES=")])["counts"]["subject_keys"] == 1


def test_the_list_commands_print_what_they_read(populated: tuple[Path, dict[str, str]]) -> None:
    _, env = populated
    rc, _, output = _modules_after(["apikey", "list", "--json"], env)
    keys = json.loads(output[:output.index("MODULES=")])
    assert rc == 0 and sorted((k["tenant"], k["uses"]) for k in keys if k["tenant"] != "acme") == [
        ("demo", "all"), ("demo", "txt2img"), ("operator", "all")]


def test_init_file_names_match_the_bootstrap(tmp_path: Path) -> None:
    """The CLI repeats two file names of `init` so as not to import the bootstrap; they must agree."""
    from gateway.bootstrap import audit_key_path, kek_path
    from gateway.cli.common import AUDIT_KEY_FILE, KEK_FILE
    from gateway.settings import Settings

    settings = Settings(data_dir=tmp_path)
    assert settings.data_dir / KEK_FILE == kek_path(settings)
    assert settings.data_dir / AUDIT_KEY_FILE == audit_key_path(settings)


@pytest.mark.db
def test_read_path_returns_what_the_orm_stores_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys (restricted, revoked, another tenant) and subjects (aliases, protected, hashes, face and voice
    templates of two models) listed by `gateway.cli.readdb` and by the ORM stores on one database."""
    import sqlalchemy as sa

    from gateway.apikeys import ApiKeyStore
    from gateway.cli.registry import local_registry
    from gateway.db import make_engine
    from gateway.registry.envelope import FileKek, SubjectCrypto
    from gateway.registry.models import (
        RegistryEnrolment,
        RegistryFaceTemplate,
        RegistryVoiceEnrolment,
        RegistryVoiceTemplate,
    )
    from gateway.settings import Settings

    data = cli_data_dir(tmp_path, monkeypatch, init=True, database_url=database_url(tmp_path))
    settings = Settings.from_env()
    engine = make_engine(settings.resolved_database_url)
    keys = ApiKeyStore(engine, settings.operator_tenant)
    restricted, _ = keys.create("acme", "generator", "restricted", ["txt2img", "img2img"])
    keys.create("acme", "auditor", "auditor")
    keys.revoke(restricted.id)
    with local_registry(data, with_models=False) as (registry, _, _):
        ada = registry.create_subject("Ada Lovelace", ["Ada", "Countess"], False, "test")
        bob = registry.create_subject("Bob", [], True, "test")
        registry.add_hashes(bob.id, ["f" * 64, "0" * 64], created_by="test")
        registry.grant(ada.id, "acme", None, ["txt2img"], created_by="test")
        until = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
        revoked = registry.grant(ada.id, "demo", "user-1", ["txt2img", "img2img"], expires_at=until, created_by="t")
        registry.revoke(revoked.id, "test")
    # templates: enrolment needs the face model; their rows (as enrolment writes them) are enough to count
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(RegistryEnrolment.__table__).values(  # type: ignore[attr-defined]
            id="e1", subject_id=ada.id, notice_version="v1", enrolled_by="test", image_count=2, created_at=now))
        conn.execute(sa.insert(RegistryVoiceEnrolment.__table__).values(  # type: ignore[attr-defined]
            id="v1", subject_id=ada.id, notice_version="v1", enrolled_by="test", clip_count=1, created_at=now))
        for model in ("dlib", "dlib", "arcface"):
            conn.execute(sa.insert(RegistryFaceTemplate.__table__).values(  # type: ignore[attr-defined]
                subject_id=ada.id, enrolment_id="e1", model=model, model_version="x", dim=4,
                embedding_ct=b"sealed", created_at=now))
        conn.execute(sa.insert(RegistryVoiceTemplate.__table__).values(  # type: ignore[attr-defined]
            subject_id=ada.id, enrolment_id="v1", model="resemblyzer", model_version="x", dim=4,
            embedding_ct=b"sealed", created_at=now))
    with local_registry(data, with_models=False) as (registry, _, _):
        orm_subjects = [s.model_dump(mode="json") for s in registry.list_subjects(0, 100)]
        orm_page = [s.model_dump(mode="json") for s in registry.list_subjects(1, 1)]
        orm_ada = registry.get_subject(ada.id).model_dump(mode="json")
        orm_grants = [g.model_dump(mode="json") for g in registry.list_grants(ada.id)]
    orm_keys = keys.list()
    orm_acme = keys.list("acme")
    engine.dispose()

    with open_read(settings.resolved_database_url) as db, open_read(settings.resolved_keystore_url) as ks:
        read_keys = list_api_keys(db)
        read_acme = list_api_keys(db, "acme")
        crypto = SubjectCrypto(FileKek(settings.keys_dir / "kek.key"), ReadOnlyKeys(ks))
        read_subjects = list_subjects(db, crypto, 0, 100)
        read_page = list_subjects(db, crypto, 1, 1)
        read_ada = get_subject(db, crypto, ada.id)
        read_grants = list_grants(db, ada.id)
        with pytest.raises(SubjectNotFound):
            get_subject(db, crypto, "no-such-subject")

    assert [k.__dict__ for k in read_keys] == [k.__dict__ for k in orm_keys]
    assert [k.__dict__ for k in read_acme] == [k.__dict__ for k in orm_acme] and len(read_acme) == 2
    assert any(k.revoked_at and k.uses == ["txt2img", "img2img"] for k in read_keys)
    assert read_subjects == orm_subjects and read_page == orm_page
    by_name = {s["display_name"]: s for s in read_subjects}
    assert by_name["Ada Lovelace"]["face_models"] == ["arcface", "dlib"]
    assert by_name["Ada Lovelace"]["template_count"] == 3 and by_name["Ada Lovelace"]["voice_template_count"] == 1
    assert by_name["Bob"]["protected"] is True and by_name["Bob"]["hash_count"] == 2
    assert read_ada == orm_ada and read_grants == orm_grants and len(read_grants) == 2
    assert read_grants[1]["revoked_at"] and read_grants[1]["expires_at"] == "2031-01-02T03:04:05Z"
    assert read_grants[1]["uses"] == ["txt2img", "img2img"] and read_grants[1]["grantee_end_user"] == "user-1"


def test_the_sqlite_read_path_is_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = cli_data_dir(tmp_path, monkeypatch, init=True)
    with open_read(f"sqlite:///{data / 'consentgate.db'}") as db:
        assert len(db.rows("SELECT id FROM apikeys")) == 2
        with pytest.raises(ReadError, match="readonly"):
            db.rows("DELETE FROM apikeys")
        with pytest.raises(ReadError, match="read-only"):
            ReadOnlyKeys(db).put("s", b"k", "kek")
        with pytest.raises(ReadError, match="read-only"):
            ReadOnlyKeys(db).delete("s")
    with open_read(f"sqlite:///{data / 'consentgate.db'}") as db:
        assert len(db.rows("SELECT id FROM apikeys")) == 2  # nothing was deleted
    with pytest.raises(ReadError, match="no database at"):
        open_read(f"sqlite:///{tmp_path / 'nothing.db'}").__enter__()
    assert not (tmp_path / "nothing.db").exists()  # and none was created


def test_a_database_without_tables_says_run_init(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    with open_read(f"sqlite:///{tmp_path / 'empty.db'}") as db, pytest.raises(ReadError, match="consentgate init"):
        list_api_keys(db)


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:////abs/dir/consentgate.db", "/abs/dir/consentgate.db"),
    ("sqlite:///rel/consentgate.db", "rel/consentgate.db"),
    ("sqlite+pysqlite:////abs/x.db?timeout=5", "/abs/x.db"),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test", None),
    ("postgresql://u@h/db?options=-csearch_path%3Dx", None),
])
def test_sqlite_path(url: str, path: str | None) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///"])
def test_sqlite_path_refuses_a_database_with_nothing_to_list(url: str) -> None:
    with pytest.raises(ReadError):
        sqlite_path(url)



def test_a_grant_after_a_policy_edit_validates_without_sqlalchemy(populated: tuple[Path, dict[str, str]]) -> None:
    """The first grant after the bundle changed validates it (the policy schema and loader) — and still imports
    no SQLAlchemy, bootstrap or model: it writes the cache of the bundle's uses again."""
    tmp, env = populated
    cache = tmp / "data" / "cache" / "policy-uses.json"
    cache.unlink(missing_ok=True)
    args = ["registry", "grant", (tmp / "subject_id").read_text(), "--tenant", "demo", "--use", "img2img"]
    rc, mods, output = _modules_after(args, env)
    assert rc == 0, output
    assert "gateway.policy.loader" in mods  # it did validate the bundle
    assert _loaded(mods, (*MODELS_WEB, "sqlalchemy", "sqlmodel", "gateway.bootstrap", "gateway.policy.manager")) == []
    assert "img2img" in json.loads(cache.read_text())["uses"]


@pytest.mark.parametrize("command", ["check", "release"])
def test_the_http_client_commands_sniff_without_the_media_stack(tmp_path: Path, command: str) -> None:
    """`check|release FILE` read the file's type from its bytes (a video or audio file goes as a job) before they
    upload it: that must not load numpy, Pillow or PyAV — the gateway decodes, the client only sends. Against a
    closed port the command fails (exit 2) after the sniff and the request, so both ran."""
    from classifiers.rayserve.cluster import free_port

    image = tmp_path / "r.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    rc, mods, output = _modules_after([command, str(image), "--url", f"http://127.0.0.1:{free_port()}",
                                       "--api-key", "k"], env)
    assert rc == 2 and "Connection refused" in output, output[-2000:]
    assert "gateway.sniff" in mods  # it did sniff the file
    assert _loaded(mods, ("numpy", "PIL", "av", "cv2", "gateway.media", "gateway.audio", "sqlalchemy")) == [], output
