"""Helpers shared by the side-by-side benchmark drivers
(bench_embeddings_vs_st.py, bench_llama_vs_brisk.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The machine's CPU as /proc/cpuinfo names it (BENCHMARKS.md states it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_json(cmd: list[str]) -> dict:
    """Runs a benchmark process and parses the JSON it prints (one line or
    indented), skipping any text before it."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    start = out.index("{")
    return json.loads(out[start:])
