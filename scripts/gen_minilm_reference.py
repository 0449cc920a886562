#!/usr/bin/env python3
"""Generate tests/fixtures/minilm_reference.json with real sentence-transformers.

The fixture holds all-MiniLM-L6-v2 embeddings computed by the reference
implementation (sentence-transformers on PyTorch, CPU) for a fixed, varied
set of texts. brisk's Rust embedding backend is tested against it.

How to run (from the repository root):

    scripts/fetch-models all-minilm-l6-v2            # -> models/all-minilm-l6-v2/
    BRISK_PY_VENV=/tmp/stvenv scripts/setup-python-ref
    /tmp/stvenv/bin/python scripts/gen_minilm_reference.py

Options: --model-dir DIR (default: $BRISK_MODELS_DIR/all-minilm-l6-v2, else
models/all-minilm-l6-v2 under the repository root), --out FILE (default:
tests/fixtures/minilm_reference.json).

What the reference does (and a reimplementation must match):
  * modules.json: Transformer (BertModel) -> mean Pooling (1_Pooling) ->
    Normalize, so every embedding has unit L2 norm.
  * max_seq_length is 256 (sentence_bert_config.json). NOTE: tokenizer.json
    itself says truncation max_length=128 and *fixed* padding to 128;
    sentence-transformers overrides both (truncates at 256, pads to the
    longest in the batch, and mean-pools with the attention mask). Items
    "long" (between 128 and 256 tokens) and "very_long" (over 256 tokens)
    catch a backend that uses the tokenizer.json settings as they are.
  * Each text is encoded on its own (batch of 1); "num_tokens" is the
    sequence length after truncation, including [CLS] and [SEP].

Floats are written with 9 significant digits, which round-trips float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent

LONG_TEXT = (
    "Rust is a systems programming language that focuses on safety, speed, and "
    "concurrency. It achieves memory safety without a garbage collector by using "
    "a system of ownership with rules that the compiler checks at compile time. "
    "Developers appreciate its expressive type system, pattern matching, and "
    "zero-cost abstractions, which let them write high-level code that compiles "
    "down to efficient machine instructions. The ecosystem includes Cargo, a "
    "package manager and build tool, and crates.io, a registry of community "
    "libraries. Many companies now use Rust for web servers, command-line tools, "
    "embedded devices, and machine learning inference engines that must serve "
    "requests with low latency."
)

VERY_LONG_TEXT = " ".join(
    [
        "In the early morning the harbour was quiet, and the fishing boats rocked "
        "gently against the old stone pier while gulls circled overhead.",
        "Merchants began to open their stalls along the waterfront, arranging "
        "crates of oranges, lemons, olives and fresh bread for the first customers.",
        "By nine o'clock the square was crowded with tourists taking photographs "
        "of the cathedral, students hurrying to lectures, and delivery vans "
        "trying to squeeze through the narrow medieval streets.",
        "An elderly man sat on a bench feeding pigeons, telling anyone who would "
        "listen about the storm of 1962 that had destroyed half the fleet.",
        "Meanwhile, in the town hall, the council argued about parking fees, the "
        "budget for the new library, and whether the annual festival should move "
        "from August to September to avoid the worst of the summer heat.",
        "Nobody could agree, so the meeting dragged on until lunchtime, when the "
        "smell of grilled sardines drifted in through the open windows and "
        "everyone suddenly remembered how hungry they were.",
        "In the afternoon the wind picked up, the sky turned grey, and the "
        "fishermen hurried to secure their nets before the rain arrived.",
        "By evening the streets were empty again, the cafes had stacked their "
        "chairs, and only the lighthouse kept watch over the dark water.",
        "Late that night a single fishing boat returned, its crew tired but "
        "cheerful, carrying a catch large enough to feed the whole village.",
        "The next morning everything began again, exactly as it always had.",
    ]
)

# (name, text): fixed order; names are stable identifiers for tests.
ITEMS: list[tuple[str, str]] = [
    ("food", "I like to eat food"),
    ("bread", "I like to eat bread"),
    ("stock_market", "The stock market crashed today"),
    ("single_word", "Rust"),
    ("short", "Hi there."),
    ("question", "How do I reset my password if I no longer have access to my email?"),
    ("punctuation", "Wait... what?! Really -- are you (absolutely) sure; 100% sure?"),
    ("accents", "Café crème brûlée à la carte, très élégant — naïve façade!"),
    ("chinese", "我喜欢在早上喝咖啡。机器学习很有趣。"),
    ("emoji", "I love pizza 🍕🔥 and tacos 🌮 so much 😀!"),
    ("numbers", "Invoice #4821: total $1,234.56 on 2024-03-15, up 7.5% from 998 units."),
    ("url_code", "See https://example.com/api/v1/items?id=42&sort=desc or run `cargo build --release`."),
    ("whitespace", "  Leading and trailing   spaces,\ttabs\tand\nnewlines  "),
    ("mixed_case", "THE QUICK Brown fox JUMPS over the LAZY dog"),
    ("long", LONG_TEXT),
    ("very_long", VERY_LONG_TEXT),
]


def f9(x: float) -> float:
    """Round to 9 significant digits (exact round-trip for float32)."""
    return float(format(float(x), ".9g"))


def cosine(a, b) -> float:
    import numpy as np

    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def default_model_dir() -> Path:
    base = os.environ.get("BRISK_MODELS_DIR")
    models = Path(base) if base else ROOT / "models"
    return models / "all-minilm-l6-v2"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=default_model_dir())
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/minilm_reference.json")
    args = ap.parse_args()

    model_dir: Path = args.model_dir.resolve()
    if not (model_dir / "model.safetensors").is_file():
        print(
            f"error: {model_dir}/model.safetensors not found; run scripts/fetch-models first",
            file=sys.stderr,
        )
        return 1

    import numpy as np
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()

    modules = json.loads((model_dir / "modules.json").read_text())
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    max_seq_length = int(model.max_seq_length)
    get_dim = getattr(model, "get_embedding_dimension", None) or getattr(
        model, "get_sentence_embedding_dimension"
    )
    dim = int(get_dim())

    tokenizer = model.tokenizer
    items = []
    embeddings = {}
    for name, text in ITEMS:
        emb = model.encode(
            [text], batch_size=1, convert_to_numpy=True, normalize_embeddings=False
        )[0].astype(np.float32)
        assert emb.shape == (dim,), emb.shape
        if normalize:
            norm = float(np.linalg.norm(emb))
            assert abs(norm - 1.0) < 1e-4, f"{name}: norm {norm}"
        n_tok = len(
            tokenizer(text, truncation=True, max_length=max_seq_length)["input_ids"]
        )
        n_tok_full = len(tokenizer(text, truncation=False)["input_ids"])
        embeddings[name] = emb
        items.append(
            {
                "name": name,
                "text": text,
                "num_tokens": n_tok,
                "truncated": n_tok_full > n_tok,
                "embedding": [f9(x) for x in emb],
            }
        )

    # Self-check: encoding everything as one padded batch gives the same result.
    batch = model.encode([t for _, t in ITEMS], batch_size=len(ITEMS), convert_to_numpy=True)
    single = np.stack([embeddings[n] for n, _ in ITEMS])
    batch_diff = float(np.abs(batch - single).max())
    assert batch_diff < 1e-4, batch_diff

    cos_food_bread = cosine(embeddings["food"], embeddings["bread"])
    cos_food_stock = cosine(embeddings["food"], embeddings["stock_market"])

    fixture = {
        "model": "all-MiniLM-L6-v2",
        "source": f"sentence-transformers {sentence_transformers.__version__}",
        "torch": torch.__version__.split("+")[0],
        "generated_by": "scripts/gen_minilm_reference.py",
        "dim": dim,
        "max_seq_length": max_seq_length,
        "pooling": "mean",
        "normalized": normalize,
        "checks": {
            "cos_food_bread": round(cos_food_bread, 6),
            "cos_food_stock_market": round(cos_food_stock, 6),
            "max_abs_diff_batch_vs_single": float(f"{batch_diff:.3g}"),
        },
        "items": items,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Pretty-print, but keep each embedding on a single line.
    compact = {}
    for i, it in enumerate(items):
        key = f"@@EMBEDDING_{i}@@"
        compact[key] = json.dumps(it["embedding"], separators=(",", ":"))
        it["embedding"] = key
    text = json.dumps(fixture, ensure_ascii=False, indent=2)
    for key, value in compact.items():
        text = text.replace(json.dumps(key), value)
    args.out.write_text(text + "\n", encoding="utf-8")

    print(f"wrote {args.out} ({len(items)} items, dim {dim}, normalized={normalize})")
    for it in items:
        flag = " (truncated)" if it["truncated"] else ""
        print(f"  {it['name']:<13} {it['num_tokens']:>4} tokens{flag}")
    print(f"cos('I like to eat food', 'I like to eat bread') = {cos_food_bread:.6f}")
    print(f"cos('I like to eat food', 'The stock market crashed today') = {cos_food_stock:.6f}")
    print(f"max |batch - single| = {batch_diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
