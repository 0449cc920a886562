//! Writes LoRA adapters in llama.cpp's GGUF layout (what its
//! `convert_lora_to_gguf.py` produces): `general.type = "adapter"`,
//! `adapter.type = "lora"`, `adapter.lora.alpha`, and per adapted weight
//! `W` the F32 tensors `W.lora_a` (ggml dims `[in, rank]`) and `W.lora_b`
//! (`[rank, out]`). llama.cpp adds `alpha / rank * B A` to `W`.
//!
//! brisk itself only reads adapters (llama.cpp does); tests and tools use
//! this to make adapters with known weights.

use std::path::Path;

const ALIGN: usize = 32;

/// One adapter tensor: name, ggml dims (fastest first), row-major values.
pub struct Tensor {
    pub name: String,
    pub dims: [usize; 2],
    pub values: Vec<f32>,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
}

/// Writes an adapter for a model of `architecture` (GGUF
/// `general.architecture`, e.g. `llama`) to `path`.
pub fn write(
    path: &Path,
    architecture: &str,
    alpha: f32,
    tensors: &[Tensor],
) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let strings = [
        ("general.architecture", architecture),
        ("general.type", "adapter"),
        ("adapter.type", "lora"),
    ];
    out.extend_from_slice(&(strings.len() as u64 + 1).to_le_bytes());
    for (k, v) in strings {
        put_string(&mut out, k);
        out.extend_from_slice(&8u32.to_le_bytes()); // string
        put_string(&mut out, v);
    }
    put_string(&mut out, "adapter.lora.alpha");
    out.extend_from_slice(&6u32.to_le_bytes()); // f32
    out.extend_from_slice(&alpha.to_le_bytes());
    let mut offset = 0usize;
    for t in tensors {
        if t.dims[0] * t.dims[1] != t.values.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{}: dims {:?} do not match {} values",
                    t.name,
                    t.dims,
                    t.values.len()
                ),
            ));
        }
        put_string(&mut out, &t.name);
        out.extend_from_slice(&2u32.to_le_bytes());
        for d in t.dims {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // GGML_TYPE_F32
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.values.len() * 4).div_ceil(ALIGN) * ALIGN;
    }
    pad(&mut out);
    for t in tensors {
        for v in &t.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        pad(&mut out);
    }
    std::fs::write(path, out)
}
