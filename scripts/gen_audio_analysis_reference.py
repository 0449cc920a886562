#!/usr/bin/env python3
"""Fixtures and reference values for brisk's audio analysis (issue 22).

Writes short synthetic clips with known answers to
crates/brisk-audio/tests/fixtures/analysis/ (FLAC) and the reference values
measured on them by librosa, pyloudnorm and essentia to reference.json
there. crates/brisk-audio/tests/reference.rs checks brisk against both.

Environment (its own venv; none of torch needed):
    python3 -m venv /tmp/ana-venv
    /tmp/ana-venv/bin/pip install --only-binary=:all: librosa==0.11.0 \
        pyloudnorm==0.2.0 essentia==2.1b6.dev1389 soundfile==0.14.0
    /tmp/ana-venv/bin/python scripts/gen_audio_analysis_reference.py

Clips (all deterministic, seeded):
- clicks_<bpm>: 12 s of decaying 1.5 kHz clicks at 60..180 BPM (truth: bpm).
- key_<tonic>_<mode>: 4 s, a scale then I-IV-V-I (i-iv-V-i) of harmonic
  tones, all 24 keys (truth: key).
- pink_m23: 8 s pink noise scaled to -23 LUFS by pyloudnorm.
- song: 12 s, 44.1 kHz stereo, drums + bass + chords in A minor at 128 BPM.
- beckett (not committed: models/testdata/beckett.wav, 16 kHz speech), when
  BRISK_MODELS_DIR points at the fetched models.
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import librosa
import pyloudnorm as pyln

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/brisk-audio/tests/fixtures/analysis"
SR = 22050
NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def tone(freq, dur, sr, partials=6):
    t = np.arange(int(dur * sr)) / sr
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, partials + 1) if freq * k < sr / 2)
    env = np.minimum(1.0, t / 0.01) * np.exp(-1.5 * t)
    return y * env


def clicks(bpm, dur=12.0, sr=SR):
    y = np.zeros(int(dur * sr))
    click = np.sin(2 * np.pi * 1500 * np.arange(int(0.03 * sr)) / sr) * np.exp(-np.arange(int(0.03 * sr)) / (0.005 * sr))
    period = 60.0 / bpm
    t = 0.1
    while t + 0.03 < dur:
        i = int(round(t * sr))
        y[i:i + len(click)] += click
        t += period
    return 0.5 * y


def key_clip(tonic, minor, sr=SR):
    base = 261.63 * 2 ** (tonic / 12)  # tonic in octave 4
    steps = [0, 2, 3, 5, 7, 8, 11, 12] if minor else [0, 2, 4, 5, 7, 9, 11, 12]
    parts = [tone(base * 2 ** (s / 12), 0.25, sr) for s in steps]
    third = 3 if minor else 4
    chords = [(0, third, 7), (5, 5 + (3 if minor else 4), 12), (7, 11, 14), (0, third, 7)]
    for c in chords:
        y = sum(tone(base * 2 ** (s / 12), 0.5, sr) for s in c)
        y = y + 0.7 * tone(base / 2 * 2 ** (c[0] / 12), 0.5, sr)  # bass note
        parts.append(y / 3)
    y = np.concatenate(parts)
    return 0.3 * y / np.max(np.abs(y))


def pink(n, rng):
    # Voss-McCartney-free: shape white noise by 1/sqrt(f) in the frequency domain.
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    y = np.fft.irfft(spec, n)
    return y / np.max(np.abs(y))


def song(sr=44100, dur=12.0, bpm=128.0, seed=7):
    rng = np.random.default_rng(seed)
    n = int(dur * sr)
    left = np.zeros(n)
    right = np.zeros(n)
    beat = 60.0 / bpm
    t = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    snare = rng.standard_normal(len(t)) * np.exp(-t * 25) * 0.5
    hat = rng.standard_normal(int(0.05 * sr)) * np.exp(-np.arange(int(0.05 * sr)) / sr * 80) * 0.15
    # A minor: Am F C G, one bar (4 beats) each.
    prog = [(9, 0, 4), (5, 9, 0), (0, 4, 7), (7, 11, 2)]
    roots = [57, 53, 48, 55]  # midi bass roots (A3 F3 C3 G3)
    nbeats = int(dur / beat)
    for b in range(nbeats):
        i = int(b * beat * sr)
        seg = slice(i, min(n, i + len(kick)))
        m = seg.stop - seg.start
        if b % 2 == 0:
            left[seg] += kick[:m]; right[seg] += kick[:m]
        else:
            left[seg] += snare[:m] * 0.8; right[seg] += snare[:m]
        for h in (0, 0.5):
            j = int((b + h) * beat * sr)
            hs = slice(j, min(n, j + len(hat)))
            right[hs] += hat[: hs.stop - hs.start]
            left[hs] += 0.6 * hat[: hs.stop - hs.start]
        bar = (b // 4) % 4
        if b % 4 == 0:
            dur_bar = 4 * beat
            chord = sum(tone(440 * 2 ** ((pc - 9) / 12), dur_bar, sr, 4) for pc in prog[bar])
            bass = tone(440 * 2 ** ((roots[bar] - 24 - 69) / 12) * 2, dur_bar, sr, 3)
            cs = slice(i, min(n, i + len(chord)))
            mm = cs.stop - cs.start
            left[cs] += 0.25 * chord[:mm] + 0.4 * bass[:mm]
            right[cs] += 0.2 * chord[:mm] + 0.4 * bass[:mm]
    y = np.stack([left, right], axis=1)
    return 0.8 * y / np.max(np.abs(y))


def librosa_features(path):
    y, sr = librosa.load(path, sr=SR, mono=True)
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, tuning=0.0)
    return {
        "duration": float(len(y) / sr),
        "tempo_bpm": float(np.atleast_1d(tempo)[0]),
        "beats": [float(t) for t in librosa.frames_to_time(beats, sr=sr)],
        "rms": float(librosa.feature.rms(y=y).mean()),
        "centroid_hz": float(librosa.feature.spectral_centroid(y=y, sr=sr).mean()),
        "rolloff_hz": float(librosa.feature.spectral_rolloff(y=y, sr=sr).mean()),
        "flatness": float(librosa.feature.spectral_flatness(y=y).mean()),
        "zcr": float(librosa.feature.zero_crossing_rate(y).mean()),
        "mfcc_mean": [float(v) for v in mfcc.mean(axis=1)],
        "mfcc_var": [float(v) for v in mfcc.var(axis=1)],
        "chroma_mean": [float(v) for v in chroma.mean(axis=1)],
    }


def loudness_refs(path):
    data, rate = sf.read(path, always_2d=True)
    out = {"pyloudnorm_lufs": float(pyln.Meter(rate).integrated_loudness(data))}
    try:
        import essentia.standard as es
        stereo = data if data.shape[1] == 2 else np.repeat(data[:, :1], 2, axis=1)
        _, _, integ, lra = es.LoudnessEBUR128(sampleRate=rate)(stereo.astype(np.float32))
        # essentia reads mono as two identical channels: +3.01 LU over BS.1770 mono.
        out["essentia_lra_lu"] = float(lra)
        out["essentia_integrated_lufs_as_stereo"] = float(integ)
        key, scale, strength = es.KeyExtractor(sampleRate=rate)(data.mean(axis=1).astype(np.float32))
        out["essentia_key"] = f"{key} {scale}"
    except ImportError:
        pass
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    clips = {}

    for bpm in [60, 72, 84, 96, 108, 120, 132, 144, 156, 168, 180]:
        name = f"clicks_{bpm}"
        sf.write(OUT / f"{name}.flac", clicks(bpm), SR, subtype="PCM_16")
        clips[name] = {"truth": {"bpm": bpm}}

    for tonic in range(12):
        for minor in (False, True):
            name = f"key_{NAMES[tonic].replace('#', 's')}_{'minor' if minor else 'major'}"
            sf.write(OUT / f"{name}.flac", key_clip(tonic, minor), SR, subtype="PCM_16")
            clips[name] = {"truth": {"key": NAMES[tonic], "scale": "minor" if minor else "major"}}

    y = pink(8 * SR, rng)
    meter = pyln.Meter(SR)
    y = pyln.normalize.loudness(y, meter.integrated_loudness(y), -23.0)
    sf.write(OUT / "pink_m23.flac", y, SR, subtype="PCM_16")
    clips["pink_m23"] = {"truth": {"lufs": -23.0}}

    sf.write(OUT / "song.flac", song(), 44100, subtype="PCM_16")
    clips["song"] = {"truth": {"bpm": 128.0, "key": "A", "scale": "minor"}}

    files = {name: OUT / f"{name}.flac" for name in clips}
    models = os.environ.get("BRISK_MODELS_DIR")
    if models and (Path(models) / "testdata/beckett.wav").exists():
        clips["beckett"] = {"truth": {}, "external": "testdata/beckett.wav"}
        files["beckett"] = Path(models) / "testdata/beckett.wav"

    for name, path in files.items():
        clips[name]["librosa"] = librosa_features(str(path))
        clips[name].update(loudness_refs(str(path)))
        print(name, clips[name]["librosa"]["tempo_bpm"], clips[name].get("pyloudnorm_lufs"), file=sys.stderr)

    meta = {
        "generator": "scripts/gen_audio_analysis_reference.py",
        "versions": {"librosa": librosa.__version__, "numpy": np.__version__,
                     "pyloudnorm": getattr(pyln, "__version__", "0.2.0")},
        "clips": clips,
    }
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
