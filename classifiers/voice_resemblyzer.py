"""Why: a voice is a likeness, so the gateway must tell whose voice speaks; Resemblyzer's speaker
encoder (GE2E, 3-layer LSTM over 40 mel bands, 256-d) ships its weights inside its PyPI wheel
(`resemblyzer/pretrained.pt`, 17 MB, Apache-2.0) and runs on CPU in a fraction of real time.

The adapter loads those weights into the same network without importing `resemblyzer` itself:
the package imports librosa (numba, llvmlite: a heavy install) only for resampling and the mel
filterbank, and the gateway's audio intake already resamples with PyAV. The mel spectrogram
here is librosa's `melspectrogram` with Resemblyzer's parameters (16 kHz, 25 ms Hann window,
10 ms hop, 40 Slaney mel bands, power 2, centred frames), written in numpy. Preprocessing is
Resemblyzer's, except that volume is set to -30 dBFS both ways (Resemblyzer only raises it; see
`normalise_volume`); voice activity from
WebRTC VAD (`webrtcvad-wheels`, mode 3, 30 ms frames, smoothed over 8 frames, gaps up to 6
frames bridged). Partials are 1.6 s (160 frames) every 0.77 s, as `embed_utterance` cuts them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from classifiers._common import Options, package_file, weights_digest
from classifiers.base import ModelError, ModelInfo, SpeechSegment

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
FRAME_STEP = 77  # round(16000 / 1.3 / 160): Resemblyzer's default rate of 1.3 partials per second
VAD_WINDOW = 480  # 30 ms
VAD_AVERAGE = 8
VAD_MAX_SILENCE = 6
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
BATCH = 64


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    mels = freqs / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_t = freqs >= min_log_hz
    mels[log_t] = min_log_mel + np.log(freqs[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40) (Slaney scale and area norm), (40, 201)."""
    fftfreqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    edges = np.array([0.0, SAMPLE_RATE / 2])
    mel_edges = _hz_to_mel(edges.copy())
    mel_f = _mel_to_hz(np.linspace(mel_edges[0], mel_edges[1], N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((N_MELS, len(fftfreqs)))
    for i in range(N_MELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(n_frames, 40) float32 power mel spectrogram; n_frames = 1 + len(wav) // 160."""
    padded = np.pad(wav.astype(np.float32, copy=False), (N_FFT // 2, N_FFT // 2))
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)) ** 2
    mel: np.ndarray = (power.astype(np.float32) @ mel_filterbank().T).astype(np.float32)
    return mel


def normalise_volume(wav: np.ndarray) -> np.ndarray:
    """Scale to -30 dBFS RMS. Resemblyzer only raises (`increase_only=True`); its mel input is a
    power spectrogram, not a log, so a loud clip then embeds differently from the same clip 6 dB
    quieter (cosine 0.89 measured). Lowering too makes the embedding volume-independent."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2))) if len(wav) else 0.0
    if rms <= 0.0:
        return wav
    change = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return (wav * np.float32(10 ** (change / 20))).astype(np.float32)


def voice_flags(wav: np.ndarray, mode: int) -> np.ndarray:
    """One bool per 30 ms window: smoothed WebRTC VAD decisions with short gaps bridged."""
    import webrtcvad
    from scipy.ndimage import binary_dilation

    usable = len(wav) - len(wav) % VAD_WINDOW
    if usable <= 0:
        return np.zeros(0, dtype=bool)
    pcm = (np.clip(wav[:usable], -1.0, 1.0) * INT16_MAX).round().astype("<i2").tobytes()
    vad = webrtcvad.Vad(mode)
    flags = np.array(
        [vad.is_speech(pcm[i * 2 : (i + VAD_WINDOW) * 2], SAMPLE_RATE) for i in range(0, usable, VAD_WINDOW)],
        dtype=float,
    )
    width = VAD_AVERAGE
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    cum = np.cumsum(padded)
    cum[width:] = cum[width:] - cum[:-width]
    smoothed = np.round(cum[width - 1 :] / width).astype(bool)
    dilated: np.ndarray = binary_dilation(smoothed, np.ones(VAD_MAX_SILENCE + 1))
    return dilated


def flags_to_segments(flags: np.ndarray, window_s: float) -> list[SpeechSegment]:
    segments: list[SpeechSegment] = []
    start: int | None = None
    for i, on in enumerate([*flags.tolist(), False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            segments.append(SpeechSegment(round(start * window_s, 3), round(i * window_s, 3)))
            start = None
    return segments


class ResemblyzerVoiceEmbedder:
    """Options: `vad_mode` (0..3, default 3, WebRTC's most aggressive), `threads` (torch intra-op
    threads for this process; default: leave torch's setting alone)."""

    dim = 256
    sample_rate = SAMPLE_RATE
    partial_s = PARTIAL_FRAMES * HOP / SAMPLE_RATE
    step_s = FRAME_STEP * HOP / SAMPLE_RATE

    def __init__(self, options: Mapping[str, Any] | None = None, *, name: str = "resemblyzer") -> None:
        opts = Options(name, options, {"vad_mode", "threads"})
        self._vad_mode = opts.positive_int("vad_mode", 3, minimum=0)
        if self._vad_mode > 3:
            raise ModelError(f"adapter {name!r}: option 'vad_mode' must be 0..3")
        threads = opts.positive_int("threads", 0, minimum=0)
        weights = package_file("resemblyzer", "pretrained.pt")
        try:
            import torch
            from torch import nn
        except ImportError as exc:  # pragma: no cover - torch is a core dependency
            raise ModelError(f"torch is not importable: {exc}") from exc
        if threads:
            torch.set_num_threads(threads)

        class _Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
                self.linear = nn.Linear(256, 256)

            def forward(self, mels: Any) -> Any:
                _, (hidden, _) = self.lstm(mels)
                raw = torch.relu(self.linear(hidden[-1]))
                return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

        try:
            checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
            encoder = _Encoder()
            state = {k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity_")}
            encoder.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ModelError(f"cannot load the Resemblyzer encoder from {weights}: {exc}") from exc
        encoder.eval()
        self._torch = torch
        self._encoder = encoder
        self._lock = threading.Lock()  # LSTM inference is thread-safe, but torch threads are few here
        self.info = ModelInfo(name=name, version=weights_digest([weights]))

    # -- Protocol -----------------------------------------------------------------------------
    def speech(self, samples: np.ndarray) -> list[SpeechSegment]:
        wav = _check_mono(samples)
        return flags_to_segments(voice_flags(wav, self._vad_mode), VAD_WINDOW / SAMPLE_RATE)

    def partials(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts, mels = self._partial_mels(_check_mono(samples))
        if len(starts) == 0:
            return starts, np.zeros((0, self.dim), dtype=np.float32)
        return starts, self._forward(mels)

    def embed(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """All clips' partials go through the encoder in one batch: many short clips (the check's
        speech windows) cost what one long clip does."""
        per_clip = [self._partial_mels(_check_mono(clip)) for clip in clips]
        if any(len(starts) == 0 for starts, _ in per_clip):
            raise ModelError("cannot embed an empty clip")
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        if not per_clip:
            return out
        rows = self._forward(np.concatenate([mels for _, mels in per_clip]))
        at = 0
        for i, (starts, _) in enumerate(per_clip):
            out[i] = _unit(rows[at: at + len(starts)].mean(axis=0))
            at += len(starts)
        return out

    def _partial_mels(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start times (s) and mel windows (n, 160, 40) of the partials over `wav`."""
        if len(wav) == 0:
            return np.zeros(0, dtype=np.float64), np.zeros((0, PARTIAL_FRAMES, N_MELS), dtype=np.float32)
        wav = normalise_volume(wav)
        n_frames = 1 + len(wav) // HOP
        starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + FRAME_STEP + 1), FRAME_STEP))
        # Resemblyzer drops a last partial that covers less than 75% of its window (unless it is the only one).
        if len(starts) > 1 and (len(wav) - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP) < 0.75:
            starts.pop()
        need = (starts[-1] + PARTIAL_FRAMES) * HOP
        if need > len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = mel_spectrogram(wav)
        batch = np.stack([mel[s: s + PARTIAL_FRAMES] for s in starts])
        return np.asarray(starts, dtype=np.float64) * HOP / SAMPLE_RATE, batch

    def _forward(self, mels: np.ndarray) -> np.ndarray:
        torch = self._torch
        rows = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(mels), BATCH):
                rows.append(self._encoder(torch.from_numpy(np.ascontiguousarray(mels[i : i + BATCH]))).numpy())
        out = np.concatenate(rows).astype(np.float32)
        return np.stack([_unit(r) for r in out])


def _unit(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm <= 1e-12:
        raise ModelError("the voice encoder produced a zero embedding")
    return (vec / norm).astype(np.float32)


def _check_mono(samples: np.ndarray) -> np.ndarray:
    """Refuse anything but a 1-D float32 array; return it C-contiguous."""
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
        shape = getattr(samples, "shape", None)
        dtype = getattr(samples, "dtype", type(samples).__name__)
        raise ModelError(f"expected mono float32 samples of shape (n,), got {dtype} {shape}")
    if not np.isfinite(samples).all():
        raise ModelError("audio samples hold NaN or infinity")
    return np.ascontiguousarray(samples)
