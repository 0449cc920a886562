#![cfg(feature = "llama")]
//! End-to-end tests of the `candle-llama` backend on SmolLM2-135M-Instruct
//! (GGUF, Q4_1). The model is loaded once and shared by every test.
//!
//! Needs `models/smollm2-135m-instruct/` (run `scripts/fetch-models`), or
//! `BRISK_MODELS_DIR` pointing at a folder that holds it.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use brisk_backends::llama::{GgufTokenizer, LlamaGenerator, WeightFormat};
use brisk_backends::{detect, BriskLoader};
use brisk_core::{
    Backend, BackendError, ChatMessage, FinishReason, GenerateParams, GenerateRequest, Generation,
    Loader, ModelSource, Prompt, Request, Response, Task,
};

const MODEL_DIR: &str = "smollm2-135m-instruct";
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_dir() -> PathBuf {
    common::fetched(&format!("{MODEL_DIR}/{MODEL_FILE}"));
    common::fetched(MODEL_DIR)
}

/// The shared model; tests take turns (2 cores: parallel runs only thrash).
fn model() -> MutexGuard<'static, LlamaGenerator> {
    static MODEL: OnceLock<Mutex<LlamaGenerator>> = OnceLock::new();
    MODEL
        .get_or_init(|| Mutex::new(LlamaGenerator::load(&model_dir()).expect("SmolLM2 GGUF loads")))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn user(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage {
        role: "user".into(),
        content: text.into(),
    }])
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        temperature: 0.0,
        ..Default::default()
    }
}

fn request(prompt: Prompt, params: GenerateParams) -> GenerateRequest {
    GenerateRequest {
        prompt,
        params,
        sink: None,
    }
}

fn generate(prompt: Prompt, params: GenerateParams) -> Generation {
    model()
        .generate(request(prompt, params))
        .expect("generation succeeds")
}

/// Runs a streaming request; returns the result and the pieces sent.
fn generate_streaming(
    prompt: Prompt,
    params: GenerateParams,
    keep_after: usize,
) -> (Generation, Vec<String>) {
    let pieces = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink_pieces = pieces.clone();
    let req = GenerateRequest {
        prompt,
        params,
        sink: Some(Box::new(move |piece: &str| {
            let mut p = sink_pieces.lock().expect("pieces lock");
            p.push(piece.to_string());
            p.len() < keep_after
        })),
    };
    let out = model()
        .generate(req)
        .expect("streaming generation succeeds");
    let pieces = pieces.lock().expect("pieces lock").clone();
    (out, pieces)
}

#[test]
fn greedy_decoding_is_deterministic() {
    let a = generate(user("Write one sentence about the sea."), greedy(10));
    let b = generate(user("Write one sentence about the sea."), greedy(10));
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.completion_tokens, b.completion_tokens);
    assert_eq!(a.prompt_tokens, b.prompt_tokens);
    assert!(a.prompt_eval_s > 0.0 && a.eval_s > 0.0, "{a:?}");
}

#[test]
fn knows_the_capital_of_france() {
    let out = generate(user("What is the capital of France?"), greedy(32));
    assert!(out.text.contains("Paris"), "{:?}", out.text);
    assert!(out.completion_tokens <= 32);
    // The chat template adds SmolLM's default system prompt.
    assert!(out.prompt_tokens > 20, "{out:?}");
}

#[test]
fn streamed_pieces_match_the_whole_text() {
    let prompt = user("Name three colours and say why you like them.");
    let whole = generate(prompt.clone(), greedy(16));
    let (streamed, pieces) = generate_streaming(prompt, greedy(16), usize::MAX);
    assert_eq!(streamed.text, whole.text);
    assert_eq!(pieces.concat(), whole.text);
    assert!(pieces.len() > 5, "{pieces:?}");
    assert!(pieces.iter().all(|p| !p.is_empty()));
    assert_eq!(streamed.finish_reason, whole.finish_reason);
}

#[test]
fn stop_string_truncates_and_is_never_streamed() {
    let prompt = user("Name three colours and say why you like them.");
    let full = generate(prompt.clone(), greedy(16));
    // Stop on three characters from the middle of the answer.
    let chars: Vec<(usize, char)> = full.text.char_indices().collect();
    assert!(chars.len() >= 12, "answer too short: {:?}", full.text);
    let (start, _) = chars[chars.len() / 2];
    let end = chars
        .get(chars.len() / 2 + 3)
        .map_or(full.text.len(), |(i, _)| *i);
    let stop = full.text[start..end].to_string();
    let cut = full.text.find(&stop).expect("stop string is in the text");

    let mut params = greedy(16);
    params.stop = vec!["no such stop string".into(), stop.clone()];
    let stopped = generate(prompt.clone(), params.clone());
    assert_eq!(stopped.text, full.text[..cut], "stop {stop:?}");
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert!(stopped.completion_tokens <= full.completion_tokens);

    let (streamed, pieces) = generate_streaming(prompt, params, usize::MAX);
    assert_eq!(streamed.text, stopped.text);
    assert_eq!(pieces.concat(), stopped.text);
    assert!(!pieces.concat().contains(&stop));
}

