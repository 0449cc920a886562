//! PEFT LoRA adapters for Whisper, merged into the base weights at load.
//!
//! An adapter folder holds `adapter_config.json` (`peft_type` `LORA`, `r`,
//! `lora_alpha`, `use_rslora`, `target_modules`) and
//! `adapter_model.safetensors` with, per adapted linear layer, `<module
//! path>.lora_A.weight` (`r x in`) and `<module path>.lora_B.weight` (`out x
//! r`). Merging is PEFT's `merge_and_unload`: `W += scale * B @ A` with
//! `scale = lora_alpha / r`, or `lora_alpha / sqrt(r)` with `use_rslora`.
//!
//! Whisper's adaptable layers are the attention projections `q_proj`,
//! `k_proj`, `v_proj`, `out_proj` (self and cross attention) and the
//! feed-forward `fc1`/`fc2`. What this does not implement is refused with
//! an error naming the setting or the module, never silently ignored: DoRA,
//! trained biases, `modules_to_save`, per-module rank or alpha patterns,
//! `fan_in_fan_out`, embedding adapters.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use brisk_core::BackendError;
use safetensors::SafeTensors;

use crate::hf::{to_f32, ADAPTABLE};

fn bad(dir: &Path, msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(format!("LoRA adapter {}: {msg}", dir.display()))
}

/// One adapted module: its two factors as f32 and the merge scale.
#[derive(Debug, Clone)]
pub struct LoraModule {
    /// `r x in`, row-major.
    pub a: Vec<f32>,
    /// `out x r`, row-major.
    pub b: Vec<f32>,
    pub r: usize,
    pub scale: f32,
}

impl LoraModule {
    /// Adds `scale * B @ A` to `w` (`out x in`, row-major).
    pub fn merge_into(&self, w: &mut [f32], out: usize, inp: usize) {
        debug_assert_eq!(w.len(), out * inp);
        for (o, row) in w.chunks_exact_mut(inp).enumerate() {
            for k in 0..self.r {
                let c = self.scale * self.b[o * self.r + k];
                if c == 0.0 {
                    continue;
                }
                let a = &self.a[k * inp..(k + 1) * inp];
                for (x, &y) in row.iter_mut().zip(a) {
                    *x += c * y;
                }
            }
        }
    }
}

/// A parsed adapter: module path (as in the base checkpoint, without the
/// `model.` prefix, e.g. `encoder.layers.0.self_attn.q_proj`) to factors.
#[derive(Debug, Clone, Default)]
pub struct LoraAdapter {
    pub modules: BTreeMap<String, LoraModule>,
    pub r: usize,
    pub alpha: f64,
    pub use_rslora: bool,
}

/// The adapter files that make up the cache fingerprint.
pub fn adapter_files(dir: &Path) -> Vec<PathBuf> {
    vec![
        dir.join("adapter_config.json"),
        dir.join("adapter_model.safetensors"),
    ]
}

/// Does `dir` hold a PEFT adapter?
pub fn looks_like_adapter(dir: &Path) -> bool {
    dir.join("adapter_config.json").is_file()
}

