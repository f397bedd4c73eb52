"""normflow's vocoder beside Griffin-Lim on the same mels: log-mel L1 and mel-cepstral distortion
of the resynthesised audio against the input, per folder of WAV files.

For each WAV: `normflow audio vocode MODEL IN -o OUT` (temperature 0.6), and librosa's
mel_to_audio (the mel inverted to a linear spectrogram, then 32 or 100 Griffin-Lim iterations)
on librosa's mel of the same file with the vocoder's settings (1024/256, 80 bands up to 8 kHz,
magnitudes). Both outputs are analysed again with those settings:
- log-mel L1: mean |ln max(mel_out, 1e-5) − ln max(mel_in, 1e-5)| over frames and bands;
- MCD (dB): cepstra c_1..c_13 as the DCT-II (orthonormal) of the natural-log mel,
  (10 / ln 10) · sqrt(2 · Σ_k (c_k − c'_k)²) per frame, averaged over frames.
Usage: ~/.normflow-peers/venv/bin/python bench/audio/vocode_vs_griffinlim.py MODEL DIR [DIR...]
"""

import math
import os
import subprocess
import sys
import tempfile

import librosa
import numpy as np
import scipy.fft

HERE = os.path.dirname(os.path.abspath(__file__))
NORMFLOW = os.environ.get("NORMFLOW", os.path.join(HERE, "..", "..", "target", "release", "normflow"))
SETTINGS = dict(n_fft=1024, hop_length=256, fmax=8000, power=1.0)


def log_mel(y, sr):
    return np.log(np.maximum(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=80, **SETTINGS), 1e-5)).T


def scores(ref, out):
    n = min(len(ref), len(out))
    ref, out = ref[:n], out[:n]
    l1 = float(np.abs(ref - out).mean())
    c_ref = scipy.fft.dct(ref, type=2, norm="ortho", axis=1)[:, 1:14]
    c_out = scipy.fft.dct(out, type=2, norm="ortho", axis=1)[:, 1:14]
    mcd = float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * ((c_ref - c_out) ** 2).sum(axis=1))))
    return l1, mcd


def main():
    model, dirs = sys.argv[1], sys.argv[2:]
    print(f"# model {model}; librosa {librosa.__version__}")
    print("| set | files | normflow L1 | GL-32 L1 | GL-100 L1 | normflow MCD | GL-32 MCD | GL-100 MCD |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for d in dirs:
            rows = []
            for name in sorted(os.listdir(d)):
                if not name.lower().endswith(".wav"):
                    continue
                path = os.path.join(d, name)
                y, sr = librosa.load(path, sr=None)
                ref = log_mel(y, sr)
                out = os.path.join(work, "out.wav")
                subprocess.run([NORMFLOW, "audio", "vocode", model, path, "-o", out], check=True, capture_output=True)
                ours = log_mel(librosa.load(out, sr=None)[0], sr)
                mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=80, **SETTINGS)
                gl = [log_mel(librosa.feature.inverse.mel_to_audio(mel, sr=sr, n_iter=k, **SETTINGS), sr) for k in (32, 100)]
                rows.append(scores(ref, ours) + scores(ref, gl[0]) + scores(ref, gl[1]))
            r = np.mean(np.array(rows), axis=0)
            print(f"| {os.path.basename(os.path.normpath(d))} | {len(rows)} | {r[0]:.3f} | {r[2]:.3f} | {r[4]:.3f} | {r[1]:.2f} | {r[3]:.2f} | {r[5]:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
