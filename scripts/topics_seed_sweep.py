"""Topic quality over many seeds on brisk's own embeddings: embeds the
labelled corpus once through `brisk serve` (all-MiniLM-L6-v2,
/v1/embeddings), then runs the topic steps of
`crates/brisk-topics/examples/topics_from_embeddings` (release build) for
each seed and prints mean and lowest NMI against the labels and how many
seeds split a topic (more than 8 topics plus outliers).

  BRISK_MODELS_DIR=models /work/venv-ref/bin/python scripts/topics_seed_sweep.py \
      --brisk target/release/brisk --example target/release/examples/topics_from_embeddings [--seeds 1-20]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brisk", required=True)
    ap.add_argument("--example", required=True)
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--port", type=int, default=18933)
    args = ap.parse_args()
    lo, hi = (int(x) for x in args.seeds.split("-"))
    rows = [json.loads(l) for l in open(os.path.join(ROOT, "tests/fixtures/topics/corpus.jsonl"))]
    docs, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    vectors = embed(args.brisk, os.path.abspath(os.environ["BRISK_MODELS_DIR"]), docs, args.port)
    nmis, splits = [], 0
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        for seed in range(lo, hi + 1):
            f.seek(0)
            f.truncate()
            json.dump({"documents": docs, "embeddings": vectors, "min_topic_size": 10, "seed": seed}, f)
            f.flush()
            out = json.loads(subprocess.run([args.example, f.name], capture_output=True, text=True,
                                            check=True).stdout)
            pred = [d["topic"] for d in out["documents"]]
            nmis.append(normalized_mutual_info_score(labels, pred))
            splits += len([t for t in out["topics"] if t["id"] != -1]) > 8
            print(json.dumps({"seed": seed, "topics": len(out["topics"]), "nmi": round(nmis[-1], 3),
                              "ari": round(adjusted_rand_score(labels, pred), 3)}), flush=True)
    print(json.dumps({"seeds": f"{lo}-{hi}", "mean_nmi": round(sum(nmis) / len(nmis), 4),
                      "min_nmi": round(min(nmis), 3), "seeds_splitting_a_topic": splits}))


if __name__ == "__main__":
    main()
