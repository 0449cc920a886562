#!/usr/bin/env python3
"""Generate tests/fixtures/whisper_hf_reference.json (and the small PEFT
adapter in tests/fixtures/whisper_lora/) with real transformers + PEFT.

brisk loads Whisper checkpoints in the Hugging Face transformers layout
(model.safetensors, config.json, generation_config.json, tokenizer.json,
preprocessor_config.json) and merges PEFT LoRA adapters into them; the test
crates/brisk-ct2/tests/whisper_hf.rs checks brisk's probabilities against
the values written here.

No transformers-format Whisper ships in a package we can fetch, so the
checkpoints are made here, the same way the Rust test makes them at test time
(crates/brisk-backends/tests/common/whisper_hf.rs):

  * "tiny_en": the CTranslate2 tiny.en weights of scripts/fetch-models
    (models/whisper-tiny-en/model.bin) written back in the transformers
    layout (fused q|k|v split, the zero k bias dropped, tied projection not
    stored), float16 as in the CTranslate2 file;
  * "v3_like": a small random-weight model with large-v3's shapes where they
    matter (128 mel bins, vocabulary 51866, 1500/448 positions) and a
    turbo-like layer split (3 encoder, 2 decoder layers); its float16 values
    come from a formula both sides compute (`formula_weights`).

Logits are computed on beckett.wav (models/testdata) with transformers'
WhisperFeatureExtractor, in float32, for a fixed decoder input: the start
tokens followed by the greedy transcript transformers generates. For each
position we keep the logits at a fixed set of token ids plus the top 5, the
maximum and the log-sum-exp (the whole vocabulary is too big to commit).

The adapter: PEFT LoraConfig(r=2, lora_alpha=5, targets q/k/v/out_proj and
fc1/fc2, init_lora_weights=False so B is random and non-zero, then scaled by
LORA_B_SCALE so the model still transcribes), seeded; its
values are rounded to float16 (and saved as float16) so the reference and
brisk use the very same numbers. References are given both without and with
use_rslora (scale alpha/r vs alpha/sqrt(r)); the adapter_config.json
committed has use_rslora=false, the test flips it for the second case.

How to run (from the repository root; needs torch + transformers from
scripts/setup-python-ref, plus peft):

    scripts/fetch-models whisper-tiny-en whisper-base testdata
    /work/venv-ref/bin/pip install peft==0.21.2
    BRISK_MODELS_DIR=models /work/venv-ref/bin/python scripts/gen_whisper_hf_reference.py

`--text-probs` only adds, to the committed fixture and from the committed
adapter, what the CTranslate2 engine can be compared on (it does not return
logits): each transcript token's log-probability under the softmax over the
text vocabulary, as `Whisper.align` scores it (the `text_probs` entries).
`--only-v3` only rewrites the v3_like entry.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures"
LORA_DIR = FIXTURES / "whisper_lora"
LORA_B_SCALE = 0.05


def models_dir() -> Path:
    return Path(os.environ.get("BRISK_MODELS_DIR", ROOT / "models"))


# ---------------------------------------------------------------- CTranslate2


def read_ct2(path: Path):
    buf = path.read_bytes()
    pos = 0

    def take(n):
        nonlocal pos
        b = buf[pos : pos + n]
        pos += n
        return b

    def u32():
        return struct.unpack("<I", take(4))[0]

    def string():
        n = struct.unpack("<H", take(2))[0]
        return take(n).rstrip(b"\0").decode()

    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    version = u32()
    spec = string()
    u32()  # revision
    variables = {}
    for _ in range(u32()):
        name = string()
        rank = take(1)[0]
        shape = struct.unpack("<" + "I" * rank, take(4 * rank))
        dtype = dtypes[take(1)[0]]
        n = u32()
        variables[name] = np.frombuffer(take(n), dtype=dtype).reshape(shape)
    aliases = {}
    if pos < len(buf):
        for _ in range(u32()):
            a = string()
            aliases[a] = string()
    assert version == 6 and spec == "WhisperSpec", (version, spec)
    return variables, aliases


def ct2_to_hf_tensors(v):
    """CTranslate2 WhisperSpec variables -> transformers state dict."""
    out = {}

    def lin(src, dst, bias=True):
        out[f"{dst}.weight"] = v[f"{src}/weight"]
        if bias:
            out[f"{dst}.bias"] = v[f"{src}/bias"]

    def ln(src, dst):
        out[f"{dst}.weight"] = v[f"{src}/gamma"]
        out[f"{dst}.bias"] = v[f"{src}/beta"]

    def fused(src, dst, parts):
        w, b = v[f"{src}/weight"], v[f"{src}/bias"]
        n = w.shape[0] // len(parts)
        for i, p in enumerate(parts):
            out[f"{dst}.{p}.weight"] = w[i * n : (i + 1) * n]
            if p != "k_proj":
                out[f"{dst}.{p}.bias"] = b[i * n : (i + 1) * n]

    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", f"model.encoder.{c}")
    out["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    for side in ("encoder", "decoder"):
        i = 0
        while f"{side}/layer_{i}/ffn/linear_0/weight" in v:
            s, d = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            ln(f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm")
            fused(f"{s}/self_attention/linear_0", f"{d}.self_attn", ["q_proj", "k_proj", "v_proj"])
            lin(f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj")
            if side == "decoder":
                ln(f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm")
                lin(f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj")
                fused(f"{s}/attention/linear_1", f"{d}.encoder_attn", ["k_proj", "v_proj"])
                lin(f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj")
            ln(f"{s}/ffn/layer_norm", f"{d}.final_layer_norm")
            lin(f"{s}/ffn/linear_0", f"{d}.fc1")
            lin(f"{s}/ffn/linear_1", f"{d}.fc2")
            i += 1
    return {k: np.ascontiguousarray(t) for k, t in out.items()}


# ------------------------------------------------------------ formula weights


def formula_value(name: str, n: int) -> np.ndarray:
    """The random-looking but reproducible float16 values of tensor `name`
    (n elements): 0.08 * sin(0.7373 * i + 0.01 * sum(bytes(name))), plus 1
    for layer-norm weights. The Rust test computes the same."""
    s = sum(name.encode())
    i = np.arange(n, dtype=np.float64)
    x = 0.08 * np.sin(0.7373 * i + 0.01 * s)
    if name.endswith("layer_norm.weight"):
        x = x + 1.0
    return x.astype(np.float16)


def v3_like_config():
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=51866,
        num_mel_bins=128,
        encoder_layers=3,
        encoder_attention_heads=4,
        decoder_layers=2,
        decoder_attention_heads=4,
        d_model=64,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50258,
        bos_token_id=50257,
        eos_token_id=50257,
        pad_token_id=50256,
        begin_suppress_tokens=[220, 50257],
        suppress_tokens=[],
    )


# ---------------------------------------------------------------- utilities


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, "mono PCM16 expected"
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    assert rate == 16000, rate
    return x.astype(np.float32) / 32768.0


def summarize(logits: torch.Tensor, probe_ids):
    """logits (n, vocab) -> per position: probes, top-5, max, logsumexp."""
    rows = []
    for row in logits:
        top = torch.topk(row, 5)
        rows.append(
            {
                "probe": [round(float(row[i]), 6) for i in probe_ids],
                "top_ids": [int(i) for i in top.indices],
                "top": [round(float(x), 6) for x in top.values],
                "max": round(float(row.max()), 6),
                "logsumexp": round(float(torch.logsumexp(row, 0)), 6),
            }
        )
    return rows


def probes(vocab: int):
    return sorted({0, 13, 220, 1000, 11000, 25000, 40000, 50000} | {vocab - 1, vocab - 700}
                  | set(range(50255, 50262)) | set(range(50355, 50366)))


def encode(model, features):
    with torch.no_grad():
        return model.get_encoder()(features)


def run(model, enc, tokens):
    """Logits (n, vocab) for decoder input `tokens` given encoder outputs."""
    with torch.no_grad():
        out = model(encoder_outputs=enc, decoder_input_ids=torch.tensor([tokens]))
    return out.logits[0]


def greedy(model, enc, prefix, eot, steps=40):
    tokens = list(prefix)
    for _ in range(steps):
        nxt = int(run(model, enc, tokens)[-1].argmax())
        if nxt == eot:
            break
        tokens.append(nxt)
    return tokens


def v3_entry(audio):
    """The v3_like entry: random formula weights, large-v3 shapes."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    # ---- v3-like random model (128 mels, large-v3 vocabulary)
    vcfg = v3_like_config()
    vmodel = WhisperForConditionalGeneration(vcfg)
    sd = {}
    for name, p in vmodel.state_dict().items():
        if name == "proj_out.weight":
            continue
        sd[name] = formula_value(name, p.numel()).reshape(tuple(p.shape))
    missing = vmodel.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items()},
                                     strict=False)
    assert set(missing.missing_keys) <= {"proj_out.weight"}, missing
    vmodel.tie_weights()
    vmodel.eval()
    vfe = WhisperFeatureExtractor(feature_size=128)
    vfeat = vfe(audio, sampling_rate=16000, return_tensors="pt").input_features
    # sot, <|en|>, <|transcribe|>, <|notimestamps|> of large-v3, then text.
    vtokens = [50258, 50259, 50360, 50364, 440, 1802, 13, 50365, 51865]
    vids = probes(51866)
    entry = {
        "config": {k: getattr(vcfg, k) for k in (
            "vocab_size", "num_mel_bins", "encoder_layers", "encoder_attention_heads",
            "decoder_layers", "decoder_attention_heads", "d_model", "encoder_ffn_dim",
            "decoder_ffn_dim", "max_source_positions", "max_target_positions")},
        "tokens": vtokens,
        "probe_ids": vids,
        "positions": summarize(run(vmodel, encode(vmodel, vfeat), vtokens), vids),
    }
    names = sorted(sd)
    entry["tensor_names"] = names
    return entry

