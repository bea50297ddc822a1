"""Why: the audit log sits on every decision's path; this measures appends/s (1 and 8 threads on
SQLite and PostgreSQL, 2 and 4 processes on PostgreSQL), inclusion-proof latency and full verification
at N entries, each next to the raw floors measured in the same run (Ed25519 signs/s, SHA-256 leaf
hashes/s) and the ratio; the `goal #21.1` lines put the issue's targets (>= 10k appends/s with 8
writers on SQLite and from 4 processes on PostgreSQL) beside the measured rate, say met or not, and
add the baseline measured in the same run: the same writers storing each record durably in a plain
table with the same columns and indexes (one INSERT + COMMIT per record, no log). Process runs
are timed from a common start, after each child's set-up.

    .venv/bin/python bench/audit.py                 # N = 1,000,000
    .venv/bin/python bench/audit.py --n 20000       # quick run
    --pg URL (default $CONSENTGATE_TEST_DATABASE_URL or the local test database; 'none' skips)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    make_url,
    text,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit import (  # noqa: E402
    AuditLog,
    CheckpointSigner,
    audit_metadata,
    canonical_json,
    generate_signing_key,
    leaf_hash,
    load_signer,
    verify_database,
    verify_inclusion,
)

ORIGIN = "bench.consentgate/audit"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def record(i: int) -> dict[str, object]:
    # Decision ids are random 128-bit values in the gateway: scattered, like these (sequential ids
    # would land every lookup posting at the end of one B-tree range and flatter the figures).
    return {
        "decision_id": hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest(),
        "kind": "decision", "decision": ("allow", "deny")[i % 2],
        "request_id": uuid.UUID(int=i * 7).hex, "stage": "output", "use": "txt2img",
        "tenant": f"t{i % 10}", "end_user": f"u-{i % 1000}", "created_at": "2026-11-26T14:00:00.123456Z",
        "policy": {"name": "default", "digest": "sha256:" + "ab" * 32},
        "reasons": [{"rule": "nsfw", "outcome": "allow", "detail": "score 0.01"}],
        "media": [{"sha256": "cd" * 32, "type": "image/png", "width": 1024, "height": 1024}],
        "findings": {
            "nsfw": [{"media_index": 0, "model": "nudenet", "model_version": "abc", "scores": {"x": 0.0123},
                      "labels": []}],
            "faces": [{"media_index": 0, "bbox": [1, 2, 3, 4], "det_score": 0.99,
                       "matches": [{"subject_id": f"s{i % 97}", "similarity": 0.9}],
                       "consent": {"grant_id": "g1", "state": "granted"}}]},
        "obligations": ["watermark", "sign"], "outputs": [{"media_index": 0, "sha256": "ef" * 32}],
    }


def floors() -> tuple[float, float]:
    signer = CheckpointSigner.generate(ORIGIN)
    n = 5000
    t = time.perf_counter()
    for i in range(n):
        signer.sign_note(f"{ORIGIN}\n{i}\nAAAA\n")
    signs = n / (time.perf_counter() - t)
    data = canonical_json(record(1))
    n = 200_000
    t = time.perf_counter()
    for _ in range(n):
        leaf_hash(data)
    hashes = n / (time.perf_counter() - t)
    print(f"floor  Ed25519 signs/s: {signs:,.0f}   SHA-256 leaf hashes/s ({len(data)} B records): "
          f"{hashes:,.0f}")
    return signs, hashes


def new_log(engine: Engine, signer: CheckpointSigner, prefix: str, index_interval_ms: int = 500) -> AuditLog:
    # By default the lookup indexer runs in the background, as in the gateway.
    log = AuditLog(engine, signer, origin=ORIGIN, table_prefix=prefix, checkpoint_every=256,
                   checkpoint_interval_ms=1000, index_interval_ms=index_interval_ms)
    log.create_tables()
    return log


GOAL_APPENDS_S = 10_000  # issue #21.1: >= 10k appends/s, 8 writers on SQLite and 4 processes on PostgreSQL
# What that rate leaves per append on this machine's 2 cores, clients and database server together.
CPU_BUDGET_US = (os.cpu_count() or 2) * 1e6 / GOAL_APPENDS_S


@dataclass
class Run:
    """One throughput run: appends/s, the CPU it cost per append (this process; `server_us`: the
    database backends it used, PostgreSQL on this machine only) and the batch size achieved."""

    rate: float
    client_us: float = 0.0
    server_us: float | None = None
    batch: float | None = None


def run_appends(log: AuditLog, threads: int, count: int) -> Run:
    per = max(1, count // threads)

    def work(t: int) -> None:
        for i in range(per):
            log.append(record(t * per + i))

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    batches, entries = log.batch_stats()
    cpu = time.process_time()
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    batches, entries = (a - b for a, b in zip(log.batch_stats(), (batches, entries), strict=True))
    n = per * threads
    return Run(n / elapsed, cpu / n * 1e6, None, entries / batches if batches else None)


def appends_per_s(log: AuditLog, threads: int, count: int) -> float:
    return run_appends(log, threads, count).rate


def backend_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of PostgreSQL backends by pid, from /proc (same machine only);
    pids that are gone or unreadable are left out."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def backends(engine: Engine, app: str) -> list[int]:
    with engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(text("SELECT pid FROM pg_stat_activity WHERE application_name = :a"),
                                                {"a": app})]


def tagged(url: str, app: str) -> str:
    """`url` with a PostgreSQL application_name, so the run's backends can be found and timed."""
    return make_url(url).update_query_dict({"application_name": app}).render_as_string(hide_password=False)


