"""Why: people try the gateway from a shell before they write code against it. These commands
talk to a running gateway (`--url`, `--api-key`; env CONSENTGATE_URL, CONSENTGATE_API_KEY):

    consentgate check FILE [--use U] [--stage S] [--prompt P] [--input-decision ID]   the decision record (JSON)
    consentgate release FILE [--out PATH] [--use U] [--input-decision ID]              the marked, signed file

`--input-decision` names the input check's decision id: required for outputs of face_swap and
img2img, whose consent applies to the reference media (issue #15.2; docs/api.md).
    consentgate provenance verify FILE                           C2PA, watermark, decision

Images go through /v1/check and /v1/release. Videos and audio (sniffed from the bytes) go through
/v1/jobs with a progress bar fed by `GET /v1/jobs/{id}`, so any size or length works. Exit codes: 0 the
decision allows, 1 it denies or sends to review, 2 the gateway refused the request (bad input,
auth, limits) or could not be reached. `provenance verify`: 0 found and valid, 1 invalid, 2 nothing
found, 3 the gateway refused the request or could not be reached (docs/cli.md).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # imported in the commands: `consentgate --help` and the other groups start without httpx
    import httpx


__all__ = ["ClientFactory", "provenance_outcome", "register"]

ClientFactory = Callable[[str], "httpx.Client"]
Url = Annotated[str, typer.Option("--url", envvar="CONSENTGATE_URL", help="The gateway's base URL.")]
ApiKey = Annotated[str, typer.Option("--api-key", envvar="CONSENTGATE_API_KEY", help="A generator key.",
                                     show_default=False)]
Use = Annotated[str, typer.Option("--use", help="The use to check under (txt2img, txt2video, ...).")]
Prompt = Annotated[str | None, typer.Option("--prompt", help="The prompt, when there is one.")]
EndUser = Annotated[str | None, typer.Option("--end-user", help="Your end user's id (grants may name one).")]
InputDecision = Annotated[str | None, typer.Option(
    "--input-decision", help="The decision_id of the input check of the reference media: required for outputs "
    "of face_swap, img2img, img2video, video2video and voice_clone (the output inherits its use and the people it "
    "found).")]
DEFAULT_URL = "http://127.0.0.1:8080"


def default_client(url: str) -> httpx.Client:
    import httpx

    return httpx.Client(base_url=url.rstrip("/"), timeout=300.0)


def _is_video(data: bytes) -> bool:
    from gateway.sniff import sniff

    kind = sniff(data[:4096])
    return kind is not None and kind.startswith("video/")


def _is_audio(data: bytes) -> bool:
    from gateway.sniff import sniff_audio

    return sniff_audio(data[:1 << 16]) is not None


def _via_jobs(data: bytes) -> bool:
    """Videos and audio go through /v1/jobs (no request deadline, a progress bar); images do not."""
    return _is_audio(data) or _is_video(data)


# the file name suffix of a job's result, by its type (videos: MP4; audio: its own type, Ogg as FLAC)
_SUFFIX = {"video/mp4": ".mp4", "audio/wav": ".wav", "audio/flac": ".flac", "audio/mpeg": ".mp3",
           "audio/mp4": ".m4a"}


def _request(**fields: Any) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})


class _Session:
    """One command's conversation with the gateway."""

    def __init__(self, http: httpx.Client, api_key: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "consentgate-cli/0.1"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        from gateway.client import raise_for_answer

        response = self.http.request(method, path, headers=self.headers, **kwargs)
        raise_for_answer(response)
        return response

    def post_media(self, path: str, data: bytes, request: str) -> httpx.Response:
        return self.call("POST", path, data={"request": request},
                         files=[("media", ("media", data, "application/octet-stream"))])

    def run_job(self, data: bytes, request: str, quiet: bool) -> dict[str, Any]:
        """Submit a job and follow it with a progress bar until it is done or failed."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        job = self.post_media("/v1/jobs", data, request).json()
        status: dict[str, Any] = job["job"]
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=_console(), disable=quiet, transient=True) as bar:
            task = bar.add_task("queued", total=1.0)
            while status["state"] not in ("done", "failed"):
                time.sleep(0.5)
                status = self.call("GET", f"/v1/jobs/{job['job_id']}").json()
                label = f"{status['state']}: {status['stage']}"
                bar.update(task, completed=status["progress"], description=label)
        if status["state"] == "failed":
            from gateway.client import ConsentgateError

            error = status["error"] or {}
            raise ConsentgateError(409, str(error.get("code")), str(error.get("message")), status)
        return status


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _summary(record: dict[str, Any]) -> str:
    reasons = [r for r in record.get("reasons", []) if r.get("outcome") in ("deny", "review")]
    lines = [f"{record['decision']} (decision {record['decision_id']}, audit index "
             f"{(record.get('audit') or {}).get('index')})"]
    lines += [f"  {r['rule']}: {r['detail']}" for r in reasons[:10]]
    return "\n".join(lines)


def _exit_for(record: dict[str, Any]) -> None:
    typer.echo(_summary(record), err=True)
    if record["decision"] != "allow":
        raise typer.Exit(1)


def _refused(exc: Exception) -> typer.Exit:
    from gateway.client import PolicyDenied

    if isinstance(exc, PolicyDenied) and exc.decision is not None:
        typer.echo(_summary(exc.decision), err=True)
        return typer.Exit(1)
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _refusals() -> tuple[type[Exception], ...]:
    """What a call to the gateway raises when it refuses or cannot be reached (imported when needed)."""
    import httpx

    from gateway.client import ConsentgateError

    return ConsentgateError, httpx.HTTPError


def register(app: typer.Typer, client_factory: ClientFactory = default_client) -> None:
    """Add `check`, `release` and `provenance verify` to `app`. `client_factory(url)` makes the
    HTTP client (tests pass one bound to an in-process app)."""
    provenance_app = typer.Typer(help="Provenance of released files.", no_args_is_help=True)
    app.add_typer(provenance_app, name="provenance")

    @app.command("check")
    def check(
        file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An image, a video or audio.")],
        use: Use = "txt2img",
        stage: Annotated[str, typer.Option("--stage", help="input or output.")] = "output",
        prompt: Prompt = None,
        end_user: EndUser = None,
        input_decision: InputDecision = None,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = "",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Check FILE (nothing is released): print the decision record as JSON."""
        data = file.read_bytes()
        request = _request(use=use, stage=stage, prompt=prompt, end_user=end_user, action="check",
                           input_decision_id=input_decision)
        try:
            with client_factory(url) as http:
                session = _Session(http, api_key)
                if _via_jobs(data):
                    record = session.run_job(data, request, quiet)["decision"]
                else:
                    record = session.post_media("/v1/check", data, request).json()
        except _refusals() as exc:
            raise _refused(exc) from None
        typer.echo(json.dumps(record, indent=2))
        _exit_for(record)

    @app.command("release")
    def release(
        file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An image, a video or audio.")],
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the result.")] = None,
        use: Use = "txt2img",
        prompt: Prompt = None,
        end_user: EndUser = None,
        input_decision: InputDecision = None,
        url: Url = DEFAULT_URL,
        api_key: ApiKey = "",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Release FILE: write the marked, signed file (videos come back as MP4; audio in its own type,
        Ogg as FLAC)."""
        data = file.read_bytes()
        request = _request(use=use, stage="output", prompt=prompt, end_user=end_user, action="release",
                           input_decision_id=input_decision)
        try:
            with client_factory(url) as http:
                session = _Session(http, api_key)
                if _via_jobs(data):
                    status = session.run_job(data, request, quiet)
                    record = status["decision"]
                    if record["decision"] != "allow":
                        _exit_for(record)
                    response = session.call("GET", f"/v1/jobs/{status['job_id']}/result")
                    kind = response.headers.get("content-type", "video/mp4").split(";")[0].strip()
                    target = out or file.with_name(f"{file.stem}.released{_SUFFIX.get(kind, file.suffix)}")
                else:
                    response = session.post_media("/v1/release", data, request)
                    record = {"decision": response.headers["x-decision"],
                              "decision_id": response.headers["x-decision-id"],
                              "audit": {"index": int(response.headers["x-audit-index"])}}
                    target = out or file.with_name(f"{file.stem}.released{file.suffix}")
        except _refusals() as exc:
            raise _refused(exc) from None
        target.write_bytes(response.content)
        typer.echo(str(target))
        _exit_for(record)

    @provenance_app.command("verify")
    def verify(
        file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The file to trace.")],
        url: Url = DEFAULT_URL,
        api_key: ApiKey = "",
    ) -> None:
        """Trace FILE to the decision that released it (C2PA manifest, or the watermark). Exit 0: found
        and valid; 1: invalid (a broken manifest, a mark on other content, a decision missing from
        the log); 2: nothing found; 3: the gateway refused the request or could not be reached."""
        try:
            with client_factory(url) as http:
                answer = _Session(http, api_key).call("POST", "/v1/provenance/verify", files=[
                    ("media", ("media", file.read_bytes(), "application/octet-stream"))]).json()
        except _refusals() as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(3) from None
        typer.echo(json.dumps(answer, indent=2))
        code, summary = provenance_outcome(answer)
        typer.secho(summary, err=True, fg=(typer.colors.GREEN, typer.colors.RED, typer.colors.YELLOW)[code])
        raise typer.Exit(code)


def provenance_outcome(answer: dict[str, Any]) -> tuple[int, str]:
    """(exit code, one line) for a /v1/provenance/verify answer: 1 invalid, 0 found, 2 nothing found."""
    c2pa = answer.get("c2pa") or {}
    mark = answer.get("watermark") or {}
    decisions = [d for d in answer.get("decisions", []) if isinstance(d, dict)]
    if c2pa.get("state") == "Invalid":
        errors = "; ".join(str(e) for e in (c2pa.get("validation_errors") or [])[:3])
        return 1, f"INVALID: the C2PA manifest does not validate ({errors or 'no detail'})"
    if mark.get("found") and mark.get("image_matches_release") is False:
        distance = f" (PDQ distance {mark['pdq_distance']})" if mark.get("pdq_distance") is not None else ""
        return 1, f"INVALID: the watermark names a released decision, but this image is not that render{distance}"
    missing = [d["decision_id"] for d in decisions if d.get("audit_index") is None]
    if missing:
        return 1, f"INVALID: decision(s) {', '.join(map(str, missing))} are not in the audit log"
    if decisions:
        found = ", ".join(f"{d.get('decision_id')} ({d.get('decision')}, audit index {d.get('audit_index')})"
                          for d in decisions)
        how = [w for w, ok in (("C2PA " + str(c2pa.get("state")), c2pa.get("state") in ("Trusted", "Valid")),
                               ("watermark", bool(mark.get("found")))) if ok]
        return 0, f"found: {found} via {' and '.join(how) or 'provenance'}"
    return 2, f"nothing found: C2PA {c2pa.get('state', 'not read')}, no watermark of this gateway"


if __name__ == "__main__":  # pragma: no cover - `python -m gateway.cli.client` for a quick try
    cli = typer.Typer(no_args_is_help=True)
    register(cli)
    sys.exit(cli())
