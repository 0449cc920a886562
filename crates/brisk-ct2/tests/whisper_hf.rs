//! Whisper checkpoints in the transformers layout, PEFT LoRA adapters and
//! large-v3 shapes on the CTranslate2 engine, against transformers (+ PEFT)
//! references written by scripts/gen_whisper_hf_reference.py into
//! tests/fixtures/whisper_hf_reference.json (the adapter is
//! tests/fixtures/whisper_lora/).
//!
//! No transformers-format Whisper can be fetched here, so the checkpoints
//! are made at test time exactly as that script makes them: tiny.en's
//! CTranslate2 weights (scripts/fetch-models) written back in the
//! transformers layout ([`hf::export_transformers`]), and a small
//! random-weight model with large-v3's shapes (128 mel bins, 51866 tokens,
//! turbo-like 3 encoder / 2 decoder layers) whose values come from a
//! formula both sides compute.
//!
//! CTranslate2 returns no logits; what it does return is the probability of
//! each forced text token (`Whisper::align`, a softmax over the text
//! vocabulary), so that is what is compared, with the same softmax computed
//! from transformers' logits by the script (`text_probs` entries).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use brisk_ct2::hf::Tensor;
use brisk_ct2::mel::N_FRAMES;
use brisk_ct2::{backend, hf, Ct2Whisper, DecodeOptions};
use safetensors::Dtype;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fetched(rel: &str) -> PathBuf {
    let dir = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"));
    let p = dir.join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models (or set BRISK_MODELS_DIR)",
        p.display()
    );
    p
}

fn reference() -> Value {
    let p = root().join("tests/fixtures/whisper_hf_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("read reference")).expect("json")
}

fn lora_fixture() -> PathBuf {
    root().join("tests/fixtures/whisper_lora")
}

fn beckett() -> Vec<f32> {
    let (pcm, rate) = common::audio::read_mono(&fetched("testdata/beckett.wav"));
    assert_eq!(rate, 16000);
    pcm
}

/// A fresh empty folder under the target dir (removed by the test that
/// made it when it passes).
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("whisper-hf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json")).expect("write json");
}

/// Backend options: float32 (the reference is float32), 2 threads, and
/// the adapter when given.
fn options(adapter: Option<&str>) -> BTreeMap<String, String> {
    let mut o = BTreeMap::from([
        ("compute_type".to_string(), "float32".to_string()),
        ("threads".to_string(), "2".to_string()),
    ]);
    if let Some(a) = adapter {
        o.insert("adapter".into(), a.into());
    }
    o
}

/// The encoder input as transformers' WhisperFeatureExtractor makes it for
/// a clip under 30 s: the audio zero-padded to 30 s, then the log-mel
/// (faster-whisper instead pads the features of the clip with zeros).
fn transformers_window(m: &Ct2Whisper, pcm: &[f32]) -> Vec<f32> {
    let mut padded = pcm.to_vec();
    padded.resize(N_FRAMES * brisk_ct2::mel::HOP, 0.0);
    m.feature_extractor().compute(&padded).window(0, N_FRAMES)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|t| t.as_u64().expect("id") as u32)
        .collect()
}

/// Largest gaps between brisk's and the reference's token probabilities.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// max |p_brisk - p_reference|
    prob: f64,
    /// max |log p_brisk - log p_reference|
    log_prob: f64,
}

