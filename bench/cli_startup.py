"""Why: scripts call the CLI in loops (list keys, verify, grant), so a command that needs no model
must start fast — the goal is < 0.5 s (#22.6). This runs each command as a fresh process N times and
prints the median and best wall time, and the CPU time the process used (user + sys: what the command
costs even when a shared machine stretches its wall time), beside the floor measured in the same run: `python -c pass`
(the interpreter alone), `python -c "import sqlalchemy"` (what a command reading the database through
SQLAlchemy must import) and `python -c "import typer, pydantic"` (the CLI framework: this Typer coerces
every parameter through pydantic), with the ratio to the interpreter. The list commands read through the
DB-API (`gateway/cli/readdb.py`), so on SQLite they import no SQLAlchemy at all; nor, on the default SQLite
data dir, do the audit readers (`audit verify|entries`, `registry uses`: `gateway/audit/sqlite.py` through
`gateway/cli/auditread.py`) or the write commands (`apikey create|restrict|revoke`: `gateway/cli/writekeys.py`;
`registry subject add|grant|revoke`: `gateway/cli/writelite.py`, the registry row and its ledger entry in one
sqlite3 transaction). `registry grant` reads the policy's uses from the cache of the last bundle it validated —
the "(bundle changed)" line removes that cache before each run, i.e. what the first grant after every policy
edit costs. The "(core path)" lines run the same audit readers and registry writes through SQLAlchemy (the
PostgreSQL path, forced on the same SQLite data dir: what these commands cost before the sqlite3 paths) as a
same-run baseline, and the last lines print each command's CPU beside its core path's (`--no-core` skips them).
`registry subject erase` erases a fresh subject on each run, `audit export` rewrites one directory, `policy keygen`
writes a new key each run, `policy sign` signs a copy of the bundle. The commands exempt from the goal (docs/cli.md
"Start-up time") run last, `--n-exempt` times (default 2): `policy validate` and `policy explain` build the model
adapters. `check`, `release` and `provenance verify` are HTTP clients, timed against a closed port (exit 2 / 3:
their start-up, the sniff of the file and the refused connection).
`registry retention run [--dry-run]` runs through sqlite3
(`gateway/cli/retentionlite.py`, the policy's rules cached), its core path through the registry service.
The "(bundle changed)" retention line removes the rules' cache first: the first run after a policy edit, which
validates the bundle (as every run did before). `--only TEXT` times the floor and the commands whose label
contains TEXT (e.g. `--only retention`).

    .venv/bin/python bench/cli_startup.py [--n 7] [--no-core] [--only TEXT]

The machine may be shared: compare the columns of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]
# The same main() with the sqlite3 paths switched off: the audit readers (witness and export too) open `AuditLog`,
# the registry writes go through `gateway.cli.writedb` (SQLAlchemy Core) and an erasure through the registry service
# — as on PostgreSQL, and as on SQLite before those paths; `keys init` calls `init_dev_pki` (the provenance package).
CORE = [sys.executable, "-c", "from contextlib import contextmanager\n"
        "import gateway.cli.auditread as r, gateway.cli.writelite as w\n"
        "r.sqlite_log = lambda settings, readonly=True: None\n"
        "def none(settings):\n    yield None\n"
        "w.open_lite_writer = contextmanager(none)\n"
        "import gateway.cli.keys as k\n"
        "k._existing_pki = lambda directory, alg: None\n"
        "from gateway.cli import main; main()"]


CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once
# A 4x4 mid-grey PNG (benign test content), for the HTTP clients' FILE argument.
GREY_PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000040000000408000000008c9ac1a20000000e49444154789c"
                         "6368000206540200501408017025ae3f0000000049454e44ae426082")


def timed(cmd: list[str], n: int, env: dict[str, str], pools: dict[str, list[str]]) -> tuple[float, float, float]:
    """(median wall s, best wall s, median CPU s of the process: user + sys). On a loaded machine the
    wall time stretches with the run queue; the CPU time is what the command itself costs. A `<GRANT>`
    argument takes the next unrevoked grant of POOLS on each run (a revocation appends its ledger entry
    only once: revoking one grant n times would time the no-op), `<ERASE>` the next subject not erased,
    and `<N>` in an argument is the run's number."""
    runs, cpu = [], []
    for i in range(n):
        run = [pools[a].pop() if a in pools else a.replace("<N>", str(i)) for a in cmd]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(run, env=env, cwd=REPO, capture_output=True)
        runs.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode not in (0, 1, 2, 3):
            raise SystemExit(f"{cmd}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}")
    return statistics.median(runs), min(runs), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=7)
    parser.add_argument("--no-core", action="store_true", help="Skip the SQLAlchemy (core path) baselines.")
    parser.add_argument("--n-exempt", type=int, default=2, help="Runs of each command exempt from the goal.")
    parser.add_argument("--only", help="Time only the commands whose label contains this text (and the floor).")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run([*CLI, "init", "--data-dir", str(data)], env=env, cwd=REPO, check=True, capture_output=True)
        added = subprocess.run([*CLI, "registry", "subject", "add", "Ada Example", "--data-dir", str(data)], env=env,
                               cwd=REPO, check=True, capture_output=True, text=True)
        sid = json.loads(added.stdout)["id"]
        granted = subprocess.run([*CLI, "registry", "grant", sid, "--tenant", "demo", "--use", "txt2img", "--data-dir",
                                  str(data)], env=env, cwd=REPO, check=True, capture_output=True, text=True)
        gid = json.loads(granted.stdout)["id"]
        fresh = [gid] + [json.loads(subprocess.run(
            [*CLI, "registry", "grant", sid, "--tenant", "demo", "--use", "txt2img", "--data-dir", str(data)], env=env,
            cwd=REPO, check=True, capture_output=True, text=True).stdout)["id"] for _ in range(2 * args.n - 1)]
        subjects = [json.loads(subprocess.run(
            [*CLI, "registry", "subject", "add", f"Erase {i}", "--data-dir", str(data)], env=env, cwd=REPO, check=True,
            capture_output=True, text=True).stdout)["id"] for i in range(2 * args.n)]
        pools = {"<GRANT>": fresh, "<ERASE>": subjects}
        shutil.copytree(REPO / "policies", Path(tmp) / "policies")
        subprocess.run([*CLI, "policy", "keygen", "--out", str(Path(tmp) / "sign.key")], env=env, cwd=REPO,
                       check=True, capture_output=True)
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"stage": "input", "use": "txt2img", "prompt": "a watercolour of a lighthouse"}))
        image = Path(tmp) / "grey.png"
        image.write_bytes(GREY_PNG)
        made = subprocess.run([*CLI, "apikey", "create", "--tenant", "demo", "--role", "generator", "--data-dir",
                               str(data)], env=env, cwd=REPO, check=True, capture_output=True, text=True)
        kid = made.stdout.split("_")[1]
        grant = ["registry", "grant", sid, "--tenant", "demo", "--use", "txt2img", "--data-dir", str(data)]
        cache = str(data / "cache" / "policy-uses.json")
        uncached_grant = [sys.executable, "-c", f"import os, sys\nif os.path.exists({cache!r}): os.unlink({cache!r})\n"
                          f"sys.argv[1:] = {grant!r}\nfrom gateway.cli import main; main()"]
        rcache = str(data / "cache" / "policy-retention.json")
        uncached_retention = [sys.executable, "-c", f"import os, sys\nif os.path.exists({rcache!r}): "
                              f"os.unlink({rcache!r})\nsys.argv[1:] = "
                              f"{['registry', 'retention', 'run', '--dry-run', '--data-dir', str(data)]!r}\n"
                              "from gateway.cli import main; main()"]
        commands: list[tuple[str, list[str]]] = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ("python -c 'import sqlalchemy'", [sys.executable, "-c", "import sqlalchemy"]),
            ("python -c 'import typer, pydantic'", [sys.executable, "-c", "import typer, pydantic"]),
            ("consentgate --help", [*CLI, "--help"]),
            ("consentgate apikey list", [*CLI, "apikey", "list", "--data-dir", str(data)]),
            ("consentgate apikey list (no data dir)", [*CLI, "apikey", "list", "--data-dir", str(data / "none")]),
            ("consentgate registry subject list", [*CLI, "registry", "subject", "list", "--data-dir", str(data)]),
            ("consentgate audit verify", [*CLI, "audit", "verify", "--data-dir", str(data)]),
            ("consentgate policy schema", [*CLI, "policy", "schema"]),
            ("consentgate registry subject show", [*CLI, "registry", "subject", "show", sid, "--data-dir", str(data)]),
            ("consentgate registry uses SUBJECT", [*CLI, "registry", "uses", sid, "--data-dir", str(data)]),
            ("consentgate audit entries", [*CLI, "audit", "entries", "--limit", "5", "--data-dir", str(data)]),
            ("consentgate apikey create", [*CLI, "apikey", "create", "--tenant", "demo", "--role", "generator",
                                           "--data-dir", str(data)]),
            ("consentgate apikey restrict", [*CLI, "apikey", "restrict", kid, "--uses", "txt2img,img2img",
                                             "--data-dir", str(data)]),
            ("consentgate apikey revoke", [*CLI, "apikey", "revoke", kid, "--data-dir", str(data)]),
            ("consentgate registry subject add", [*CLI, "registry", "subject", "add", "Bo Example", "--data-dir",
                                                  str(data)]),
            ("consentgate registry grant", [*CLI, *grant]),
            ("consentgate registry grant (bundle changed)", uncached_grant),
            ("consentgate registry revoke", [*CLI, "registry", "revoke", "<GRANT>", "--data-dir", str(data)]),
            ("consentgate registry subject erase", [*CLI, "registry", "subject", "erase", "<ERASE>", "--yes",
                                                    "--data-dir", str(data)]),
            ("consentgate audit export", [*CLI, "audit", "export", "--out", str(Path(tmp) / "export"), "--data-dir",
                                          str(data)]),
            ("consentgate audit witness", [*CLI, "audit", "witness", str(data), "--state", str(Path(tmp) / "w.json"),
                                           "--key", str(data / "keys" / "audit_ed25519.key")]),
            ("consentgate keys init (initialised)", [*CLI, "keys", "init", "--data-dir", str(data)]),
            ("consentgate policy test", [*CLI, "policy", "test", str(Path(tmp) / "policies")]),
            ("consentgate policy keygen", [*CLI, "policy", "keygen", "--out", str(Path(tmp) / "k<N>.key")]),
            ("consentgate policy sign", [*CLI, "policy", "sign", str(Path(tmp) / "policies"), "--key",
                                         str(Path(tmp) / "sign.key")]),
            ("consentgate registry retention run --dry-run", [*CLI, "registry", "retention", "run", "--dry-run",
                                                             "--data-dir", str(data)]),
            ("consentgate registry retention run", [*CLI, "registry", "retention", "run", "--data-dir", str(data)]),
            ("consentgate registry retention run --dry-run (bundle changed)", uncached_retention),
        ]
        commands += [  # HTTP clients: their start-up, the sniff of FILE and a refused connection
            ("consentgate check (HTTP client, no server)", [*CLI, "check", str(image), "--use", "txt2img", "--url",
                                                           CLOSED, "--api-key", "cg_x_y"]),
            ("consentgate release (HTTP client, no server)", [*CLI, "release", str(image), "--use", "txt2img",
                                                             "--url", CLOSED, "--api-key", "cg_x_y"]),
            ("consentgate provenance verify (HTTP client, no server)", [*CLI, "provenance", "verify", str(image),
                                                                       "--url", CLOSED, "--api-key", "cg_x_y"]),
        ]
        exempt: list[tuple[str, list[str]]] = [
            ("exempt: policy explain", [*CLI, "policy", "explain", "--request", str(request)]),
            ("exempt: policy validate", [*CLI, "policy", "validate"]),
        ]
        twins = ("registry uses SUBJECT", "audit entries", "audit verify", "registry subject add", "registry grant",
                 "registry revoke", "registry subject erase", "audit export", "audit witness",
                 "keys init (initialised)", "registry retention run --dry-run", "registry retention run")
        if not args.no_core:
            commands += [(f"consentgate {label.removeprefix('consentgate ')} (core path)", [*CORE, *cmd[len(CLI):]])
                         for label, cmd in list(commands) if label.removeprefix("consentgate ") in twins]
        script = Path(sys.executable).with_name("consentgate")
        if script.is_file():  # the console script: the same main(), behind the entry-point wrapper
            commands.append(("consentgate apikey list (console script)",
                             [str(script), "apikey", "list", "--data-dir", str(data)]))
        if args.only:  # the floor, and the commands (and their twins) whose label contains the text
            commands = [c for i, c in enumerate(commands) if i == 0 or args.only in c[0]]
            exempt = [c for c in exempt if args.only in c[0]]
        rows = [(label, *timed(cmd, args.n, env, pools)) for label, cmd in commands]
        rows += [(label, *timed(cmd, args.n_exempt, env, pools)) for label, cmd in exempt]
    floor = rows[0][2]
    print(f"{'command':52} {'median s':>9} {'best s':>8} {'CPU s':>7} {'best / python -c pass':>22}")
    for label, median, best, cpu in rows:
        print(f"{label:52} {median:9.3f} {best:8.3f} {cpu:7.3f} {best / floor:21.1f}x")
    goal = [(label, median, cpu) for label, median, _, cpu in rows if label.startswith("consentgate")
            and not label.endswith("(core path)")]
    print("goal < 0.5 s: median wall " + ", ".join(
        f"{label.removeprefix('consentgate ')} {'met' if median < 0.5 else 'NOT met'}" for label, median, _ in goal))
    print("goal < 0.5 s: CPU        " + ", ".join(
        f"{label.removeprefix('consentgate ')} {'met' if cpu < 0.5 else 'NOT met'}" for label, _, cpu in goal))
    by_label = {label: cpu for label, _, _, cpu in rows}
    for label, _, _, cpu in rows:
        core = by_label.get(f"{label} (core path)")
        if core:
            name = label.removeprefix("consentgate ")
            print(f"{name:32} CPU {cpu:.3f} s vs core path {core:.3f} s: {cpu / core:.2f}x")
    load = os.getloadavg()[0]
    print(f"(n={args.n} runs each, {os.cpu_count()} cores, load average {load:.1f}; CPU s = median user+sys of the "
          "process; goal: model-free commands < 0.5 s)")


if __name__ == "__main__":
    main()
