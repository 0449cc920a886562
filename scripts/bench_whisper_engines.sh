#!/usr/bin/env bash
# bench_whisper_engines.sh — brisk's CTranslate2 Whisper (brisk-ct2's
# ct2_whisper_bench example) and faster-whisper side by side, alternating
# in the same minutes: same weights, same compute type, 2 threads, greedy,
# temperature 0 without fallback, no timestamps, English; 10 s (beckett.wav)
# and 60 s (the clip six times); best of 3 per run. Prints one JSON line
# per run for BENCHMARKS.md.
#
# Usage: scripts/bench_whisper_engines.sh FASTER_WHISPER_PYTHON [ROUNDS]
#   (a python with faster-whisper==1.2.1 installed; see
#   scripts/gen_whisper_reference.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:?python with faster-whisper}"
ROUNDS="${2:-2}"
MODELS="${BRISK_MODELS_DIR:-$PWD/models}"
WAV="$MODELS/testdata/beckett.wav"
# Release: the dev profile optimises dependencies only, not brisk-ct2's own
# log-mel and decoding loop. CTranslate2 itself is the prebuilt wheel
# library (scripts/ct2-prebuilt), the same in both engines.
scripts/ct2-prebuilt >&2
cargo build --release -p brisk-ct2 --example ct2_whisper_bench >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/ct2_whisper_bench"
for round in $(seq "$ROUNDS"); do
  for model in whisper-tiny-en whisper-base; do
    for ct in float32 int8; do
      echo "# round $round $model $ct" >&2
      "$BIN" "$MODELS/$model" "$WAV" "$ct" 2 3
      "$PY" scripts/bench_faster_whisper.py "$MODELS/$model" "$WAV" "$ct" | tr -d '\n '
      echo
    done
  done
done
