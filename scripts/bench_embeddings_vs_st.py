#!/usr/bin/env python3
"""brisk's in-process embeddings (examples/embed_bench) side by side with
sentence-transformers (scripts/bench_python_embeddings.py), alternating, in
one run: same sentences, same thread count, same machine, same minutes.

Each round runs sentence-transformers, then brisk float32 (onnx-bert), then
brisk int8, each in its own process; the table gives the median over rounds
and brisk's ratio to sentence-transformers (throughput: higher is better;
batch-1 latency: lower is better). Prints markdown on stdout, raw JSON on
stderr.

    cargo build --release -p brisk-backends --no-default-features --features onnx --example embed_bench
    /work/venv-ref/bin/python scripts/bench_embeddings_vs_st.py \\
        --brisk target/release/examples/embed_bench --model-dir models/all-minilm-l6-v2

Needs the sentence-transformers venv (scripts/setup-python-ref) for --python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_python_embeddings import make_sentences  # noqa: E402
from bench_common import cpu_model, run_json  # noqa: E402




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", required=True, help="path of the embed_bench binary")
    ap.add_argument("--model-dir", default=str(ROOT / "models/all-minilm-l6-v2"))
    ap.add_argument("--python", default=sys.executable, help="python with sentence-transformers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="brisk-bench-"))
    single, batched = tmp / "single.txt", tmp / "batched.txt"
    # The sets bench_python_embeddings.py uses (same seeds and sizes).
    single.write_text("\n".join(make_sentences(200, seed=1)) + "\n")
    batched.write_text("\n".join(make_sentences(1024, seed=2)) + "\n")

    st_cmd = [args.python, str(ROOT / "scripts/bench_python_embeddings.py"),
              "--model-dir", args.model_dir, "--threads", str(args.threads)]
    brisk = [args.brisk, args.model_dir, "--backend", "onnx", "--threads", str(args.threads),
             "--sentences", str(batched), "--single", str(single)]
    runs: dict[str, list[dict]] = {"st": [], "fp32": [], "int8": []}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
        st = run_json(st_cmd)
        runs["st"].append({
            "batch1": st["batch1"]["sentences_per_s"],
            "p50_ms": st["batch1"]["latency_ms"]["p50"],
            "batch32": st["batch32"]["sentences_per_s"],
            "rss": st["peak_rss_mib"],
        })
        for name, extra in [("fp32", []), ("int8", ["--quantize", "int8"])]:
            b = run_json(brisk + extra)
            runs[name].append({
                "batch1": b["batch1_sentences_per_s"],
                "p50_ms": b["batch1_p50_ms"],
                "batch32": b["batch32_sentences_per_s"],
                "rss": b["peak_rss_mib"],
            })
    print(json.dumps(runs, indent=1), file=sys.stderr)

    def med(name: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[name])

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, {args.threads} threads, "
          f"{args.rounds} alternating rounds, load average at end {os.getloadavg()[0]:.1f}\n")
    print("| | batch 32 (sentences/s) | ratio | batch 1 (sentences/s) | batch-1 p50 | p50 ratio | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name, label in [("st", "sentence-transformers"), ("fp32", "brisk onnx-bert float32"),
                        ("int8", "brisk onnx-bert int8")]:
        print(f"| {label} | {med(name, 'batch32'):.0f} | {med(name, 'batch32') / med('st', 'batch32'):.2f}× "
              f"| {med(name, 'batch1'):.0f} | {med(name, 'p50_ms'):.2f} ms "
              f"| {med(name, 'p50_ms') / med('st', 'p50_ms'):.2f}× | {med(name, 'rss'):.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
