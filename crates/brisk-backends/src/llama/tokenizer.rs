//! A byte-level BPE tokenizer built from a GGUF file's own metadata.
//!
//! GGUF files carry no `tokenizer.json`; llama.cpp stores the vocabulary
//! (`tokenizer.ggml.tokens`), the merges (`tokenizer.ggml.merges`), the token
//! types (`tokenizer.ggml.token_type`), the special ids and the name of the
//! pre-tokenizer (`tokenizer.ggml.pre`). From those we build the same
//! tokenizer Hugging Face ships for the model: a BPE over the GPT-2 byte
//! alphabet, the model's pre-tokenizer, and the control tokens (e.g.
//! `<|im_start|>`) added as special tokens so they encode to single ids.
//!
//! Only `tokenizer.ggml.model = "gpt2"` (byte-level BPE) is supported.
//!
//! Decoding does not go through `tokenizers`: every id is mapped once, at
//! load time, to the raw bytes it stands for, which makes incremental
//! (streaming) decoding exact and cheap — see [`Utf8Stream`].

use std::collections::HashMap;

use brisk_core::BackendError;
use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    /// Special tokens such as `<|im_start|>`: matched whole, never shown.
    Control,
    /// Added tokens that are matched whole and shown as their text.
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// Everything needed to build the tokenizer; read from GGUF metadata by
/// [`TokenizerSpec::from_gguf`], or written by hand in tests.
#[derive(Debug, Clone, Default)]
pub struct TokenizerSpec {
    /// Tokens spelled in the GPT-2 byte alphabet (`Ġ` for a space, ...).
    pub tokens: Vec<String>,
    /// One per token; missing entries count as normal.
    pub token_types: Vec<TokenType>,
    /// `"left right"` pairs, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre`, e.g. `smollm`, `llama-bpe`, `qwen2`, `gpt-2`.
    pub pre: Option<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether a raw prompt starts with the BOS token.
    pub add_bos: bool,
    /// Extra end-of-turn ids (`tokenizer.ggml.eot_token_id`, `eom_token_id`).
    pub extra_stop_ids: Vec<u32>,
}

fn invalid(msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(format!("GGUF tokenizer: {msg}"))
}

/// Any integer metadata value as `u64` (GGUF writers differ in widths).
pub(crate) fn md_uint(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(u64::from(*x)),
        Value::U16(x) => Some(u64::from(*x)),
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

fn md_int(v: &Value) -> Option<i64> {
    match v {
        Value::I8(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::I64(x) => Some(*x),
        other => md_uint(other).and_then(|x| i64::try_from(x).ok()),
    }
}

fn md_strings(md: &HashMap<String, Value>, key: &str) -> Result<Option<Vec<String>>, BackendError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(invalid(format!("{key} is not an array")));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            _ => Err(invalid(format!("{key} holds a non-string"))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl TokenizerSpec {
    /// Reads the tokenizer keys of a GGUF file's metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self, BackendError> {
        let model = match md.get("tokenizer.ggml.model") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(invalid("tokenizer.ggml.model is not a string")),
            None => return Err(invalid("no tokenizer.ggml.model in the file")),
        };
        if model != "gpt2" {
            return Err(invalid(format!(
                "tokenizer model '{model}' is not supported (only 'gpt2', byte-level BPE)"
            )));
        }
        let tokens = md_strings(md, "tokenizer.ggml.tokens")?
            .ok_or_else(|| invalid("no tokenizer.ggml.tokens in the file"))?;
        let merges = md_strings(md, "tokenizer.ggml.merges")?
            .ok_or_else(|| invalid("no tokenizer.ggml.merges in the file"))?;
        let token_types = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| md_int(v).map_or(TokenType::Normal, TokenType::from_i64))
                .collect(),
            _ => Vec::new(),
        };
        let id = |key: &str| {
            md.get(key)
                .and_then(md_uint)
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < tokens.len())
        };
        let flag = |key: &str| match md.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => md_uint(other).map(|v| v != 0),
            None => None,
        };
        let pre = match md.get("tokenizer.ggml.pre") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let extra_stop_ids = ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"]
            .iter()
            .filter_map(|k| id(k))
            .collect();
        Ok(Self {
            bos_id: id("tokenizer.ggml.bos_token_id"),
            eos_id: id("tokenizer.ggml.eos_token_id"),
            // llama.cpp adds BOS for BPE vocabularies only when asked to.
            add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(false),
            extra_stop_ids,
            pre,
            tokens,
            token_types,
            merges,
        })
    }
}

/// Llama 3's split (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2's split (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How text is cut into words before BPE, by `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizerKind {
    /// GPT-2's regex (`gpt-2`, `default`, unknown names).
    Gpt2,
    /// Every digit on its own, then GPT-2's regex: SmolLM, StarCoder
    /// (Hugging Face: `Digits(individual) + ByteLevel`).
    DigitsGpt2,
    /// Llama 3's regex (`llama-bpe`, `llama3`, `falcon3`, ...).
    Llama3,
    /// Qwen 2's regex (`qwen2`, `deepseek-r1-qwen`, `megrez`).
    Qwen2,
}