/// brisk's probabilities of the entry's forced text tokens, and the gap to
/// the reference's (`logprob_text_vocab`).
fn probs_and_gap(m: &Ct2Whisper, window: &[f32], entry: &Value) -> (Vec<f64>, Gap) {
    let mut w = window.to_vec();
    let text = ids(&entry["text"]);
    let ours = m
        .text_token_probs(&mut w, &ids(&entry["start"]), &text)
        .expect("text_token_probs");
    assert_eq!(ours.len(), text.len());
    let want: Vec<f64> = entry["logprob_text_vocab"]
        .as_array()
        .expect("logprobs")
        .iter()
        .map(|v| v.as_f64().expect("f64"))
        .collect();
    let mut gap = Gap {
        prob: 0.0,
        log_prob: 0.0,
    };
    let ours: Vec<f64> = ours.iter().map(|&p| f64::from(p)).collect();
    for (&p, &lp) in ours.iter().zip(&want) {
        gap.prob = gap.prob.max((p - lp.exp()).abs());
        gap.log_prob = gap.log_prob.max((p.ln() - lp).abs());
    }
    (ours, gap)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn transcribe(m: &Ct2Whisper, pcm: &[f32]) -> String {
    let opts = DecodeOptions {
        language: Some("en".into()),
        temperatures: vec![0.0],
        ..Default::default()
    };
    m.transcribe(pcm, &opts).expect("transcribe").text()
}

#[test]
fn tiny_en_round_trip_is_byte_identical_to_ct2_converter_output() {
    let dir = scratch("roundtrip");
    let src = fetched("whisper-tiny-en");
    hf::export_transformers(&src, &dir).expect("export");
    assert!(hf::looks_like_hf_whisper(&dir));
    let out = dir.join("out");
    std::fs::create_dir(&out).expect("out dir");
    hf::convert(&dir, None, &out).expect("convert");
    let ours = std::fs::read(out.join("model.bin")).expect("ours");
    let theirs = std::fs::read(src.join("model.bin")).expect("theirs");
    assert_eq!(ours.len(), theirs.len(), "model.bin sizes differ");
    assert!(
        ours == theirs,
        "model.bin differs from ct2-transformers-converter's"
    );
    let cfg = |p: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).expect("cfg"))
            .expect("json")
    };
    assert_eq!(cfg(&out), cfg(&src));
    assert_eq!(
        std::fs::read_to_string(out.join("vocabulary.txt")).expect("ours"),
        std::fs::read_to_string(src.join("vocabulary.txt")).expect("theirs")
    );
    assert!(out.join("preprocessor_config.json").is_file());
    assert!(out.join("tokenizer.json").is_file());
    std::fs::remove_dir_all(&dir).ok();
}

/// A copy of the PEFT fixture in `dir/name` with `use_rslora` set.
fn adapter_copy(dir: &Path, name: &str, rslora: bool) -> PathBuf {
    let adapter = dir.join(name);
    std::fs::create_dir_all(&adapter).expect("adapter dir");
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(lora_fixture().join("adapter_config.json")).expect("cfg"),
    )
    .expect("json");
    cfg["use_rslora"] = json!(rslora);
    write_json(&adapter.join("adapter_config.json"), &cfg);
    std::fs::copy(
        lora_fixture().join("adapter_model.safetensors"),
        adapter.join("adapter_model.safetensors"),
    )
    .expect("copy adapter");
    adapter
}

#[test]
fn tiny_en_and_lora_probabilities_match_transformers_and_peft() {
    let r = reference();
    let dir = scratch("tiny");
    hf::export_transformers(&fetched("whisper-tiny-en"), &dir).expect("export");
    let pcm = beckett();

    // Loaded through the backend: converted on first use, then cached.
    let (_, converted) = backend::ct2_folder(&dir, &options(None)).expect("convert");
    assert!(converted, "first load must convert");
    let m = backend::load(&dir, &options(None)).expect("load transformers tiny.en");
    let (cached, converted) = backend::ct2_folder(&dir, &options(None)).expect("cached");
    assert!(!converted, "second load converted again");
    assert!(
        cached.starts_with(dir.join(hf::CACHE_DIR)),
        "{}",
        cached.display()
    );

    let window = transformers_window(&m, &pcm);
    let (base, gap) = probs_and_gap(&m, &window, &r["tiny_en"]["text_probs"]);
    eprintln!(
        "tiny.en vs transformers: max |dp| {:.2e}, max |d log p| {:.2e} over {} tokens",
        gap.prob,
        gap.log_prob,
        base.len()
    );
    assert!(gap.prob < 1e-3, "tiny.en: {gap:?}");
    let text = transcribe(&m, &pcm).to_lowercase();
    assert!(text.contains("ever tried"), "{text}");

    for (variant, rslora) in [("plain", false), ("rslora", true)] {
        let name = format!("adapter_{variant}");
        adapter_copy(&dir, &name, rslora);
        // A relative adapter path is found in the model folder.
        let m = backend::load(&dir, &options(Some(&name))).expect("load with adapter");
        let entry = &r["lora"][variant]["text_probs"];
        let (lora, gap) = probs_and_gap(&m, &window, entry);
        eprintln!(
            "LoRA {variant} vs PEFT: max |dp| {:.2e}, max |d log p| {:.2e}",
            gap.prob, gap.log_prob
        );
        assert!(gap.prob < 1e-3, "LoRA {variant}: {gap:?}");
        // The adapter moves the probabilities far more than the tolerance,
        // in the reference and in brisk: the check is not vacuous.
        // The merged model.bin is float32; it counts at its float16 size.
        let (folder, _) = backend::ct2_folder(&dir, &options(Some(&name))).expect("cached");
        assert_eq!(hf::weights_code(&folder.join("model.bin")), Some(0));
        assert_eq!(
            hf::weights_code(&fetched("whisper-tiny-en/model.bin")),
            Some(4)
        );
        let moved = max_abs_diff(&lora, &base);
        assert!(moved > 0.02, "LoRA {variant} barely moved: {moved}");
        let text = transcribe(&m, &pcm).to_lowercase();
        assert!(text.contains("ever tried"), "LoRA {variant}: {text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn f16_bytes(values: impl Iterator<Item = f64>) -> Vec<u8> {
    values
        .flat_map(|x| half::f16::from_f64(x).to_le_bytes())
        .collect()
}

/// `formula_value` of scripts/gen_whisper_hf_reference.py.
fn formula(name: &str, n: usize) -> Vec<u8> {
    let s: u64 = name.bytes().map(u64::from).sum();
    let plus = if name.ends_with("layer_norm.weight") {
        1.0
    } else {
        0.0
    };
    f16_bytes((0..n).map(|i| 0.08 * (0.7373 * i as f64 + 0.01 * s as f64).sin() + plus))
}

fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, v)| (k.clone(), v)),
        Some(meta),
        path,
    )
    .expect("write safetensors");
}