def cost(label: str, run: Run) -> None:
    """Where the CPU of a throughput run went, per append, beside the budget the goal leaves."""
    server = ("" if run.server_us is None
              else f" + database backends {run.server_us:,.0f} = {run.client_us + run.server_us:,.0f}")
    batch = "" if run.batch is None else f"   mean batch {run.batch:.1f}"
    print(f"{'  cost: ' + label:<46} CPU/append: client {run.client_us:,.0f}{server} us   "
          f"(budget at {GOAL_APPENDS_S:,}/s on {os.cpu_count()} cores: {CPU_BUDGET_US:,.0f} us){batch}")


def report(label: str, value: float, floor: float, unit: str = "appends/s") -> float:
    print(f"{label:<46} {value:>12,.0f} {unit}   floor {floor:>12,.0f}   ratio {value / floor:.4f}")
    return value


def goal(label: str, value: float, floor: float, baseline: float | None = None) -> None:
    """An issue #21.1 goal line beside the measured value and the floor (hash every leaf), and the
    baseline measured in the same run: the same writers storing each record durably in a plain
    table (one INSERT + COMMIT per append, same columns and indexes, no log)."""
    verdict = "MET" if value >= GOAL_APPENDS_S else "NOT MET"
    extra = ("" if baseline is None
             else f"   baseline (plain INSERT+COMMIT) {baseline:,.0f}/s, ratio {value / baseline:.2f}")
    print(f"{'goal #21.1: ' + label:<46} {value:>12,.0f} appends/s   goal {GOAL_APPENDS_S:>8,}   floor "
          f"{floor:>12,.0f}   {verdict} ({value / GOAL_APPENDS_S:.2f} of the goal){extra}")


def plain_table(engine: Engine, prefix: str) -> Table:
    """The baseline's table: the log's entry columns and query indexes, an auto-assigned key."""
    table = Table(
        f"{prefix}plain", MetaData(),
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
        Column("leaf_hash", LargeBinary, nullable=False), Column("record", Text, nullable=False),
        Column("kind", Text, nullable=False), Column("tenant", Text), Column("use", Text),
        Column("decision", Text), Column("time_us", BigInteger), Column("decision_id", Text),
        Index(f"ix_{prefix}plain_kind", "kind", "id"), Index(f"ix_{prefix}plain_decision", "decision", "id"),
        Index(f"ix_{prefix}plain_use", "use", "id"), Index(f"ix_{prefix}plain_time", "time_us"),
    )
    table.metadata.create_all(engine)
    return table


