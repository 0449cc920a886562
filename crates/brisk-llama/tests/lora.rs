//! LoRA adapters on llama.cpp, with adapters this test writes itself
//! (GGUF, as llama.cpp's `convert_lora_to_gguf.py` lays them out) on
//! SmolLM2-135M-Instruct:
//!
//! - an adapter whose B matrix is zero reproduces the base model;
//! - a non-zero adapter changes the next-token distribution exactly as
//!   merging `W + scale * B A` into a copy of the weights does (the merged
//!   copy is the independent computation: no adapter code runs there);
//! - base and adapter requests decoded in the same steps answer as they
//!   do alone.
//!
//! Needs `models/smollm2-135m-instruct/` (scripts/fetch-models).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brisk_core::{
    Backend, BackendError, ChatMessage, GenerateParams, GenerateRequest, Generation, Prompt,
    Request, Response, Stepper,
};
use brisk_llama::{lora_file, LlamaCppGenerator, Options, Weights};

mod common;

use common::{model_dir, Slot};

/// The weight the adapters change: [in 576, out 576] in ggml order.
const TARGET: &str = "blk.3.attn_output.weight";
const RANK: usize = 4;
/// `adapter.lora.alpha`: llama.cpp scales B A by alpha / rank.
const ALPHA: f32 = 8.0;

// --- finding a tensor in a GGUF (v3) file ---------------------------------

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const TYPE_F16: u32 = 1;
const ALIGN: usize = 32;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    /// Skips one metadata value of GGUF type `t`.
    fn skip_value(&mut self, t: u32) {
        match t {
            0 | 1 | 7 => drop(self.take(1)),
            2 | 3 => drop(self.take(2)),
            4..=6 => drop(self.take(4)),
            10..=12 => drop(self.take(8)),
            8 => drop(self.string()),
            9 => {
                let et = self.u32();
                let n = self.u64();
                for _ in 0..n {
                    self.skip_value(et);
                }
            }
            other => panic!("unknown GGUF value type {other}"),
        }
    }
}

/// Where a tensor's data lies in a GGUF file, and its type and shape.
struct TensorAt {
    offset: usize,
    ggml_type: u32,
    dims: Vec<usize>,
}

fn find_tensor(file: &[u8], name: &str) -> TensorAt {
    assert_eq!(&file[..4], GGUF_MAGIC);
    let mut c = Cursor { b: file, at: 4 };
    assert_eq!(c.u32(), 3, "GGUF v3");
    let n_tensors = c.u64();
    let n_kv = c.u64();
    for _ in 0..n_kv {
        let _key = c.string();
        let t = c.u32();
        c.skip_value(t);
    }
    let mut found = None;
    for _ in 0..n_tensors {
        let tname = c.string();
        let n_dims = c.u32() as usize;
        let dims: Vec<usize> = (0..n_dims).map(|_| c.u64() as usize).collect();
        let ggml_type = c.u32();
        let offset = c.u64() as usize;
        if tname == name {
            found = Some((offset, ggml_type, dims));
        }
    }
    let data_start = c.at.div_ceil(ALIGN) * ALIGN;
    let (offset, ggml_type, dims) = found.unwrap_or_else(|| panic!("no tensor {name}"));
    TensorAt {
        offset: data_start + offset,
        ggml_type,
        dims,
    }
}

/// Writes a LoRA adapter of the llama architecture.
fn write_adapter(path: &Path, alpha: f32, tensors: &[(String, [usize; 2], Vec<f32>)]) {
    let tensors: Vec<lora_file::Tensor> = tensors
        .iter()
        .map(|(name, dims, values)| lora_file::Tensor {
            name: name.clone(),
            dims: *dims,
            values: values.clone(),
        })
        .collect();
    lora_file::write(path, "llama", alpha, &tensors).expect("write adapter");
}

/// Deterministic values in [-amp, amp] (no RNG crate needed).
fn values(n: usize, seed: u64, amp: f32) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

