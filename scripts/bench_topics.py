#!/usr/bin/env python3
"""Topic quality and speed: brisk's topic pipeline vs BERTopic on the same
embeddings, plus HDBSCAN (hdbscan-rs vs Python hdbscan) on the same points.

Run in the Python reference venv (scripts/setup-python-ref, plus
bertopic==0.17.4 umap-learn==0.5.12 hdbscan==0.8.44):
  BRISK_MODELS_DIR=... python scripts/bench_topics.py [--example PATH] [--seeds 42,7,2026]

Corpus: tests/fixtures/topics/corpus.jsonl (scripts/topics_corpus.py).
Embeddings: sentence-transformers all-MiniLM-L6-v2 from BRISK_MODELS_DIR,
cached in .bench/topics/. PATH: the release build of
crates/brisk-topics/examples/topics_from_embeddings.rs.
Writes tests/fixtures/topics/reference.json and prints a Markdown table.
"""
import argparse
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores(labels, predicted):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    # Outliers (-1) count as one more cluster, as they would for a user.
    return normalized_mutual_info_score(labels, predicted), adjusted_rand_score(labels, predicted)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--example", default=os.path.join(ROOT, "target/release/examples/topics_from_embeddings"))
    ap.add_argument("--seeds", default="42,7,2026")
    ap.add_argument("--min-topic-size", type=int, default=10)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    corpus = [json.loads(l) for l in open(os.path.join(ROOT, "tests/fixtures/topics/corpus.jsonl"))]
    docs = [c["text"] for c in corpus]
    labels = [c["label"] for c in corpus]
    cache = os.path.join(ROOT, ".bench/topics")
    os.makedirs(cache, exist_ok=True)
    emb_path = os.path.join(cache, "embeddings.json")
    if not os.path.exists(emb_path):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(os.path.join(os.environ["BRISK_MODELS_DIR"], "all-minilm-l6-v2"), device="cpu")
        emb = model.encode(docs, batch_size=64, normalize_embeddings=True)
        json.dump({"documents": docs, "embeddings": emb.tolist()}, open(emb_path, "w"))
    data = json.load(open(emb_path))
    import numpy as np

    emb = np.asarray(data["embeddings"], dtype=np.float32)

    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from sklearn.feature_extraction.text import CountVectorizer
    from umap import UMAP

    rows = []
    for seed in seeds:
        # brisk first, then BERTopic, alternating per seed.
        inp = os.path.join(cache, f"in_{seed}.json")
        json.dump({**data, "min_topic_size": args.min_topic_size, "seed": seed}, open(inp, "w"))
        t = time.perf_counter()
        out = json.loads(subprocess.run([args.example, inp], check=True, capture_output=True).stdout)
        brisk_s = time.perf_counter() - t
        brisk_pred = [d["topic"] for d in out["documents"]]

        t = time.perf_counter()
        umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
        hdb = HDBSCAN(min_cluster_size=args.min_topic_size, metric="euclidean", cluster_selection_method="eom", prediction_data=True)
        tm = BERTopic(umap_model=umap_model, hdbscan_model=hdb, vectorizer_model=CountVectorizer(stop_words="english"))
        bt_pred, _ = tm.fit_transform(docs, emb)
        bt_s = time.perf_counter() - t

        # HDBSCAN alone on BERTopic's own 5-d points: Python vs hdbscan-rs.
        reduced = tm.umap_model.embedding_
        red_in = os.path.join(cache, f"reduced_{seed}.json")
        json.dump({"documents": docs, "embeddings": reduced.tolist(), "min_topic_size": args.min_topic_size}, open(red_in, "w"))
        rs = json.loads(subprocess.run([args.example, red_in, "--cluster-only"], check=True, capture_output=True).stdout)
        py = HDBSCAN(min_cluster_size=args.min_topic_size, metric="euclidean", cluster_selection_method="eom").fit(reduced)
        from sklearn.metrics import adjusted_rand_score

        from sklearn.cluster import HDBSCAN as SkHDBSCAN

        sk = SkHDBSCAN(min_cluster_size=args.min_topic_size, copy=True).fit(reduced)
        rs_p = np.asarray(rs["probabilities"])
        hdb = dict(
            ari_vs_hdbscan=adjusted_rand_score(py.labels_, rs["labels"]),
            mean_prob_diff_vs_hdbscan=float(np.mean(np.abs(py.probabilities_ - rs_p))),
            ari_vs_sklearn=adjusted_rand_score(sk.labels_, rs["labels"]),
            mean_prob_diff_vs_sklearn=float(np.mean(np.abs(sk.probabilities_ - rs_p))),
            ari_hdbscan_vs_sklearn=adjusted_rand_score(py.labels_, sk.labels_),
        )

        b_nmi, b_ari = scores(labels, brisk_pred)
        p_nmi, p_ari = scores(labels, bt_pred)
        rows.append(dict(
            seed=seed,
            brisk=dict(nmi=b_nmi, ari=b_ari, seconds=brisk_s, topics=len({p for p in brisk_pred if p >= 0}),
                       outliers=sum(p < 0 for p in brisk_pred)),
            bertopic=dict(nmi=p_nmi, ari=p_ari, seconds=bt_s, topics=len({p for p in bt_pred if p >= 0}),
                          outliers=int(sum(p < 0 for p in bt_pred))),
            hdbscan_same_points=hdb,
            brisk_keywords={t["id"]: [k["word"] for k in t["keywords"][:5]] for t in out["topics"]},
        ))
        print(json.dumps(rows[-1]), flush=True)

    out_path = os.path.join(ROOT, "tests/fixtures/topics/reference.json")
    json.dump({"corpus": "tests/fixtures/topics/corpus.jsonl", "documents": len(docs), "topics": len(set(labels)),
               "runs": rows}, open(out_path, "w"), indent=1)
    print("| seed | brisk NMI | BERTopic NMI | brisk ARI | BERTopic ARI | brisk s | BERTopic s | topics brisk/BERTopic | outliers brisk/BERTopic | HDBSCAN on the same 5-d points: ARI (mean abs Δprobability) brisk vs hdbscan / brisk vs sklearn / hdbscan vs sklearn |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, p, h = r["brisk"], r["bertopic"], r["hdbscan_same_points"]
        print(f"| {r['seed']} | {b['nmi']:.3f} | {p['nmi']:.3f} | {b['ari']:.3f} | {p['ari']:.3f} | {b['seconds']:.2f} | {p['seconds']:.2f} | {b['topics']}/{p['topics']} | {b['outliers']}/{p['outliers']} | {h['ari_vs_hdbscan']:.3f} ({h['mean_prob_diff_vs_hdbscan']:.3f}) / {h['ari_vs_sklearn']:.3f} ({h['mean_prob_diff_vs_sklearn']:.3f}) / {h['ari_hdbscan_vs_sklearn']:.3f} |")


if __name__ == "__main__":
    main()
