"""Why: the gateway's proxy needs a real model server to talk to in tests and in the demo, one
that needs no GPU and answers the same way every time. This one speaks three dialects — the
OpenAI images API (generations and edits), the AUTOMATIC1111 web API (txt2img/img2img), a
small generic JSON API (`POST /generate`) — and renders the pictures of `pictures.py` — and
OpenAI's text to speech (`POST /v1/audio/speech`, espeak-ng voices: `speech.py`).

`UpstreamState` records every call and carries fault hooks (answer the next calls with given
statuses; hold calls until released) so tests can see whether the gateway called it at all."""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from examples.upstream import pictures


@dataclass(frozen=True)
class Call:
    endpoint: str
    prompt: str
    n: int
    size: str | None
    images: int
    authorized: bool


@dataclass
class UpstreamState:
    calls: list[Call] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    corrupt_next: int = 0
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    files: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call) -> int | None:
        """Note the call; the status to fail it with, if a fault is queued."""
        with self.lock:
            self.calls.append(call)
            self.entered.set()
            return self.fail_next.pop(0) if self.fail_next else None

    def count(self, endpoint: str | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.calls if endpoint is None or c.endpoint == endpoint)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.fail_next.clear()
            self.corrupt_next = 0
            self.entered.clear()
            self.hold = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "upstream_error", "code": str(status)}}, status
    )


def create_upstream_app(state: UpstreamState | None = None) -> FastAPI:
    state = state or UpstreamState()
    app = FastAPI(title="consentgate reference upstream", version="1")
    app.state.upstream = state

    async def gate(call: Call) -> JSONResponse | None:
        status = state.record(call)
        hold = state.hold
        if hold is not None:
            await asyncio.to_thread(hold.wait, 30)
        if status is not None:
            return _error(status, f"injected failure {status}")
        return None

    def openai_answer(request: Request, images: list[bytes], fmt: str) -> dict[str, Any]:
        data = []
        with state.lock:
            if state.corrupt_next > 0:  # fault hook: answer bytes that are not an image
                state.corrupt_next -= 1
                images = [b"not an image at all" for _ in images]
        for png in images:
            if fmt == "url":
                file_id = secrets.token_hex(8)
                state.files[file_id] = png
                data.append({"url": f"{str(request.base_url).rstrip('/')}/files/{file_id}"})
            else:
                data.append({"b64_json": base64.b64encode(png).decode()})
        return {"created": int(time.time()), "data": data}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/images/generations")
    @app.post("/images/generations")
    async def generations(request: Request) -> Any:
        body = await request.json()
        prompt, n, size = str(body.get("prompt", "")), int(body.get("n") or 1), body.get("size")
        if not prompt:
            return _error(400, "prompt is required")
        failed = await gate(Call("generations", prompt, n, size, 0, "authorization" in request.headers))
        if failed is not None:
            return failed
        images = await asyncio.to_thread(
            lambda: [pictures.encode_png(pictures.generate(prompt, size, i)) for i in range(n)]
        )
        return openai_answer(request, images, str(body.get("response_format") or "b64_json"))

    @app.post("/v1/images/edits")
    @app.post("/images/edits")
    async def edits(request: Request) -> Any:
        form = await request.form()
        prompt, size = str(form.get("prompt") or ""), form.get("size")
        n = int(str(form.get("n") or 1))
        refs = [
            await p.read()
            for key in ("image", "image[]")
            for p in form.getlist(key)
            if isinstance(p, UploadFile)
        ]
        if not refs or not prompt:
            return _error(400, "image and prompt are required")
        size_s = size if isinstance(size, str) else None
        failed = await gate(Call("edits", prompt, n, size_s, len(refs), "authorization" in request.headers))
        if failed is not None:
            return failed
        ref = pictures.decode(refs[0])
        images = await asyncio.to_thread(
            lambda: [pictures.encode_png(pictures.compose(ref, prompt, size_s, i)) for i in range(n)]
        )
        return openai_answer(request, images, str(form.get("response_format") or "b64_json"))

    @app.get("/files/{file_id}")
    async def files(file_id: str) -> Response:
        data = state.files.get(file_id)
        return Response(data, media_type="image/png") if data is not None else _error(404, "no such file")

    @app.post("/sdapi/v1/txt2img")
    @app.post("/sdapi/v1/img2img")
    async def a1111(request: Request) -> Any:
        body = await request.json()
        prompt, n = str(body.get("prompt", "")), int(body.get("batch_size") or 1)
        size = f"{body['width']}x{body['height']}" if body.get("width") and body.get("height") else None
        inits = body.get("init_images") or []
        endpoint = "img2img" if request.url.path.endswith("img2img") else "txt2img"
        failed = await gate(Call(endpoint, prompt, n, size, len(inits), "authorization" in request.headers))
        if failed is not None:
            return failed
        if inits:
            ref = pictures.decode(base64.b64decode(inits[0]))
            render = [pictures.compose(ref, prompt, size, i) for i in range(n)]
        else:
            render = [pictures.generate(prompt, size, i) for i in range(n)]
        images = [base64.b64encode(pictures.encode_png(img)).decode() for img in render]
        return {"images": images, "parameters": {}, "info": "{}"}

    @app.post("/v1/audio/speech")
    @app.post("/audio/speech")
    async def audio_speech(request: Request) -> Any:
        """OpenAI text to speech: {model, input, voice, response_format} → the audio file (espeak-ng)."""
        from examples.upstream import speech

        body = await request.json()
        text, voice = str(body.get("input", "")), str(body.get("voice") or "alloy")
        fmt = str(body.get("response_format") or "mp3")
        if not text or fmt not in speech.FORMATS:
            return _error(400, "input is required; response_format is one of " + ", ".join(speech.FORMATS))
        failed = await gate(Call("speech", text, 1, None, 0, "authorization" in request.headers))
        if failed is not None:
            return failed
        with state.lock:
            corrupt = state.corrupt_next > 0
            state.corrupt_next -= 1 if corrupt else 0
        if corrupt:
            return Response(b"not audio at all", media_type="audio/mpeg")
        data, mime = await asyncio.to_thread(speech.speak, text, voice, fmt)
        return Response(data, media_type=mime)

    @app.post("/generate")
    async def generic(request: Request) -> Any:
        """Generic JSON: {text, count, width?, height?, init?} → {output: {images: [{base64}]}}."""
        body = await request.json()
        prompt, n = str(body.get("text", "")), int(body.get("count") or 1)
        size = f"{body['width']}x{body['height']}" if body.get("width") and body.get("height") else None
        init = body.get("init")
        failed = await gate(
            Call("generate", prompt, n, size, 1 if init else 0, "authorization" in request.headers)
        )
        if failed is not None:
            return failed
        if init:
            ref = pictures.decode(base64.b64decode(init))
            render = [pictures.compose(ref, prompt, size, i) for i in range(n)]
        else:
            render = [pictures.generate(prompt, size, i) for i in range(n)]
        return {
            "output": {
                "images": [{"base64": base64.b64encode(pictures.encode_png(i)).decode()} for i in render]
            }
        }

    return app
