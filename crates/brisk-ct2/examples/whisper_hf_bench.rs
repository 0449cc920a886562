//! Cost of serving a transformers Whisper checkpoint with a PEFT LoRA
//! adapter (issue 19, BENCHMARKS.md): the one-time conversion (with and
//! without the merge), then the load from the cache and the peak RSS, for
//! the merged model against the plain one.
//!
//!     # a transformers folder from a fetched CTranslate2 one, plus a
//!     # random rank-R adapter on every q/k/v/out_proj, fc1, fc2:
//!     cargo run -p brisk-ct2 --example whisper_hf_bench -- prepare CT2_DIR OUT_DIR R
//!     # one load in this process (run each in a fresh process: peak RSS):
//!     cargo run -p brisk-ct2 --example whisper_hf_bench -- load DIR [ADAPTER|-] [COMPUTE_TYPE]
//!
//! `load` prints one JSON line: whether it converted, the conversion (or
//! cache lookup) time, the CTranslate2 load time and the peak RSS (VmHWM).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use brisk_ct2::hf::Tensor;
use brisk_ct2::{backend, Ct2Whisper, LoadOptions};
use safetensors::{Dtype, SafeTensors};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reproducible values in [-amp, amp) (a 64-bit LCG).
fn values(n: usize, seed: &mut u64, amp: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (*seed >> 40) as f32 / (1u64 << 24) as f32;
            ((2.0 * u - 1.0) * amp).to_le_bytes()
        })
        .collect()
}

fn prepare(ct2: &Path, out: &Path, r: usize) {
    std::fs::create_dir_all(out).expect("out dir");
    let t = Instant::now();
    brisk_ct2::hf::export_transformers(ct2, out).expect("export");
    let export_s = t.elapsed().as_secs_f64();
    let bytes = std::fs::read(out.join("model.safetensors")).expect("weights");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors = BTreeMap::new();
    let mut seed = 19u64;
    let targets = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"];
    for (name, view) in st.tensors() {
        let Some(module) = name.strip_suffix(".weight") else {
            continue;
        };
        if !targets.iter().any(|t| module.ends_with(t)) {
            continue;
        }
        let (o, i) = (view.shape()[0], view.shape()[1]);
        let peft = format!("base_model.model.{module}");
        let a = Tensor {
            dtype: Dtype::F32,
            shape: vec![r, i],
            data: values(r * i, &mut seed, 0.05),
        };
        let b = Tensor {
            dtype: Dtype::F32,
            shape: vec![o, r],
            data: values(o * r, &mut seed, 0.01),
        };
        tensors.insert(format!("{peft}.lora_A.weight"), a);
        tensors.insert(format!("{peft}.lora_B.weight"), b);
    }
    let dir = out.join("adapter");
    std::fs::create_dir_all(&dir).expect("adapter dir");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, v)| (k.clone(), v)),
        Some(meta),
        &dir.join("adapter_model.safetensors"),
    )
    .expect("write adapter");
    let cfg = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "use_rslora": false,
        "target_modules": targets, "bias": "none", "lora_dropout": 0.0
    });
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).expect("adapter cfg");
    println!(
        "{{\"export_s\":{export_s:.3},\"adapter_modules\":{}}}",
        tensors.len() / 2
    );
}

fn load(dir: &Path, adapter: Option<&str>, compute_type: &str) {
    let mut options = BTreeMap::from([
        ("compute_type".to_string(), compute_type.to_string()),
        ("threads".to_string(), "2".to_string()),
    ]);
    if let Some(a) = adapter {
        options.insert("adapter".into(), a.into());
    }
    let t = Instant::now();
    let (folder, converted) = backend::ct2_folder(dir, &options).expect("convert");
    let prepare_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let lo = LoadOptions {
        compute_type: compute_type.into(),
        threads: 2,
    };
    let m = Ct2Whisper::load(&folder, &lo).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    let bin_mib = std::fs::metadata(folder.join("model.bin"))
        .map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64);
    println!(
        "{{\"adapter\":{},\"compute_type\":\"{compute_type}\",\"converted\":{converted},\
         \"prepare_s\":{prepare_s:.3},\"load_s\":{load_s:.3},\"model_bin_mib\":{bin_mib:.0},\
         \"peak_rss_mib\":{:.0}}}",
        adapter.is_some(),
        peak_rss_mib()
    );
    drop(m);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("prepare") if args.len() == 5 => prepare(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4].parse().expect("rank"),
        ),
        Some("load") if args.len() >= 3 => load(
            Path::new(&args[2]),
            args.get(3).map(String::as_str).filter(|a| *a != "-"),
            args.get(4).map_or("int8", String::as_str),
        ),
        _ => {
            eprintln!(
                "usage: whisper_hf_bench prepare CT2_DIR OUT_DIR R | load DIR [ADAPTER|-] [COMPUTE_TYPE]"
            );
            std::process::exit(2);
        }
    }
}
