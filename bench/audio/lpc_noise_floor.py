"""What an envelope-only vocoder scores on the issue-19 metrics: a diagnostic.

For each WAV, the mel that the vocoder gets (librosa, 1024/256, 80 bands to 8 kHz, magnitudes)
is turned back into a smooth spectral envelope (each band's mean magnitude spread over its FFT
bins, squared, inverse FFT to an autocorrelation, Levinson-Durbin to an all-pole filter of order
16 per frame) and that filter is driven by white noise of the frame's prediction-error power: an
LPC noise vocoder that knows the input's envelope and loudness exactly but has no pitch. It is
scored with the same log-mel L1 and mel-cepstral distortion as bench/audio/vocode_vs_griffinlim.py,
raw and with each frame's level corrected to the input's (an oracle gain). A vocoder whose outputs
carry the right envelope but noise for fine structure lands here; beating Griffin-Lim on these
metrics needs the fine structure (harmonics, silences) too.
Usage: ~/.normflow-peers/venv/bin/python bench/audio/lpc_noise_floor.py DIR [DIR...]
"""

import math
import os
import sys

import librosa
import numpy as np
import scipy.signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vocode_vs_griffinlim import SETTINGS, log_mel, scores  # noqa: E402

ORDER = 16
HOP = 256
WINDOW_ENERGY = 384.0  # sum of the squared periodic Hann window of 1024 samples


def levinson(r, p):
    a, e = np.zeros(p + 1), r[0]
    a[0] = 1.0
    for i in range(1, p + 1):
        k = -(r[i] + a[1:i] @ r[i - 1:0:-1]) / e
        a[1:i + 1] = a[1:i + 1] + k * np.concatenate([a[i - 1:0:-1], [1.0]])
        e *= 1.0 - k * k
    return a, e


def envelope_noise(mel, sr, rng):
    fb = librosa.filters.mel(sr=sr, n_fft=1024, n_mels=80, fmax=8000)
    band_mean = mel / np.maximum(fb.sum(axis=1), 1e-12)[:, None]
    spread = fb / np.maximum(fb.sum(axis=0, keepdims=True), 1e-12)
    magnitude = spread.T @ band_mean
    frames = mel.shape[1]
    out, history = np.zeros(frames * HOP), np.zeros(ORDER)
    for j in range(frames):
        r = np.fft.irfft(magnitude[:, j] ** 2, 1024)[:ORDER + 1]
        r[0] = r[0] * 1.0001 + 1e-12
        a, e = levinson(r, ORDER)
        lo, hi = max(0, j * HOP - HOP // 2), j * HOP + HOP // 2
        excitation = rng.standard_normal(hi - lo) * math.sqrt(max(e, 0.0) / WINDOW_ENERGY)
        part, _ = scipy.signal.lfilter([1.0], a, excitation, zi=scipy.signal.lfiltic([1.0], a, history[::-1]))
        out[lo:hi] = part
        history = np.concatenate([history, part])[-ORDER:]
    return out.astype(np.float32)


def main():
    rng = np.random.default_rng(0)
    print(f"# librosa {librosa.__version__}; LPC order {ORDER}, white-noise excitation, seed 0")
    print("| set | files | L1 | MCD | L1, oracle gain | MCD, oracle gain |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in sys.argv[1:]:
        rows = []
        for name in sorted(n for n in os.listdir(d) if n.lower().endswith(".wav")):
            y, sr = librosa.load(os.path.join(d, name), sr=None)
            ref = log_mel(y, sr)
            mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=80, **SETTINGS)
            out = log_mel(envelope_noise(mel, sr, rng), sr)
            n = min(len(ref), len(out))
            ref, out = ref[:n], out[:n]
            gained = out - np.median(out - ref, axis=1, keepdims=True)
            rows.append(scores(ref, out) + scores(ref, gained))
        r = np.mean(np.array(rows), axis=0)
        print(f"| {os.path.basename(os.path.normpath(d))} | {len(rows)} | {r[0]:.3f} | {r[1]:.2f} | {r[2]:.3f} | {r[3]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
