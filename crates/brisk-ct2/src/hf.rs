//! Whisper checkpoints in the Hugging Face transformers layout, converted
//! to a CTranslate2 `model.bin` folder at load.
//!
//! A transformers Whisper folder holds `config.json` (`model_type`
//! `whisper`), `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), `tokenizer.json`, usually
//! `generation_config.json` and `preprocessor_config.json`. CTranslate2
//! reads its own `model.bin`, so such a folder (with a PEFT LoRA adapter
//! merged in, see [`crate::lora`]) is converted once, in Rust (no Python at
//! run time), exactly as `ct2-transformers-converter` lays it out (same
//! variable names, fused q|k|v with a zero k bias, scalars, aliases and
//! `config.json`: the tiny.en round trip is byte-identical, see
//! tests/whisper_hf.rs), and cached in `.brisk-ct2/<fingerprint>/`
//! inside the model folder (or under the system temp folder when that is
//! read-only). The fingerprint covers the converter version and every source
//! file's name, size and modification time, plus the contents of the small
//! ones, so editing the checkpoint or the adapter converts again.
//!
//! Weights keep their stored float type (float16 for OpenAI's checkpoints);
//! with an adapter the whole model is written in float32 so the merged
//! weights are not rounded back to float16.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use brisk_core::BackendError;
use safetensors::{Dtype, SafeTensors};

use crate::lora::{self, LoraAdapter};

/// Bump when the converted output changes, so old caches are not reused.
const CONVERTER_VERSION: u32 = 1;
/// Name of the cache folder inside the model folder.
pub const CACHE_DIR: &str = ".brisk-ct2";

/// Linear layers a LoRA adapter may target.
pub const ADAPTABLE: &[&str] = &["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"];

fn invalid(msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(msg.to_string())
}

fn read_json(path: &Path) -> Result<serde_json::Value, BackendError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BackendError::NotFound(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Does `dir` hold a transformers Whisper checkpoint?
pub fn looks_like_hf_whisper(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return false;
    };
    let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    cfg.get("model_type").and_then(|v| v.as_str()) == Some("whisper")
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}

/// The weight files: `model.safetensors`, or the shards of the index.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        let hint = if dir.join("pytorch_model.bin").is_file() {
            " (pytorch_model.bin, a PyTorch pickle, is not read: save with safe_serialization=True)"
        } else {
            ""
        };
        return Err(BackendError::NotFound(format!(
            "{}: no model.safetensors{hint}",
            dir.display()
        )));
    }
    let idx = read_json(&index)?;
    let map = idx
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("model.safetensors.index.json has no weight_map"))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    files
        .into_iter()
        .map(|f| {
            if f.contains('/') || f.contains("..") {
                return Err(invalid(format!(
                    "weight_map names a file outside the model: {f}"
                )));
            }
            Ok(dir.join(f))
        })
        .collect()
}

/// Decodes float16/bfloat16/float32 little-endian bytes to f32.
pub fn to_f32(dtype: Dtype, data: &[u8]) -> Result<Vec<f32>, String> {
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(format!("{other:?} weights are not supported")),
    })
}

/// CTranslate2 dtype codes.
fn ct2_code(dtype: Dtype) -> u8 {
    match dtype {
        Dtype::F16 => 4,
        Dtype::BF16 => 5,
        _ => 0,
    }
}

/// Where a tensor is: (buffer, dtype, shape, byte range in the buffer).
type Entry = (usize, Dtype, Vec<usize>, std::ops::Range<usize>);

/// The loaded safetensors files (read whole; a tensor is copied out when
/// its variable is written) and each tensor's place in them.
struct Weights {
    buffers: Vec<Vec<u8>>,
    /// Normalised name (`encoder.layers.0.fc1.weight`, `proj_out.weight`)
    /// -> (buffer, dtype, shape, byte range in the buffer).
    index: HashMap<String, Entry>,
}

struct View {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn normalize(name: &str) -> String {
    name.strip_prefix("model.").unwrap_or(name).to_string()
}

impl Weights {
    fn open(files: &[PathBuf]) -> Result<Self, BackendError> {
        let mut buffers = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let buf = std::fs::read(f)
                .map_err(|e| BackendError::NotFound(format!("{}: {e}", f.display())))?;
            // read_metadata checks that every tensor's range is in the file.
            let (n, meta) = SafeTensors::read_metadata(&buf)
                .map_err(|e| invalid(format!("{}: {e}", f.display())))?;
            let base = 8 + n;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                index.insert(
                    normalize(&name),
                    (i, info.dtype, info.shape.clone(), base + a..base + b),
                );
            }
            buffers.push(buf);
        }
        Ok(Self { buffers, index })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn entry(&self, name: &str) -> Result<&Entry, BackendError> {
        self.index
            .get(name)
            .ok_or_else(|| invalid(format!("model.safetensors has no tensor {name}")))
    }

    fn get(&self, name: &str) -> Result<View, BackendError> {
        let (i, dtype, shape, range) = self.entry(name)?;
        Ok(View {
            dtype: *dtype,
            shape: shape.clone(),
            data: self.buffers[*i][range.clone()].to_vec(),
        })
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, BackendError> {
        Ok(self.entry(name)?.2.clone())
    }
}

/// How one CTranslate2 variable is made.
enum Recipe {
    /// A tensor as it is (with a LoRA delta if the adapter targets it).
    Copy(String),
    /// Tensors concatenated along the first axis; `None` is a zero block of
    /// `rows` rows (Whisper's k projection has no bias).
    Concat(Vec<Option<String>>, usize),
    I8(i8),
    I16(i16),
}

/// The model dimensions from `config.json` and the tensor shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_heads: usize,
    pub decoder_heads: usize,
    pub vocab_size: usize,
    pub num_mel_bins: usize,
}

