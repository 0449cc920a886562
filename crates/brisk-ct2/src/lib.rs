//! brisk's CTranslate2 engine (backend `ct2-whisper`).
//!
//! CTranslate2 is the C++ engine under faster-whisper; it is vendored and
//! built by the `ct2rs` crate (cmake, a C++17 compiler; see
//! scripts/install-deps). This crate holds everything that touches it, so
//! the C++ is compiled once and only rebuilt when this crate's
//! dependencies change. The same engine has a `Translator` (Marian, NLLB,
//! M2M100) for text translation later.

pub mod backend;
pub mod mel;
pub mod whisper;
pub mod words;

pub use whisper::{Ct2Whisper, DecodeOptions, LoadOptions, Segment, Transcript, Word};