/// The large-v3 tokenizer: the multilingual one with `<|yue|>` (50358)
/// inserted after `<|su|>`, every later special token one id up.
fn v3_tokenizer() -> Value {
    let base = fetched("whisper-base/tokenizer.json");
    let mut tok: Value =
        serde_json::from_str(&std::fs::read_to_string(base).expect("tok")).expect("json");
    let added = tok["added_tokens"].as_array_mut().expect("added");
    for t in added.iter_mut() {
        let id = t["id"].as_i64().expect("id");
        if id >= 50358 {
            t["id"] = json!(id + 1);
        }
    }
    let mut yue = added
        .iter()
        .find(|t| t["content"] == "<|su|>")
        .expect("<|su|>")
        .clone();
    yue["id"] = json!(50358);
    yue["content"] = json!("<|yue|>");
    added.push(yue);
    added.sort_by_key(|t| t["id"].as_i64());
    if let Some(sp) = tok
        .pointer_mut("/post_processor/special_tokens")
        .and_then(Value::as_object_mut)
    {
        for v in sp.values_mut() {
            if let Some(ids) = v["ids"].as_array_mut() {
                for id in ids {
                    let x = id.as_i64().expect("id");
                    if x >= 50358 {
                        *id = json!(x + 1);
                    }
                }
            }
        }
    }
    tok
}