fn usize_field(cfg: &serde_json::Value, key: &str) -> Result<usize, BackendError> {
    cfg.get(key)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| invalid(format!("config.json: {key} is missing")))
}

fn count_layers(w: &Weights, side: &str) -> usize {
    let prefix = format!("{side}.layers.");
    w.index
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

fn config(cfg: &serde_json::Value, w: &Weights) -> Result<HfConfig, BackendError> {
    let c = HfConfig {
        d_model: usize_field(cfg, "d_model")?,
        encoder_layers: usize_field(cfg, "encoder_layers")?,
        decoder_layers: usize_field(cfg, "decoder_layers")?,
        encoder_heads: usize_field(cfg, "encoder_attention_heads")?,
        decoder_heads: usize_field(cfg, "decoder_attention_heads")?,
        vocab_size: usize_field(cfg, "vocab_size")?,
        num_mel_bins: usize_field(cfg, "num_mel_bins")?,
    };
    let conv1 = w.shape("encoder.conv1.weight")?;
    if conv1 != [c.d_model, c.num_mel_bins, 3] {
        return Err(invalid(format!(
            "encoder.conv1.weight has shape {conv1:?}, config.json says [{}, {}, 3]",
            c.d_model, c.num_mel_bins
        )));
    }
    let emb = w.shape("decoder.embed_tokens.weight")?;
    if emb != [c.vocab_size, c.d_model] {
        return Err(invalid(format!(
            "decoder.embed_tokens.weight has shape {emb:?}, config.json says [{}, {}]",
            c.vocab_size, c.d_model
        )));
    }
    for (side, n) in [("encoder", c.encoder_layers), ("decoder", c.decoder_layers)] {
        let found = count_layers(w, side);
        if found != n {
            return Err(invalid(format!(
                "config.json says {n} {side} layers, model.safetensors has {found}"
            )));
        }
    }
    for (what, h) in [("encoder", c.encoder_heads), ("decoder", c.decoder_heads)] {
        if h == 0 || !c.d_model.is_multiple_of(h) {
            return Err(invalid(format!(
                "config.json: {what}_attention_heads {h} does not divide d_model {}",
                c.d_model
            )));
        }
    }
    Ok(c)
}

/// The CTranslate2 variables of a Whisper model, by name (sorted, as
/// CTranslate2 writes them), and its aliases.
fn recipes(c: &HfConfig, w: &Weights) -> (BTreeMap<String, Recipe>, Vec<(String, String)>) {
    let mut r = BTreeMap::new();
    let copy = |r: &mut BTreeMap<String, Recipe>, dst: String, src: String| {
        r.insert(dst, Recipe::Copy(src));
    };
    let linear = |r: &mut BTreeMap<String, Recipe>, dst: &str, src: &str| {
        r.insert(
            format!("{dst}/weight"),
            Recipe::Copy(format!("{src}.weight")),
        );
        r.insert(format!("{dst}/bias"), Recipe::Copy(format!("{src}.bias")));
    };
    let norm = |r: &mut BTreeMap<String, Recipe>, dst: &str, src: &str| {
        r.insert(
            format!("{dst}/gamma"),
            Recipe::Copy(format!("{src}.weight")),
        );
        r.insert(format!("{dst}/beta"), Recipe::Copy(format!("{src}.bias")));
    };
    let d = c.d_model;
    let fused = |r: &mut BTreeMap<String, Recipe>, dst: &str, src: &str, parts: &[&str]| {
        r.insert(
            format!("{dst}/weight"),
            Recipe::Concat(
                parts
                    .iter()
                    .map(|p| Some(format!("{src}.{p}.weight")))
                    .collect(),
                d,
            ),
        );
        r.insert(
            format!("{dst}/bias"),
            Recipe::Concat(
                parts
                    .iter()
                    .map(|p| {
                        let b = format!("{src}.{p}.bias");
                        w.has(&b).then_some(b)
                    })
                    .collect(),
                d,
            ),
        );
    };
    for conv in ["conv1", "conv2"] {
        linear(
            &mut r,
            &format!("encoder/{conv}"),
            &format!("encoder.{conv}"),
        );
    }
    copy(
        &mut r,
        "encoder/position_encodings/encodings".into(),
        "encoder.embed_positions.weight".into(),
    );
    norm(&mut r, "encoder/layer_norm", "encoder.layer_norm");
    r.insert(
        "encoder/num_heads".into(),
        Recipe::I16(c.encoder_heads as i16),
    );
    copy(
        &mut r,
        "decoder/embeddings/weight".into(),
        "decoder.embed_tokens.weight".into(),
    );
    copy(
        &mut r,
        "decoder/position_encodings/encodings".into(),
        "decoder.embed_positions.weight".into(),
    );
    norm(&mut r, "decoder/layer_norm", "decoder.layer_norm");
    // The decoder spec's fixed scalars, as ct2-transformers-converter writes
    // them for Whisper (GELU = 3, pre-norm, no embedding scaling).
    r.insert("decoder/activation".into(), Recipe::I8(3));
    r.insert("decoder/alibi".into(), Recipe::I8(0));
    r.insert("decoder/alignment_heads".into(), Recipe::I16(1));
    r.insert("decoder/alignment_layer".into(), Recipe::I16(-1));
    r.insert(
        "decoder/num_heads".into(),
        Recipe::I16(c.decoder_heads as i16),
    );
    r.insert("decoder/pre_norm".into(), Recipe::I8(1));
    r.insert("decoder/scale_embeddings".into(), Recipe::I8(0));
    r.insert("decoder/start_from_zero_embedding".into(), Recipe::I8(0));
    for (side, n) in [("encoder", c.encoder_layers), ("decoder", c.decoder_layers)] {
        for i in 0..n {
            let s = format!("{side}.layers.{i}");
            let t = format!("{side}/layer_{i}");
            norm(
                &mut r,
                &format!("{t}/self_attention/layer_norm"),
                &format!("{s}.self_attn_layer_norm"),
            );
            fused(
                &mut r,
                &format!("{t}/self_attention/linear_0"),
                &format!("{s}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            );
            linear(
                &mut r,
                &format!("{t}/self_attention/linear_1"),
                &format!("{s}.self_attn.out_proj"),
            );
            if side == "decoder" {
                norm(
                    &mut r,
                    &format!("{t}/attention/layer_norm"),
                    &format!("{s}.encoder_attn_layer_norm"),
                );
                linear(
                    &mut r,
                    &format!("{t}/attention/linear_0"),
                    &format!("{s}.encoder_attn.q_proj"),
                );
                fused(
                    &mut r,
                    &format!("{t}/attention/linear_1"),
                    &format!("{s}.encoder_attn"),
                    &["k_proj", "v_proj"],
                );
                linear(
                    &mut r,
                    &format!("{t}/attention/linear_2"),
                    &format!("{s}.encoder_attn.out_proj"),
                );
            }
            norm(
                &mut r,
                &format!("{t}/ffn/layer_norm"),
                &format!("{s}.final_layer_norm"),
            );
            linear(&mut r, &format!("{t}/ffn/linear_0"), &format!("{s}.fc1"));
            linear(&mut r, &format!("{t}/ffn/linear_1"), &format!("{s}.fc2"));
        }
    }
    (r, Vec::new())
}

/// Every linear layer an adapter may target: module path -> (out, in).
fn linears(c: &HfConfig, w: &Weights) -> HashMap<String, (usize, usize)> {
    let mut out = HashMap::new();
    for (side, n) in [("encoder", c.encoder_layers), ("decoder", c.decoder_layers)] {
        for i in 0..n {
            let mut mods = vec![
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.out_proj",
                "fc1",
                "fc2",
            ];
            if side == "decoder" {
                mods.extend([
                    "encoder_attn.q_proj",
                    "encoder_attn.k_proj",
                    "encoder_attn.v_proj",
                    "encoder_attn.out_proj",
                ]);
            }
            for m in mods {
                let name = format!("{side}.layers.{i}.{m}");
                if let Ok(shape) = w.shape(&format!("{name}.weight")) {
                    if let [o, inp] = shape[..] {
                        out.insert(name, (o, inp));
                    }
                }
            }
        }
    }
    out
}

/// Writes a CTranslate2 string (u16 length including the NUL, bytes, NUL).
fn put_string(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    out.write_all(&((s.len() + 1) as u16).to_le_bytes())?;
    out.write_all(s.as_bytes())?;
    out.write_all(&[0])
}

fn put_var(
    out: &mut impl Write,
    name: &str,
    shape: &[usize],
    code: u8,
    data: &[u8],
) -> std::io::Result<()> {
    put_string(out, name)?;
    out.write_all(&[shape.len() as u8])?;
    for &d in shape {
        out.write_all(&(d as u32).to_le_bytes())?;
    }
    out.write_all(&[code])?;
    out.write_all(&(data.len() as u32).to_le_bytes())?;
    out.write_all(data)
}

/// A tensor's bytes in `out_dtype`, with the adapter's delta merged in.
fn tensor_bytes(
    w: &Weights,
    name: &str,
    out_dtype: Dtype,
    adapter: Option<&LoraAdapter>,
) -> Result<(Vec<usize>, Vec<u8>), BackendError> {
    let v = w.get(name)?;
    let module = name.strip_suffix(".weight");
    let lora = adapter.and_then(|a| module.and_then(|m| a.modules.get(m)));
    if v.dtype == out_dtype && lora.is_none() {
        return Ok((v.shape, v.data));
    }
    let mut values = to_f32(v.dtype, &v.data).map_err(|e| invalid(format!("{name}: {e}")))?;
    if let Some(l) = lora {
        let [o, i] = v.shape[..] else {
            return Err(invalid(format!("{name}: LoRA target is not a matrix")));
        };
        l.merge_into(&mut values, o, i);
    }
    let data = match out_dtype {
        Dtype::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        other => return Err(invalid(format!("{name}: cannot write {other:?}"))),
    };
    Ok((v.shape, data))
}

/// Source files of a conversion, in a fixed order (the fingerprint input).
fn source_files(dir: &Path, adapter: Option<&Path>) -> Result<Vec<PathBuf>, BackendError> {
    let mut files = weight_files(dir)?;
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "model.safetensors.index.json",
    ] {
        files.push(dir.join(f));
    }
    if let Some(a) = adapter {
        files.extend(lora::adapter_files(a));
    }
    Ok(files)
}

/// Hex fingerprint of the conversion inputs: converter version, adapter
/// path, and per file its name, size, modification time and (files under
/// 64 MiB) contents. Missing optional files count as missing.
pub fn fingerprint(dir: &Path, adapter: Option<&Path>) -> Result<String, BackendError> {
    let mut h = blake3::Hasher::new();
    h.update(&CONVERTER_VERSION.to_le_bytes());
    h.update(
        adapter
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
            .as_bytes(),
    );
    for f in source_files(dir, adapter)? {
        h.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        match std::fs::metadata(&f) {
            Ok(m) => {
                h.update(&m.len().to_le_bytes());
                if let Ok(t) = m.modified() {
                    let ns = t
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    h.update(&ns.to_le_bytes());
                }
                if m.len() < 64 << 20 {
                    let bytes = std::fs::read(&f)
                        .map_err(|e| BackendError::NotFound(format!("{}: {e}", f.display())))?;
                    h.update(&bytes);
                }
            }
            Err(_) => {
                h.update(b"missing");
            }
        }
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

/// The CTranslate2 folder for a transformers checkpoint (plus adapter):
/// the cached conversion when its fingerprint matches, otherwise converted
/// now. Returns the folder and whether this call converted.
pub fn prepare(dir: &Path, adapter: Option<&Path>) -> Result<(PathBuf, bool), BackendError> {
    if let Some(a) = adapter {
        if !lora::looks_like_adapter(a) {
            return Err(invalid(format!(
                "LoRA adapter {}: adapter_config.json is missing",
                a.display()
            )));
        }
    }
    let fp = fingerprint(dir, adapter)?;
    let beside = dir.join(CACHE_DIR);
    let fallback = std::env::temp_dir().join("brisk-ct2").join(format!(
        "{}-{fp}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    for candidate in [beside.join(&fp), fallback.clone()] {
        if candidate.join("model.bin").is_file() && candidate.join("config.json").is_file() {
            return Ok((candidate, false));
        }
    }
    // Convert into a fresh temporary folder and rename it into place, so a
    // crash or a concurrent loader never sees a half-written model.
    let mut last_err = None;
    for (parent, target) in [
        (beside.clone(), beside.join(&fp)),
        (
            fallback.parent().map(Path::to_path_buf).unwrap_or_default(),
            fallback.clone(),
        ),
    ] {
        if std::fs::create_dir_all(&parent).is_err() {
            continue;
        }
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        if std::fs::create_dir(&tmp).is_err() {
            continue;
        }
        let started = Instant::now();
        match convert(dir, adapter, &tmp) {
            Ok(()) => {}
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
        if std::fs::rename(&tmp, &target).is_err() {
            // Another loader finished first: use its copy.
            let _ = std::fs::remove_dir_all(&tmp);
            if !target.join("model.bin").is_file() {
                last_err = Some(format!(
                    "cannot move the conversion to {}",
                    target.display()
                ));
                continue;
            }
        }
        tracing::info!(
            source = %dir.display(),
            adapter = ?adapter,
            out = %target.display(),
            seconds = started.elapsed().as_secs_f64(),
            "converted transformers Whisper to CTranslate2"
        );
        return Ok((target, true));
    }
    Err(invalid(format!(
        "cannot write the converted model beside {} nor in the temp folder{}",
        dir.display(),
        last_err.map(|e| format!(": {e}")).unwrap_or_default()
    )))
}

/// Converts a transformers Whisper folder (and optional PEFT adapter) into
/// a CTranslate2 folder `out` (which must exist): `model.bin`,
/// `config.json`, `vocabulary.txt`, `tokenizer.json`,
/// `preprocessor_config.json`.
pub fn convert(dir: &Path, adapter: Option<&Path>, out: &Path) -> Result<(), BackendError> {
    let cfg_json = read_json(&dir.join("config.json"))?;
    if cfg_json.get("model_type").and_then(|v| v.as_str()) != Some("whisper") {
        return Err(invalid(format!(
            "{}: config.json is not a Whisper model (model_type)",
            dir.display()
        )));
    }
    let gen_json = read_json(&dir.join("generation_config.json")).ok();
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(BackendError::NotFound(format!(
            "{} (a transformers Whisper folder needs tokenizer.json)",
            tok_path.display()
        )));
    }
    let tok_json = read_json(&tok_path)?;
    let weights = Weights::open(&weight_files(dir)?)?;
    let c = config(&cfg_json, &weights)?;
    let adapter = match adapter {
        Some(a) => Some(lora::read_adapter(a, &linears(&c, &weights))?),
        None => None,
    };
    let (vars, mut aliases) = recipes(&c, &weights);

    // One float type for the file: the stored one if all agree (no
    // adapter), float32 otherwise.
    let mut dtypes: Vec<Dtype> = Vec::new();
    for (_, dt, _, _) in weights.index.values() {
        if !dtypes.contains(dt) {
            dtypes.push(*dt);
        }
    }
    let out_dtype = match (&adapter, dtypes.as_slice()) {
        (None, [Dtype::F16]) => Dtype::F16,
        (None, [Dtype::BF16]) => Dtype::BF16,
        _ => Dtype::F32,
    };

    // proj_out is tied to the token embeddings in Whisper; a checkpoint that
    // stores a different one keeps it as its own variable.
    let mut vars = vars;
    if weights.has("proj_out.weight")
        && weights.get("proj_out.weight")?.data != weights.get("decoder.embed_tokens.weight")?.data
    {
        vars.insert(
            "decoder/projection/weight".into(),
            Recipe::Copy("proj_out.weight".into()),
        );
    } else {
        aliases.push((
            "decoder/projection/weight".into(),
            "decoder/embeddings/weight".into(),
        ));
    }

    let file = std::fs::File::create(out.join("model.bin"))
        .map_err(|e| invalid(format!("{}: {e}", out.display())))?;
    let mut bin = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| invalid(format!("writing model.bin: {e}"));
    bin.write_all(&6u32.to_le_bytes()).map_err(io)?;
    put_string(&mut bin, "WhisperSpec").map_err(io)?;
    bin.write_all(&3u32.to_le_bytes()).map_err(io)?;
    bin.write_all(&(vars.len() as u32).to_le_bytes())
        .map_err(io)?;
    let code = ct2_code(out_dtype);
    for (name, recipe) in &vars {
        match recipe {
            Recipe::I8(v) => put_var(&mut bin, name, &[], 1, &v.to_le_bytes()),
            Recipe::I16(v) => put_var(&mut bin, name, &[], 2, &v.to_le_bytes()),
            Recipe::Copy(src) => {
                let (shape, data) = tensor_bytes(&weights, src, out_dtype, adapter.as_ref())?;
                put_var(&mut bin, name, &shape, code, &data)
            }
            Recipe::Concat(parts, rows) => {
                let mut data = Vec::new();
                let mut shape: Option<Vec<usize>> = None;
                let mut total = 0usize;
                for p in parts {
                    match p {
                        Some(src) => {
                            let (s, d) = tensor_bytes(&weights, src, out_dtype, adapter.as_ref())?;
                            if s.first() != Some(rows) {
                                return Err(invalid(format!(
                                    "{src} has shape {s:?}, expected {rows} rows"
                                )));
                            }
                            if shape.as_ref().is_some_and(|sh| sh[1..] != s[1..]) {
                                return Err(invalid(format!("{src}: shape {s:?} does not match")));
                            }
                            shape = Some(s);
                            data.extend_from_slice(&d);
                        }
                        None => {
                            // A bias block of zeros (bias tensors are 1-D).
                            let n = rows * out_dtype.bitsize() / 8;
                            data.extend(std::iter::repeat_n(0u8, n));
                        }
                    }
                    total += rows;
                }
                let mut shape = shape.unwrap_or_else(|| vec![*rows]);
                shape[0] = total;
                put_var(&mut bin, name, &shape, code, &data)
            }
        }
        .map_err(io)?;
    }
    bin.write_all(&(aliases.len() as u32).to_le_bytes())
        .map_err(io)?;
    for (a, t) in &aliases {
        put_string(&mut bin, a).map_err(io)?;
        put_string(&mut bin, t).map_err(io)?;
    }
    bin.flush().map_err(io)?;
    drop(bin);

    let vocab = vocabulary(&tok_json, c.vocab_size)?;
    let ct2_cfg = ct2_config(&c, &cfg_json, gen_json.as_ref(), &tok_json);
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| invalid(format!("writing {name}: {e}")))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&ct2_cfg).map_err(invalid)?,
    )?;
    if vocab.iter().any(|t| t.contains('\n') || t.contains('\r')) {
        write(
            "vocabulary.json",
            serde_json::to_string(&vocab).map_err(invalid)?,
        )?;
    } else {
        let mut text = vocab.join("\n");
        text.push('\n');
        write("vocabulary.txt", text)?;
    }
    std::fs::copy(&tok_path, out.join("tokenizer.json"))
        .map_err(|e| invalid(format!("copying tokenizer.json: {e}")))?;
    let pre = dir.join("preprocessor_config.json");
    if pre.is_file() {
        std::fs::copy(&pre, out.join("preprocessor_config.json"))
            .map_err(|e| invalid(format!("copying preprocessor_config.json: {e}")))?;
    } else {
        write(
            "preprocessor_config.json",
            serde_json::to_string_pretty(&serde_json::json!({
                "chunk_length": 30,
                "feature_extractor_type": "WhisperFeatureExtractor",
                "feature_size": c.num_mel_bins,
                "hop_length": 160,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "padding_side": "right",
                "padding_value": 0.0,
                "processor_class": "WhisperProcessor",
                "return_attention_mask": false,
                "sampling_rate": 16000
            }))
            .map_err(invalid)?,
        )?;
    }
    Ok(())
}

/// Token strings by id (`vocabulary.txt`): the tokenizer's vocabulary and
/// added tokens, and `<|0.00|>`, `<|0.02|>`, ... for the timestamp ids the
/// tokenizer does not list (as ct2-transformers-converter does).
fn vocabulary(tok: &serde_json::Value, vocab_size: usize) -> Result<Vec<String>, BackendError> {
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    if let Some(vocab) = tok.pointer("/model/vocab").and_then(|v| v.as_object()) {
        for (t, id) in vocab {
            if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
                *slot = Some(t.clone());
            }
        }
    }
    if let Some(added) = tok.get("added_tokens").and_then(|v| v.as_array()) {
        for a in added {
            let (Some(id), Some(t)) = (
                a.get("id").and_then(|v| v.as_u64()),
                a.get("content").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = Some(t.to_string());
            }
        }
    }
    let first_missing = tokens.iter().position(Option::is_none);
    let mut out = Vec::with_capacity(vocab_size);
    for (i, t) in tokens.into_iter().enumerate() {
        match t {
            Some(t) => out.push(t),
            None => {
                let k = i - first_missing.unwrap_or(i);
                out.push(format!("<|{:.2}|>", k as f64 * 0.02));
            }
        }
    }
    if out.is_empty() {
        return Err(invalid("tokenizer.json has no vocabulary"));
    }
    Ok(out)
}

fn ids(v: Option<&serde_json::Value>) -> Option<Vec<i64>> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
}