def plain_run(engine: Engine, table: Table, threads: int, count: int, shared: bool = False) -> Run:
    """Baseline: each writer thread, on its own connection, serialises its record (orjson), hashes
    it and INSERTs + COMMITs it (durable as the engine says) — what storing each decision costs
    with no sequencing, no tree, no batching. `shared`: more writers than connections (4 x 64 on
    PostgreSQL, whose server takes 100): each row checks a connection out of the pool and back,
    as a request of the gateway would (a writer holding one for all its rows left the others
    waiting for the pool, and under load past its 30 s timeout)."""
    ph = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} (leaf_hash, record, kind, tenant, use, decision, time_us, decision_id) "  # noqa: S608
           f"VALUES ({', '.join([ph] * 8)})")
    per = max(1, count // threads)
    def insert(conn: Any, cur: Any, rec: dict[str, Any]) -> None:
        data = orjson.dumps(rec, option=orjson.OPT_SORT_KEYS)
        cur.execute(sql, (hashlib.sha256(b"\x00" + data).digest(), data.decode(), rec["kind"],
                                    rec["tenant"], rec["use"], rec["decision"], 0, rec["decision_id"]))
        conn.commit()

    def work(t: int) -> None:
        if shared:
            for i in range(per):
                conn = engine.raw_connection()
                try:
                    insert(conn, conn.cursor(), record(t * per + i))
                finally:
                    conn.close()
            return
        conn = engine.raw_connection()
        try:
            cur = conn.cursor()
            for i in range(per):
                insert(conn, cur, record(t * per + i))
        finally:
            conn.close()

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    cpu = time.process_time()
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return Run(per * threads / elapsed, (time.process_time() - cpu) / (per * threads) * 1e6)


def plain_per_s(engine: Engine, table: Table, threads: int, count: int) -> float:
    return plain_run(engine, table, threads, count).rate


def bench_engine(name: str, engine: Engine, count: int, hash_floor: float, app: str | None = None,
                 rounds8: int = 1) -> dict[int, float]:
    """`app`: the PostgreSQL application_name of `engine`'s connections (their CPU is timed).
    `rounds8`: the 8-writer run (a goal line) is repeated and its median kept, as its baseline's is."""
    signer = CheckpointSigner.generate(ORIGIN)
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    log = new_log(engine, signer, prefix)
    rates: dict[int, float] = {}
    try:
        pids = backends(engine, app) if app else []
        for threads in (1, 8, 64):
            n = count // 4 if threads == 1 else count
            before = backend_cpu_s(pids)
            runs = sorted((run_appends(log, threads, n) for _ in range(rounds8 if threads == 8 and not app else 1)),
                          key=lambda r: r.rate)
            run = runs[len(runs) // 2]
            if len(runs) > 1:
                print(f"{name}: {threads} threads, {len(runs)} runs: {' / '.join(f'{r.rate:,.0f}' for r in runs)} "
                      f"appends/s ({' / '.join(f'{r.client_us:,.0f}' for r in runs)} us CPU per append), "
                      f"the median below")
            if app:  # the pool may have opened backends meanwhile: those count from zero
                pids = backends(engine, app)
                after = backend_cpu_s(pids)
                done = max(1, n // threads) * threads
                run.server_us = sum(v - before.get(p, 0.0) for p, v in after.items()) / done * 1e6
            rates[threads] = report(f"{name}: append, {threads} thread(s)", run.rate, hash_floor)
            cost(f"{threads} thread(s)", run)
        batch = [record(i) for i in range(1000)]
        start = time.perf_counter()
        for _ in range(max(1, count // 1000)):
            log.append_many(batch)
        report(f"{name}: append_many (1000 per call)", max(1, count // 1000) * 1000 /
               (time.perf_counter() - start), hash_floor)
    finally:
        log.close()
        if engine.dialect.name != "sqlite":
            audit_metadata(prefix).drop_all(engine)
    return rates


def bench_processes(url: str, count: int, hash_floor: float, processes: int = 2, threads: int = 8,
                    plain: bool = False) -> float:
    """Appends/s of `processes` separate processes x `threads` threads on one PostgreSQL log,
    timed from a common start (each child sets up, says so, and waits for "go") to the last
    child's end: process start-up and imports are not appends (the first version of this bench
    counted them, ~1 s per child on a loaded machine, and understated the rate). Also prints the
    CPU per append of the children and of their database backends (found by application_name),
    and the batch size the children's logs achieved."""
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    app = prefix.rstrip("_")
    engine = create_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "k.pem"
        generate_signing_key(key)
        if plain:
            plain_table(engine, prefix)
        else:
            new_log(engine, load_signer(key, ORIGIN), prefix).close()
        per = count // processes
        args = [sys.executable, __file__, "--child", tagged(url, app), prefix, str(key), str(per), str(threads),
                "plain" if plain else "log"]
        children = [subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
                    for _ in range(processes)]
        for c in children:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        before = backend_cpu_s(backends(engine, app))
        start = time.time()
        for c in children:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        ends = [c.stdout.readline().split() for c in children if c.stdout is not None]
        after = backend_cpu_s(backends(engine, app))  # before the children close their connections
        for c in children:
            c.communicate("bye\n")
        elapsed = max(float(e[1]) for e in ends) - start
    n = per * processes
    rate = n / elapsed
    batches, entries = sum(int(e[3]) for e in ends), sum(int(e[4]) for e in ends)
    server_s = sum(v - before.get(p, 0.0) for p, v in after.items()) if after else None
    run = Run(rate, sum(float(e[2]) for e in ends) / n * 1e6, None if server_s is None else server_s / n * 1e6,
              entries / batches if batches else None)
    if plain:
        print(f"{'postgresql: baseline, plain INSERT+COMMIT, ' + str(processes) + 'x' + str(threads):<46} "
              f"{rate:>12,.0f} rows/s")
        cost(f"baseline {processes}x{threads}", run)
        Table(f"{prefix}plain", MetaData()).drop(engine)
    else:
        report(f"postgresql: append, {processes} processes x {threads} threads", rate, hash_floor)
        cost(f"{processes} processes x {threads} threads", run)
        audit_metadata(prefix).drop_all(engine)
    engine.dispose()
    return rate


def child(url: str, prefix: str, key: str, count: int, threads: int = 8, mode: str = "log") -> None:
    """One process of `bench_processes`: "ready", wait for "go", append, print
    "end <time> <CPU s> <batches> <entries>", wait for "bye" (the parent times our backends
    while they are still there), close."""
    if mode == "plain":
        # At most 15 connections per process (4 x 64 writers would ask a server that takes 100 for
        # 256), all kept open until "bye" so that the parent can time their backends.
        engine = create_engine(url, pool_size=min(threads, 15), max_overflow=0)
        table = Table(f"{prefix}plain", MetaData(), autoload_with=engine)
        print("ready", flush=True)
        sys.stdin.readline()
        cpu = time.process_time()
        plain_run(engine, table, threads, count, shared=threads > 15)
        print(f"end {time.time()} {time.process_time() - cpu} 0 0", flush=True)
        sys.stdin.readline()
        return
    log = AuditLog(create_engine(url), load_signer(key, ORIGIN), origin=ORIGIN, table_prefix=prefix)
    log.create_tables()
    log.append(record(10**9 + os.getpid()))  # connections open, caches warm: the timed part is appends only
    print("ready", flush=True)
    sys.stdin.readline()
    run = run_appends(log, threads, count)
    n = max(1, count // threads) * threads
    batches = round(n / run.batch) if run.batch else 0
    print(f"end {time.time()} {run.client_us * n / 1e6} {batches} {n if batches else 0}", flush=True)
    sys.stdin.readline()
    log.close()


def split(engines: list[tuple[str, Engine, str | None]], rounds: int = 300) -> None:
    """Where an append's CPU goes, one part at a time (median over `rounds`): building the bench's
    record (the gateway builds its decision anyway), `prepare` (canonical JSON, leaf hash, query
    columns), the group-commit hand-offs of 8 writer threads with the database write replaced by
    nothing, and writing a batch of 8 (`append_many`, client minus `prepare`; PostgreSQL also its
    backends, flush barrier included)."""
    from gateway.audit.canonical import prepare

    def median_us(fn: Callable[[int], object], n: int = rounds) -> float:
        times = []
        for i in range(n):
            t = time.process_time()
            fn(i)
            times.append(time.process_time() - t)
        return statistics.median(times) * 1e6

    recs = [record(i) for i in range(rounds)]
    build = median_us(record)
    prep = median_us(lambda i: prepare(recs[i]))
    with tempfile.TemporaryDirectory() as tmp:
        log = new_log(create_engine(f"sqlite:///{tmp}/split.db"), CheckpointSigner.generate(ORIGIN), "split_", 0)
        log._write_batch = lambda items: (0, None, 0)  # type: ignore[method-assign]  # hand-offs only
        handoff = run_appends(log, 8, 16_000).client_us - build - prep
        log.close()
    print(f"{'split: build the record (bench)':<46} {build:>9.1f} us/append")
    print(f"{'split: prepare (canonical JSON, hash, columns)':<46} {prep:>9.1f} us/append")
    print(f"{'split: group-commit hand-offs, 8 threads':<46} {handoff:>9.1f} us/append")
    for name, engine, app in engines:
        prefix = f"split_{uuid.uuid4().hex[:8]}_"
        log = new_log(engine, CheckpointSigner.generate(ORIGIN), prefix, 0)
        try:
            log.append(record(0))
            batches = [[record(8 * b + i) for i in range(8)] for b in range(rounds)]
            pids = backends(engine, app) if app else []
            before = backend_cpu_s(pids)
            def write(b: int, log: AuditLog = log, batches: list[list[dict[str, object]]] = batches) -> object:
                return log.append_many(batches[b])

            client = median_us(write) / 8 - prep
            server = ""
            if app:
                after = backend_cpu_s(backends(engine, app))
                server_us = sum(v - before.get(p, 0.0) for p, v in after.items()) / (8 * rounds) * 1e6
                server = f"   database backends {server_us:.1f} us/append (mean)"
            print(f"{'split: ' + name + ': write a batch of 8':<46} {client:>9.1f} us/append client{server}")
        finally:
            log.close()
            if engine.dialect.name != "sqlite":
                audit_metadata(prefix).drop_all(engine)
    print(f"{'split: budget at 10k appends/s':<46} {CPU_BUDGET_US:>9.1f} us/append ({os.cpu_count()} cores, "
          f"clients and database together)")


def bench_scale(n: int, sign_floor: float, hash_floor: float, workers: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scale.db")
        signer = CheckpointSigner.generate(ORIGIN)
        log = new_log(engine, signer, "audit_", index_interval_ms=0)  # indexed below, timed on its own
        batch = 10_000
        start = time.perf_counter()
        done = 0
        while done < n:
            size = min(batch, n - done)
            log.append_many([record(done + i) for i in range(size)])
            done += size
        fill = n / (time.perf_counter() - start)
        report(f"sqlite: fill {n:,} with append_many", fill, hash_floor)
        start = time.perf_counter()
        while log.index_pending(max_entries=50_000):
            pass
        report(f"sqlite: lookup postings for {n:,} (indexer)", n / (time.perf_counter() - start), hash_floor,
               unit="entries/s")
        cp = log.publish_checkpoint()
        rng = random.Random(1)
        times = []
        for _ in range(1000):
            index = rng.randrange(n)
            t = time.perf_counter()
            proof = log.inclusion_proof(index, cp.tree_size)
            times.append(time.perf_counter() - t)
            verify_inclusion(index, cp.tree_size, proof.leaf_hash, proof.hashes, cp.root_hash)
        p50, p99 = statistics.median(times) * 1e3, sorted(times)[989] * 1e3
        floor_ms = 1e3 / sign_floor
        print(f"{'inclusion proof at ' + format(n, ',') + ' (p50 / p99)':<46} {p50:>9.3f} / {p99:.3f} ms"
              f"   floor (one Ed25519 sign) {floor_ms:.3f} ms   ratio {p50 / floor_ms:.1f}")
        start = time.perf_counter()
        result = verify_database(engine, signer.vkey, workers=workers)
        elapsed = time.perf_counter() - start
        assert result.ok, result.message
        floor_s = n / hash_floor
        label = f"verify_database at {n:,} ({'auto' if workers is None else workers} proc)"
        print(f"{label:<46} {elapsed:>9.1f} s   floor (hash every leaf) "
              f"{floor_s:.2f} s   ratio {elapsed / floor_s:.1f}   ({result.checkpoints} checkpoints)")
        log.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="entries for the proof/verify run")
    parser.add_argument("--appends", type=int, default=4000, help="appends per throughput run")
    parser.add_argument("--workers", type=int, default=1,
                        help="verify processes (0: auto; on 2 busy cores 1 was fastest)")
    parser.add_argument("--pg", default=os.environ.get("CONSENTGATE_TEST_DATABASE_URL", DEFAULT_PG))
    parser.add_argument("--split-only", action="store_true", help="only the per-append CPU split")
    args = parser.parse_args()
    from gateway.db import make_engine

    pg: Engine | None = None
    if args.pg != "none":
        try:
            pg = create_engine(args.pg)
            with pg.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - report and go on without PostgreSQL
            print(f"postgresql skipped: {exc.__class__.__name__}")
            pg = None
    with tempfile.TemporaryDirectory() as tmp:
        engines: list[tuple[str, Engine, str | None]] = [
            ("sqlite (gateway engine)", make_engine(f"sqlite:///{tmp}/split.db"), None)]
        if pg is not None:
            app = f"bench_{uuid.uuid4().hex[:8]}"
            engines.append(("postgresql", create_engine(tagged(args.pg, app)), app))
        split(engines)
    if args.split_only:
        return
    sign_floor, hash_floor = floors()
    with tempfile.TemporaryDirectory() as tmp:
        bench_engine("sqlite", create_engine(f"sqlite:///{tmp}/bench.db"), args.appends, hash_floor)
    with tempfile.TemporaryDirectory() as tmp:
        # The engine the gateway really uses (gateway.db.make_engine): WAL with synchronous=NORMAL —
        # a commit survives a process crash (kill -9 test) but may be lost on power loss.
        gw_engine = make_engine(f"sqlite:///{tmp}/gw.db")
        gw_rates = bench_engine("sqlite (gateway engine, WAL+NORMAL)", gw_engine, args.appends, hash_floor,
                                rounds8=3)
        # Three baseline runs, the median kept: eight SQLite writers that meet the write lock wait
        # in SQLite's busy handler (sleeps of 1, 2, 5, 10 ms ...), and one run of this baseline
        # measured anywhere between 5.9k and 18.8k rows/s on the same quiet machine (the log's
        # own rate moved far less), which is what made the ratio look like a regression.
        table = plain_table(gw_engine, "bench_")
        runs = sorted((plain_run(gw_engine, table, 8, args.appends) for _ in range(3)), key=lambda r: r.rate)
        baseline = runs[1]
        plain = baseline.rate
        print(f"{'sqlite (gateway engine): baseline, plain INSERT+COMMIT, 8 threads':<46} {plain:>12,.0f} rows/s"
              f"   (median of {' / '.join(f'{r.rate:,.0f}' for r in runs)})")
        cost("baseline, 8 threads", baseline)
    goal("sqlite (gateway engine), 8 writers", gw_rates[8], hash_floor, plain)
    if pg is not None:
        app = f"bench_{uuid.uuid4().hex[:8]}"
        bench_engine("postgresql", create_engine(tagged(args.pg, app)), args.appends, hash_floor, app)
        bench_processes(args.pg, args.appends, hash_floor)
        goal("postgresql, 4 processes x 8 threads", bench_processes(args.pg, args.appends, hash_floor, 4),
             hash_floor, bench_processes(args.pg, args.appends, hash_floor, 4, plain=True))
        # Gateway replicas serve many requests at once (uvicorn's thread pool: 40): with more
        # concurrent appenders per process each batch carries more entries.
        goal("postgresql, 4 processes x 64 threads",
             bench_processes(args.pg, args.appends * 4, hash_floor, 4, threads=64), hash_floor,
             bench_processes(args.pg, args.appends * 4, hash_floor, 4, threads=64, plain=True))
    bench_scale(args.n, sign_floor, hash_floor, args.workers or None)


if __name__ == "__main__":
    main()
