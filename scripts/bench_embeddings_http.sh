#!/usr/bin/env bash
# bench_embeddings_http.sh — MiniLM embeddings over HTTP with 32 concurrent
# clients (issue 18), for BENCHMARKS.md: a release `brisk serve` with the
# result cache off (every request reaches the model), one sentence per
# request from the 1024 sentences scripts/bench_embeddings_vs_st.py uses,
# driven by `brisk bench load`. Compare its requests/s (= sentences/s) with
# sentence-transformers' in-process batch-32 figure from the same minutes.
#
#   cargo build --release -p brisk-server --bin brisk
#   scripts/bench_embeddings_http.sh [target/release/brisk] [QUANTIZE]
#
# QUANTIZE: empty (float32) or int8.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/brisk}"
QUANT="${2:-}"
PORT="${PORT:-18089}"
tmp="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

options=""
[[ -n "$QUANT" ]] && options="options = { quantize = \"$QUANT\" }"
cat >"$tmp/embed.toml" <<EOF
[server]
models_dir = "$PWD/models"
discover = false
[cache]
enabled = false
[models.all-minilm-l6-v2]
source = "all-minilm-l6-v2"
policy = "preload"
$options
EOF

"$BIN" serve --config "$tmp/embed.toml" --port "$PORT" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "127.0.0.1:$PORT/v2/health/ready" >/dev/null || { cat "$tmp/server.log"; exit 1; }

inputs=()
while IFS= read -r line; do inputs+=(--input "$line"); done < <(
  python3 -c 'import sys; sys.path.insert(0, "scripts")
from bench_python_embeddings import make_sentences
print("\n".join(make_sentences(1024, seed=2)))')

# Warm-up, then the measured run.
"$BIN" bench load --addr "127.0.0.1:$PORT" --model all-minilm-l6-v2 "${inputs[@]}" \
  --concurrency 32 --requests 256 >/dev/null
"$BIN" bench load --addr "127.0.0.1:$PORT" --model all-minilm-l6-v2 "${inputs[@]}" \
  --concurrency 32 --requests 4096 --max-seconds 120 --pid "$pid"
