"""Topic quality over many seeds, brisk and optionally BERTopic on the same
embeddings: brisk's own (embeds the labelled corpus once through `brisk
serve`, all-MiniLM-L6-v2, /v1/embeddings) or sentence-transformers' (the
vectors `scripts/bench_topics.py` caches in .bench/topics/). For each seed it
runs the topic steps of `crates/brisk-topics/examples/topics_from_embeddings`
(release build) and, with --bertopic, BERTopic 0.17 configured as
scripts/bench_topics.py configures it, alternating. Prints per seed and per
side mean and lowest NMI and ARI against the labels and how many seeds split
a topic (more than 8 topics besides outliers).

Why many seeds: UMAP is seeded SGD and the two implementations draw
different random numbers, so seed N of one has nothing to do with seed N of
the other; only the distributions over seeds compare.

  BRISK_MODELS_DIR=models /work/venv-ref/bin/python scripts/topics_seed_sweep.py \
      --brisk target/release/brisk --example target/release/examples/topics_from_embeddings \
      [--seeds 1-20] [--embeddings brisk|st] [--bertopic]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def embed(brisk, models, docs, port):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f'[server]\nport = {port}\nmodels_dir = "{models}"\ndiscover = false\n'
              '[models.minilm]\nsource = "all-minilm-l6-v2"\n')
    cfg.close()
    proc = subprocess.Popen([brisk, "serve", "--config", cfg.name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live")
                break
            except OSError:
                time.sleep(0.01)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/embeddings",
                                     data=json.dumps({"model": "minilm", "input": docs}).encode(),
                                     headers={"content-type": "application/json"})
        return [d["embedding"] for d in json.loads(urllib.request.urlopen(req).read())["data"]]
    finally:
        proc.terminate()
        proc.wait()
        os.unlink(cfg.name)


def st_vectors(docs):
    path = os.path.join(ROOT, ".bench/topics/embeddings.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing: run scripts/bench_topics.py once to make it")
    data = json.load(open(path))
    if data["documents"] != docs:
        raise SystemExit(f"{path} holds another corpus: delete it and run scripts/bench_topics.py")
    return data["embeddings"]


def bertopic(docs, vectors, seed):
    import numpy as np
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from sklearn.feature_extraction.text import CountVectorizer
    from umap import UMAP

    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    hdb = HDBSCAN(min_cluster_size=10, metric="euclidean", cluster_selection_method="eom", prediction_data=True)
    tm = BERTopic(umap_model=umap_model, hdbscan_model=hdb, vectorizer_model=CountVectorizer(stop_words="english"))
    pred, _ = tm.fit_transform(docs, np.asarray(vectors, dtype=np.float32))
    return [int(p) for p in pred]


def summary(name, rows):
    nmi = [r["nmi"] for r in rows]
    ari = [r["ari"] for r in rows]
    return {"side": name, "seeds": len(rows), "mean_nmi": round(sum(nmi) / len(nmi), 4), "min_nmi": round(min(nmi), 3),
            "mean_ari": round(sum(ari) / len(ari), 4), "min_ari": round(min(ari), 3),
            "seeds_splitting_a_topic": sum(r["topics"] > 8 for r in rows),
            "seeds_merging_topics": sum(r["topics"] < 8 for r in rows)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", help="brisk binary (needed for --embeddings brisk)")
    ap.add_argument("--example", required=True)
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--embeddings", choices=["brisk", "st"], default="brisk")
    ap.add_argument("--bertopic", action="store_true", help="also run BERTopic on each seed")
    ap.add_argument("--port", type=int, default=18933)
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.seeds.split("-"))
    rows = [json.loads(l) for l in open(os.path.join(ROOT, "tests/fixtures/topics/corpus.jsonl"))]
    docs, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    if args.embeddings == "brisk":
        if not args.brisk:
            raise SystemExit("--embeddings brisk needs --brisk")
        vectors = embed(args.brisk, os.path.abspath(os.environ["BRISK_MODELS_DIR"]), docs, args.port)
    else:
        vectors = st_vectors(docs)

    def score(pred):
        return {"topics": len({p for p in pred if p >= 0}), "outliers": sum(p < 0 for p in pred),
                "nmi": round(normalized_mutual_info_score(labels, pred), 4),
                "ari": round(adjusted_rand_score(labels, pred), 4)}

    results = {"brisk": [], "bertopic": []}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        for seed in range(lo, hi + 1):
            f.seek(0)
            f.truncate()
            json.dump({"documents": docs, "embeddings": vectors, "min_topic_size": 10, "seed": seed}, f)
            f.flush()
            out = json.loads(subprocess.run([args.example, f.name], capture_output=True, text=True,
                                            check=True).stdout)
            results["brisk"].append(score([d["topic"] for d in out["documents"]]))
            line = {"seed": seed, "brisk": results["brisk"][-1]}
            if args.bertopic:
                results["bertopic"].append(score(bertopic(docs, vectors, seed)))
                line["bertopic"] = results["bertopic"][-1]
            print(json.dumps(line), flush=True)
    print(json.dumps({"embeddings": args.embeddings, "seeds": f"{lo}-{hi}", **summary("brisk", results["brisk"])}))
    if args.bertopic:
        print(json.dumps({"embeddings": args.embeddings, "seeds": f"{lo}-{hi}",
                          **summary("bertopic", results["bertopic"])}))


if __name__ == "__main__":
    main()