def text_probs(model, enc, start, no_timestamps, text, eot):
    """What CTranslate2's `Whisper.align` scores (brisk-ct2's
    `Ct2Whisper::text_token_probs`): decoder input start + <|notimestamps|>
    + text + <|endoftext|>; for each text token, its log-probability under
    the softmax over the text vocabulary (ids below <|endoftext|>), and
    under the full softmax for information."""
    tokens = list(start) + [no_timestamps] + list(text) + [eot]
    logits = run(model, enc, tokens)
    out_text, out_full = [], []
    for t, tok in enumerate(text):
        row = logits[len(start) + t].double()
        out_text.append(float(row[tok] - torch.logsumexp(row[:eot], 0)))
        out_full.append(float(row[tok] - torch.logsumexp(row, 0)))
    return {
        "start": list(start),
        "no_timestamps": no_timestamps,
        "text": list(text),
        "eot": eot,
        "logprob_text_vocab": [round(x, 7) for x in out_text],
        "logprob_full_vocab": [round(x, 7) for x in out_full],
    }


def v3_model():
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    vcfg = v3_like_config()
    vmodel = WhisperForConditionalGeneration(vcfg)
    sd = {}
    for name, p in vmodel.state_dict().items():
        if name == "proj_out.weight":
            continue
        sd[name] = formula_value(name, p.numel()).reshape(tuple(p.shape))
    missing = vmodel.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items()},
                                     strict=False)
    assert set(missing.missing_keys) <= {"proj_out.weight"}, missing
    vmodel.tie_weights()
    vmodel.eval()
    return vmodel, WhisperFeatureExtractor(feature_size=128)


