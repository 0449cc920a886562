//! brisk's CTranslate2 engine (backend `ct2-whisper`).
//!
//! CTranslate2 is the C++ engine under faster-whisper, reached through the
//! `ct2rs` crate. By default (feature `prebuilt`) no CTranslate2 C++ is
//! compiled: the library of the ctranslate2 4.8.5 wheel, the very build
//! faster-whisper runs, is linked (scripts/ct2-prebuilt, build.rs); feature
//! `vendored` builds ct2rs's vendored source instead. This crate holds
//! everything that touches it, so only ct2rs's small C++ bridge is ever
//! compiled, once. The same engine has a `Translator` (Marian, NLLB,
//! M2M100) for text translation later.
//!
//! Whisper checkpoints in the transformers layout (with a PEFT LoRA adapter
//! merged) are converted to CTranslate2's format at load, in Rust, and
//! cached beside the model ([`hf`], [`lora`]).

pub mod backend;
pub mod hf;
pub mod lora;
pub mod mel;
pub mod whisper;
pub mod words;

pub use whisper::{Ct2Whisper, DecodeOptions, LoadOptions, Segment, Transcript, Word};
