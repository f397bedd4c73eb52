"""A small speech corpus for the WaveGlow vocoder, built offline with espeak-ng.

Writes OUT/train/*.wav and OUT/test/*.wav (16 kHz, mono, 16-bit): 240 sentences from templates
and word lists (fixed seed), each spoken by one of six espeak-ng voices at a varied rate and
pitch; sentences 0-199 are for training, 200-239 are held out (new sentences, every voice). When
Debian's alsa-utils sounds are installed (/usr/share/sounds/alsa), its recordings of a real
voice (the channel announcements) are resampled into OUT/test-real/ as extra test material.

Needs espeak-ng and sox (Debian packages: apt-get install espeak-ng sox alsa-utils).
Usage: python3 bench/audio/make_corpus.py [OUT]   (default target/speech-corpus)
"""

import os
import random
import subprocess
import sys
import tempfile

SUBJECTS = ["the old sailor", "a quiet student", "my neighbour", "the tired engineer", "our teacher", "a small child",
            "the nervous pilot", "her brother", "the baker", "a curious scientist", "the mayor", "this musician"]
VERBS = ["painted", "carried", "found", "repaired", "described", "forgot", "measured", "opened", "borrowed", "cleaned",
         "photographed", "counted"]
OBJECTS = ["a wooden boat", "the broken clock", "seven yellow lamps", "an ancient map", "the heavy suitcase",
           "two silver keys", "a basket of apples", "the garden gate", "a long letter", "the red bicycle"]
PLACES = ["near the river", "before sunrise", "in the crowded market", "after the storm", "behind the library",
          "during the long winter", "at the edge of town", "on a windy hill", "beside the station", "under the bridge"]
FORMS = ["{s} {v} {o} {p}.", "Yesterday {s} {v} {o}.", "Did {s} really say that {o} was {p}?",
         "Nobody knew why {s} {v} {o} {p}.", "{p}, {s} {v} {o}, and then laughed.", "Was it {s} who {v} {o}?"]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland+m3", "en-gb-x-rp+f2", "en-us+m7"]


def sentences(n, seed=0):
    rnd = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        f = rnd.choice(FORMS)
        s = f.format(s=rnd.choice(SUBJECTS), v=rnd.choice(VERBS), o=rnd.choice(OBJECTS), p=rnd.choice(PLACES))
        s = s[0].upper() + s[1:]
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def to_16k(src, dst):
    subprocess.run(["sox", src, "-r", "16000", "-c", "1", "-b", "16", dst], check=True)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "speech-corpus")
    rnd = random.Random(1)
    for sub in ("train", "test", "test-real"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for i, text in enumerate(sentences(240)):
            voice = VOICES[i % len(VOICES)]
            raw = os.path.join(work, "raw.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rnd.randint(140, 190)), "-p", str(rnd.randint(30, 70)),
                            "-w", raw, text], check=True)
            split = "train" if i < 200 else "test"
            to_16k(raw, os.path.join(out, split, f"s{i:03d}-{voice.replace('+', '_')}.wav"))
        real = "/usr/share/sounds/alsa"
        if os.path.isdir(real):
            for name in sorted(os.listdir(real)):
                # The channel announcements are a real voice; Noise.wav is pink noise.
                if name.lower().endswith(".wav") and "noise" not in name.lower():
                    to_16k(os.path.join(real, name), os.path.join(out, "test-real", name))
    counts = {sub: len(os.listdir(os.path.join(out, sub))) for sub in ("train", "test", "test-real")}
    print(f"wrote {out}: {counts}")


if __name__ == "__main__":
    main()
