"""Why: issue #15.1 — a long prompt must not stall a replica. Before the fix, a /v1/check with a
16,000-character prompt of one repeated word took 2.1 s (the shipped `minors_sexual` regex backtracks
quadratically on Python's `re`) and `/healthz` on the same replica stalled with it (`decide()` ran on
the event loop). Now prompt-rule regexes run on RE2 and `decide()` runs in a worker thread.

This prints, in one run on this machine:
  1. the shipped rule regexes on the 16k prompt with Python's `re` (the old engine: the baseline)
     beside RE2 (`gateway.decision.patterns.rule_regex`, the engine the gateway uses now), and the ratio;
  2. a real `consentgate serve` replica (default policies of the repo, SQLite, loopback): the latency of
     /v1/check with that prompt (target < 100 ms) and of /healthz polled meanwhile (target < 50 ms),
     beside /healthz on the idle replica.

    .venv/bin/python bench/prompt_stall.py                # 5 long-prompt checks
    .venv/bin/python bench/prompt_stall.py --checks 20 --word teen
    .venv/bin/python bench/prompt_stall.py --baseline-repo /path/to/old/checkout   # the old code's replica too

Exit status 1 when a target is missed (the figures are from a shared 2-core machine: rerun when loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.decision.patterns import rule_regex  # noqa: E402 - after the repo is on the path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shipped_regexes(policies: Path) -> list[str]:
    data = yaml.safe_load((policies / "default.yaml").read_text())
    return [p for rule in data.get("prompt", {}).get("rules", []) for p in rule.get("regexes", [])]


def engines(prompt: str, patterns: list[str]) -> tuple[float, float]:
    """Seconds to run every pattern over `prompt` once: Python `re` (old), RE2 (now)."""
    start = time.perf_counter()
    for p in patterns:
        re.search(p, prompt, flags=re.IGNORECASE)
    old = time.perf_counter() - start
    for p in patterns:
        rule_regex(p)  # compile outside the timing, as the gateway caches compiled rules
    start = time.perf_counter()
    for p in patterns:
        rule_regex(p).search(prompt)
    return old, time.perf_counter() - start


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms  "
            f"(n={len(values)})")


def poll_healthz(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(url + "/healthz").raise_for_status()
            out.append(time.perf_counter() - start)
            time.sleep(0.01)


def replica(code: Path, args: argparse.Namespace, prompt: str
            ) -> tuple[list[float], list[float], list[float], list[float], set[object]]:
    """Latencies on one `consentgate serve` replica running the code of checkout `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}  # and cwd=code: `python -c` puts the cwd first on sys.path
    cmd = [sys.executable, "-c", "from gateway.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="prompt-stall-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run([*cmd, "init", "--data-dir", str(data), "--policies", str(args.policies)],  # noqa: S603
                       check=True, capture_output=True, timeout=300, env=env, cwd=code)
        keys = dict(line.split(" ", 1) for line in (data / "first-run-keys.txt").read_text().splitlines())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(port),  # noqa: S603
                                 "--data-dir", str(data), "--policies", str(args.policies)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=code)
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise RuntimeError((Path(tmp) / "serve.log").read_text()[-3000:])
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the replica did not become ready")
                time.sleep(0.25)
            headers = {"Authorization": f"Bearer {keys['generator']}"}

            def one_check(text: str) -> tuple[float, dict[str, object]]:
                body = {"stage": "input", "use": "txt2img", "prompt": text}
                start = time.perf_counter()
                resp = httpx.post(url + "/v1/check", headers=headers, data={"request": json.dumps(body)}, timeout=60)
                elapsed = time.perf_counter() - start
                resp.raise_for_status()
                return elapsed, resp.json()

            one_check("a cup of coffee on a table")  # warm-up (first calls of the prompt models)
            one_check(prompt)
            short = [one_check("a cup of coffee on a table")[0] for _ in range(args.checks)]
            idle: list[float] = []
            stop = threading.Event()
            poller = threading.Thread(target=poll_healthz, args=(url, stop, idle))
            poller.start()
            time.sleep(1.0)
            stop.set()
            poller.join()

            during: list[float] = []
            checks: list[float] = []
            verdicts: set[object] = set()
            stop = threading.Event()
            poller = threading.Thread(target=poll_healthz, args=(url, stop, during))
            poller.start()
            try:
                for _ in range(args.checks):
                    elapsed, record = one_check(prompt)
                    checks.append(elapsed)
                    verdicts.add(record.get("decision"))
            finally:
                stop.set()
                poller.join()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()

    return short, checks, during, idle, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=5)
    parser.add_argument("--word", default="child", help="the word repeated to 16,000 characters")
    parser.add_argument("--chars", type=int, default=16_000)
    parser.add_argument("--policies", type=Path, default=REPO / "policies")
    parser.add_argument("--baseline-repo", type=Path, default=None,
                        help="also measure a replica running another checkout's code (e.g. the code before the fix)")
    args = parser.parse_args()
    prompt = ((args.word + " ") * (args.chars // (len(args.word) + 1) + 1))[: args.chars]

    patterns = shipped_regexes(args.policies)
    old, new = engines(prompt, patterns)
    print(f"shipped rule regexes ({len(patterns)}) on a {len(prompt)}-char prompt of {args.word!r}:")
    print(f"  Python re (baseline, the old engine): {old * 1000:9.1f} ms")
    print(f"  RE2 (the gateway now):                {new * 1000:9.3f} ms   ratio {old / max(new, 1e-9):,.0f}x")

    ok = True
    for label, code in [("this checkout", REPO)] + ([("baseline checkout", args.baseline_repo)]
                                                    if args.baseline_repo else []):
        short, checks, during, idle, verdicts = replica(code, args, prompt)
        print(f"one replica running {label} ({code}; consentgate serve, default policies, SQLite, loopback;"
              " shared 2-core machine):")
        print(f"  /v1/check, short prompt      {ms(short)}")
        print(f"  /v1/check, 16k prompt        {ms(checks)}   verdicts {sorted(map(str, verdicts))}   target < 100 ms")
        print(f"  /healthz meanwhile           {ms(during)}   target < 50 ms")
        print(f"  /healthz on the idle replica {ms(idle)}")
        met = bool(checks) and max(checks) < 0.100 and bool(during) and max(during) < 0.050
        print("  targets met" if met else "  TARGET MISSED")
        if code == REPO:
            ok = met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