// --- driving the generator ----------------------------------------------

fn request(adapter: Option<&str>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::new(
            "user".into(),
            "Name three colours of the rainbow.".into(),
        )]),
        params: GenerateParams {
            max_tokens,
            temperature: 0.0,
            logprobs: Some(20),
            adapter: adapter.map(str::to_string),
            ..Default::default()
        },
        sink: None,
    }
}

fn run(m: &mut LlamaCppGenerator, adapter: Option<&str>, max_tokens: usize) -> Generation {
    match m
        .infer(vec![Request::Generate(request(adapter, max_tokens))])
        .pop()
    {
        Some(Ok(Response::Generate(g))) => g,
        other => panic!("unexpected {other:?}"),
    }
}

/// The first generated position's top-20 log probabilities, by token text.
fn first_top(g: &Generation) -> BTreeMap<String, f32> {
    let mut m = BTreeMap::new();
    for (t, lp) in &g.logprobs[0].top {
        m.entry(t.clone()).or_insert(*lp);
    }
    m
}

/// Largest |a - b| over the tokens both distributions list, and how many.
fn max_diff(a: &BTreeMap<String, f32>, b: &BTreeMap<String, f32>) -> (f32, usize) {
    let mut worst = 0f32;
    let mut common = 0;
    for (t, x) in a {
        if let Some(y) = b.get(t) {
            worst = worst.max((x - y).abs());
            common += 1;
        }
    }
    (worst, common)
}