#[test]
fn max_tokens_ends_with_length() {
    let out = generate(user("Tell me a long story about a dragon."), greedy(5));
    assert_eq!(out.completion_tokens, 5);
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert!(!out.text.is_empty());

    let none = generate(user("Hi"), greedy(0));
    assert_eq!(none.completion_tokens, 0);
    assert_eq!(none.text, "");
    assert_eq!(none.finish_reason, FinishReason::Length);
}

#[test]
fn cancelled_when_the_sink_stops_listening() {
    let (out, pieces) =
        generate_streaming(user("Tell me a long story about a dragon."), greedy(64), 2);
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(pieces.len(), 2);
    assert!(out.completion_tokens < 64);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let params = GenerateParams {
        max_tokens: 8,
        temperature: 0.8,
        top_k: Some(40),
        top_p: Some(0.95),
        seed: Some(42),
        stop: Vec::new(),
    };
    let a = generate(user("Write a poem about cats."), params.clone());
    let b = generate(user("Write a poem about cats."), params);
    assert_eq!(a.text, b.text);
}

#[test]
fn too_long_prompts_are_invalid_input() {
    let m = model();
    let context = m.context_length();
    assert_eq!(context, 4096, "min(8192 trained, candle's 4096)");

    let long = Prompt::Text("hello ".repeat(5000));
    let err = m
        .generate(request(long, greedy(16)))
        .expect_err("prompt longer than the context");
    match &err {
        BackendError::InvalidInput(msg) => {
            assert!(msg.contains("max_tokens is 16"), "{msg}");
            assert!(msg.contains("context is 4096"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }

    let err = m
        .generate(request(user("Hi"), greedy(5000)))
        .expect_err("max_tokens beyond the context");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");

    let err = m
        .generate(request(Prompt::Text(String::new()), greedy(4)))
        .expect_err("empty prompt");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");

    let mut bad = greedy(4);
    bad.temperature = -1.0;
    let err = m
        .generate(request(user("Hi"), bad))
        .expect_err("negative temperature");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");
}

#[test]
fn backend_trait_and_loader() {
    let dir = model_dir();
    {
        let mut m = model();
        assert_eq!(m.task(), Task::Generation);
        let size = std::fs::metadata(dir.join(MODEL_FILE))
            .expect("model file")
            .len();
        // Small enough for f32 weights: about 4 bytes per parameter.
        assert_eq!(m.weight_format(), WeightFormat::F32);
        assert!(
            m.memory_bytes() > 5 * size,
            "{} vs {size}",
            m.memory_bytes()
        );
        let counter = m.token_counter().expect("has a token counter");
        assert_eq!(counter.count("Hello world").expect("count"), 2);
        assert_eq!(counter.max_input_tokens(), 4096);

        let out = m.infer(vec![
            Request::Embed {
                texts: vec!["x".into()],
                truncate: false,
            },
            Request::Generate(request(user("Say hi."), greedy(3))),
        ]);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(out[0], Err(BackendError::Unsupported(_))),
            "{:?}",
            out[0]
        );
        match &out[1] {
            Ok(Response::Generate(g)) => assert_eq!(g.completion_tokens, 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    assert_eq!(detect(&dir), Some("candle-llama"));
    assert_eq!(detect(&dir.join(MODEL_FILE)), Some("candle-llama"));
    assert!(brisk_backends::available_backends().contains(&"candle-llama"));
    let loader = BriskLoader::new();
    let source = ModelSource {
        backend: "candle-llama".into(),
        path: dir.clone(),
        options: Default::default(),
    };
    assert_eq!(loader.task(&source), Ok(Task::Generation));
    // The budget's estimate, from the header alone, matches what a load
    // really holds, for the default (f32 widening) and for native weights.
    let close = |a: u64, b: u64| (a as f64 - b as f64).abs() / (b as f64) < 0.05;
    let native = ModelSource {
        options: [("weights".to_string(), "native".to_string())].into(),
        ..source.clone()
    };
    for src in [&source, &native] {
        let estimate = loader.estimate_bytes(src).expect("estimate");
        let held = loader.load("x", src).expect("loads").memory_bytes();
        assert!(
            close(estimate, held),
            "{:?}: estimate {estimate} vs loaded {held}",
            src.options
        );
    }
    let file_len = std::fs::metadata(dir.join(MODEL_FILE)).expect("gguf").len();
    assert!(loader.estimate_bytes(&source).expect("estimate") > 5 * file_len);
    let missing = ModelSource {
        path: "/nonexistent/brisk".into(),
        ..source
    };
    assert!(matches!(
        loader.load("x", &missing),
        Err(BackendError::NotFound(_))
    ));
}

#[test]
fn chat_template_from_the_gguf() {
    let m = model();
    assert!(m.template().has_template());
    let prompt = m.render_prompt(&user("Hi"));
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = m.prompt_ids(&user("Hi")).expect("prompt ids");
    assert_eq!(ids[0], 1, "starts with <|im_start|>");
    // No BOS for SmolLM2 (tokenizer.ggml.add_bos_token = false).
    assert_eq!(
        m.prompt_ids(&Prompt::Text("Hi".into())).expect("ids").len(),
        1
    );
}

fn tokenizer() -> Arc<GgufTokenizer> {
    model().tokenizer().clone()
}

#[test]
fn tokenizer_special_tokens_are_single_ids() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    for (text, id) in [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)] {
        assert_eq!(tok.encode(text).expect("encode"), vec![id], "{text}");
        assert_eq!(tok.token_to_id(text), Some(id));
    }
    // <|im_end|> and <|endoftext|> both end generation.
    assert_eq!(tok.stop_ids(), &[0, 2]);
    // Control tokens are not shown.
    assert_eq!(tok.decode(&[1, 19556, 2]), "Hello");
}

#[test]
fn tokenizer_round_trips() {
    let tok = tokenizer();
    let texts = [
        "Hello world",
        "  leading and trailing spaces  ",
        "tabs\tand\nnew\n\nlines\r\n",
        "Numbers: 0 12 345 6789 3.14159 -42 1e10",
        "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 日本語, 中文, 한국어",
        "Emoji 🙂👍🏽 and 👨‍👩‍👧 families",
        "code: fn main() { println!(\"{:?}\", vec![1, 2]); } // ok",
        "<|im_start|>user\nhi<|im_end|>",
        "",
    ];
    for text in texts {
        let ids = tok.encode(text).expect("encode");
        // Control tokens are left out of decoded text.
        let shown = text.replace("<|im_start|>", "").replace("<|im_end|>", "");
        assert_eq!(tok.decode(&ids), shown, "ours, {ids:?}");
        assert_eq!(
            tok.decode_with_tokenizers(&ids).expect("decode"),
            shown,
            "tokenizers crate"
        );
        // Decoding token by token through the UTF-8 stream gives the same.
        let mut stream = brisk_backends::llama::Utf8Stream::default();
        let mut pieces: String = ids.iter().map(|&id| stream.push(tok.piece(id))).collect();
        pieces.push_str(&stream.finish());
        assert_eq!(pieces, shown);
    }
}

/// Ids from an independent build of the same tokenizer: transformers'
/// GGUF tokenizer builder (transformers 5.x, `tokenizers` 0.23.3 wheel) on
/// this file's vocabulary, merges and token types, with the `Digits`
/// pre-tokenizer of SmolLM2's own `tokenizer.json` added (transformers has
/// no `smollm` split of its own).
#[test]
fn tokenizer_matches_reference_ids() {
    let tok = tokenizer();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[19556, 905]),
        (
            "What is the capital of France?",
            &[1780, 314, 260, 3575, 282, 4649, 47],
        ),
        (
            "12345 numbers 3.14 and 2024-01-31",
            &[
                33, 34, 35, 36, 37, 2966, 216, 35, 30, 33, 36, 284, 216, 34, 32, 34, 36, 29, 32,
                33, 29, 35, 33,
            ],
        ),
        (
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            &[1, 4093, 198, 6004, 2, 198, 1, 520, 9531, 198],
        ),
        (
            "  multiple   spaces\n\n\ttabs  ",
            &[216, 2701, 256, 5600, 1116, 197, 100, 7366, 256],
        ),
        (
            "héllo wörld 你好 🙂 naïve café",
            &[
                88, 2756, 31394, 267, 29989, 400, 216, 18645, 250, 48392, 138, 47526, 15486, 46494,
                37366,
            ],
        ),
        (
            "don't I'll we're THEY'VE",
            &[12420, 982, 339, 3060, 392, 2316, 6462, 73, 23, 18525],
        ),
        (
            "fn main() { println!(\"{}\", x[0]); }",
            &[
                7853, 1085, 1000, 1662, 1628, 34115, 17, 43331, 1002, 1792, 75, 32, 2255, 43, 4029,
            ],
        ),
        ("<|endoftext|><repo_name>x", &[0, 3, 104]),
        (
            "emoji 👨‍👩‍👧 family and Ω≈ç√",
            &[
                391, 33777, 15107, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117,
                1564, 284, 5664, 119, 40533, 226, 11512, 22052, 244,
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(tok.encode(text).expect("encode"), *want, "{text:?}");
    }
}
