#!/usr/bin/env python3
"""Batched long audio (issue 17, item 5): brisk's CTranslate2 Whisper
decoding the VAD pieces of a long file as one batch, against
faster-whisper's SEQUENTIAL `WhisperModel.transcribe` of the same file,
same weights, same compute type, 2 threads each, alternating in the same
minutes. Prints one JSON line per measurement and a summary for
BENCHMARKS.md.

    /tmp/fwvenv/bin/pip install faster-whisper==1.2.1
    scripts/ct2-prebuilt
    cargo build --release -p brisk-ct2 --example ct2_whisper_bench
    /tmp/fwvenv/bin/python scripts/bench_whisper_batch.py [ROUNDS]

The audio: beckett.wav and the clips of tests/fixtures/whisper/
(scripts/gen_whisper_speech.py) one after another with 1 s of silence
between, about 3 minutes of speech whose text is known (truth.json), so
both word error rates are measured against the truth.

The pieces: speech found by the silero VAD (faster-whisper's
`get_speech_timestamps`, run here with the parameters of brisk's
`VadParams::default()`: threshold 0.5, 100 ms of silence, 250 ms of
speech, 30 ms padding), grouped into pieces of up to 30 s as brisk's
`speech::chunking::plan` groups them. The VAD's time is measured here and
added to brisk's (brisk's server runs the same silero model on ONNX
Runtime); the example times the decoding.

Decoding, both sides: greedy (beam_size=1), language English, the default
temperature fallback (0, 0.2, ..., 1.0 on compression ratio 2.4 and log-prob
-1.0), no-speech threshold 0.6, timestamps on. faster-whisper runs its
sequential loop over the whole file (vad_filter off, condition on previous
text on: its defaults); brisk decodes the pieces without conditioning, as
faster-whisper's BatchedInferencePipeline does.

Internal mode: `--fw MODEL_DIR COMPUTE_TYPE WAV REPEATS` times faster-whisper
alone in this process and prints its JSON.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, run_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
MAX_CHUNK_S = 30.0


def read_audio(path: Path) -> np.ndarray:
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000, path
    if x.ndim > 1:
        x = x.mean(axis=1)
    return x


def long_file(models: Path) -> tuple[np.ndarray, str]:
    truth = json.loads((ROOT / "tests/fixtures/whisper/truth.json").read_text())
    parts = [(read_audio(models / "testdata/beckett.wav"), BECKETT)]
    for name, text in sorted(truth.items()):
        parts.append((read_audio(ROOT / f"tests/fixtures/whisper/{name}.flac"), text))
    gap = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([np.concatenate([a, gap]) for a, _ in parts])
    return audio, " ".join(t for _, t in parts)


def write_wav(path: Path, audio: np.ndarray) -> np.ndarray:
    pcm = np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    # Both engines read these very samples.
    return pcm.astype(np.float32) / 32768.0


def vad_pieces(audio: np.ndarray) -> tuple[list[tuple[float, float]], float]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(threshold=0.5, min_silence_duration_ms=100, min_speech_duration_ms=250, speech_pad_ms=30)
    t = time.perf_counter()
    speech = get_speech_timestamps(audio, opts)
    vad_s = time.perf_counter() - t
    pieces: list[list[float]] = []
    for s in speech:
        start, end = s["start"] / 16000, s["end"] / 16000
        if pieces and end - pieces[-1][0] <= MAX_CHUNK_S:
            pieces[-1][1] = end
        else:
            pieces.append([start, end])
    return [(a, b) for a, b in pieces], vad_s


def words(s: str) -> list[str]:
    s = re.sub(r"[^\w'\s]", " ", s.lower())
    return s.split()


def wer(ref: str, hyp: str) -> float:
    r, h = words(ref), words(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r):
        cur = [i + 1] * (len(h) + 1)
        for j, hw in enumerate(h):
            cur[j + 1] = min(prev[j] + (rw != hw), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[len(h)] / max(1, len(r))


def fw_main(model_dir: str, compute_type: str, wav: str, repeats: int) -> None:
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=2)
    audio = read_audio(Path(wav))
    best, text = None, ""
    for _ in range(repeats):
        t = time.perf_counter()
        segments, _ = model.transcribe(audio, beam_size=1, language="en")
        text = " ".join(s.text.strip() for s in segments)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    dur = len(audio) / 16000
    print(json.dumps({"engine": "faster-whisper", "compute_type": compute_type, "audio_s": round(dur, 2),
                      "sequential_s": round(best, 3), "sequential_rtf": round(best / dur, 4), "text": text}))


def main() -> None:
    if sys.argv[1:2] == ["--fw"]:
        fw_main(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    repeats = 2
    models = Path(os.environ.get("BRISK_MODELS_DIR", ROOT / "models"))
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    brisk = target / "release/examples/ct2_whisper_bench"
    tmp = Path(tempfile.mkdtemp())
    audio, truth = long_file(models)
    wav = tmp / "long.wav"
    audio = write_wav(wav, audio)
    pieces, vad_s = vad_pieces(audio)
    (tmp / "pieces.txt").write_text("".join(f"{a:.3f} {b:.3f}\n" for a, b in pieces))
    dur = len(audio) / 16000
    print(json.dumps({"cpu": cpu_model(), "audio_s": round(dur, 2), "pieces": len(pieces),
                      "piece_s": [round(b - a, 1) for a, b in pieces], "vad_s": round(vad_s, 3)}), flush=True)
    results: dict[tuple[str, str], dict[str, list]] = {}
    for rnd in range(rounds):
        for model in ("whisper-tiny-en", "whisper-base"):
            for ct in ("int8", "float32"):
                b = run_json([str(brisk), str(models / model), str(wav), ct, "2", str(repeats),
                              "--pieces", str(tmp / "pieces.txt")])
                f = run_json([sys.executable, __file__, "--fw", str(models / model), ct, str(wav), str(repeats)])
                r = results.setdefault((model, ct), {"brisk": [], "fw": []})
                r["brisk"].append(b)
                r["fw"].append(f)
                print(json.dumps({"round": rnd + 1, "model": model, "compute_type": ct,
                                  "brisk_batched_s": b["batched_s"], "fw_sequential_s": f["sequential_s"]}),
                      flush=True)
    print("\n| model | compute | brisk batched RTF (+VAD) | faster-whisper sequential RTF | ratio | WER brisk batched | WER brisk sequential | WER fw sequential |")
    print("|---|---|---|---|---|---|---|---|")
    for (model, ct), r in results.items():
        b_s = min(x["batched_s"] for x in r["brisk"]) + vad_s
        f_s = min(x["sequential_s"] for x in r["fw"])
        b = r["brisk"][-1]
        print(f"| {model} | {ct} | {b_s / dur:.4f} | {f_s / dur:.4f} | {b_s / f_s:.2f}x | "
              f"{wer(truth, b['batched_text']):.3f} | {wer(truth, b['sequential_text']):.3f} | "
              f"{wer(truth, r['fw'][-1]['text']):.3f} |")
        print(json.dumps({"model": model, "compute_type": ct, "brisk": r["brisk"], "fw": r["fw"]}), file=sys.stderr)


if __name__ == "__main__":
    main()