/// Reads and checks an adapter against the base model's linear shapes
/// (`module path -> (out, in)`).
pub fn read_adapter(
    dir: &Path,
    base_linears: &HashMap<String, (usize, usize)>,
) -> Result<LoraAdapter, BackendError> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| bad(dir, format!("cannot read adapter_config.json: {e}")))?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(dir, format!("adapter_config.json: {e}")))?;
    let peft_type = cfg
        .get("peft_type")
        .and_then(|v| v.as_str())
        .unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(bad(
            dir,
            format!("peft_type {peft_type} is not supported (only LORA)"),
        ));
    }
    let r = cfg
        .get("r")
        .and_then(|v| v.as_u64())
        .filter(|&r| r > 0)
        .ok_or_else(|| bad(dir, "adapter_config.json: r must be a positive integer"))?
        as usize;
    let alpha = cfg
        .get("lora_alpha")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| bad(dir, "adapter_config.json: lora_alpha is missing"))?;
    let use_rslora = cfg
        .get("use_rslora")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let truthy = |k: &str| {
        cfg.get(k).is_some_and(|v| match v {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::Null => false,
            serde_json::Value::Object(m) => !m.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::String(s) => s != "none",
            _ => true,
        })
    };
    for (key, what) in [
        ("use_dora", "DoRA (use_dora)"),
        ("fan_in_fan_out", "fan_in_fan_out"),
        ("rank_pattern", "per-module ranks (rank_pattern)"),
        ("alpha_pattern", "per-module alphas (alpha_pattern)"),
        ("modules_to_save", "fully trained modules (modules_to_save)"),
        ("bias", "trained biases (bias)"),
        ("lora_bias", "a bias on lora_B (lora_bias)"),
        ("layer_replication", "layer_replication"),
        (
            "trainable_token_indices",
            "trained token embeddings (trainable_token_indices)",
        ),
        (
            "target_parameters",
            "adapters on parameters (target_parameters)",
        ),
        ("use_qalora", "QALoRA (use_qalora)"),
    ] {
        if truthy(key) {
            return Err(bad(dir, format!("{what} is not supported")));
        }
    }
    let scale = if use_rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    } as f32;

    let st_path = dir.join("adapter_model.safetensors");
    if !st_path.is_file() {
        let hint = if dir.join("adapter_model.bin").is_file() {
            " (adapter_model.bin, a PyTorch pickle, is not read: save with safe_serialization=True)"
        } else {
            ""
        };
        return Err(bad(
            dir,
            format!("adapter_model.safetensors is missing{hint}"),
        ));
    }
    let bytes = std::fs::read(&st_path)
        .map_err(|e| bad(dir, format!("cannot read adapter_model.safetensors: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(dir, format!("adapter_model.safetensors: {e}")))?;

    let mut a_parts: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    let mut b_parts: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, view) in st.iter() {
        let (module, part) = if let Some(m) = name.strip_suffix(".lora_A.weight") {
            (m, 'A')
        } else if let Some(m) = name.strip_suffix(".lora_B.weight") {
            (m, 'B')
        } else {
            return Err(bad(
                dir,
                format!("tensor {name} is not a LoRA factor (lora_A/lora_B weight)"),
            ));
        };
        let module = normalize_module(module);
        let leaf = module.rsplit('.').next().unwrap_or("");
        if !ADAPTABLE.contains(&leaf) {
            return Err(bad(
                dir,
                format!(
                    "module {module}: {leaf} cannot be adapted (supported: {})",
                    ADAPTABLE.join(", ")
                ),
            ));
        }
        if !base_linears.contains_key(&module) {
            return Err(bad(
                dir,
                format!("module {module} does not exist in the base model"),
            ));
        }
        let values =
            to_f32(view.dtype(), view.data()).map_err(|e| bad(dir, format!("{name}: {e}")))?;
        let entry = (view.shape().to_vec(), values);
        if part == 'A' {
            a_parts.insert(module, entry);
        } else {
            b_parts.insert(module, entry);
        }
    }
    if a_parts.is_empty() && b_parts.is_empty() {
        return Err(bad(dir, "adapter_model.safetensors holds no LoRA weights"));
    }
    let mut modules = BTreeMap::new();
    for (module, (a_shape, a)) in a_parts {
        let (b_shape, b) = b_parts
            .remove(&module)
            .ok_or_else(|| bad(dir, format!("module {module}: lora_B is missing")))?;
        let &(out, inp) = &base_linears[&module];
        if a_shape != [r, inp] {
            return Err(bad(
                dir,
                format!(
                    "module {module}: lora_A has shape {a_shape:?}, expected [{r}, {inp}] (r, in)"
                ),
            ));
        }
        if b_shape != [out, r] {
            return Err(bad(
                dir,
                format!(
                    "module {module}: lora_B has shape {b_shape:?}, expected [{out}, {r}] (out, r)"
                ),
            ));
        }
        modules.insert(module, LoraModule { a, b, r, scale });
    }
    if let Some(module) = b_parts.keys().next() {
        return Err(bad(dir, format!("module {module}: lora_A is missing")));
    }
    Ok(LoraAdapter {
        modules,
        r,
        alpha,
        use_rslora,
    })
}

/// `base_model.model.model.encoder.layers.0.fc1` -> `encoder.layers.0.fc1`
/// (PEFT wraps the transformers model, whose own prefix is `model.`).
fn normalize_module(name: &str) -> String {
    let n = name.strip_prefix("base_model.model.").unwrap_or(name);
    let n = n.strip_prefix("model.").unwrap_or(n);
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_scaled_product() {
        // B (2x1) @ A (1x3), scale 2.
        let m = LoraModule {
            a: vec![1.0, 2.0, 3.0],
            b: vec![1.0, -1.0],
            r: 1,
            scale: 2.0,
        };
        let mut w = vec![0.0; 6];
        m.merge_into(&mut w, 2, 3);
        assert_eq!(w, vec![2.0, 4.0, 6.0, -2.0, -4.0, -6.0]);
    }

    #[test]
    fn module_names_lose_the_peft_and_model_prefixes() {
        assert_eq!(
            normalize_module("base_model.model.model.decoder.layers.3.encoder_attn.k_proj"),
            "decoder.layers.3.encoder_attn.k_proj"
        );
    }
}
