#!/usr/bin/env python3
"""Python baseline benchmark: sentence-transformers all-MiniLM-L6-v2 on CPU.

Gives the numbers brisk's embedding path is compared against. Measures, with
torch.set_num_threads(2):

  (a) sentences/s encoding one sentence per call (batch 1, N=200 by default)
  (b) sentences/s encoding 32-sentence batches (32 concurrent clients served
      as one batch) over ~1000 sentences (32 batches of 32 by default)
  (c) p50/p99 (and mean/max) per-call latency for batch 1
  (d) time from process start to the first embedding, plus the breakdown
      import / model load / first encode as seen from inside the script
  (e) peak RSS of the process (resource.getrusage)

The sentence set is generated deterministically (fixed seed, 10-20 words per
sentence), so runs are comparable. Prints one JSON object on stdout; progress
and warnings go to stderr.

How to run (from the repository root):

    scripts/fetch-models all-minilm-l6-v2
    BRISK_PY_VENV=/tmp/stvenv scripts/setup-python-ref
    /tmp/stvenv/bin/python scripts/bench_python_embeddings.py > /tmp/python_bench_result.json

Options: --model-dir DIR, --n-single N (200), --n-batched N (1024),
--batch-size B (32), --threads T (2), --warmup W (5).
The machine should be otherwise idle. The output includes the load average
and "other_processes_cpu_pct" (share of the machine's CPU used by other
processes during each phase, from /proc/stat); with more than a few percent
the run was disturbed and should be repeated.
"""

from __future__ import annotations

# Taken before any heavy import: the script's own t0.
import time

_T0_PERF = time.perf_counter()


def process_age_s() -> float | None:
    """Seconds since this process started (/proc; 10 ms resolution).

    /proc/self/stat field 22 is the start time in clock ticks since boot and
    /proc/uptime is the time since boot, so their difference is the age.
    """
    try:
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/self/stat") as f:
            stat = f.read()
        # Fields after "(comm)"; comm may contain spaces. starttime is field 22.
        start_ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
        import os as _os

        return uptime - start_ticks / _os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_T0_AGE = process_age_s()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent

SUBJECTS = [
    "the engineer", "a small team", "our customer", "the new server", "my neighbour",
    "the research group", "an old friend", "the city council", "the delivery robot",
    "a curious student", "the database", "the weather service", "the orchestra",
    "a local bakery", "the football club", "the hospital", "the startup",
]
VERBS = [
    "reviewed", "deployed", "cancelled", "celebrated", "measured", "rebuilt",
    "questioned", "announced", "optimised", "painted", "repaired", "described",
    "predicted", "shipped", "discovered", "translated", "ignored",
]
OBJECTS = [
    "the quarterly report", "a faster search index", "the broken bridge",
    "three new recipes", "the annual budget", "a noisy fan", "the training data",
    "an unusual painting", "the release notes", "a vintage bicycle",
    "the latency dashboard", "a forgotten letter", "the garden fence",
    "the concert programme", "a memory leak", "the holiday schedule",
]
TAILS = [
    "before the meeting on Tuesday", "after a long discussion",
    "because the old one kept failing", "with surprisingly little effort",
    "during the heavy storm last night", "while everyone else was asleep",
    "to the delight of the whole office", "despite several complaints",
    "in less than an hour", "for the third time this year",
    "under strict supervision", "without telling anyone",
]
FILLERS = [
    "quietly", "finally", "carefully", "again", "quickly", "reluctantly",
    "proudly", "eventually", "almost", "suddenly",
]


