"""llama.cpp's own batched decoding (llama-cpp-python's low-level API, no
brisk): how much faster one `llama_decode` over N sequences is than over
one, on this machine, with the context brisk builds (one KV stream per
sequence, `kv_unified = false`; N sequences in one context; same threads).

It is the ceiling for brisk's "4 streams vs one" figure (issue 16), which
`examples/llama_cpp_bench` measures through brisk's scheduler: brisk's step
is this same call, so a gap between the two is brisk's own overhead.

    python3 -m venv /work/venv-llama
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \\
        /work/venv-llama/bin/pip install llama-cpp-python==0.3.36
    /work/venv-llama/bin/python scripts/bench_llama_batched.py MODEL.gguf [--threads 2]

The prompt of llama_cpp_bench is read once into sequence 0 and copied to
the others (`llama_memory_seq_cp`), then each sequence decodes greedily
(argmax) for --steps steps, all sequences in one `llama_decode` per step.
Median of --rounds rounds per N. Prints JSON: tokens/s per N and the ratio
to N = 1.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

import llama_cpp as L
import numpy as np

# The prompt of the llama-cpp-python baseline (and of llama_cpp_bench).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llama_cpp import PROMPT  # noqa: E402



def tokenize(vocab, text: str) -> list[int]:
    raw = text.encode()
    buf = (L.llama_token * (len(raw) + 8))()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), True, False)
    if n < 0:
        raise RuntimeError("tokenize failed")
    return list(buf[:n])


def fill(batch, entries: list[tuple[int, int, int, bool]]) -> None:
    """entries: (token, position, sequence, wants logits)."""
    for i, (tok, pos, seq, logits) in enumerate(entries):
        batch.token[i] = tok
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
    batch.n_tokens = len(entries)


def argmax(ctx, i: int, n_vocab: int) -> int:
    ptr = L.llama_get_logits_ith(ctx, i)
    arr = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
    return int(arr.argmax())


def round_for(ctx, mem, vocab, batch, prompt: list[int], n: int, steps: int) -> float:
    n_vocab = L.llama_vocab_n_tokens(vocab)
    L.llama_memory_clear(mem, True)
    fill(batch, [(t, p, 0, p == len(prompt) - 1) for p, t in enumerate(prompt)])
    if L.llama_decode(ctx, batch) != 0:
        raise RuntimeError("prefill failed")
    first = argmax(ctx, len(prompt) - 1, n_vocab)
    for s in range(1, n):
        L.llama_memory_seq_cp(mem, 0, s, -1, -1)
    nxt = [first] * n
    pos = len(prompt)
    t0 = time.perf_counter()
    for _ in range(steps):
        fill(batch, [(nxt[s], pos, s, True) for s in range(n)])
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("decode failed")
        nxt = [argmax(ctx, s, n_vocab) for s in range(n)]
        pos += 1
    return n * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sequences", default="1,2,4")
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="the context's flash_attn_type (brisk leaves llama.cpp's auto)")
    args = ap.parse_args()
    ns = [int(x) for x in args.sequences.split(",")]
    slot_ctx = 2048

    L.llama_backend_init()
    model = L.llama_model_load_from_file(args.gguf.encode(), L.llama_model_default_params())
    cp = L.llama_context_default_params()
    cp.n_ctx = slot_ctx * max(ns)
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_seq_max = max(ns)
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    # One KV stream per sequence, as brisk's context (crates/brisk-llama).
    cp.kv_unified = False
    cp.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[args.flash_attn]
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(512, 0, max(ns))
    prompt = tokenize(vocab, PROMPT)

    round_for(ctx, mem, vocab, batch, prompt, 1, 8)  # warm-up
    tps: dict[int, list[float]] = {n: [] for n in ns}
    for _ in range(args.rounds):
        for n in ns:  # alternating, so drift hits every N alike
            tps[n].append(round_for(ctx, mem, vocab, batch, prompt, n, args.steps))
    med = {n: statistics.median(v) for n, v in tps.items()}
    print(
        json.dumps(
            {
                "llama_cpp_python": L.__version__,
                "file": args.gguf,
                "threads": args.threads,
                "flash_attn": args.flash_attn,
                "prompt_tokens": len(prompt),
                "steps": args.steps,
                "tps_median": {str(n): round(v, 1) for n, v in med.items()},
                "vs_one_sequence": {str(n): round(v / med[ns[0]], 2) for n, v in med.items()},
                "rounds": {str(n): [round(x, 1) for x in v] for n, v in tps.items()},
            },
            indent=2,
        )
    )
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)


if __name__ == "__main__":
    main()
