"""Reference mel spectrograms from librosa for normflow's front-end test.

Writes crates/normflow/tests/data/librosa_mel.json: a test signal (a 440 Hz tone, a chirp from
150 Hz to 0.45 of the sample rate, and uniform noise from a fixed linear congruential
generator, 4,000 float32 samples) and librosa.feature.melspectrogram of it for three settings
(16 kHz and 22.05 kHz vocoder settings with magnitudes, and a power spectrogram with a short
window), with the log compression ln(max(mel, 1e-5)). The Rust test
(crates/normflow/tests/audio_front_end.rs) recomputes them and compares.

Usage (a venv with librosa: ~/.normflow-peers/venv/bin/pip install librosa):
  ~/.normflow-peers/venv/bin/python bench/audio/librosa_reference.py
"""

import json
import math
import os

import librosa
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "crates", "normflow", "tests", "data", "librosa_mel.json")


def signal(n=4000, sr=16000):
    state, out = 12345, []
    span = n / sr
    for i in range(n):
        t = i / sr
        state = (1664525 * state + 1013904223) % 2**32
        chirp = 2 * math.pi * (150 * t + 0.5 * (0.45 * sr - 150) / span * t * t)
        out.append(0.4 * math.sin(2 * math.pi * 440 * t) + 0.25 * math.sin(chirp) + 0.05 * (state / 2**32 - 0.5))
    return np.asarray(out, dtype=np.float32)


SETTINGS = [
    dict(sample_rate=16000, n_fft=1024, hop=256, win_length=1024, n_mels=80, fmin=0.0, fmax=8000.0, power=1.0),
    dict(sample_rate=22050, n_fft=1024, hop=256, win_length=1024, n_mels=80, fmin=0.0, fmax=8000.0, power=1.0),
    dict(sample_rate=16000, n_fft=512, hop=160, win_length=400, n_mels=40, fmin=60.0, fmax=7600.0, power=2.0),
]


def short(values):
    """float32 values with the 9 significant digits that round-trip them (keeps the file small)."""
    return [float(f"{v:.9g}") for v in np.asarray(values, dtype=np.float32).ravel()]


def main():
    y = signal()
    cases = []
    for s in SETTINGS:
        mel = librosa.feature.melspectrogram(y=y, sr=s["sample_rate"], n_fft=s["n_fft"], hop_length=s["hop"],
                                             win_length=s["win_length"], n_mels=s["n_mels"], fmin=s["fmin"],
                                             fmax=s["fmax"], power=s["power"])
        frames = mel.T  # one row per frame, as normflow returns it
        rows = lambda m: [short(r) for r in m]
        cases.append(dict(config=s, mel=rows(frames), log_mel=rows(np.log(np.maximum(frames, 1e-5)))))
    with open(OUT, "w") as f:
        json.dump(dict(librosa=librosa.__version__, numpy=np.__version__, signal=short(y), cases=cases), f)
    print(f"wrote {OUT}: librosa {librosa.__version__}, {len(cases)} settings, {len(y)} samples")


if __name__ == "__main__":
    main()
