#!/usr/bin/env python3
"""brisk's llama.cpp backend (examples/llama_cpp_bench) side by side with
llama-cpp-python (scripts/bench_llama_cpp.py), alternating, in one run:
same GGUF file, prompt, chat template, greedy decoding and thread count.

Each round runs llama-cpp-python, then brisk (8 slots: single stream,
4 streams, 8 streams at once), then brisk with one slot at
llama-cpp-python's context (`--rss-only`, the memory comparison), each in
its own process. Prints a markdown table of medians over the rounds with
brisk's ratio to llama.cpp on stdout, the raw JSON on stderr.

    cargo build --release -p brisk-server -p brisk-llama -p brisk-backends --examples --bins
    python3 -m venv /work/venv-llama && /work/venv-llama/bin/pip install llama-cpp-python==0.3.36
    python3 scripts/bench_llama_vs_brisk.py --python /work/venv-llama/bin/python \\
        --brisk target/release/examples/llama_cpp_bench \\
        --gguf models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

brisk runs with `--weights native`: the file's own types, as llama.cpp
runs it (the default `auto` would convert a small file to F16 first).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import cpu_model, run_json  # noqa: E402




def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", required=True, help="path of the llama_cpp_bench binary")
    ap.add_argument("--python", required=True, help="python with llama-cpp-python")
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    py, brisk, brisk1 = [], [], []
    for r in range(args.rounds):
        py.append(run_json([args.python, str(ROOT / "scripts/bench_llama_cpp.py"), args.gguf]))
        common = [args.brisk, args.gguf, "--weights", "native", "--threads", str(args.threads)]
        brisk.append(run_json(common))
        brisk1.append(run_json(common + ["--rss-only", "--context", "2048"]))
        print(f"round {r + 1}: {json.dumps({'py': py[-1], 'brisk': brisk[-1], 'brisk_1slot': brisk1[-1]})}",
              file=sys.stderr)

    p_pref, b_pref = med(py, "prefill_s_median"), med(brisk, "single_ttft_s")
    p_tps, b_tps = med(py, "gen_tps_median"), med(brisk, "gen_tps_median")
    p_rss, b_rss = med(py, "peak_rss_mib"), med(brisk1, "peak_rss_mib")
    rows = [
        ("single-stream decode, tokens/s", f"{p_tps:.1f}", f"{b_tps:.1f}", f"{b_tps / p_tps:.2f}x", ">= 0.95x"),
        ("prompt (prefill to first token), s", f"{p_pref:.3f}", f"{b_pref:.3f}",
         f"{p_pref / b_pref:.2f}x speed", ">= 0.95x"),
        ("4 streams aggregate decode (sum of stream rates), tokens/s", "-",
         f"{med(brisk, 'four_streams_decode_tps'):.1f}",
         f"{med(brisk, 'four_decode_vs_single'):.2f}x brisk single", ">= 2.5x single"),
        ("4 streams, all tokens / wall time incl. 4 prefills, tokens/s", "-",
         f"{med(brisk, 'four_streams_aggregate_tps'):.1f}",
         f"{med(brisk, 'four_vs_single'):.2f}x brisk single", ""),
        ("8 streams at once, median TTFT, s", "-", f"{med(brisk, 'eight_streams_ttft_median_s'):.3f}",
         f"{med(brisk, 'eight_streams_ttft_median_s') / b_pref:.2f}x brisk single", "<= 2x single"),
        ("peak RSS, one sequence, MiB", f"{p_rss:.0f}", f"{b_rss:.0f}", f"{b_rss / p_rss:.2f}x", "<= 1.15x"),
        ("peak RSS, 8 slots, MiB", "-", f"{med(brisk, 'peak_rss_mib'):.0f}", "", ""),
        ("load, s (brisk: exec to first token)", f"{med(py, 'load_s'):.3f}",
         f"{med(brisk, 'cold_start_to_first_token_s'):.3f}", "", "< 1 s"),
    ]
    print(f"CPU: {cpu_model()}, {args.threads} threads, {args.rounds} alternating rounds, "
          f"llama-cpp-python {py[0]['llama_cpp_python']}, file {Path(args.gguf).name}\n")
    print("| measure | llama.cpp (llama-cpp-python) | brisk | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
