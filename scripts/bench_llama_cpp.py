"""Baseline for BENCHMARKS.md: llama.cpp (llama-cpp-python from PyPI, built
from source by pip) on the same GGUF, prompt and decoding as brisk's
`llama_bench` example.

    python3 -m venv /tmp/llamavenv && /tmp/llamavenv/bin/pip install llama-cpp-python
    /tmp/llamavenv/bin/python scripts/bench_llama_cpp.py models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf

Greedy (temperature 0), 128 new tokens, 2 threads, the chat template from
the GGUF. Prefill time = time to the first streamed token; decode speed =
(completion tokens - 1) / (time after the first token). One warm-up run,
then the median of 3 (the KV cache is reset before each run). Also answers "What is the capital of France?" greedily
to compare quality with brisk. Prints JSON.
"""

import json
import resource
import statistics
import sys
import time

from llama_cpp import Llama

PROMPT = (
    "You are reviewing a short technical design. The service receives "
    "requests over HTTP, places them in a queue per model, and a worker thread per model takes "
    "batches from the queue and runs them through the model. Memory is limited, so models are "
    "loaded on demand and evicted when unused. Write a detailed, step by step explanation of how "
    "such a server should handle overload, cancellation and errors, with examples."
)


def run(llm, content, max_tokens):
    # llama-cpp-python keeps the KV cache of the previous prompt and skips
    # the common prefix; reset so every run pays its full prefill.
    llm.reset()
    t0 = time.perf_counter()
    first = None
    pieces = []
    for chunk in llm.create_chat_completion(
        messages=[{"role": "user", "content": content}], temperature=0.0, max_tokens=max_tokens, stream=True
    ):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            if first is None:
                first = time.perf_counter()
            pieces.append(delta)
    end = time.perf_counter()
    return t0, first, end, "".join(pieces)


def main():
    path = sys.argv[1]
    t = time.perf_counter()
    llm = Llama(model_path=path, n_ctx=2048, n_threads=2, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t
    prompt_tokens = len(llm.tokenize(PROMPT.encode(), add_bos=False))
    run(llm, PROMPT, 16)  # warm-up
    prefill, decode_tps, completion = [], [], []
    for _ in range(3):
        t0, first, end, text = run(llm, PROMPT, 128)
        n = len(llm.tokenize(text.encode(), add_bos=False))
        prefill.append(first - t0)
        decode_tps.append((n - 1) / (end - first))
        completion.append(n)
    _, _, _, paris = run(llm, "What is the capital of France?", 32)
    out = {
        "llama_cpp_python": __import__("llama_cpp").__version__,
        "load_s": round(load_s, 3),
        "prompt_tokens_text_only": prompt_tokens,
        "prefill_s_median": round(statistics.median(prefill), 4),
        "gen_tps_median": round(statistics.median(decode_tps), 1),
        "completion_tokens": completion,
        "capital_of_france": paris,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
