"""Listening examples: for each given WAV, the input, normflow's vocoded output and Griffin-Lim's
(32 iterations) on the same mel, as 16-bit WAVs, and one PNG of the three log-mels side by side
with each output's log-mel L1 and MCD against the input (the measures of
`vocode_vs_griffinlim.py`).

Usage: ~/.normflow-peers/venv/bin/python bench/audio/examples.py MODEL OUT_DIR WAV [WAV...]
Writes OUT_DIR/NAME-input.wav, NAME-normflow.wav, NAME-griffinlim32.wav, NAME.png and prints a
Markdown table of the scores.
"""

import os
import shutil
import subprocess
import sys

import librosa
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from vocode_vs_griffinlim import NORMFLOW, SETTINGS, log_mel, scores  # noqa: E402


def panels(path, title, mels, sr):
    """The log-mels (name, frames x bands) side by side on one colour scale."""
    lo = min(m.min() for _, m in mels)
    hi = max(m.max() for _, m in mels)
    fig, axes = plt.subplots(1, len(mels), figsize=(4.2 * len(mels), 3.2), sharey=True)
    for ax, (name, m) in zip(axes, mels):
        seconds = m.shape[0] * SETTINGS["hop_length"] / sr
        ax.imshow(m.T, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma", extent=(0, seconds, 0, m.shape[1]))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("seconds")
    axes[0].set_ylabel("mel band")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    model, out_dir, wavs = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    print(f"# model {model}; librosa {librosa.__version__}; normflow vocode at its default temperature")
    print("| example | normflow L1 | GL-32 L1 | normflow MCD | GL-32 MCD |")
    print("|---|---:|---:|---:|---:|")
    for wav in wavs:
        name = os.path.splitext(os.path.basename(wav))[0]
        y, sr = librosa.load(wav, sr=None)
        base = os.path.join(out_dir, name)
        shutil.copyfile(wav, f"{base}-input.wav")
        subprocess.run([NORMFLOW, "audio", "vocode", model, wav, "-o", f"{base}-normflow.wav"], check=True, capture_output=True)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=80, **SETTINGS)
        gl = librosa.feature.inverse.mel_to_audio(mel, sr=sr, n_iter=32, **SETTINGS)
        soundfile.write(f"{base}-griffinlim32.wav", np.clip(gl, -1.0, 1.0), sr, subtype="PCM_16")
        ref = log_mel(y, sr)
        ours = log_mel(librosa.load(f"{base}-normflow.wav", sr=None)[0], sr)
        theirs = log_mel(librosa.load(f"{base}-griffinlim32.wav", sr=None)[0], sr)
        (l1, mcd), (gl_l1, gl_mcd) = scores(ref, ours), scores(ref, theirs)
        panels(
            f"{base}.png",
            name,
            [("input", ref), (f"normflow (L1 {l1:.2f}, MCD {mcd:.1f} dB)", ours), (f"Griffin-Lim 32 (L1 {gl_l1:.2f}, MCD {gl_mcd:.1f} dB)", theirs)],
            sr,
        )
        print(f"| {name} | {l1:.3f} | {gl_l1:.3f} | {mcd:.2f} | {gl_mcd:.2f} |", flush=True)


if __name__ == "__main__":
    main()
