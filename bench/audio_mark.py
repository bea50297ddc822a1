"""Why: the audio mark must survive what happens to released audio (issue #18 point 5) while staying
quiet. This marks espeak-ng speech (two voices, five sentences each, at espeak's 22.05 kHz), applies
each transform, and prints per transform the bit accuracy (at the offset the detector found), how
many clips decoded to the right id, and the mark's SNR; unmarked copies show the false-positive side.

    .venv/bin/python bench/audio_mark.py
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from voice import SENTENCES  # bench/voice.py

    from gateway.audio.encode import encode_audio
    from gateway.audio.intake import decode_audio
    from gateway.audio.watermark import detect, mark_samples, soft_bits
    from gateway.provenance.payload import DWT_PAYLOAD

    def native(text: str, voice: str) -> tuple[int, np.ndarray]:
        import shutil
        import subprocess

        raw = subprocess.run([shutil.which("espeak-ng") or "espeak-ng", "-v", voice, "--stdout", text],  # noqa: S603
                             check=True, capture_output=True).stdout
        with wave.open(io.BytesIO(raw)) as src:
            return src.getframerate(), np.frombuffer(src.readframes(src.getnframes()), "<i2").astype(np.float32) / 32768

    transforms = {
        "none (WAV)": lambda m, r: encode_audio(m, r, "audio/wav"),
        "MP3 128 kbps": lambda m, r: encode_audio(m, r, "audio/mpeg", bitrate=128_000),
        "+6 dB (clips peaks)": lambda m, r: encode_audio(np.clip(m * 2, -1, 1), r, "audio/wav"),
        "+6 dB of a -6 dB copy": lambda m, r: encode_audio(
            np.clip(decode_audio(encode_audio(m * 0.5, r, "audio/mpeg", bitrate=128_000)).samples * 2, -1, 1),
            16_000, "audio/wav"),
        "-6 dB": lambda m, r: encode_audio(m * 0.5, r, "audio/wav"),
        "-6 dB + MP3 128k": lambda m, r: encode_audio(m * 0.5, r, "audio/mpeg", bitrate=128_000),
        "AAC 128k stereo": lambda m, r: encode_audio(m, r, "audio/mp4", channels=2, bitrate=128_000),
    }
    results: dict[str, list[tuple[float, bool]]] = {k: [] for k in transforms}
    snrs, embed_s, unmarked_hits, clips = [], [], 0, 0
    for voice in ("en-gb-scotland+f2", "en-us+m3"):
        for text in SENTENCES:
            rate, x = native(text, voice)
            mono16 = decode_audio(encode_audio(x, rate, "audio/wav")).samples
            wm_id = DWT_PAYLOAD.new_id()
            t0 = time.perf_counter()
            marked = mark_samples(x[None, :], rate, mono16, wm_id)[0]
            embed_s.append((time.perf_counter() - t0) / (len(x) / rate))
            noise = np.sum((marked - x).astype(np.float64) ** 2)
            snrs.append(10 * np.log10(np.sum(x.astype(np.float64) ** 2) / noise))
            bits = DWT_PAYLOAD.encode(wm_id)
            for name, fn in transforms.items():
                copy = decode_audio(fn(marked, rate)).samples
                found = detect(copy)
                soft, _ = soft_bits(copy, found.offset_samples if found else 0)
                ok = found is not None and found.payload.wm_id == wm_id
                results[name].append((float(np.mean((soft > 0.5) == bits)), ok))
            clips += 1
            for fn in (transforms["none (WAV)"], transforms["MP3 128 kbps"]):
                unmarked_hits += detect(decode_audio(fn(x, rate)).samples) is not None
    seconds = statistics.mean(len(native(t, "en-us+m3")[1]) / 22050 for t in SENTENCES[:2])
    print(f"{clips} clips of espeak-ng speech (~{seconds:.0f} s each, 22.05 kHz), "
          "72-bit payload (40-bit id + 32-bit check)")
    print(f"SNR of the mark: median {statistics.median(snrs):.1f} dB (min {min(snrs):.1f}); "
          f"embedding {statistics.median(embed_s):.3f}x real time")
    print(f"{'transform':20s} {'bit accuracy (mean / min)':28s} ids decoded")
    for name, rows in results.items():
        accs = [a for a, _ in rows]
        decoded = sum(ok for _, ok in rows)
        print(f"{name:20s} {statistics.mean(accs):.3f} / {min(accs):.3f}{'':16s} {decoded}/{len(rows)}")
    print(f"unmarked copies (WAV and MP3) that decoded to an id: {unmarked_hits}/{2 * clips}")


if __name__ == "__main__":
    main()