impl PreTokenizerKind {
    pub fn from_name(pre: Option<&str>) -> Self {
        match pre.unwrap_or("default") {
            "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone"
            | "minerva-7b" => Self::DigitsGpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "smaug-bpe" | "dbrx" => {
                Self::Llama3
            }
            "qwen2" | "deepseek-r1-qwen" | "megrez" => Self::Qwen2,
            "gpt-2" | "gpt2" | "default" => Self::Gpt2,
            other => {
                tracing::warn!(
                    pre = other,
                    "unknown GGUF pre-tokenizer; using GPT-2's split"
                );
                Self::Gpt2
            }
        }
    }

    fn build(self) -> Result<PreTokenizerWrapper, BackendError> {
        let split = |regex: &str| -> Result<PreTokenizerWrapper, BackendError> {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(invalid)?;
            Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])))
        };
        Ok(match self {
            Self::Gpt2 => ByteLevel::new(false, true, true).into(),
            Self::DigitsGpt2 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])),
            Self::Llama3 => split(LLAMA3_SPLIT)?,
            Self::Qwen2 => split(QWEN2_SPLIT)?,
        })
    }
}

/// GPT-2's reversible map from bytes to printable characters, inverted:
/// character → byte.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut printable: Vec<u8> = (b'!'..=b'~').collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 0u32;
    for b in 0..=255u8 {
        let c = if printable.contains(&b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(255 + next).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}

/// The tokenizer of a GGUF model. Cheap to share (`Arc`) across threads.
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// Raw bytes of each id; empty for control tokens (never shown).
    pieces: Vec<Vec<u8>>,
    types: Vec<TokenType>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    pre: PreTokenizerKind,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab_size", &self.pieces.len())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("add_bos", &self.add_bos)
            .field("stop_ids", &self.stop_ids)
            .field("pre", &self.pre)
            .finish()
    }
}

/// Names of end-of-turn tokens chat models use; when the vocabulary has one
/// as a control token, generation stops on it too.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
];

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self, BackendError> {
        Self::new(TokenizerSpec::from_gguf(md)?)
    }

    pub fn new(spec: TokenizerSpec) -> Result<Self, BackendError> {
        if spec.tokens.is_empty() {
            return Err(invalid("the vocabulary is empty"));
        }
        let n = spec.tokens.len();
        let types: Vec<TokenType> = (0..n)
            .map(|i| {
                spec.token_types
                    .get(i)
                    .copied()
                    .unwrap_or(TokenType::Normal)
            })
            .collect();

        let vocab: Vocab = spec
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = spec
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| invalid(format!("merge '{m}' is not a pair")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(invalid)?;

        let pre = PreTokenizerKind::from_name(spec.pre.as_deref());
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre.build()?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control tokens are special (matched whole, skipped when decoding);
        // user-defined ones are matched whole and decoded as their text.
        let control: Vec<AddedToken> = spec
            .tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TokenType::Control)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        inner.add_special_tokens(control).map_err(invalid)?;
        let user: Vec<AddedToken> = spec
            .tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TokenType::UserDefined)
            .map(|(tok, _)| AddedToken::from(tok.clone(), false).normalized(false))
            .collect();
        if !user.is_empty() {
            inner.add_tokens(user).map_err(invalid)?;
        }

        let to_byte = unicode_to_byte();
        let pieces = spec
            .tokens
            .iter()
            .zip(&types)
            .map(|(tok, ty)| match ty {
                TokenType::Control => Vec::new(),
                // llama.cpp shows user-defined tokens as their text.
                TokenType::UserDefined => tok.as_bytes().to_vec(),
                _ => {
                    let mut out = Vec::with_capacity(tok.len());
                    for c in tok.chars() {
                        match to_byte.get(&c) {
                            Some(b) => out.push(*b),
                            // Not in the byte alphabet: keep the character.
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    out
                }
            })
            .collect();

        let mut stop_ids: Vec<u32> = spec.eos_id.into_iter().collect();
        stop_ids.extend(&spec.extra_stop_ids);
        for name in END_OF_TURN {
            if let Some(id) = inner.token_to_id(name) {
                if types.get(id as usize) == Some(&TokenType::Control) {
                    stop_ids.push(id);
                }
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();

        Ok(Self {
            inner,
            pieces,
            types,
            bos_id: spec.bos_id,
            eos_id: spec.eos_id,
            add_bos: spec.add_bos && spec.bos_id.is_some(),
            stop_ids,
            pre,
        })
    }

    /// Token ids of `text`, with special tokens written in the text (such
    /// as `<|im_start|>`) mapped to their single ids. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize input: {e}")))
    }

    /// Text of `ids`, control tokens left out. Invalid UTF-8 (a character
    /// cut by the end of `ids`) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.piece(id)).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// `decode` as the `tokenizers` crate does it (to cross-check ours).
    pub fn decode_with_tokenizers(&self, ids: &[u32]) -> Result<String, BackendError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| BackendError::Inference(format!("cannot decode: {e}")))
    }

    /// The raw bytes token `id` stands for (empty for control tokens and
    /// ids outside the vocabulary).
    pub fn piece(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).map_or(&[], Vec::as_slice)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Text of the BOS / EOS tokens (for chat templates), empty if none.
    pub fn bos_token(&self) -> String {
        self.bos_id
            .and_then(|id| self.id_to_token(id))
            .unwrap_or_default()
    }

    pub fn eos_token(&self) -> String {
        self.eos_id
            .and_then(|id| self.id_to_token(id))
            .unwrap_or_default()
    }

    /// Whether prompts should start with BOS (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation: EOS and the end-of-turn control tokens.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    pub fn pre_tokenizer(&self) -> PreTokenizerKind {
        self.pre
    }
}