#[test]
fn adapters_match_merged_weights_and_do_not_disturb_each_other() {
    let dir = tempfile_dir();
    let options = Options {
        threads: 2,
        parallel: 4,
        ..Options::default()
    };
    // The base as llama.cpp holds it (`weights = auto`: an F16 copy).
    let base_file = {
        let m = LlamaCppGenerator::load_with(&model_dir(), options.clone()).expect("loads");
        m.file().to_path_buf()
    };
    let bytes = std::fs::read(&base_file).expect("read base");
    let target = find_tensor(&bytes, TARGET);
    assert_eq!(
        target.ggml_type, TYPE_F16,
        "{TARGET} should be F16 in {base_file:?}"
    );
    let (n_in, n_out) = (target.dims[0], target.dims[1]);

    // A: [in, rank] (rank rows of `in`), B: [rank, out] (out rows of rank).
    let a = values(n_in * RANK, 1, 0.25);
    let b = values(RANK * n_out, 2, 0.25);
    let zero_b = vec![0.0; RANK * n_out];
    let lora = |b: &[f32]| {
        vec![
            (format!("{TARGET}.lora_a"), [n_in, RANK], a.clone()),
            (format!("{TARGET}.lora_b"), [RANK, n_out], b.to_vec()),
        ]
    };
    let delta_path = dir.join("delta.gguf");
    let zero_path = dir.join("zero.gguf");
    write_adapter(&delta_path, ALPHA, &lora(&b));
    write_adapter(&zero_path, ALPHA, &lora(&zero_b));

    // The merged copy: W[o][i] += alpha / rank * sum_j B[o][j] A[j][i].
    let scale = ALPHA / RANK as f32;
    let mut merged = bytes.clone();
    for o in 0..n_out {
        for i in 0..n_in {
            let at = target.offset + 2 * (o * n_in + i);
            let w = half::f16::from_le_bytes([merged[at], merged[at + 1]]).to_f32();
            let d: f32 = (0..RANK).map(|j| b[o * RANK + j] * a[j * n_in + i]).sum();
            let v = half::f16::from_f32(w + scale * d).to_le_bytes();
            merged[at..at + 2].copy_from_slice(&v);
        }
    }
    let merged_path = dir.join("merged-f16.gguf");
    std::fs::write(&merged_path, &merged).expect("write merged");
    drop(merged);
    drop(bytes);

    let adapters = BTreeMap::from([
        ("delta".to_string(), delta_path.clone()),
        ("zero".to_string(), zero_path.clone()),
    ]);
    let mut m = LlamaCppGenerator::load_with_adapters(&base_file, options.clone(), &adapters)
        .expect("base + adapters load");
    let base = run(&mut m, None, 12);
    let zero = run(&mut m, Some("zero"), 12);
    let delta = run(&mut m, Some("delta"), 12);
    let merged_out = {
        let mut mm = LlamaCppGenerator::load_with(
            &merged_path,
            Options {
                weights: Weights::Native,
                ..options
            },
        )
        .expect("merged loads");
        run(&mut mm, None, 12)
    };

    // A zero B matrix adds exactly nothing.
    let (d, common) = max_diff(&first_top(&base), &first_top(&zero));
    assert_eq!(common, 20);
    assert!(d < 1e-4, "zero adapter moved a logprob by {d}");
    assert_eq!(base.text, zero.text);

    // The adapter changes the distribution, by what merging computes.
    let (moved, _) = max_diff(&first_top(&base), &first_top(&delta));
    assert!(moved > 0.3, "the adapter barely changes anything ({moved})");
    let (d, common) = max_diff(&first_top(&delta), &first_top(&merged_out));
    assert!(common >= 15, "top-20 lists differ: {common} common");
    assert!(
        d < 0.05,
        "adapter vs merged weights differ by {d} (the adapter moved logprobs by up to {moved})"
    );
    for (x, y) in delta.logprobs.iter().zip(&merged_out.logprobs) {
        if x.token != y.token {
            break; // a near tie decided the other way; the rest diverges
        }
        assert!((x.logprob - y.logprob).abs() < 0.05, "{x:?} vs {y:?}");
    }

    // All three at once, in the same steps: each as it was alone.
    let answers: Vec<Slot> = (0..3).map(|_| Slot::default()).collect();
    for (adapter, answer) in [None, Some("delta"), Some("zero")]
        .into_iter()
        .zip(&answers)
    {
        m.start(
            Request::Generate(request(adapter, 12)),
            Box::new(answer.clone()),
        );
    }
    while m.step() {}
    let together: Vec<Generation> = answers
        .iter()
        .map(|a| a.generation().expect("answered"))
        .collect();
    assert_eq!(together[0].text, base.text);
    assert_eq!(together[1].text, delta.text);
    assert_eq!(together[2].text, zero.text);
    // And the prefix cache never serves one adapter's KV to another: the
    // same prompt again under each group still answers the same.
    assert_eq!(run(&mut m, Some("delta"), 12).text, delta.text);
    assert_eq!(run(&mut m, None, 12).text, base.text);

    // An unknown adapter is the caller's error.
    let err = match m
        .infer(vec![Request::Generate(request(Some("nope"), 4))])
        .pop()
    {
        Some(Err(e)) => e,
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        matches!(&err, BackendError::InvalidInput(msg) if msg.contains("nope") && msg.contains("delta")),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_adapter_for_another_shape_is_refused_at_load() {
    let dir = tempfile_dir();
    let path = dir.join("bad.gguf");
    // Wrong input size for the target weight.
    write_adapter(
        &path,
        ALPHA,
        &[
            (
                format!("{TARGET}.lora_a"),
                [7, RANK],
                values(7 * RANK, 3, 0.1),
            ),
            (
                format!("{TARGET}.lora_b"),
                [RANK, 576],
                values(RANK * 576, 4, 0.1),
            ),
        ],
    );
    let err = LlamaCppGenerator::load_with_adapters(
        &model_dir(),
        Options {
            threads: 2,
            ..Options::default()
        },
        &BTreeMap::from([("bad".to_string(), path)]),
    )
    .expect_err("a mismatched adapter must not load");
    let msg = err.to_string();
    assert!(msg.contains("adapter bad"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "brisk-lora-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
