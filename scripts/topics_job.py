#!/usr/bin/env python3
"""10,000 documents through /v1/topics as a job (issue 21): a release
`brisk serve` with jobs on, `POST /v1/jobs` with the topics request, then
GET /v1/jobs/{id} every 0.25 s until it ends. Prints the progress seen over
time, the time to the result, the server's peak RSS, and NMI/ARI of the
answer against the corpus labels (8 topics x 1,250 documents from
scripts/topics_corpus.py, seed 2026).

  BRISK_MODELS_DIR=models /work/venv-ref/bin/python scripts/topics_job.py \\
      --brisk target/release/brisk [--per-topic 1250] [--port 18931]

Standard library plus scikit-learn (for the scores), as in the reference venv.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import redirect_stdout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import topics_corpus  # noqa: E402


def call(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())


def vm_hwm_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", required=True)
    ap.add_argument("--per-topic", type=int, default=1250)
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()
    buf = io.StringIO()
    with redirect_stdout(buf):
        topics_corpus.main(per_topic=args.per_topic)
    rows = [json.loads(l) for l in buf.getvalue().splitlines()]
    docs, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    models = os.path.abspath(os.environ["BRISK_MODELS_DIR"])
    state = tempfile.mkdtemp(prefix="brisk-topics-job-")
    cfg = os.path.join(state, "brisk.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[server]
port = {args.port}
models_dir = "{models}"
discover = false
[cache]
enabled = false
[jobs]
workers = 1
[models.minilm]
source = "all-minilm-l6-v2"
""")
    proc = subprocess.Popen([args.brisk, "serve", "--config", cfg, "--state-dir", state],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                call(args.port, "GET", "/v2/health/live")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.01)
        idle_mb = vm_hwm_mb(proc.pid)
        body = {"model": "minilm", "documents": docs, "min_topic_size": 10, "seed": 42}
        t0 = time.perf_counter()
        st, job = call(args.port, "POST", "/v1/jobs", {"endpoint": "/v1/topics", "body": body})
        assert st == 202, job
        seen = []
        while True:
            _, j = call(args.port, "GET", f"/v1/jobs/{job['id']}")
            p = j.get("progress")
            if not seen or seen[-1][1] != p:
                seen.append((round(time.perf_counter() - t0, 2), p))
            if j["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.25)
        took = time.perf_counter() - t0
        assert j["status"] == "succeeded", j
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
        pred = [d["topic"] for d in j["result"]["documents"]]
        print(json.dumps({
            "documents": len(docs),
            "seconds": round(took, 1),
            "topics": len(j["result"]["topics"]),
            "outliers": sum(1 for t in pred if t == -1),
            "nmi": round(normalized_mutual_info_score(labels, pred), 3),
            "ari": round(adjusted_rand_score(labels, pred), 3),
            "idle_rss_mb": round(idle_mb, 1),
            "peak_rss_mb": round(vm_hwm_mb(proc.pid), 1),
            "progress_values": len({p for _, p in seen}),
            "progress": seen,
        }))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
