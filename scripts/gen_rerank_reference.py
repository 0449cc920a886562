#!/usr/bin/env python3
"""Generate the tiny cross-encoder and its reference scores for brisk's
reranking tests (tests/fixtures/tiny-cross-encoder/ and
tests/fixtures/rerank_reference.json).

No cross-encoder (ms-marco-MiniLM, bge-reranker) was found shipped in a
PyPI package, so the reranking path is checked against sentence-transformers'
CrossEncoder on a tiny BertForSequenceClassification with random weights
(fixed seed): same tokenizer handling of (query, document) pairs, same
encoder, pooler and classifier, same sigmoid. Its vocabulary is the first
2000 entries of all-MiniLM-L6-v2's vocab.txt plus every word of the test
texts, so the files stay small (~0.4 MB).

    /work/venv-ref/bin/python scripts/gen_rerank_reference.py \\
        [--minilm-vocab models/all-minilm-l6-v2/vocab.txt]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

QUERIES = [
    ("how do i reset my password",
     ["to reset your password open settings and choose security",
      "the weather in paris is mild in spring",
      "password resets are sent by email within a minute",
      "our office is closed on public holidays",
      "choose a strong password with many characters",
      "the stock market fell sharply today"]),
    ("what is the capital of france",
     ["paris is the capital and largest city of france",
      "berlin is the capital of germany",
      "france is a country in western europe",
      "the eiffel tower was built in paris",
      "a capital letter starts every sentence"]),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm-vocab", type=Path,
                    default=Path(os.environ.get("BRISK_MODELS_DIR", ROOT / "models")) / "all-minilm-l6-v2/vocab.txt")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "tests/fixtures/tiny-cross-encoder")
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/rerank_reference.json")
    args = ap.parse_args()

    import torch
    import sentence_transformers
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    base = args.minilm_vocab.read_text().splitlines()
    vocab = base[:2000]
    words = {w for q, docs in QUERIES for t in [q, *docs] for w in t.split()}
    vocab += sorted(w for w in words if w not in vocab)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from tokenizers.implementations import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(str(args.out_dir / "vocab.txt"), lowercase=True)
    tok = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, model_max_length=64,
                            unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                            cls_token="[CLS]", mask_token="[MASK]")
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                     num_labels=1, architectures=["BertForSequenceClassification"],
                     initializer_range=0.3)
    model = BertForSequenceClassification(cfg)
    # A wide init (0.3) makes the [CLS] state depend on the input; a smaller
    # classifier keeps the logits in the sigmoid's sensitive range.
    with torch.no_grad():
        model.classifier.weight.mul_(0.5)
    model.eval()
    model.save_pretrained(args.out_dir, safe_serialization=True)
    tok.save_pretrained(args.out_dir)

    ce = CrossEncoder(str(args.out_dir), device="cpu", max_length=64)
    items = []
    for q, docs in QUERIES:
        scores = ce.predict([(q, d) for d in docs], show_progress_bar=False)
        items.append({"query": q, "documents": docs, "scores": [float(f"{s:.7g}") for s in scores]})
    ref = {
        "model": "tiny random BertForSequenceClassification (num_labels=1), seed 7",
        "source": f"sentence-transformers {sentence_transformers.__version__} CrossEncoder.predict",
        "torch": torch.__version__.split("+")[0],
        "generated_by": "scripts/gen_rerank_reference.py",
        "activation": "sigmoid",
        "max_length": 64,
        "items": items,
    }
    args.out.write_text(json.dumps(ref, indent=1) + "\n")
    print(json.dumps(ref, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