/// CTranslate2's Whisper `config.json`: suppressed tokens, language token
/// ids and alignment heads, from `generation_config.json` when present
/// (as ct2-transformers-converter does), else from `config.json` and the
/// tokenizer.
fn ct2_config(
    c: &HfConfig,
    cfg: &serde_json::Value,
    gen: Option<&serde_json::Value>,
    tok: &serde_json::Value,
) -> serde_json::Value {
    let pick = |key: &str| {
        ids(gen.and_then(|g| g.get(key)))
            .or_else(|| ids(cfg.get(key)))
            .unwrap_or_default()
    };
    let suppress = pick("suppress_tokens");
    let suppress_begin = pick("begin_suppress_tokens");
    let alignment: Vec<(i64, i64)> = gen
        .and_then(|g| g.get("alignment_heads"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.as_i64()?)))
                .collect()
        })
        .unwrap_or_else(|| {
            // The last half of the decoder layers, every head.
            let (l, h) = (c.decoder_layers as i64, c.decoder_heads as i64);
            (l / 2..l)
                .flat_map(|i| (0..h).map(move |j| (i, j)))
                .collect()
        });
    let mut lang_ids: Vec<i64> = gen
        .and_then(|g| g.get("lang_to_id"))
        .and_then(|v| v.as_object())
        .map(|m| m.values().filter_map(|v| v.as_i64()).collect())
        .unwrap_or_else(|| {
            // Added special tokens that are not task or control tokens.
            const NOT_LANG: &[&str] = &[
                "<|endoftext|>",
                "<|startoftranscript|>",
                "<|translate|>",
                "<|transcribe|>",
                "<|startoflm|>",
                "<|startofprev|>",
                "<|nocaptions|>",
                "<|nospeech|>",
                "<|notimestamps|>",
            ];
            tok.get("added_tokens")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|t| {
                            let s = t.get("content")?.as_str()?;
                            let code = s.strip_prefix("<|")?.strip_suffix("|>")?;
                            let lang = !NOT_LANG.contains(&s)
                                && code.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_');
                            lang.then(|| t.get("id")?.as_i64()).flatten()
                        })
                        .collect()
                })
                .unwrap_or_default()
        });
    lang_ids.sort_unstable();
    serde_json::json!({
        "alignment_heads": alignment.iter().map(|&(a, b)| [a, b]).collect::<Vec<_>>(),
        "lang_ids": lang_ids,
        "suppress_ids": suppress,
        "suppress_ids_begin": suppress_begin,
    })
}