def make_sentences(n: int, seed: int) -> list[str]:
    """Deterministic English-like sentences of 10-20 words."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target = rng.randint(10, 20)
        words = (
            f"{rng.choice(SUBJECTS)} {rng.choice(FILLERS)} {rng.choice(VERBS)} "
            f"{rng.choice(OBJECTS)} {rng.choice(TAILS)}"
        ).split()
        while len(words) < target:
            words += ["and"] + f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}".split()
        s = " ".join(words[:target])
        out.append(s[0].upper() + s[1:] + ".")
    return out


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(machine busy CPU-s, this process's CPU-s, wall-s) for contention checks."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        tck = os.sysconf("SC_CLK_TCK")
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        busy = (sum(vals[:8]) - idle) / tck  # user..steal, no guest double count
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return busy, ru.ru_utime + ru.ru_stime, time.perf_counter()
    except (OSError, ValueError, IndexError):
        return None


def other_cpu_pct(a, b) -> float | None:
    """Share of the machine's CPU capacity used by *other* processes between
    two snapshots, in percent. Near 0 on an idle machine; a high value means
    the run was disturbed and its figures should not be trusted."""
    if a is None or b is None:
        return None
    wall = b[2] - a[2]
    others = (b[0] - a[0]) - (b[1] - a[1])
    return round(max(0.0, 100.0 * others / (wall * (os.cpu_count() or 1))), 1)


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default method)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def default_model_dir() -> Path:
    base = os.environ.get("BRISK_MODELS_DIR")
    return (Path(base) if base else ROOT / "models") / "all-minilm-l6-v2"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=default_model_dir())
    ap.add_argument("--n-single", type=int, default=200)
    ap.add_argument("--n-batched", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    if not (args.model_dir / "model.safetensors").is_file():
        print(f"error: no model in {args.model_dir}; run scripts/fetch-models", file=sys.stderr)
        return 1

    load_before = os.getloadavg()

    # --- (d) cold start: import, load, first encode ----------------------
    t_imp = time.perf_counter()
    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    t_load = time.perf_counter()
    model = SentenceTransformer(str(args.model_dir.resolve()), device="cpu")
    model.eval()
    t_first = time.perf_counter()
    first = model.encode("Hello world, this is the first embedding.", show_progress_bar=False)
    t_done = time.perf_counter()
    age_first = process_age_s()
    assert first.shape == (384,), first.shape

    cold = {
        "process_start_to_first_embedding_s": (
            round(age_first, 3) if age_first is not None else None
        ),
        "interpreter_startup_s": round(_T0_AGE, 3) if _T0_AGE is not None else None,
        "script_start_to_first_embedding_s": round(t_done - _T0_PERF, 4),
        "import_s": round(t_load - t_imp, 4),
        "model_load_s": round(t_first - t_load, 4),
        "first_encode_s": round(t_done - t_first, 4),
        "note": "process age from /proc/self/stat + /proc/uptime (10 ms resolution); warm page cache",
    }

    single_sentences = make_sentences(args.n_single, seed=1)
    batched_sentences = make_sentences(args.n_batched, seed=2)
    words = [len(s.split()) for s in single_sentences + batched_sentences]
    tok_lens = [len(model.tokenizer(s)["input_ids"]) for s in batched_sentences]

    for s in make_sentences(args.warmup, seed=3):
        model.encode(s, show_progress_bar=False)

    # --- (a) + (c): batch 1 ---------------------------------------------
    print(f"batch 1: {args.n_single} calls...", file=sys.stderr)
    snap_a = cpu_snapshot()
    lat = []
    t_a = time.perf_counter()
    for s in single_sentences:
        t = time.perf_counter()
        model.encode(s, show_progress_bar=False)
        lat.append(time.perf_counter() - t)
    dur_a = time.perf_counter() - t_a
    snap_a_end = cpu_snapshot()
    lat_ms = [x * 1000.0 for x in lat]

    # --- (b): 32-sentence batches -----------------------------------------
    bs = args.batch_size
    batches = [batched_sentences[i : i + bs] for i in range(0, len(batched_sentences), bs)]
    model.encode(batches[0], batch_size=bs, show_progress_bar=False)  # warm-up
    print(f"batch {bs}: {len(batches)} calls...", file=sys.stderr)
    snap_b = cpu_snapshot()
    blat = []
    t_b = time.perf_counter()
    for b in batches:
        t = time.perf_counter()
        out = model.encode(b, batch_size=bs, show_progress_bar=False)
        blat.append(time.perf_counter() - t)
        assert out.shape == (len(b), 384)
    dur_b = time.perf_counter() - t_b
    snap_end = cpu_snapshot()
    blat_ms = [x * 1000.0 for x in blat]

    peak_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    load_after = os.getloadavg()

    result = {
        "benchmark": "python-sentence-transformers-baseline",
        "model": "all-MiniLM-L6-v2",
        "versions": {
            "python": platform.python_version(),
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "other_processes_cpu_pct": {
                "batch1": other_cpu_pct(snap_a, snap_a_end),
                f"batch{bs}": other_cpu_pct(snap_b, snap_end),
            },
        },
        "sentences": {
            "words_min": min(words),
            "words_max": max(words),
            "words_mean": round(statistics.mean(words), 2),
            "tokens_mean_batched_set": round(statistics.mean(tok_lens), 2),
            "tokens_max_batched_set": max(tok_lens),
        },
        "batch1": {
            "n": len(single_sentences),
            "total_s": round(dur_a, 4),
            "sentences_per_s": round(len(single_sentences) / dur_a, 2),
            "latency_ms": {
                "p50": round(pct(lat_ms, 50), 3),
                "p90": round(pct(lat_ms, 90), 3),
                "p99": round(pct(lat_ms, 99), 3),
                "mean": round(statistics.mean(lat_ms), 3),
                "min": round(min(lat_ms), 3),
                "max": round(max(lat_ms), 3),
            },
        },
        f"batch{bs}": {
            "n": len(batched_sentences),
            "batch_size": bs,
            "batches": len(batches),
            "total_s": round(dur_b, 4),
            "sentences_per_s": round(len(batched_sentences) / dur_b, 2),
            "batch_latency_ms": {
                "p50": round(pct(blat_ms, 50), 3),
                "p99": round(pct(blat_ms, 99), 3),
                "mean": round(statistics.mean(blat_ms), 3),
                "max": round(max(blat_ms), 3),
            },
        },
        "cold_start": cold,
        "peak_rss_mib": round(peak_rss_kib / 1024.0, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
