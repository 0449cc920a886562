#!/usr/bin/env python3
"""Danceability reference values for brisk's audio analysis (issue 22).

Writes four 16 s drum clips to crates/brisk-audio/tests/fixtures/analysis/
(FLAC, 22 050 Hz mono), from the most to the least regular pulse:
- groove_steady: kick / snare / eighth-note hats at 120 BPM, on the grid;
- groove_jitter: the same hits, each moved by N(0, 35 ms);
- hits_random: as many hits at uniformly random times;
- hits_sparse_random: a third as many hits at random times.

Then measures Essentia's `Danceability` (the reference brisk follows) on
every clip of that folder (and on models/testdata/beckett.wav, real
speech, when BRISK_MODELS_DIR points at the fetched models), fed the audio as librosa loads it (22 050 Hz
mono, the rate brisk analyses at), and writes danceability.json there.
crates/brisk-audio/tests/reference.rs checks brisk against it.

Environment: the one of scripts/gen_audio_analysis_reference.py
(librosa 0.11.0, essentia 2.1b6.dev1389, soundfile 0.14.0).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import librosa
import essentia
import essentia.standard as es

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/brisk-audio/tests/fixtures/analysis"
SR = 22050
DUR = 16.0


def drums(rng):
    t = np.arange(int(0.25 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(len(t)) * np.exp(-t * 25) * 0.5
    th = np.arange(int(0.05 * SR)) / SR
    hat = rng.standard_normal(len(th)) * np.exp(-th * 80) * 0.15
    return kick, snare, hat


def grid_hits(bpm=120.0):
    """(time, kind) of a rock beat: kick 1 and 3, snare 2 and 4, hats on 8ths."""
    beat = 60.0 / bpm
    hits = []
    b = 0
    while (b + 1) * beat < DUR:
        hits.append((b * beat, "kick" if b % 2 == 0 else "snare"))
        hits.append((b * beat, "hat"))
        hits.append(((b + 0.5) * beat, "hat"))
        b += 1
    return hits


def render(hits, sounds):
    kick, snare, hat = sounds
    y = np.zeros(int(DUR * SR))
    for t, kind in hits:
        s = {"kick": kick, "snare": snare, "hat": hat}[kind]
        i = int(round(t * SR))
        if i < 0 or i >= len(y):
            continue
        m = min(len(s), len(y) - i)
        y[i:i + m] += s[:m]
    return 0.8 * y / np.max(np.abs(y))


def main():
    rng = np.random.default_rng(22)
    sounds = drums(rng)
    hits = grid_hits()
    clips = {
        "groove_steady": hits,
        "groove_jitter": [(t + rng.normal(0, 0.035), k) for t, k in hits],
        "hits_random": [(rng.uniform(0, DUR - 0.3), k) for _, k in hits],
        "hits_sparse_random": [(rng.uniform(0, DUR - 0.3), k) for _, k in hits[::3]],
    }
    for name, h in clips.items():
        sf.write(OUT / f"{name}.flac", render(h, sounds), SR, subtype="PCM_16")

    essentia.log.warningActive = False
    dance = es.Danceability(sampleRate=SR)
    values = {}
    def measure(path):
        y, _ = librosa.load(str(path), sr=SR, mono=True)
        d, _dfa = dance(y.astype(np.float32))
        print(f"{path.stem:22s} {d:.4f}", file=sys.stderr)
        return float(d)

    for path in sorted(OUT.glob("*.flac")):
        values[path.stem] = measure(path)
    external = {}
    models = os.environ.get("BRISK_MODELS_DIR")
    if models and (Path(models) / "testdata/beckett.wav").exists():
        external["testdata/beckett.wav"] = measure(Path(models) / "testdata/beckett.wav")
    meta = {
        "generator": "scripts/gen_danceability_reference.py",
        "reference": "essentia.standard.Danceability(sampleRate=22050) on librosa.load(sr=22050, mono=True)",
        "versions": {"essentia": essentia.__version__, "librosa": librosa.__version__},
        "danceability": values,
        "external": external,
    }
    (OUT / "danceability.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