/// Size of the weights stored as float16 (what a CTranslate2 `model.bin`
/// converted from OpenAI's checkpoints weighs): the safetensors files,
/// halved when they hold float32.
pub fn float16_bytes(dir: &Path) -> Option<u64> {
    let files = weight_files(dir).ok()?;
    let mut total = 0u64;
    for f in files {
        let len = std::fs::metadata(&f).ok()?.len();
        let len = match read_dtype(&f) {
            Some(Dtype::F32) => len / 2,
            _ => len,
        };
        total = total.saturating_add(len);
    }
    Some(total)
}

/// The dtype of the first tensor in a safetensors file (reads its header).
fn read_dtype(path: &Path) -> Option<Dtype> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n).ok()?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let dt = v
        .as_object()?
        .iter()
        .find(|(k, _)| *k != "__metadata__")?
        .1
        .get("dtype")?
        .as_str()?
        .to_string();
    match dt.as_str() {
        "F32" => Some(Dtype::F32),
        "F16" => Some(Dtype::F16),
        "BF16" => Some(Dtype::BF16),
        _ => None,
    }
}

/// One variable of a CTranslate2 `model.bin`.
struct Ct2Var {
    shape: Vec<usize>,
    code: u8,
    data: Vec<u8>,
}

/// Reads a CTranslate2 `model.bin` front to back.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BackendError> {
        let s = self.buf.get(self.pos..self.pos + n).ok_or_else(|| {
            invalid(format!(
                "{}: truncated or not a CTranslate2 model",
                self.path.display()
            ))
        })?;
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, BackendError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16 length (with the NUL), the bytes, the NUL.
    fn string(&mut self) -> Result<String, BackendError> {
        let b = self.take(2)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        let s = self.take(n)?;
        Ok(String::from_utf8_lossy(&s[..n.saturating_sub(1)]).into_owned())
    }
}

