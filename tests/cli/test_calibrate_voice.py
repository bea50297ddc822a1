"""Why: the voice threshold must come from calibration on the operator's own speech (issue #18
point 8): `consentgate models calibrate --model resemblyzer` over folders per speaker prints a
`voice_match_threshold` that separates the speakers it saw. Speech: espeak-ng at test time."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import app, runner
from tests.support.speech import SENTENCES, VOICE_A, VOICE_B, speech_wav


def test_calibrate_voices_from_folders_per_speaker(tmp_path: Path) -> None:
    voices = {"a": VOICE_A, "b": VOICE_B, "c": ("en-gb-scotland+f2", 20)}  # c sounds like a: a hard case
    for name, voice in voices.items():
        folder = tmp_path / name
        folder.mkdir()
        for i in range(3):
            (folder / f"{i}.wav").write_bytes(speech_wav(SENTENCES[i], voice))
    (tmp_path / "a" / "noise.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "snippet.yaml"
    result = runner.invoke(app, ["models", "calibrate", "--model", "resemblyzer", "--labels", str(tmp_path),
                                      "--target-fpr", "0.0", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    threshold = report["match"]["threshold"]
    assert report["model"] == "resemblyzer" and report["match"]["fpr"] == 0.0
    assert threshold > max(report["impostor"]) and len(report["genuine"]) == 9 and len(report["impostor"]) == 27
    assert any("noise.wav" in s for s in report["skipped"])
    assert "voice_match_threshold" in out.read_text()


def test_voice_calibration_needs_two_speakers(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "0.wav").write_bytes(speech_wav(SENTENCES[0], VOICE_A))
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["models", "calibrate", "--model", "resemblyzer", "--labels", str(tmp_path)])
    assert result.exit_code != 0 and "two speakers" in result.output
