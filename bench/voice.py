"""Why: a voice check must keep up with the audio it guards (issue #18 point 8: a 60 s clip checked
in <= 0.2x real time on 2 cores, at most 1.2x the raw encoder). This times POST /v1/check (in
process, the shipped default policy, the real Resemblyzer encoder, one enrolled voice) on a 60 s
WAV of espeak-ng speech, beside the raw encoder over the same decoded samples (`embed` of the whole
clip: mel + LSTM over every 1.6 s partial), in the same run, and prints both, the ratio and the
real-time factors; and the same clip as an audio job (`POST /v1/jobs` with action `check`, polled
until done: the path long audio takes, in batches of windows with progress).

    .venv/bin/python bench/voice.py [--seconds 60] [--n 3]

Needs espeak-ng (scripts/install.sh). On a shared machine the numbers move: compare the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCES = (
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother.",
    "We also need a small plastic snake and a big toy frog for the kids at the party tonight.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday at the station.",
    "The quick brown fox jumps over the lazy dog and runs back into the quiet forest.",
)


def espeak(text: str, voice: str = "en-gb-scotland+f2") -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is missing: run scripts/install.sh")
    raw = subprocess.run([exe, "-v", voice, "--stdout", text], check=True, capture_output=True).stdout  # noqa: S603
    with wave.open(io.BytesIO(raw)) as src:
        rate = src.getframerate()
        pcm = np.frombuffer(src.readframes(src.getnframes()), "<i2").astype(np.float32) / 32768
    from scipy.signal import resample_poly

    g = np.gcd(16000, rate)
    return resample_poly(pcm, 16000 // g, rate // g).astype(np.float32)


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(16000)
        dst.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from classifiers.voice_resemblyzer import ResemblyzerVoiceEmbedder
    from gateway.app import create_app
    from gateway.audio.intake import decode_audio
    from gateway.settings import Settings

    pause = np.zeros(8000, np.float32)
    parts: list[np.ndarray] = []
    while sum(len(p) for p in parts) < args.seconds * 16000:
        parts += [espeak(SENTENCES[len(parts) // 2 % len(SENTENCES)]), pause]
    clip = np.concatenate(parts)[: int(args.seconds * 16000)]
    data = wav_bytes(clip)
    duration = len(clip) / 16000

    tmp = Path(tempfile.mkdtemp(prefix="cg-bench-voice-"))
    settings = Settings(data_dir=tmp / "data", policies_dir=REPO / "policies", database_url=None)
    raw = ResemblyzerVoiceEmbedder()
    samples = decode_audio(data).samples
    raw.embed([samples[:16000 * 5]])  # warm-up
    with TestClient(create_app(settings)) as client:
        gw = client.app.state.gateway  # type: ignore[attr-defined]
        key = gw.apikeys.create("acme", "generator")[1]
        registrar = gw.apikeys.create("operator", "registrar")[1]
        sid = client.post("/v1/subjects", json={"display_name": "Bench Voice"},
                          headers={"Authorization": f"Bearer {registrar}"}).json()["id"]
        enrol = client.post(f"/v1/subjects/{sid}/voices", data={"notice_version": "bench"},
                            files=[("media", ("e.wav", wav_bytes(espeak(SENTENCES[0] + " " + SENTENCES[1])), "x"))],
                            headers={"Authorization": f"Bearer {registrar}"})
        assert enrol.status_code == 201, enrol.text
        request = {"request": json.dumps({"stage": "output", "use": "tts"})}
        job_request = {"request": json.dumps({"stage": "output", "use": "tts", "action": "check"})}
        gateway_s, raw_s, job_s = [], [], []
        record: dict[str, object] = {}
        for _ in range(args.n):
            t0 = time.perf_counter()
            r = client.post("/v1/check", data=request, files=[("media", ("c.wav", data, "audio/wav"))],
                            headers={"Authorization": f"Bearer {key}"})
            gateway_s.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            record = r.json()
            t0 = time.perf_counter()
            raw.embed([samples])
            raw_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            job = client.post("/v1/jobs", data=job_request, files=[("media", ("c.wav", data, "audio/wav"))],
                              headers={"Authorization": f"Bearer {key}"})
            assert job.status_code == 202, job.text
            while True:
                status = client.get(f"/v1/jobs/{job.json()['job_id']}", headers={"Authorization": f"Bearer {key}"})
                if status.json()["state"] in ("done", "failed"):
                    break
                time.sleep(0.02)
            job_s.append(time.perf_counter() - t0)
            assert status.json()["state"] == "done", status.text
            assert status.json()["decision"]["decision"] == record["decision"]
    shutil.rmtree(tmp, ignore_errors=True)
    g, b = statistics.median(gateway_s), statistics.median(raw_s)
    voices = record.get("findings", {}).get("voices", [])  # type: ignore[union-attr]
    print(f"clip: {duration:.1f} s of espeak-ng speech (16 kHz WAV, {len(data) // 1024} KiB), n={args.n}, "
          f"one enrolled voice (the same speaker): decision {record.get('decision')}, {len(voices)} voice windows")
    print(f"raw encoder (embed whole clip):  {b:6.2f} s  = {b / duration:.3f}x real time")
    print(f"gateway POST /v1/check:          {g:6.2f} s  = {g / duration:.3f}x real time  (goal <= 0.2x)")
    print(f"ratio gateway / raw encoder:     {g / b:6.2f}       (goal <= 1.2)")
    j = statistics.median(job_s)
    print(f"gateway POST /v1/jobs (check):   {j:6.2f} s  = {j / duration:.3f}x real time  "
          f"(submit to done, polled; ratio to the raw encoder {j / b:.2f})")


if __name__ == "__main__":
    main()
