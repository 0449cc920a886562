//! End-to-end tests of the `llama-cpp` backend on SmolLM2-135M-Instruct
//! (GGUF, Q4_1, held as F16 by the default `weights = auto`). The model is
//! loaded once and shared by every test.
//!
//! Needs `models/smollm2-135m-instruct/` (run `scripts/fetch-models`), or
//! `BRISK_MODELS_DIR` pointing at a folder that holds it.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use brisk_core::{
    Backend, BackendError, ChatMessage, FinishReason, GenerateParams, GenerateRequest, Generation,
    Prompt, Request, Response, Stepper, Task,
};
use brisk_llama::{LlamaCppGenerator, Options};

mod common;

use common::{model_dir, Slot, MODEL_FILE};

/// The shared model; tests take turns (2 cores: parallel runs only thrash).
fn model() -> MutexGuard<'static, LlamaCppGenerator> {
    static MODEL: OnceLock<Mutex<LlamaCppGenerator>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let options = Options {
                threads: 2,
                ..Options::default()
            };
            Mutex::new(LlamaCppGenerator::load_with(&model_dir(), options).expect("SmolLM2 loads"))
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn user(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::new("user".into(), text.into())])
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

fn run(m: &mut LlamaCppGenerator, req: GenerateRequest) -> Result<Generation, BackendError> {
    match m.infer(vec![Request::Generate(req)]).pop() {
        Some(Ok(Response::Generate(g))) => Ok(g),
        Some(Err(e)) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

fn generate(prompt: Prompt, params: GenerateParams) -> Generation {
    run(&mut model(), request(prompt, params)).expect("generation succeeds")
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
    let out = run(&mut model(), req).expect("streaming generation succeeds");
    let pieces = pieces.lock().expect("pieces lock").clone();
    (out, pieces)
}

/// Plain greedy takes the argmax of the logits directly; a chain with a
/// zero logit bias goes through llama.cpp's own greedy sampler instead. Both
/// must pick the same tokens.
#[test]
fn greedy_fast_path_equals_llama_cpps_greedy_sampler() {
    let prompt = user("Name three rivers in Europe and say one thing about each.");
    let fast = generate(prompt.clone(), greedy(48));
    let mut through_sampler = greedy(48);
    through_sampler.logit_bias = vec![(13, 0.0)];
    let slow = generate(prompt, through_sampler);
    assert_eq!(fast.completion_tokens, 48, "{fast:?}");
    assert_eq!(fast.text, slow.text);
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
        ..Default::default()
    };
    let a = generate(user("Write a poem about cats."), params.clone());
    let b = generate(user("Write a poem about cats."), params);
    assert_eq!(a.text, b.text);
}

#[test]
fn too_long_prompts_are_invalid_input() {
    let mut m = model();
    let context = m.context_length();
    assert_eq!(
        context, 4096,
        "min(8192 trained, the default 4096 per slot)"
    );

    let long = Prompt::Text("hello ".repeat(5000));
    let err = run(&mut m, request(long, greedy(16))).expect_err("prompt longer than the context");
    match &err {
        BackendError::InvalidInput(msg) => {
            assert!(msg.contains("context is 4096 tokens"), "{msg}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }

    let err = run(&mut m, request(user("Hi"), greedy(5000))).expect_err("max_tokens too big");
    match &err {
        BackendError::InvalidInput(msg) => assert!(msg.contains("max_tokens is 5000"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }

    let err = run(&mut m, request(Prompt::Text(String::new()), greedy(4))).expect_err("empty");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");

    let mut bad = greedy(4);
    bad.temperature = -1.0;
    let err = run(&mut m, request(user("Hi"), bad)).expect_err("negative temperature");
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");
}

#[test]
fn backend_trait() {
    let mut m = model();
    assert_eq!(m.task(), Task::Generation);
    let size = std::fs::metadata(model_dir().join(MODEL_FILE))
        .expect("model file")
        .len();
    // F16: about 2 bytes per parameter, against ~0.6 in the Q4_1 file.
    assert!(
        m.memory_bytes() > 2 * size,
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

#[test]
fn chat_template_from_the_gguf() {
    let m = model();
    assert!(m.template().has_template());
    let prompt = m.render_prompt(&user("Hi"), &[]);
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = m.prompt_ids(&user("Hi"), &[]);
    assert_eq!(ids[0].0, 1, "<|im_start|> is one special token");
    // No BOS for SmolLM2 (tokenizer.ggml.add_bos_token = false).
    assert_eq!(m.prompt_ids(&Prompt::Text("Hi".into()), &[]).len(), 1);
}

#[test]
fn four_streams_decode_together_and_interleave() {
    let mut m = model();
    assert_eq!(m.parallel(), 4);
    let order = Arc::new(Mutex::new(Vec::<usize>::new()));
    let slots: Vec<Slot> = (0..4).map(|_| Slot::default()).collect();
    let prompts = ["the sea", "a cat", "the moon", "bread"];
    for (i, p) in prompts.iter().enumerate() {
        let order = order.clone();
        let req = GenerateRequest {
            prompt: user(&format!("Write a long story about {p}.")),
            params: greedy(12),
            sink: Some(Box::new(move |_: &str| {
                order.lock().expect("lock").push(i);
                true
            })),
        };
        m.start(Request::Generate(req), Box::new(slots[i].clone()));
    }
    assert_eq!(m.free_slots(), 0);
    let mut steps = 0;
    while m.step() {
        steps += 1;
    }
    let outs: Vec<Generation> = slots
        .iter()
        .map(|s| s.generation().expect("answered"))
        .collect();
    // All four in the same steps: about 12 steps (plus the prefill), not 48.
    assert!(steps <= 16, "{steps} steps");
    assert!(outs.iter().all(|g| g.completion_tokens == 12), "{outs:?}");
    // Each stream's pieces arrive between the others', not one after another.
    let order = order.lock().expect("lock").clone();
    let first_of_last = order.iter().position(|&i| i == 3).expect("stream 3");
    let last_of_first = order.iter().rposition(|&i| i == 0).expect("stream 0");
    assert!(first_of_last < last_of_first, "{order:?}");
    // Batched greedy decoding gives the same text as one at a time.
    drop(m);
    let alone = generate(user("Write a long story about the moon."), greedy(12));
    assert_eq!(alone.text, outs[2].text);
}

/// Four requests that arrive together with one long shared prefix: one
/// slot reads it, the others copy its KV and read only their own ending.
/// The copied KV must be the KV itself: each request's first-token
/// distribution (top 5 log probabilities) equals the one it gets alone, up to
/// the rounding of a different batch layout. (Whole greedy texts are not
/// compared: this small model has near-ties that batch layout flips.)
#[test]
fn requests_arriving_together_read_a_shared_prefix_once() {
    let shared = "You are reviewing support tickets for a bicycle shop. Answer in one short \
                  sentence, politely, and never mention prices or delivery dates. Read the \
                  ticket carefully and think about what the customer needs first. Ticket:";
    let tickets = [
        "my brakes squeak",
        "the chain fell off",
        "a flat tyre",
        "bell is broken",
    ];
    let params = || GenerateParams {
        logprobs: Some(5),
        ..greedy(1)
    };
    // References from a model of its own, one slot: no copy can happen
    // there, and no cache of the shared model is reused.
    let mut fresh = LlamaCppGenerator::load_with(
        &model_dir(),
        Options {
            threads: 2,
            parallel: 1,
            ..Options::default()
        },
    )
    .expect("SmolLM2 loads");
    let alone: Vec<Generation> = tickets
        .iter()
        .map(|t| {
            run(
                &mut fresh,
                request(user(&format!("{shared} {t}")), params()),
            )
            .expect("alone")
        })
        .collect();
    drop(fresh);
    let mut m = model();
    let slots: Vec<Slot> = (0..4).map(|_| Slot::default()).collect();
    for (i, t) in tickets.iter().enumerate() {
        let req = request(user(&format!("{shared} {t}")), params());
        m.start(Request::Generate(req), Box::new(slots[i].clone()));
    }
    while m.step() {}
    let outs: Vec<Generation> = slots
        .iter()
        .map(|s| s.generation().expect("answered"))
        .collect();
    // Three copied the shared words (the system prompt alone may also be
    // in a slot's own cache from an earlier test: that is fewer tokens).
    let copied = outs.iter().filter(|g| g.cached_tokens >= 50).count();
    assert_eq!(copied, 3, "{outs:?}");
    drop(m);
    for ((t, g), alone) in tickets.iter().zip(&outs).zip(&alone) {
        let (a, b) = (&alone.logprobs[0], &g.logprobs[0]);
        assert_eq!(a.token, b.token, "{t}");
        for ((ta, la), (tb, lb)) in a.top.iter().zip(&b.top) {
            assert_eq!(ta, tb, "{t}: {:?} vs {:?}", a.top, b.top);
            assert!((la - lb).abs() < 0.02, "{t}: {:?} vs {:?}", a.top, b.top);
        }
    }
}

#[test]
fn a_finished_or_cancelled_request_frees_its_slot_within_one_step() {
    let mut m = model();
    let long = Slot::default();
    m.start(
        Request::Generate(request(user("Tell me a long story."), greedy(40))),
        Box::new(long.clone()),
    );
    let stop_after = Arc::new(Mutex::new(0usize));
    let counter = stop_after.clone();
    let cancelled = Slot::default();
    m.start(
        Request::Generate(GenerateRequest {
            prompt: user("Tell me another long story."),
            params: greedy(40),
            sink: Some(Box::new(move |_: &str| {
                let mut n = counter.lock().expect("lock");
                *n += 1;
                *n < 3
            })),
        }),
        Box::new(cancelled.clone()),
    );
    assert_eq!(m.free_slots(), 2);
    while !cancelled.is_answered() {
        assert!(m.step());
    }
    // The step that saw the sink refuse freed the slot.
    assert_eq!(m.free_slots(), 3);
    let g = cancelled.generation().expect("answered");
    assert_eq!(g.finish_reason, FinishReason::Cancelled);
    // A new request joins while the long one still runs.
    let short = Slot::default();
    m.start(
        Request::Generate(request(user("Hi"), greedy(2))),
        Box::new(short.clone()),
    );
    while !short.is_answered() {
        assert!(m.step());
    }
    assert!(!long.is_answered(), "long one still runs");
    while m.step() {}
    assert_eq!(long.generation().expect("done").completion_tokens, 40);
    assert_eq!(m.free_slots(), 4);
}

#[test]
fn second_chat_turn_reuses_the_cached_prefix() {
    let turn1 = vec![ChatMessage::new(
        "user".into(),
        "What is the capital of France?".into(),
    )];
    // One lock for both turns: no other test's request comes in between.
    let mut m = model();
    let first = run(&mut m, request(Prompt::Chat(turn1.clone()), greedy(16))).expect("turn 1");
    let mut turn2 = turn1;
    turn2.push(ChatMessage::new("assistant".into(), first.text.clone()));
    turn2.push(ChatMessage::new("user".into(), "And of Germany?".into()));
    let second = run(&mut m, request(Prompt::Chat(turn2), greedy(8))).expect("turn 2");
    // At least the system prompt and the first question come from the cache.
    assert!(
        second.cached_tokens >= first.prompt_tokens - 1,
        "{} cached of {} (first prompt {})",
        second.cached_tokens,
        second.prompt_tokens,
        first.prompt_tokens
    );
    assert!(second.cached_tokens < second.prompt_tokens);
}
