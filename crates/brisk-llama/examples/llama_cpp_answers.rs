//! Greedy answers of a GGUF model to ten simple factual questions, for the
//! default-model comparison in BENCHMARKS.md.
//!
//!     cargo run --release -p brisk-llama --example llama_cpp_answers -- \
//!         MODEL_DIR_OR_FILE [--weights auto|native|f16]
//!
//! Prints one JSON line per question: the answer and whether it contains
//! the expected word.

use std::path::PathBuf;

use brisk_core::{
    Backend, ChatMessage, GenerateParams, GenerateRequest, Prompt, Request, Response,
};
use brisk_llama::{LlamaCppGenerator, Options};

const QUESTIONS: [(&str, &str); 10] = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Japan?", "Tokyo"),
    ("How many days are there in a week?", "seven|7"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("What is the chemical symbol for water?", "H2O|H₂O"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What is 12 plus 30?", "42"),
    ("What colour is the sky on a clear day?", "blue"),
    (
        "Which ocean lies between Europe and North America?",
        "Atlantic",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut options = Options {
        threads: 2,
        parallel: 1,
        ..Options::default()
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--weights" => {
                options.weights = args.next().ok_or("--weights needs a value")?.parse()?
            }
            other => path = Some(PathBuf::from(other)),
        }
    }
    let path = path.ok_or("usage: llama_cpp_answers MODEL [--weights W]")?;
    let mut m = LlamaCppGenerator::load_with(&path, options)?;
    let mut right = 0;
    for (q, expected) in QUESTIONS {
        let req = Request::Generate(GenerateRequest {
            prompt: Prompt::Chat(vec![ChatMessage::new("user".into(), q.into())]),
            params: GenerateParams {
                max_tokens: 32,
                temperature: 0.0,
                ..Default::default()
            },
            sink: None,
        });
        let answer = match m.infer(vec![req]).pop() {
            Some(Ok(Response::Generate(g))) => g.text,
            other => format!("error: {other:?}"),
        };
        let ok = expected
            .split('|')
            .any(|w| answer.to_lowercase().contains(&w.to_lowercase()));
        right += usize::from(ok);
        println!(
            "{}",
            serde_json::json!({"question": q, "answer": answer.trim(), "right": ok})
        );
    }
    println!(
        "{}",
        serde_json::json!({"file": m.file().display().to_string(), "right": right, "of": QUESTIONS.len()})
    );
    Ok(())
}
