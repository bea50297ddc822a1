"""Why: issue #15.2 binds every face_swap / img2img output to its input decision, looked up in the audit
log (`gateway.bootstrap.AuditDecisions`: the indexed `decision_id` column, scoped to the tenant). That is a
database read on every such output; this measures what it costs, in one run on this machine:

  1. the lookup alone (`find_decision`) on a log of `--entries` decisions, beside the plain read of the
     newest entry by index (`AuditLog.entry`, the baseline), and the ratio;
  2. a whole output check through the app (shipped policy, real models, SQLite): `img2img` output naming its
     input decision (bound) beside the same image as a `txt2img` output (not bound; the shipped policy
     gives both the same output rules), interleaved, medians and the ratio.

    .venv/bin/python bench/input_binding.py [--entries 2000] [--n 15]

No target is set by the issue; the figures go to docs/hardening.md (say "loaded" when the machine is).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def median_ms(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2000, help="decisions in the log before timing")
    parser.add_argument("--n", type=int, default=15, help="timed calls per figure")
    args = parser.parse_args()

    import skimage.data
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.bootstrap import AuditDecisions
    from gateway.settings import Settings

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    with tempfile.TemporaryDirectory(prefix="cg-bind-") as tmp:
        policies = Path(tmp) / "policies"
        policies.mkdir()
        (policies / "default.yaml").write_text((REPO / "policies" / "default.yaml").read_text())
        settings = Settings(data_dir=Path(tmp) / "data", policies_dir=policies, policy_reload_interval_s=5.0)
        with TestClient(create_app(settings)) as client:
            gw = client.app.state.gateway  # type: ignore[attr-defined]
            key = gw.apikeys.create("bench", "generator")[1]
            headers = {"Authorization": f"Bearer {key}"}
            image = jpeg(skimage.data.chelsea())

            def post(request: dict[str, object]) -> dict[str, object]:
                resp = client.post("/v1/check", headers=headers, data={"request": json.dumps(request)},
                                   files={"media": ("c.jpg", image, "image/jpeg")})
                assert resp.status_code == 200, resp.text
                return dict(resp.json())

            source = post({"stage": "input", "use": "img2img"})
            assert source["decision"] == "allow", source
            template = {k: v for k, v in source.items() if k != "audit"}
            print(f"filling the log with {args.entries} decisions ...", flush=True)
            for i in range(args.entries):
                gw.audit.append({**template, "decision_id": f"{i:032x}", "tenant": f"t{i % 7}"})
            lookup = AuditDecisions(gw.audit)
            newest = gw.audit.head().tree_size - 1
            wanted = str(source["decision_id"])
            found_ms = median_ms(lambda: lookup.find_decision(wanted, "bench"), args.n * 4)
            entry_ms = median_ms(lambda: gw.audit.entry(newest), args.n * 4)
            print(f"lookup of the input decision (log of {newest + 1} entries):")
            print(f"  AuditLog.entry(index) (baseline)     {entry_ms:8.2f} ms")
            print(f"  AuditDecisions.find_decision(id)     {found_ms:8.2f} ms   ratio {found_ms / entry_ms:.2f}x")

            bound = {"stage": "output", "use": "img2img", "input_decision_id": wanted}
            plain = {"stage": "output", "use": "txt2img"}
            post(plain), post(bound)  # warm-up
            plain_t: list[float] = []
            bound_t: list[float] = []
            for _ in range(args.n):  # interleaved, so load on the shared machine hits both alike
                for request, times in ((plain, plain_t), (bound, bound_t)):
                    t = time.perf_counter()
                    post(request)
                    times.append(time.perf_counter() - t)
            plain_ms, bound_ms = statistics.median(plain_t) * 1000, statistics.median(bound_t) * 1000
            print("whole output check over the app (chelsea 451x300, shipped policy, SQLite):")
            print(f"  txt2img output, not bound (baseline) {plain_ms:8.1f} ms")
            print(f"  img2img output, bound to its input   {bound_ms:8.1f} ms   ratio {bound_ms / plain_ms:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
