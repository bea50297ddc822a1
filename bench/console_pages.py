"""Why: the console's decisions page must stay responsive on a big log (#19.3: < 1 s per page on 2
cores at 1M entries). This fills a gateway's own audit log with N decision records (default 1M;
varied tenants, verdicts, uses, subjects and times), then times the console's path — `GET
/v1/audit/entries` with the console's session cookie, 50 entries a page, the first page and the next
four by cursor — for each filter the page offers, beside the baseline measured in the same run: the
same query straight on the audit library (`AuditLog.query`, no HTTP, no JSON), and prints the ratio.

    .venv/bin/python bench/console_pages.py              # N = 1,000,000 (fill takes a few minutes)
    .venv/bin/python bench/console_pages.py --n 100000   # quick run
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402

T0 = datetime(2026, 11, 1, tzinfo=UTC)
USES = ("txt2img", "img2img", "face_swap", "txt2video")


def record(i: int) -> dict[str, Any]:
    return {
        "decision_id": hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest(),
        "kind": "decision", "decision": ("allow", "allow", "deny", "review")[i % 4], "stage": "output",
        "use": USES[(i // 4) % len(USES)], "tenant": f"t{i % 10}",
        "created_at": (T0 + timedelta(seconds=2 * i)).isoformat().replace("+00:00", "Z"),
        "policy": {"name": "default", "digest": "ab" * 32},
        "reasons": [{"rule": "default", "outcome": "allow", "detail": "no rule fired"}],
        "media": [{"sha256": "cd" * 32, "type": "image/png", "width": 1024, "height": 1024}],
        "findings": {"faces": [{"media_index": 0, "bbox": [1, 2, 3, 4], "det_score": 0.99,
                                "matches": [{"subject_id": f"s{i % 997}", "similarity": 0.95}],
                                "consent": {"grant_id": "g1", "state": "granted"}}]},
        "outputs": [{"media_index": 0, "sha256": "ef" * 32}],
    } | ({"findings": {"nsfw": [{"media_index": 0, "model": "opennsfw", "adapter": "opennsfw", "model_version": "x",
                                 "scores": {"nsfw": 0.01}, "labels": []}]}} if i % 50 == 0 else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=5, help="pages per filter (first + next by cursor)")
    args = parser.parse_args()
    n = args.n
    mid = (T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
    late = (T0 + timedelta(seconds=int(n * 1.9))).isoformat().replace("+00:00", "Z")
    filters: list[tuple[str, dict[str, str]]] = [
        ("no filter", {}),
        ("verdict = deny", {"decision": "deny"}),
        ("use = face_swap", {"use": "face_swap"}),
        ("tenant = t3", {"tenant": "t3"}),
        ("subject = s42 (1 in 997)", {"subject": "s42"}),
        ("tenant + verdict + use", {"tenant": "t3", "decision": "review", "use": "txt2img"}),
        ("time range (second half)", {"since": mid}),
        ("tenant + time range (last 5%)", {"tenant": "t7", "since": late}),
        ("use that never occurs", {"use": "voice_clone"}),
        ("model = opennsfw (1 in 50)", {"model": "opennsfw"}),
        ("model that never occurs", {"model": "no-such-model"}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        policies = Path(__file__).resolve().parents[1] / "policies"
        settings = Settings(data_dir=Path(tmp) / "data", policies_dir=policies, audit_checkpoint_every=100_000)
        with TestClient(create_app(settings)) as tc:
            gw = tc.app.state.gateway  # type: ignore[attr-defined]
            start = time.perf_counter()
            for lo in range(0, n, 10_000):
                gw.audit.append_many([record(i) for i in range(lo, min(n, lo + 10_000))])
            while gw.audit.index_pending(max_entries=50_000):
                pass
            gw.audit.publish_checkpoint()
            print(f"filled {n:,} entries in {time.perf_counter() - start:.0f} s (shared 2-core machine)")
            _, key = gw.apikeys.create("operator", "auditor")
            assert tc.post("/console/session", json={"api_key": key}).status_code == 200
            print(f"{'filter':<32} {'console page (HTTP, session)':>30} {'AuditLog.query':>18} {'ratio':>7}  rows")
            worst = 0.0
            for label, params in filters:
                http, lib, rows = [], [], 0
                cursor: str | None = None
                for _ in range(args.pages):
                    q = {**params, "limit": "50", **({"cursor": cursor} if cursor else {})}
                    t = time.perf_counter()
                    r = tc.get("/v1/audit/entries", params=q)
                    http.append(time.perf_counter() - t)
                    assert r.status_code == 200, r.text
                    page = r.json()
                    t = time.perf_counter()  # the library has no model filter: its baseline reads unfiltered pages
                    gw.audit.query(**{k: v for k, v in params.items() if k != "model"}, cursor=cursor, limit=50)
                    lib.append(time.perf_counter() - t)
                    rows += len(page["entries"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                h, b = statistics.median(http), statistics.median(lib)
                worst = max(worst, max(http))
                print(f"{label:<32} {h * 1e3:>19.1f} ms p50 {max(http) * 1e3:>6.0f} max {b * 1e3:>10.1f} ms"
                      f" {h / b if b else float('inf'):>7.1f}  {rows}")
            print(f"slowest console page: {worst * 1e3:.0f} ms (target < 1000 ms)")


if __name__ == "__main__":
    main()