/// The random-weight model with large-v3's shapes of the reference.
fn make_v3_like(dir: &Path, reference: &Value) {
    let c = &reference["v3_like"]["config"];
    let u = |k: &str| c[k].as_u64().expect(k) as usize;
    let (d, ffn, vocab, mels) = (
        u("d_model"),
        u("encoder_ffn_dim"),
        u("vocab_size"),
        u("num_mel_bins"),
    );
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.encoder.conv1.weight".into(), vec![d, mels, 3]),
        ("model.encoder.conv1.bias".into(), vec![d]),
        ("model.encoder.conv2.weight".into(), vec![d, d, 3]),
        ("model.encoder.conv2.bias".into(), vec![d]),
        (
            "model.encoder.embed_positions.weight".into(),
            vec![u("max_source_positions"), d],
        ),
        ("model.decoder.embed_tokens.weight".into(), vec![vocab, d]),
        (
            "model.decoder.embed_positions.weight".into(),
            vec![u("max_target_positions"), d],
        ),
    ];
    for side in ["encoder", "decoder"] {
        shapes.push((format!("model.{side}.layer_norm.weight"), vec![d]));
        shapes.push((format!("model.{side}.layer_norm.bias"), vec![d]));
        for i in 0..u(&format!("{side}_layers")) {
            let p = format!("model.{side}.layers.{i}");
            let mut attns = vec!["self_attn"];
            if side == "decoder" {
                attns.push("encoder_attn");
            }
            for a in attns {
                for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                    shapes.push((format!("{p}.{a}.{proj}.weight"), vec![d, d]));
                    if proj != "k_proj" {
                        shapes.push((format!("{p}.{a}.{proj}.bias"), vec![d]));
                    }
                }
                shapes.push((format!("{p}.{a}_layer_norm.weight"), vec![d]));
                shapes.push((format!("{p}.{a}_layer_norm.bias"), vec![d]));
            }
            shapes.push((format!("{p}.fc1.weight"), vec![ffn, d]));
            shapes.push((format!("{p}.fc1.bias"), vec![ffn]));
            shapes.push((format!("{p}.fc2.weight"), vec![d, ffn]));
            shapes.push((format!("{p}.fc2.bias"), vec![d]));
            shapes.push((format!("{p}.final_layer_norm.weight"), vec![d]));
            shapes.push((format!("{p}.final_layer_norm.bias"), vec![d]));
        }
    }
    let mut names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let expected: Vec<&str> = reference["v3_like"]["tensor_names"]
        .as_array()
        .expect("tensor_names")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(
        names, expected,
        "tensor names differ from the reference model's"
    );
    let tensors: BTreeMap<String, Tensor> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let data = formula(&name, shape.iter().product());
            let dtype = Dtype::F16;
            (name, Tensor { dtype, shape, data })
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let mut cfg = c.clone();
    let o = cfg.as_object_mut().expect("config");
    o.insert("model_type".into(), json!("whisper"));
    o.insert("begin_suppress_tokens".into(), json!([220, 50257]));
    o.insert("suppress_tokens".into(), json!([]));
    write_json(&dir.join("config.json"), &cfg);
    write_json(&dir.join("tokenizer.json"), &v3_tokenizer());
    write_json(
        &dir.join("preprocessor_config.json"),
        &json!({"feature_size": mels, "sampling_rate": 16000, "n_fft": 400, "hop_length": 160,
                "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor"}),
    );
}

#[test]
fn v3_like_128_mels_turbo_layers_and_large_v3_tokenizer_match_transformers() {
    let r = reference();
    let dir = scratch("v3");
    make_v3_like(&dir, &r);
    let m = backend::load(&dir, &options(None)).expect("load v3-like");
    assert_eq!(m.feature_extractor().n_mels(), 128);
    assert!(m.is_multilingual());
    // The converted vocabulary has large-v3's ids: <|yue|> is a language
    // and every later special token moved up by one.
    let (folder, _) = backend::ct2_folder(&dir, &options(None)).expect("cached");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).expect("config"))
            .expect("json");
    let langs = ids(&cfg["lang_ids"]);
    assert_eq!(langs.len(), 100);
    assert_eq!(langs.last(), Some(&50358));
    let vocab = std::fs::read_to_string(folder.join("vocabulary.txt")).expect("vocabulary");
    let vocab: Vec<&str> = vocab.lines().collect();
    assert_eq!(vocab.len(), 51866);
    assert_eq!(vocab[50358], "<|yue|>");
    assert_eq!(vocab[50360], "<|transcribe|>");
    assert_eq!(vocab[50364], "<|notimestamps|>");
    assert_eq!(vocab[50365], "<|0.00|>");

    let window = transformers_window(&m, &beckett());
    let (probs, gap) = probs_and_gap(&m, &window, &r["v3_like"]["text_probs"]);
    eprintln!(
        "v3-like vs transformers: max |dp| {:.2e}, max |d log p| {:.2e}, p = {probs:?}",
        gap.prob, gap.log_prob
    );
    // The random model's probabilities are tiny, so the log-probabilities
    // are the meaningful check here.
    assert!(gap.prob < 1e-3 && gap.log_prob < 1e-3, "v3-like: {gap:?}");
    std::fs::remove_dir_all(&dir).ok();
}

fn load_err(dir: &Path, adapter: &Path) -> String {
    let opts = options(Some(adapter.to_str().expect("utf-8")));
    backend::load(dir, &opts)
        .expect_err("broken adapter must fail")
        .to_string()
}