/// The CTranslate2 type code of the first tensor (rank > 0) of a
/// `model.bin` (0 float32, 4 float16, 5 bfloat16), reading only the header
/// and the scalars before it (the variables are sorted: a few decoder
/// scalars, then the embeddings).
pub fn weights_code(path: &Path) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    let u32_ = |f: &mut std::io::BufReader<std::fs::File>| {
        let mut b = [0u8; 4];
        f.read_exact(&mut b).ok().map(|_| u32::from_le_bytes(b))
    };
    let skip_string = |f: &mut std::io::BufReader<std::fs::File>| {
        let mut b = [0u8; 2];
        f.read_exact(&mut b).ok()?;
        f.seek(SeekFrom::Current(i64::from(u16::from_le_bytes(b))))
            .ok()
    };
    u32_(&mut f)?; // version
    skip_string(&mut f)?; // spec
    u32_(&mut f)?; // revision
    let n = u32_(&mut f)?;
    for _ in 0..n.min(64) {
        skip_string(&mut f)?;
        let mut byte = [0u8; 1];
        f.read_exact(&mut byte).ok()?;
        let rank = i64::from(byte[0]);
        f.seek(SeekFrom::Current(4 * rank)).ok()?;
        f.read_exact(&mut byte).ok()?;
        let len = u32_(&mut f)?;
        if rank > 0 {
            return Some(byte[0]);
        }
        f.seek(SeekFrom::Current(i64::from(len))).ok()?;
    }
    None
}

