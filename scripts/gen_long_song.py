#!/usr/bin/env python3
"""A long music file for the audio-analysis benchmarks (BENCHMARKS.md,
issue 22): the 12 s synthetic song of the fixtures
(crates/brisk-audio/tests/fixtures/analysis/song.flac, 44.1 kHz stereo)
repeated to MINUTES minutes, each repeat at a random gain (seeded), written
block by block so memory stays small whatever the length.

    /work/venv-ref/bin/python scripts/gen_long_song.py MINUTES OUT.flac

Needs soundfile and numpy (the reference venv has both).
"""
import os
import sys

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SONG = os.path.join(ROOT, "crates/brisk-audio/tests/fixtures/analysis/song.flac")


def main():
    minutes, out = float(sys.argv[1]), sys.argv[2]
    song, rate = sf.read(SONG, always_2d=True, dtype="float32")
    rng = np.random.default_rng(2026)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(out, "w", samplerate=rate, channels=song.shape[1], format="FLAC") as f:
        written = 0
        while written < total:
            block = song[: total - written] * rng.uniform(0.5, 1.0)
            f.write(np.clip(block, -1.0, 1.0))
            written += len(block)


if __name__ == "__main__":
    main()
