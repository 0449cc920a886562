#!/usr/bin/env python3
"""Generate the speech clips of tests/fixtures/whisper/ (FLAC, 16 kHz mono PCM16).

The clips are the input of the Whisper fidelity test: faster-whisper's
transcripts of them (scripts/gen_whisper_reference.py) are what brisk must
reproduce. They are synthesized, so they hold no one's voice and can be
remade:

  * espeak-ng (the Debian program, scripts/install-deps): several voices and
    speeds (words per minute);
  * piper (the `piper-tts` Python package) with the en_US-joe-medium voice
    that scripts/fetch-models puts in $BRISK_MODELS_DIR/piper-joe-medium,
    at several length scales, with noise_scale = noise_w_scale = 0 so the
    output is deterministic.

Some clips are longer than 30 s, so the decoder runs several windows and
conditions on the previous window's text. Each clip is resampled to 16 kHz
here (PyAV, as faster-whisper's decode_audio does) and stored as 16-bit
FLAC: both implementations then read the very same samples.

How to run (from the repository root):

    python3 -m venv /tmp/fwvenv
    /tmp/fwvenv/bin/pip install faster-whisper==1.2.1 piper-tts==1.8.0 soundfile==0.14.0
    /tmp/fwvenv/bin/python scripts/gen_whisper_speech.py

Options: --models-dir DIR (default $BRISK_MODELS_DIR, else models/),
--out DIR (default tests/fixtures/whisper). Also writes truth.json there:
the text each clip speaks (for word error rates; beckett.wav's is in the
test).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent

SHORT_A = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
SHORT_B = (
    "It was a bright cold day in April, and the clocks were striking thirteen. "
    "Nobody expected the meeting to end before noon."
)
SHORT_C = (
    "Turn left at the second traffic light, then keep going until you see "
    "the old railway station on your right."
)
LONG = (
    "In the early morning the harbour was quiet, and the fishing boats rocked "
    "gently against the old stone pier while gulls circled overhead. "
    "Merchants began to open their stalls along the waterfront, arranging "
    "crates of oranges, lemons, olives and fresh bread for the first customers. "
    "By nine o'clock the square was crowded with tourists taking photographs "
    "of the cathedral, students hurrying to lectures, and delivery vans "
    "trying to squeeze through the narrow medieval streets. "
    "An elderly man sat on a bench feeding pigeons, telling anyone who would "
    "listen about the storm of nineteen sixty two that had destroyed half the fleet. "
    "In the afternoon the wind picked up, the sky turned grey, and the "
    "fishermen hurried to secure their nets before the rain arrived."
)

# name, engine, voice / length scale, speed (espeak words per minute), text
CLIPS = [
    ("espeak_us_175", "espeak", "en-us", 175, SHORT_A),
    ("espeak_gb_140", "espeak", "en", 140, SHORT_B),
    ("espeak_f3_220", "espeak", "en-us+f3", 220, SHORT_C),
    ("espeak_long_160", "espeak", "en-us", 160, LONG),
    ("piper_joe_100", "piper", 1.0, None, SHORT_A),
    ("piper_joe_080", "piper", 0.8, None, SHORT_B),
    ("piper_joe_130", "piper", 1.3, None, SHORT_C),
    ("piper_long_110", "piper", 1.1, None, LONG),
]


def to_16k(path: Path) -> np.ndarray:
    """Decode and resample with PyAV, as faster_whisper.decode_audio does."""
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=16000)


def espeak(text: str, voice: str, wpm: int, out: Path) -> None:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True
    )


def piper(text: str, length_scale: float, onnx: Path, out: Path) -> None:
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(onnx))
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    with wave.open(str(out), "wb") as w:
        voice.synthesize_wav(text, w, syn_config=cfg)


def main() -> None:
    ap = argparse.ArgumentParser()
    models = os.environ.get("BRISK_MODELS_DIR", str(ROOT / "models"))
    ap.add_argument("--models-dir", default=models)
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/whisper"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = {name: text for name, _, _, _, text in CLIPS}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    onnx = Path(args.models_dir) / "piper-joe-medium/en_US-joe-medium.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine, voice, wpm, text in CLIPS:
            wav = Path(tmp) / f"{name}.wav"
            if engine == "espeak":
                espeak(text, voice, wpm, wav)
            else:
                piper(text, voice, onnx, wav)
            x = to_16k(wav)
            pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
            sf.write(out / f"{name}.flac", pcm, 16000, subtype="PCM_16")
            print(f"{name}: {len(pcm) / 16000:.1f} s")


if __name__ == "__main__":
    main()