/// Reads the variables of a CTranslate2 Whisper `model.bin` (format
/// version 6, as [`convert`] writes it).
fn read_ct2(path: &Path) -> Result<BTreeMap<String, Ct2Var>, BackendError> {
    let buf = std::fs::read(path)
        .map_err(|e| BackendError::NotFound(format!("{}: {e}", path.display())))?;
    let mut c = Cursor {
        buf: &buf,
        pos: 0,
        path,
    };
    let version = c.u32()?;
    let spec = c.string()?;
    if version != 6 || spec != "WhisperSpec" {
        return Err(invalid(format!(
            "{}: version {version} {spec}, expected a version 6 WhisperSpec",
            path.display()
        )));
    }
    c.u32()?; // spec revision
    let n = c.u32()?;
    let mut vars = BTreeMap::new();
    for _ in 0..n {
        let name = c.string()?;
        let rank = c.take(1)?[0] as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(c.u32()? as usize);
        }
        let code = c.take(1)?[0];
        let len = c.u32()? as usize;
        let data = c.take(len)?.to_vec();
        vars.insert(name, Ct2Var { shape, code, data });
    }
    Ok(vars)
}

/// An owned tensor for `safetensors::serialize_to_file` (also what the
/// tests and the benchmark write their transformers folders with).
pub struct Tensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl safetensors::View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// CTranslate2 variables re-laid as transformers tensors (float16).
struct Export<'a> {
    vars: &'a BTreeMap<String, Ct2Var>,
    out: BTreeMap<String, Tensor>,
}

