#!/usr/bin/env bash
# Real-time factor of `normflow audio vocode` with the default WaveGlow (8 flows, WaveNets of
# 4 layers x 32 channels, segments of 4096 samples) at 16 kHz: the seconds it takes to vocode
# SECONDS seconds of audio (default 10), divided by SECONDS. The model is trained for one epoch
# only: synthesis costs the same whatever the weights.
# Usage: bash bench/audio/rtf.sh [SECONDS]
set -euo pipefail
seconds=${1:-10}
nf=${NORMFLOW:-target/release/normflow}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/in.wav" "$seconds" <<'PY'
import math, random, struct, sys, wave
path, seconds = sys.argv[1], float(sys.argv[2])
rate, rnd = 16000, random.Random(0)
with wave.open(path, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        v = 0.3 * math.sin(2 * math.pi * (200 + 50 * math.sin(t)) * t) + 0.01 * rnd.gauss(0, 1)
        frames += struct.pack("<h", int(max(-1, min(1, v)) * 32767))
    w.writeframes(bytes(frames))
PY
echo "# $(date -u); $(lscpu | grep 'Model name' | tr -s ' '); $(nproc) CPUs; $seconds s of 16 kHz audio"
"$nf" audio train "$work/in.wav" --epochs 1 -q -o "$work/voc.safetensors"
start=$(date +%s.%N)
"$nf" audio vocode "$work/voc.safetensors" "$work/in.wav" -o "$work/out.wav" 2>/dev/null
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'vocode: {s:.2f} s for $seconds s of audio: real-time factor {s/$seconds:.3f}')"
# Beside it, Griffin-Lim on the same mel (librosa's mel_to_audio: the mel inverted to a linear
# spectrogram, then 32 or 100 Griffin-Lim iterations), when a Python with librosa is at hand.
py=${PEER_PYTHON:-$HOME/.normflow-peers/venv/bin/python}
if "$py" -c "import librosa" 2>/dev/null; then
  "$py" - "$work/in.wav" "$seconds" <<'PY'
import sys, time
import librosa
path, seconds = sys.argv[1], float(sys.argv[2])
y, sr = librosa.load(path, sr=None)
mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=256, n_mels=80, fmax=8000, power=1.0)
librosa.feature.inverse.mel_to_audio(mel, sr=sr, n_fft=1024, hop_length=256, fmax=8000, power=1.0, n_iter=1)  # warm-up
for n_iter in (32, 100):
    t = time.time()
    librosa.feature.inverse.mel_to_audio(mel, sr=sr, n_fft=1024, hop_length=256, fmax=8000, power=1.0, n_iter=n_iter)
    s = time.time() - t
    print(f"griffin-lim ({n_iter} iterations, librosa {librosa.__version__}): {s:.2f} s for {seconds:g} s of audio: real-time factor {s / seconds:.3f}")
PY
fi