#[test]
fn broken_adapters_fail_naming_the_module() {
    let r = reference();
    let dir = scratch("broken");
    make_v3_like(&dir, &r);
    let ad = dir.join("adapter");
    std::fs::create_dir(&ad).expect("dir");

    // Missing files.
    let e = load_err(&dir, &ad);
    assert!(e.contains("adapter_config.json"), "{e}");
    let cfg = json!({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "use_rslora": false,
                     "target_modules": ["q_proj", "fc1"], "bias": "none"});
    write_json(&ad.join("adapter_config.json"), &cfg);
    let e = load_err(&dir, &ad);
    assert!(e.contains("adapter_model.safetensors is missing"), "{e}");

    let d = 64;
    let t = |shape: Vec<usize>| Tensor {
        dtype: Dtype::F32,
        data: vec![0u8; shape.iter().product::<usize>() * 4],
        shape,
    };
    let write = |entries: Vec<(&str, Tensor)>| {
        let m: BTreeMap<String, Tensor> = entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        write_safetensors(&ad.join("adapter_model.safetensors"), &m);
    };
    let q = "base_model.model.model.decoder.layers.1.encoder_attn.q_proj";

    // Wrong shape.
    write(vec![
        (&format!("{q}.lora_A.weight"), t(vec![2, d + 1])),
        (&format!("{q}.lora_B.weight"), t(vec![d, 2])),
    ]);
    let e = load_err(&dir, &ad);
    assert!(
        e.contains("decoder.layers.1.encoder_attn.q_proj") && e.contains("lora_A has shape"),
        "{e}"
    );

    // A layer the model does not have.
    let missing = "base_model.model.model.decoder.layers.7.fc1";
    write(vec![
        (&format!("{missing}.lora_A.weight"), t(vec![2, d])),
        (&format!("{missing}.lora_B.weight"), t(vec![96, 2])),
    ]);
    let e = load_err(&dir, &ad);
    assert!(
        e.contains("decoder.layers.7.fc1") && e.contains("does not exist"),
        "{e}"
    );

    // A module type LoRA cannot target here.
    let emb = "base_model.model.model.decoder.embed_tokens";
    write(vec![
        (&format!("{emb}.lora_A.weight"), t(vec![2, d])),
        (&format!("{emb}.lora_B.weight"), t(vec![d, 2])),
    ]);
    let e = load_err(&dir, &ad);
    assert!(
        e.contains("decoder.embed_tokens") && e.contains("cannot be adapted"),
        "{e}"
    );

    // Half a pair.
    write(vec![(&format!("{q}.lora_A.weight"), t(vec![2, d]))]);
    let e = load_err(&dir, &ad);
    assert!(
        e.contains("decoder.layers.1.encoder_attn.q_proj") && e.contains("lora_B is missing"),
        "{e}"
    );

    // Unsupported settings are refused, not ignored.
    write(vec![
        (&format!("{q}.lora_A.weight"), t(vec![2, d])),
        (&format!("{q}.lora_B.weight"), t(vec![d, 2])),
    ]);
    let mut dora = cfg.clone();
    dora["use_dora"] = json!(true);
    write_json(&ad.join("adapter_config.json"), &dora);
    let e = load_err(&dir, &ad);
    assert!(e.contains("use_dora"), "{e}");

    // And the well-formed one loads (a zero adapter: the base model).
    write_json(&ad.join("adapter_config.json"), &cfg);
    backend::load(&dir, &options(Some("adapter"))).expect("valid adapter loads");

    // An adapter on a CTranslate2 folder is refused.
    let e = load_err(&fetched("whisper-tiny-en"), &ad);
    assert!(e.contains("transformers checkpoints"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn estimate_of_a_transformers_folder_is_its_float16_size() {
    let r = reference();
    let dir = scratch("estimate");
    make_v3_like(&dir, &r);
    let st = std::fs::metadata(dir.join("model.safetensors"))
        .expect("safetensors")
        .len();
    let int8 = backend::estimate_bytes(&dir, &BTreeMap::new()).expect("estimate");
    assert!(int8.abs_diff(st) < 1 << 20, "{int8} vs {st}");
    assert_eq!(
        backend::estimate_bytes(&dir, &options(None)),
        Some(int8 * 2)
    );
    std::fs::remove_dir_all(&dir).ok();
}