impl Export<'_> {
    fn var(&self, name: &str) -> Result<&Ct2Var, BackendError> {
        let v = self
            .vars
            .get(name)
            .ok_or_else(|| invalid(format!("model.bin has no {name}")))?;
        if v.code != 4 {
            return Err(invalid(format!(
                "{name}: only float16 model.bin files are exported"
            )));
        }
        Ok(v)
    }

    fn put(&mut self, dst: String, shape: Vec<usize>, data: Vec<u8>) {
        let dtype = Dtype::F16;
        self.out.insert(dst, Tensor { dtype, shape, data });
    }

    fn copy(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        let v = self.var(src)?;
        let (shape, data) = (v.shape.clone(), v.data.clone());
        self.put(dst.to_string(), shape, data);
        Ok(())
    }

    fn linear(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        self.copy(&format!("{src}/weight"), &format!("{dst}.weight"))?;
        self.copy(&format!("{src}/bias"), &format!("{dst}.bias"))
    }

    fn norm(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        self.copy(&format!("{src}/gamma"), &format!("{dst}.weight"))?;
        self.copy(&format!("{src}/beta"), &format!("{dst}.bias"))
    }

    /// Splits a fused projection; Whisper's k projections have no bias
    /// (CTranslate2 stores zeros there).
    fn split(&mut self, src: &str, dst: &str, parts: &[&str]) -> Result<(), BackendError> {
        let w = self.var(&format!("{src}/weight"))?;
        let b = self.var(&format!("{src}/bias"))?;
        let (n, cols) = (w.shape[0] / parts.len(), w.shape[1]);
        let (wd, bd) = (w.data.clone(), b.data.clone());
        for (i, p) in parts.iter().enumerate() {
            let rows = wd[i * n * cols * 2..(i + 1) * n * cols * 2].to_vec();
            self.put(format!("{dst}.{p}.weight"), vec![n, cols], rows);
            if *p != "k_proj" {
                let bias = bd[i * n * 2..(i + 1) * n * 2].to_vec();
                self.put(format!("{dst}.{p}.bias"), vec![n], bias);
            }
        }
        Ok(())
    }

    fn scalar(&self, name: &str) -> Result<i64, BackendError> {
        let v = self
            .vars
            .get(name)
            .ok_or_else(|| invalid(format!("model.bin has no {name}")))?;
        Ok(match (v.code, v.data.as_slice()) {
            (1, [b]) => i64::from(*b as i8),
            (2, [a, b]) => i64::from(i16::from_le_bytes([*a, *b])),
            (3, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            _ => return Err(invalid(format!("{name} is not an integer scalar"))),
        })
    }
}

