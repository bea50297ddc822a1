"""Why: the per-request JSON line is what operators index; it must carry the ids, tenant, verdict
and per-stage times of the request it belongs to — also for stages timed in worker threads — and
nothing else (no prompt unless the policy allows it)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from prometheus_client import CollectorRegistry, Histogram

from gateway import requestlog
from gateway.requestlog import JsonFormatter, RequestTrace


def _histogram() -> Histogram:
    return Histogram("t_stage_seconds", "x", ["stage"], registry=CollectorRegistry())


def _captured() -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    requestlog.LOGGER.addHandler(handler)
    requestlog.LOGGER.setLevel(logging.INFO)
    return handler, out


def test_one_json_line_per_request_with_stages_from_threads_and_tasks() -> None:
    hist = _histogram()
    handler, out = _captured()

    async def request(n: int) -> None:
        trace = RequestTrace(request_id=f"req-{n}", route="/v1/check", method="POST")
        token = requestlog.begin(trace)
        try:
            def model() -> None:
                with requestlog.stage(hist, "models"):
                    pass

            await asyncio.to_thread(model)
            with requestlog.stage(hist, "sign"):
                await asyncio.sleep(0)
            requestlog.note_decision(decision_id=f"dec-{n}", tenant=f"t{n}", verdict="allow", use="txt2img",
                                     stage="output", prompt=None)
            requestlog.emit(trace, 200)
        finally:
            requestlog.end(token)

    async def both() -> None:
        await asyncio.gather(request(1), request(2))

    try:
        asyncio.run(both())
    finally:
        requestlog.LOGGER.removeHandler(handler)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert sorted(line["request_id"] for line in lines) == ["req-1", "req-2"]
    for line in lines:
        n = line["request_id"][-1]
        assert line["decision_id"] == f"dec-{n}" and line["tenant"] == f"t{n}" and line["verdict"] == "allow"
        assert set(line["stages_ms"]) == {"models", "sign"} and line["status"] == 200
        assert {"ts", "level", "logger", "ms", "route"} <= set(line) and "prompt" not in line
    counts = {s.labels["stage"]: s.value for s in hist.collect()[0].samples if s.name.endswith("_count")}
    assert counts == {"models": 2.0, "sign": 2.0}


def test_prompt_appears_only_when_noted_and_unknown_fields_never() -> None:
    trace = RequestTrace(request_id="r", route="/v1/check", method="POST")
    trace.decision_ids = ["d1", "d2"]  # a proxied request: input and output decisions
    line = trace.line(403)
    assert line["decision_id"] == ["d1", "d2"] and "prompt" not in line
    trace.prompt = "a cat on a sofa"
    assert trace.line(403)["prompt"] == "a cat on a sofa"


def test_stage_outside_a_request_feeds_only_the_histogram() -> None:
    hist = _histogram()
    assert requestlog.current() is None
    with requestlog.stage(hist, "encode"):
        pass
    requestlog.observe(hist, "video_analysis", 0.5)
    samples = {s.labels["stage"]: s.value for s in hist.collect()[0].samples if s.name.endswith("_count")}
    assert samples == {"encode": 1.0, "video_analysis": 1.0}


def test_other_log_records_become_json_too() -> None:
    record = logging.LogRecord("consentgate.policy", logging.WARNING, __file__, 1, "refused %s", ("x",), None)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "refused x" and payload["level"] == "warning"
    assert payload["logger"] == "consentgate.policy"
