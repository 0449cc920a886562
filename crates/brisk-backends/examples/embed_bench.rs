//! In-process MiniLM throughput, without HTTP: load time, sentences/s at
//! batch 1 and at batch 32. Prints JSON.
//!
//! `cargo run --release -p brisk-backends --example embed_bench -- models/all-minilm-l6-v2`

use std::time::Instant;

use brisk_backends::bert::BertEmbedder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/all-minilm-l6-v2".into());
    let t = Instant::now();
    let model = BertEmbedder::load(std::path::Path::new(&dir))?;
    let load_s = t.elapsed().as_secs_f64();
    let sentences: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "Sentence number {i} talks about topic {} in a few more words.",
                i % 7
            )
        })
        .collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    model.embed(&refs[..8], false)?; // warm-up
    let t = Instant::now();
    for s in &refs[..128] {
        model.embed(&[s], false)?;
    }
    let batch1 = 128.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in refs.chunks(32) {
        model.embed(chunk, false)?;
    }
    let batch32 = refs.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{{\"load_s\":{load_s:.3},\"batch1_sentences_per_s\":{batch1:.1},\"batch32_sentences_per_s\":{batch32:.1}}}"
    );
    Ok(())
}