/// The inverse of [`convert`], for tests and benchmarks (no transformers
/// Whisper can be fetched here): writes the float16 CTranslate2 Whisper
/// folder `ct2_dir` (as scripts/fetch-models gets them) back into `out` in
/// the transformers layout: `model.safetensors` (fused q|k|v split, the
/// zero k bias dropped, the tied projection not stored), `config.json`,
/// `generation_config.json` (suppressed tokens, languages, alignment
/// heads) and `tokenizer.json`. scripts/gen_whisper_hf_reference.py
/// builds the same checkpoint for transformers.
pub fn export_transformers(ct2_dir: &Path, out: &Path) -> Result<(), BackendError> {
    let vars = read_ct2(&ct2_dir.join("model.bin"))?;
    let mut x = Export {
        vars: &vars,
        out: BTreeMap::new(),
    };
    for c in ["conv1", "conv2"] {
        x.linear(&format!("encoder/{c}"), &format!("model.encoder.{c}"))?;
    }
    x.copy(
        "encoder/position_encodings/encodings",
        "model.encoder.embed_positions.weight",
    )?;
    x.norm("encoder/layer_norm", "model.encoder.layer_norm")?;
    x.copy(
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    x.copy(
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;
    x.norm("decoder/layer_norm", "model.decoder.layer_norm")?;
    let mut layers = [0usize; 2];
    for (side, count) in ["encoder", "decoder"].into_iter().zip(&mut layers) {
        while vars.contains_key(&format!("{side}/layer_{count}/ffn/linear_0/weight")) {
            let (s, d) = (
                format!("{side}/layer_{count}"),
                format!("model.{side}.layers.{count}"),
            );
            x.norm(
                &format!("{s}/self_attention/layer_norm"),
                &format!("{d}.self_attn_layer_norm"),
            )?;
            x.split(
                &format!("{s}/self_attention/linear_0"),
                &format!("{d}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            x.linear(
                &format!("{s}/self_attention/linear_1"),
                &format!("{d}.self_attn.out_proj"),
            )?;
            if side == "decoder" {
                x.norm(
                    &format!("{s}/attention/layer_norm"),
                    &format!("{d}.encoder_attn_layer_norm"),
                )?;
                x.linear(
                    &format!("{s}/attention/linear_0"),
                    &format!("{d}.encoder_attn.q_proj"),
                )?;
                x.split(
                    &format!("{s}/attention/linear_1"),
                    &format!("{d}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                x.linear(
                    &format!("{s}/attention/linear_2"),
                    &format!("{d}.encoder_attn.out_proj"),
                )?;
            }
            x.norm(
                &format!("{s}/ffn/layer_norm"),
                &format!("{d}.final_layer_norm"),
            )?;
            x.linear(&format!("{s}/ffn/linear_0"), &format!("{d}.fc1"))?;
            x.linear(&format!("{s}/ffn/linear_1"), &format!("{d}.fc2"))?;
            *count += 1;
        }
    }
    let shape = |name: &str| x.var(name).map(|v| v.shape.clone());
    let emb = shape("decoder/embeddings/weight")?;
    let conv1 = shape("encoder/conv1/weight")?;
    let fc1 = shape("encoder/layer_0/ffn/linear_0/weight")?;
    let dec_fc1 = shape("decoder/layer_0/ffn/linear_0/weight")?;
    let src_pos = shape("encoder/position_encodings/encodings")?;
    let tgt_pos = shape("decoder/position_encodings/encodings")?;
    let (enc_heads, dec_heads) = (
        x.scalar("encoder/num_heads")?,
        x.scalar("decoder/num_heads")?,
    );

    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        x.out.iter().map(|(k, v)| (k.clone(), v)),
        Some(meta),
        &out.join("model.safetensors"),
    )
    .map_err(|e| invalid(format!("writing model.safetensors: {e}")))?;

    let tok_path = ct2_dir.join("tokenizer.json");
    let tok = read_json(&tok_path)?;
    let ct2_cfg = read_json(&ct2_dir.join("config.json"))?;
    let added: HashMap<String, i64> = tok
        .get("added_tokens")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("content")?.as_str()?.to_string(),
                        t.get("id")?.as_i64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let id = |t: &str| {
        added
            .get(t)
            .copied()
            .ok_or_else(|| invalid(format!("tokenizer.json has no {t}")))
    };
    let (sot, eot, no_ts) = (
        id("<|startoftranscript|>")?,
        id("<|endoftext|>")?,
        id("<|notimestamps|>")?,
    );
    let by_id: HashMap<i64, &str> = added.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let lang_to_id: serde_json::Map<String, serde_json::Value> = ct2_cfg
        .get("lang_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| {
                    let i = v.as_i64()?;
                    Some((by_id.get(&i)?.to_string(), i.into()))
                })
                .collect()
        })
        .unwrap_or_default();
    let multilingual = emb[0] >= 51865;
    let write = |name: &str, v: serde_json::Value| {
        let text = serde_json::to_string_pretty(&v).map_err(invalid)?;
        std::fs::write(out.join(name), text).map_err(|e| invalid(format!("writing {name}: {e}")))
    };
    write(
        "config.json",
        serde_json::json!({
            "model_type": "whisper",
            "architectures": ["WhisperForConditionalGeneration"],
            "vocab_size": emb[0], "num_mel_bins": conv1[1], "d_model": emb[1],
            "encoder_layers": layers[0], "encoder_attention_heads": enc_heads,
            "decoder_layers": layers[1], "decoder_attention_heads": dec_heads,
            "encoder_ffn_dim": fc1[0], "decoder_ffn_dim": dec_fc1[0],
            "max_source_positions": src_pos[0], "max_target_positions": tgt_pos[0],
            "decoder_start_token_id": sot, "bos_token_id": eot,
            "eos_token_id": eot, "pad_token_id": eot,
            "suppress_tokens": ct2_cfg.get("suppress_ids"),
            "begin_suppress_tokens": ct2_cfg.get("suppress_ids_begin"),
            "torch_dtype": "float16"
        }),
    )?;
    write(
        "generation_config.json",
        serde_json::json!({
            "alignment_heads": ct2_cfg.get("alignment_heads"),
            "begin_suppress_tokens": ct2_cfg.get("suppress_ids_begin"),
            "suppress_tokens": ct2_cfg.get("suppress_ids"),
            "lang_to_id": lang_to_id,
            "decoder_start_token_id": sot,
            "eos_token_id": eot,
            "is_multilingual": multilingual,
            "no_timestamps_token_id": no_ts
        }),
    )?;
    std::fs::copy(&tok_path, out.join("tokenizer.json"))
        .map_err(|e| invalid(format!("copying tokenizer.json: {e}")))?;
    Ok(())
}