def add_text_probs(audio) -> None:
    """--text-probs: adds the `text_probs` entries (see text_probs) to the
    committed fixture, from the committed adapter, without regenerating
    anything else (the adapter's random values stay as committed)."""
    from peft import PeftModel
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    out = FIXTURES / "whisper_hf_reference.json"
    result = json.loads(out.read_text())
    mdir = models_dir()
    tmp = Path(tempfile.mkdtemp(prefix="whisper-hf-"))
    try:
        tiny_dir = tmp / "tiny"
        tiny_dir.mkdir()
        ct2, _ = read_ct2(mdir / "whisper-tiny-en/model.bin")
        save_file(ct2_to_hf_tensors(ct2), str(tiny_dir / "model.safetensors"), metadata={"format": "pt"})
        tiny_config().save_pretrained(tiny_dir)
        fe = WhisperFeatureExtractor(feature_size=80)
        features = fe(audio, sampling_rate=16000, return_tensors="pt").input_features
        tokens = result["tiny_en"]["tokens"]
        start, text = tokens[:1], tokens[2:]
        model = WhisperForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32)
        model.eval()
        result["tiny_en"]["text_probs"] = text_probs(model, encode(model, features), start, 50362, text, 50256)
        for variant, rslora in (("plain", False), ("rslora", True)):
            base = WhisperForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32)
            acfg = json.loads((LORA_DIR / "adapter_config.json").read_text())
            acfg["use_rslora"] = rslora
            adir = tmp / f"adapter_{variant}"
            adir.mkdir()
            (adir / "adapter_config.json").write_text(json.dumps(acfg))
            shutil.copy(LORA_DIR / "adapter_model.safetensors", adir)
            pm = PeftModel.from_pretrained(base, adir)
            pm.eval()
            lm = pm.base_model.model
            result["lora"][variant]["text_probs"] = text_probs(
                lm, encode(lm, features), start, 50362, text, 50256)
        vmodel, vfe = v3_model()
        vfeat = vfe(audio, sampling_rate=16000, return_tensors="pt").input_features
        result["v3_like"]["text_probs"] = text_probs(
            vmodel, encode(vmodel, vfeat), [50258, 50259, 50360], 50364, [440, 1802, 13], 50257)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"added text_probs to {out}", file=sys.stderr)


