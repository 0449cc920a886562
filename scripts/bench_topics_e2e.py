#!/usr/bin/env python3
"""End to end, process start -> topics: `brisk serve` (model loaded lazily on
the first request) answering POST /v1/topics, against a fresh Python process
that imports BERTopic and sentence-transformers, embeds and fits. Alternating,
RUNS times each. Same corpus, parameters and seed as scripts/bench_topics.py.

  BRISK_MODELS_DIR=models /work/venv-ref/bin/python scripts/bench_topics_e2e.py \
      --brisk target/release/brisk [--runs 3] [--port 18921] [--options 'quantize = "int8"']
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PY = r"""
import json, sys
from bertopic import BERTopic
from hdbscan import HDBSCAN
from sentence_transformers import SentenceTransformer
from sklearn.feature_extraction.text import CountVectorizer
from umap import UMAP
docs = [json.loads(l)["text"] for l in open(sys.argv[1])]
model = SentenceTransformer(sys.argv[2], device="cpu")
tm = BERTopic(embedding_model=model,
              umap_model=UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=42),
              hdbscan_model=HDBSCAN(min_cluster_size=10, metric="euclidean", cluster_selection_method="eom", prediction_data=True),
              vectorizer_model=CountVectorizer(stop_words="english"))
topics, _ = tm.fit_transform(docs)
print(json.dumps(topics if isinstance(topics, list) else topics.tolist()))
"""


def run_brisk(binary, port, models, docs, options=""):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""
[server]
port = {port}
models_dir = "{models}"
discover = false
[cache]
enabled = false
[jobs]
enabled = false
[models.minilm]
source = "all-minilm-l6-v2"
""" + (f"options = {{ {options} }}\n" if options else ""))
    cfg.close()
    body = json.dumps({"model": "minilm", "documents": docs, "min_topic_size": 10, "seed": 42}).encode()
    start = time.perf_counter()
    proc = subprocess.Popen([binary, "serve", "--config", cfg.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/topics", data=body,
                                             headers={"content-type": "application/json"})
                out = json.loads(urllib.request.urlopen(req, timeout=600).read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.01)
        return time.perf_counter() - start, [d["topic"] for d in out["documents"]]
    finally:
        proc.terminate()
        proc.wait()
        os.unlink(cfg.name)


def run_python(corpus, model_dir):
    start = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1")  # no hub here: the local folder only
    out = subprocess.run([sys.executable, "-c", PY, corpus, model_dir], check=True, capture_output=True,
                         text=True, env=env)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=18921)
    ap.add_argument("--options", default="",
                    help='the embeddings model\'s options, e.g. quantize = "int8"')
    args = ap.parse_args()
    models = os.environ["BRISK_MODELS_DIR"]
    corpus = os.path.join(ROOT, "tests/fixtures/topics/corpus.jsonl")
    rows = [json.loads(l) for l in open(corpus)]
    docs, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    for i in range(args.runs):
        b_s, b_pred = run_brisk(args.brisk, args.port, os.path.abspath(models), docs, args.options)
        p_s, p_pred = run_python(corpus, os.path.join(models, "all-minilm-l6-v2"))
        print(json.dumps({"run": i, "brisk_s": round(b_s, 2), "bertopic_s": round(p_s, 2),
                          "ratio": round(p_s / b_s, 2),
                          "brisk_nmi": round(normalized_mutual_info_score(labels, b_pred), 3),
                          "bertopic_nmi": round(normalized_mutual_info_score(labels, p_pred), 3),
                          "brisk_ari": round(adjusted_rand_score(labels, b_pred), 3),
                          "bertopic_ari": round(adjusted_rand_score(labels, p_pred), 3)}), flush=True)


if __name__ == "__main__":
    main()
