"""Baseline for BENCHMARKS.md: faster-whisper (CTranslate2) on the same
CTranslate2 weights brisk serves, on the same machine.

    python3 -m venv /tmp/fwvenv && /tmp/fwvenv/bin/pip install faster-whisper
    /tmp/fwvenv/bin/python scripts/bench_faster_whisper.py models/whisper-tiny-en models/testdata/beckett.wav

Greedy decoding (beam_size=1) at temperature 0 without faster-whisper's
temperature fallback (brisk has none; on the repetitive 60 s clip the
compression-ratio check would otherwise re-decode windows at higher
temperatures), no timestamps, language forced to English, 2 threads, float32
(the weights are float16; CPU CTranslate2 computes in float32 unless int8 is
asked). Reports import and load time, wall time and real-time factor
(processing seconds / audio seconds) for the 10 s clip and for a 60 s clip
made of it six times, and peak RSS. Prints JSON.

    python scripts/bench_faster_whisper.py MODEL_DIR WAV [COMPUTE_TYPE] [--fallback]

--fallback keeps faster-whisper's default temperature schedule
(0.0, 0.2, ..., 1.0) for comparison.
"""

import json
import resource
import sys
import time
import wave

import numpy as np


def read_wav_16k_mono(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, "expects PCM16"
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if rate != 16000:
        n = int(len(x) * 16000 / rate)
        x = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
    return x


def main():
    args = [a for a in sys.argv[1:] if a != "--fallback"]
    fallback = "--fallback" in sys.argv[1:]
    model_dir, wav = args[0], args[1]
    compute_type = args[2] if len(args) > 2 else "float32"
    t0 = time.perf_counter()
    from faster_whisper import WhisperModel

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=2)
    load_s = time.perf_counter() - t0
    clip = read_wav_16k_mono(wav)
    temperature = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] if fallback else 0.0
    out = {
        "model": model_dir,
        "compute_type": compute_type,
        "temperature_fallback": fallback,
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "runs": [],
    }
    for name, audio in (("10s", clip), ("60s", np.tile(clip, 6))):
        best = None
        for _ in range(3):
            t = time.perf_counter()
            segments, _info = model.transcribe(
                audio,
                beam_size=1,
                language="en",
                without_timestamps=True,
                condition_on_previous_text=False,
                temperature=temperature,
            )
            text = " ".join(s.text.strip() for s in segments)
            dt = time.perf_counter() - t
            best = dt if best is None else min(best, dt)
        dur = len(audio) / 16000
        out["runs"].append(
            {"clip": name, "audio_s": round(dur, 2), "best_s": round(best, 3), "rtf": round(best / dur, 4), "text": text[:120]}
        )
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
