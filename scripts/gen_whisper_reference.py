#!/usr/bin/env python3
"""Generate tests/fixtures/whisper_reference.json with real faster-whisper.

The fixture holds faster-whisper's transcripts of beckett.wav and of the
synthesized clips in tests/fixtures/whisper/ (made by
scripts/gen_whisper_speech.py), for whisper-tiny-en and whisper-base (the
CTranslate2 folders of scripts/fetch-models), with and without timestamps.
brisk's Whisper backend is tested against it
(crates/brisk-backends/tests/whisper_fidelity.rs).

Decoding is faster-whisper's `WhisperModel.transcribe` with
  beam_size=1 (greedy), temperature=0.0 (one temperature: no fallback),
  language="en", condition_on_previous_text=True (its default),
  vad_filter=False, compute_type="float32", cpu_threads=2,
and every other option at its default (suppress_tokens=[-1],
suppress_blank=True, max_initial_timestamp=1.0, no_speech_threshold=0.6,
log_prob_threshold=-1.0). The samples are read as int16 / 32768, exactly as
brisk's decoder reads PCM16.

How to run (from the repository root):

    python3 -m venv /tmp/fwvenv
    /tmp/fwvenv/bin/pip install faster-whisper==1.2.1 soundfile==0.14.0
    BRISK_MODELS_DIR=models /tmp/fwvenv/bin/python scripts/gen_whisper_reference.py

Times are rounded to 0.01 s (faster-whisper's own times are multiples of
0.02 s plus a window offset that is a multiple of 0.01 s).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["whisper-tiny-en", "whisper-base"]


def clips(models_dir: Path, speech_dir: Path):
    yield "beckett", models_dir / "testdata/beckett.wav"
    for p in sorted(speech_dir.glob("*.flac")):
        yield p.stem, p


def read(path: Path) -> np.ndarray:
    pcm, rate = sf.read(str(path), dtype="int16")
    assert rate == 16000 and pcm.ndim == 1, (path, rate, pcm.shape)
    return pcm.astype(np.float32) / 32768.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=os.environ.get("BRISK_MODELS_DIR", str(ROOT / "models")))
    ap.add_argument("--speech-dir", default=str(ROOT / "tests/fixtures/whisper"))
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/whisper_reference.json"))
    ap.add_argument("--compute-type", default="float32")
    args = ap.parse_args()
    import faster_whisper
    from faster_whisper import WhisperModel

    models_dir = Path(args.models_dir)
    out = {
        "generator": f"faster-whisper {faster_whisper.__version__}",
        "options": {
            "beam_size": 1,
            "temperature": 0.0,
            "language": "en",
            "condition_on_previous_text": True,
            "compute_type": args.compute_type,
        },
        "cases": [],
    }
    audio = {name: read(path) for name, path in clips(models_dir, Path(args.speech_dir))}
    for model_name in MODELS:
        model = WhisperModel(
            str(models_dir / model_name), device="cpu", compute_type=args.compute_type, cpu_threads=2
        )
        for name, x in audio.items():
            for timestamps in (False, True):
                segments, _ = model.transcribe(
                    x,
                    beam_size=1,
                    temperature=0.0,
                    language="en",
                    without_timestamps=not timestamps,
                    vad_filter=False,
                )
                segs = [
                    {"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text}
                    for s in segments
                ]
                case = {
                    "model": model_name,
                    "clip": name,
                    "timestamps": timestamps,
                    "duration_s": round(len(x) / 16000, 4),
                    "text": "".join(s["text"] for s in segs).strip(),
                    "segments": segs,
                }
                print(f"{model_name} {name} ts={timestamps}: {case['text'][:90]}")
                out["cases"].append(case)
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