def tiny_config():
    from transformers import WhisperConfig

    ct2_cfg = json.loads((models_dir() / "whisper-tiny-en/config.json").read_text())
    return WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        encoder_layers=4,
        encoder_attention_heads=6,
        decoder_layers=4,
        decoder_attention_heads=6,
        d_model=384,
        encoder_ffn_dim=1536,
        decoder_ffn_dim=1536,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        suppress_tokens=ct2_cfg["suppress_ids"],
        begin_suppress_tokens=ct2_cfg["suppress_ids_begin"],
    )


def main() -> int:
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    torch.set_num_threads(2)
    mdir = models_dir()
    audio = read_wav(mdir / "testdata/beckett.wav")
    result = {"audio": "testdata/beckett.wav"}
    only_v3 = "--only-v3" in sys.argv
    out = FIXTURES / "whisper_hf_reference.json"
    if "--text-probs" in sys.argv:
        add_text_probs(audio)
        return 0
    if only_v3:
        result = json.loads(out.read_text())
        result["v3_like"] = v3_entry(audio)
        out.write_text(json.dumps(result, indent=1) + "\n")
        return 0

    # ---- tiny.en in the transformers layout
    ct2, _ = read_ct2(mdir / "whisper-tiny-en/model.bin")
    tensors = ct2_to_hf_tensors(ct2)
    config = tiny_config()
    tmp = Path(tempfile.mkdtemp(prefix="whisper-hf-"))
    try:
        tiny_dir = tmp / "tiny"
        tiny_dir.mkdir()
        save_file(tensors, str(tiny_dir / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(tiny_dir)
        model = WhisperForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32)
        model.eval()
        fe = WhisperFeatureExtractor(feature_size=80)
        features = fe(audio, sampling_rate=16000, return_tensors="pt").input_features
        enc = encode(model, features)
        prefix = [50257, 50362]
        tokens = greedy(model, enc, prefix, eot=50256)
        ids = probes(51864)
        result["tiny_en"] = {
            "tokens": tokens,
            "probe_ids": ids,
            "positions": summarize(run(model, enc, tokens), ids),
        }
        print("tiny_en tokens", tokens, file=sys.stderr)

        # ---- PEFT LoRA adapter on it
        from peft import LoraConfig, PeftModel, get_peft_model

        torch.manual_seed(1234)
        lcfg = LoraConfig(
            r=2,
            lora_alpha=5,
            target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
            lora_dropout=0.0,
            init_lora_weights=False,
            use_rslora=False,
        )
        peft_model = get_peft_model(model, lcfg)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    # PEFT's random B (kaiming) at scale 5/2 wrecks the
                    # model (it repeats one token); a twentieth of it moves
                    # the probabilities of the transcript's tokens by up to
                    # 0.15 while the model still transcribes, which is what
                    # a fine-tune looks like.
                    p.mul_(LORA_B_SCALE)
                if "lora_" in n:
                    # Keep values float16-exact so both sides use the same
                    # numbers.
                    p.copy_(p.half().float())
        if LORA_DIR.exists():
            shutil.rmtree(LORA_DIR)
        peft_model.save_pretrained(LORA_DIR)
        # Store the adapter as float16 (half the size; values are exact).
        from safetensors.numpy import load_file

        ad = load_file(str(LORA_DIR / "adapter_model.safetensors"))
        save_file({k: v.astype(np.float16) for k, v in ad.items()},
                  str(LORA_DIR / "adapter_model.safetensors"), metadata={"format": "pt"})
        (LORA_DIR / "README.md").unlink(missing_ok=True)

        entries = {}
        for rslora in (False, True):
            base = WhisperForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32)
            cfg_path = LORA_DIR / "adapter_config.json"
            acfg = json.loads(cfg_path.read_text())
            acfg["use_rslora"] = rslora
            adir = tmp / f"adapter_{rslora}"
            adir.mkdir()
            (adir / "adapter_config.json").write_text(json.dumps(acfg))
            shutil.copy(LORA_DIR / "adapter_model.safetensors", adir)
            pm = PeftModel.from_pretrained(base, adir)
            pm.eval()
            lm = pm.base_model.model
            lenc = encode(lm, features)
            ltok = greedy(lm, lenc, prefix, eot=50256)
            entries["rslora" if rslora else "plain"] = {
                "greedy_tokens": ltok,
                "positions": summarize(run(lm, lenc, tokens), ids),
            }
            print("lora", rslora, ltok, file=sys.stderr)
        result["lora"] = {"tokens": tokens, "probe_ids": ids, **entries}

        result["v3_like"] = v3_entry(audio)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    add_text_probs(audio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