/// Turns a stream of token bytes into text, holding back a UTF-8 character
/// split across tokens until it is complete.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes` and returns the text now complete (maybe empty). Bytes
    /// that can never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `valid` bytes were just checked to be UTF-8.
                    out.push_str(&String::from_utf8_lossy(
                        &self.pending[start..start + valid],
                    ));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start += valid + bad;
                        }
                        None => {
                            // An incomplete character at the end: wait.
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Whatever is still held back, as lossy text; the stream is empty after.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy byte-level vocabulary: single letters, a few merges, `Ġ`.
    fn toy() -> GgufTokenizer {
        let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
        let mut types = vec![TokenType::Control, TokenType::Control];
        for c in ['Ġ', 'a', 'b', 'c', 'h', 'i', '1', '2', '!'] {
            tokens.push(c.to_string());
            types.push(TokenType::Normal);
        }
        for t in ["hi", "Ġh", "Ġhi", "ab"] {
            tokens.push(t.into());
            types.push(TokenType::Normal);
        }
        tokens.push("<think>".into());
        types.push(TokenType::UserDefined);
        GgufTokenizer::new(TokenizerSpec {
            tokens,
            token_types: types,
            merges: vec!["Ġ h".into(), "h i".into(), "Ġh i".into(), "a b".into()],
            pre: Some("smollm".into()),
            bos_id: Some(0),
            eos_id: Some(1),
            add_bos: false,
            extra_stop_ids: vec![],
        })
        .expect("toy tokenizer builds")
    }

    #[test]
    fn toy_vocab_merges_and_specials() {
        let tok = toy();
        let hi = tok.token_to_id("hi").expect("hi");
        let ghi = tok.token_to_id("Ġhi").expect("Ġhi");
        assert_eq!(tok.encode("hi hi").expect("encode"), vec![hi, ghi]);
        let ids = tok.encode("<|im_start|>hi<|im_end|>").expect("encode");
        assert_eq!(ids, vec![0, hi, 1]);
        // Digits are split one by one for `smollm`.
        let one = tok.token_to_id("1").expect("1");
        let two = tok.token_to_id("2").expect("2");
        assert_eq!(tok.encode("12").expect("encode"), vec![one, two]);
        // User-defined tokens stay whole.
        let think = tok.token_to_id("<think>").expect("<think>");
        assert_eq!(tok.encode("<think>ab").expect("encode")[0], think);
        assert_eq!(tok.decode(&[0, hi, ghi, 1]), "hi hi");
        assert_eq!(tok.decode(&[think]), "<think>");
        assert_eq!(tok.stop_ids(), &[1]);
        assert_eq!(tok.bos_token(), "<|im_start|>");
        assert_eq!(tok.eos_token(), "<|im_end|>");
    }

    #[test]
    fn pre_tokenizer_names() {
        assert_eq!(
            PreTokenizerKind::from_name(Some("smollm")),
            PreTokenizerKind::DigitsGpt2
        );
        assert_eq!(
            PreTokenizerKind::from_name(Some("llama-bpe")),
            PreTokenizerKind::Llama3
        );
        assert_eq!(PreTokenizerKind::from_name(None), PreTokenizerKind::Gpt2);
        for kind in [
            PreTokenizerKind::Gpt2,
            PreTokenizerKind::DigitsGpt2,
            PreTokenizerKind::Llama3,
            PreTokenizerKind::Qwen2,
        ] {
            assert!(kind.build().is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map.get(&'Ġ'), Some(&b' '));
        assert_eq!(map.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(map.get(&'A'), Some(&b'A'));
    }

    #[test]
    fn utf8_stream_holds_split_characters() {
        let mut s = Utf8Stream::default();
        let bytes = "é🙂".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..5]), "");
        assert_eq!(s.push(&bytes[5..]), "🙂");
        assert_eq!(s.push(b"ok"), "ok");
        // Invalid bytes do not block the stream.
        assert_eq!(s.push(&[0xFF, b'x']), "\u{FFFD}x");
        // An unfinished character at the end comes out lossy.
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(GgufTokenizer::new(TokenizerSpec::default()).is_err());
        let bad = TokenizerSpec {
            tokens: vec!["a".into()],
            merges: vec!["nospace".into()],
            ..Default::default()
        };
        assert!(GgufTokenizer::new(bad).is_err());
        let mut md = HashMap::new();
        md.insert(
            "tokenizer.ggml.model".to_string(),
            Value::String("llama".into()),
        );
        let err = TokenizerSpec::from_gguf(&md).expect_err("spm unsupported");
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
