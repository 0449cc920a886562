//! Whisper on CTranslate2: faster-whisper's transcription loop in Rust.
//!
//! The network (encoder, decoder, greedy/beam search, sampling, the
//! timestamp rules, suppressed tokens, no-speech probability) is
//! CTranslate2's, the same C++ that faster-whisper calls. What faster-whisper
//! does in Python is ported here step by step, so that at temperature 0 both
//! give the same transcript on the same weights:
//!
//! * features of the whole recording ([`crate::mel`]), cut into 30 s windows;
//! * the prompt: `<|startofprev|>` + previous text (when conditioning) +
//!   `<|startoftranscript|>` [language, task] [`<|notimestamps|>`];
//! * `suppress_tokens = [-1]` expands to the non-speech symbols plus the
//!   task and special tokens (`get_suppressed_tokens`);
//! * temperature fallback on compression ratio and average log-probability;
//! * the no-speech skip; splitting the timestamped output into segments
//!   and seeking to the last complete segment.

use std::io::Write;
use std::path::Path;

use brisk_core::BackendError;
use ct2rs::sys::{ComputeType, Config, Device, StorageView, WhisperOptions};
use tokenizers::Tokenizer;

use crate::mel::{FeatureExtractor, HOP, N_FRAMES, SAMPLE_RATE};
pub use crate::words::Word;

/// Seconds per timestamp token.
const TIME_PRECISION: f64 = 0.02;
/// Encoder frames per timestamp step.
const INPUT_STRIDE: usize = 2;
const FRAMES_PER_SECOND: f64 = (SAMPLE_RATE / HOP) as f64;

fn invalid_model(msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(msg.to_string())
}

fn inference(e: impl std::fmt::Display) -> BackendError {
    BackendError::Inference(e.to_string())
}

fn invalid_input(msg: impl Into<String>) -> BackendError {
    BackendError::InvalidInput(msg.into())
}

/// CTranslate2 compute types this CPU build runs, by their CTranslate2 names.
pub const COMPUTE_TYPES: &[&str] = &["float32", "int8", "int8_float32"];

/// Parses a compute type name; anything else is an error naming it.
pub fn parse_compute_type(name: &str) -> Result<ComputeType, BackendError> {
    match name {
        "float32" => Ok(ComputeType::FLOAT32),
        "int8" => Ok(ComputeType::INT8),
        "int8_float32" => Ok(ComputeType::INT8_FLOAT32),
        other => Err(invalid_model(format!(
            "compute_type '{other}' is not supported by the CTranslate2 CPU engine \
             (supported: {})",
            COMPUTE_TYPES.join(", ")
        ))),
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// A CTranslate2 compute type, see [`COMPUTE_TYPES`].
    pub compute_type: String,
    /// Threads of the one CTranslate2 replica; 0 = one per core
    /// (CTranslate2's own default is 4, too many on a 2-core machine).
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            compute_type: "int8".into(),
            threads: 0,
        }
    }
}

/// How to transcribe; defaults are faster-whisper's, except `beam_size`
/// (1: greedy).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// ISO 639-1 code; `None`: English for English-only models, detected
    /// from the first 30 s for multilingual ones.
    pub language: Option<String>,
    /// Translate to English (multilingual models).
    pub translate: bool,
    /// Initial prompt (names, spelling, style).
    pub prompt: Option<String>,
    /// Tried in order until a result passes the thresholds.
    pub temperatures: Vec<f32>,
    pub beam_size: usize,
    /// Candidates sampled at temperatures above 0.
    pub best_of: usize,
    pub compression_ratio_threshold: Option<f32>,
    pub log_prob_threshold: Option<f32>,
    pub no_speech_threshold: Option<f32>,
    pub condition_on_previous_text: bool,
    pub prompt_reset_on_temperature: f32,
    /// Decode with timestamp tokens (segment times from the model).
    pub timestamps: bool,
    pub max_initial_timestamp: f32,
    pub suppress_blank: bool,
    /// Word-level times from the alignment heads (needs `alignment_heads`
    /// in the model's config.json).
    pub word_timestamps: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            language: None,
            translate: false,
            prompt: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            beam_size: 1,
            best_of: 5,
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            timestamps: true,
            max_initial_timestamp: 1.0,
            suppress_blank: true,
            word_timestamps: false,
        }
    }
}

/// A piece of the transcript, times in seconds from the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// As faster-whisper's `Segment.text` (usually with a leading space).
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// Filled when [`DecodeOptions::word_timestamps`] is set.
    pub words: Vec<Word>,
}

/// The result of [`Ct2Whisper::transcribe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub segments: Vec<Segment>,
    pub language: String,
    pub duration: f64,
}

impl Transcript {
    /// The segments' texts concatenated and trimmed.
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<String>()
            .trim()
            .to_string()
    }
}

#[derive(Debug, Clone)]
struct Special {
    sot: u32,
    eot: u32,
    sot_prev: Option<u32>,
    sot_lm: Option<u32>,
    no_speech: Option<u32>,
    no_timestamps: u32,
    transcribe: Option<u32>,
    translate: Option<u32>,
}

impl Special {
    fn timestamp_begin(&self) -> u32 {
        self.no_timestamps + 1
    }
}

/// A Whisper model on CTranslate2 (backend `ct2-whisper`).
pub struct Ct2Whisper {
    model: ct2rs::sys::Whisper,
    tokenizer: Tokenizer,
    features: FeatureExtractor,
    sp: Special,
    /// `get_suppressed_tokens(tokenizer, [-1])`.
    suppress: Vec<i32>,
    multilingual: bool,
    has_alignment_heads: bool,
    compute_type: String,
    max_length: usize,
    memory_bytes: u64,
    /// CTranslate2's vocabulary (`vocabulary.txt`/`.json`): `generate`
    /// takes token strings, and timestamp tokens are only in this one.
    vocabulary: Vec<String>,
    /// Windows decoded in the rounds of `decode_batch` so far.
    batched_windows: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Ct2Whisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ct2Whisper")
            .field("multilingual", &self.multilingual)
            .field("compute_type", &self.compute_type)
            .finish_non_exhaustive()
    }
}

fn token(tok: &Tokenizer, s: &str) -> Option<u32> {
    tok.token_to_id(s)
}

impl Ct2Whisper {
    /// Loads a CTranslate2 Whisper folder (`model.bin`, `config.json`,
    /// `tokenizer.json`, `vocabulary.*`).
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self, BackendError> {
        let compute = parse_compute_type(&opts.compute_type)?;
        let bin = dir.join("model.bin");
        if !bin.is_file() {
            return Err(BackendError::NotFound(format!(
                "{} (fetch it with scripts/fetch-models)",
                bin.display()
            )));
        }
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| BackendError::NotFound(format!("{}: {e}", tok_path.display())))?;
        let cfg_json: serde_json::Value = match std::fs::read_to_string(dir.join("config.json")) {
            Ok(s) => {
                serde_json::from_str(&s).map_err(|e| invalid_model(format!("config.json: {e}")))?
            }
            Err(_) => serde_json::Value::Null,
        };
        let has_alignment_heads = cfg_json
            .get("alignment_heads")
            .and_then(|v| v.as_array())
            .is_some_and(|a| !a.is_empty());
        let need = |s: &str| {
            token(&tokenizer, s)
                .ok_or_else(|| invalid_model(format!("tokenizer.json has no {s} token")))
        };
        let sp = Special {
            sot: need("<|startoftranscript|>")?,
            eot: need("<|endoftext|>")?,
            no_timestamps: need("<|notimestamps|>")?,
            sot_prev: token(&tokenizer, "<|startofprev|>"),
            sot_lm: token(&tokenizer, "<|startoflm|>"),
            no_speech: token(&tokenizer, "<|nospeech|>")
                .or_else(|| token(&tokenizer, "<|nocaptions|>")),
            transcribe: token(&tokenizer, "<|transcribe|>"),
            translate: token(&tokenizer, "<|translate|>"),
        };
        let config = Config {
            device: Device::CPU,
            compute_type: compute,
            num_threads_per_replica: if opts.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                opts.threads
            },
            ..Default::default()
        };
        let path = dir
            .to_str()
            .ok_or_else(|| invalid_model(format!("model path is not UTF-8: {}", dir.display())))?;
        let model = ct2rs::sys::Whisper::new(path, config)
            .map_err(|e| invalid_model(format!("CTranslate2 cannot load {path}: {e}")))?;
        let multilingual = model.is_multilingual();
        let n_mels = model.n_mels();
        let suppress = suppressed_tokens(&tokenizer, &sp);
        let vocabulary = read_vocabulary(dir)?;
        let mut file_len = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        // A float32 file (a merged LoRA conversion) counts as its float16 size.
        if crate::hf::weights_code(&bin) == Some(0) {
            file_len /= 2;
        }
        // float16 weights become float32 (x2) or int8 (x0.5) in memory.
        let memory_bytes = match opts.compute_type.as_str() {
            "float32" => file_len.saturating_mul(2),
            _ => file_len / 2 + file_len / 4,
        };
        Ok(Self {
            model,
            tokenizer,
            features: FeatureExtractor::new(n_mels),
            sp,
            suppress,
            multilingual,
            has_alignment_heads,
            compute_type: opts.compute_type.clone(),
            max_length: 448,
            memory_bytes,
            vocabulary,
            batched_windows: Default::default(),
        })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// Whether `config.json` lists alignment heads (needed for word times).
    pub fn has_alignment_heads(&self) -> bool {
        self.has_alignment_heads
    }

    pub fn compute_type(&self) -> &str {
        &self.compute_type
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// How many windows [`Ct2Whisper::transcribe_batch`] has decoded in its
    /// batched rounds since loading (a later round may hold a single
    /// window; items that cannot share a batch, and fallback temperatures,
    /// are not counted).
    pub fn batched_windows(&self) -> usize {
        self.batched_windows
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn encode_ids(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| invalid_input(format!("cannot tokenize: {e}")))
    }

    fn decode_text(&self, tokens: &[u32]) -> Result<String, BackendError> {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.sp.eot)
            .collect();
        self.tokenizer
            .decode(&text, true)
            .map_err(|e| inference(format!("detokenize: {e}")))
    }

    /// Token ids to the strings CTranslate2's `generate` takes.
    fn token_strings(&self, ids: &[u32]) -> Result<Vec<String>, BackendError> {
        ids.iter()
            .map(|&id| {
                self.vocabulary
                    .get(id as usize)
                    .cloned()
                    .ok_or_else(|| inference(format!("token id {id} not in the vocabulary")))
            })
            .collect()
    }

    fn language_token(&self, code: &str) -> Option<u32> {
        token(&self.tokenizer, &format!("<|{code}|>"))
    }

    /// Checks the language option: `Some(code)` for a known language.
    fn resolve_language(&self, lang: Option<&str>) -> Result<Option<String>, BackendError> {
        let Some(l) = lang.map(|l| l.trim().to_ascii_lowercase()) else {
            return Ok(if self.multilingual {
                None
            } else {
                Some("en".into())
            });
        };
        if l.is_empty() {
            return self.resolve_language(None);
        }
        let code = if l == "english" { "en".to_string() } else { l };
        if !self.multilingual {
            if code != "en" {
                return Err(invalid_input(format!(
                    "this model transcribes English only, not '{code}'"
                )));
            }
        } else if self.language_token(&code).is_none() || code.len() > 3 {
            return Err(invalid_input(format!("unknown language '{code}'")));
        }
        Ok(Some(code))
    }

    /// Encodes `batch` windows of 3000 frames laid one after another.
    fn encode(
        &self,
        windows: &mut [f32],
        batch: usize,
    ) -> Result<StorageView<'static>, BackendError> {
        let n_mels = self.features.n_mels();
        let sv = StorageView::new(&[batch, n_mels, N_FRAMES], windows, Device::CPU)
            .map_err(inference)?;
        self.model.encode(&sv, false).map_err(inference)
    }

    /// The log-mel feature extractor (the model's number of mel bins).
    pub fn feature_extractor(&self) -> &FeatureExtractor {
        &self.features
    }

    /// Probability of each forced text token as CTranslate2 scores it
    /// (`Whisper::align`, where faster-whisper's word probabilities come
    /// from): decoder input `start` + `<|notimestamps|>` + `text` +
    /// `<|endoftext|>` on the encoder output of one `n_mels x 3000` feature
    /// window, softmax over the text vocabulary (ids below
    /// `<|endoftext|>`). CTranslate2 returns no logits, so this is what
    /// brisk's numbers are compared with transformers' on
    /// (tests/whisper_hf.rs). Needs `alignment_heads` in config.json.
    pub fn text_token_probs(
        &self,
        window: &mut [f32],
        start: &[u32],
        text: &[u32],
    ) -> Result<Vec<f32>, BackendError> {
        let want = self.features.n_mels() * N_FRAMES;
        if window.len() != want {
            return Err(invalid_input(format!(
                "feature window has {} values, the model takes {want}",
                window.len()
            )));
        }
        if !self.has_alignment_heads {
            return Err(invalid_input(
                "token probabilities need alignment_heads in config.json",
            ));
        }
        let enc = self.encode(window, 1)?;
        let start: Vec<usize> = start.iter().map(|&t| t as usize).collect();
        let text: Vec<usize> = text.iter().map(|&t| t as usize).collect();
        let r = self
            .model
            .align(&enc, &start, &[text], &[N_FRAMES], 7)
            .map_err(inference)?;
        r.into_iter()
            .next()
            .map(|a| a.text_token_probs)
            .ok_or_else(|| inference("align returned nothing"))
    }

    /// faster-whisper's `detect_language` on first windows: one language
    /// code per encoded window.
    fn detect_languages(&self, enc: &StorageView) -> Result<Vec<String>, BackendError> {
        let r = self.model.detect_language(enc).map_err(inference)?;
        r.iter()
            .map(|v| {
                let best = v
                    .first()
                    .ok_or_else(|| inference("language detection returned nothing"))?;
                let code = format!("{best:?}");
                // DetectionResult's fields are private; its Debug shows the token.
                Ok(code
                    .split("<|")
                    .nth(1)
                    .and_then(|s| s.split("|>").next())
                    .unwrap_or("en")
                    .to_string())
            })
            .collect()
    }

    /// Transcribes mono 16 kHz samples.
    pub fn transcribe(
        &self,
        pcm: &[f32],
        opts: &DecodeOptions,
    ) -> Result<Transcript, BackendError> {
        let mut job = self.begin(pcm, opts)?;
        if job.language.is_none() {
            // Detected on the first 30 s (with the frame past the audio, as
            // faster-whisper slices it); the loop encodes its own window.
            let mut w = job.feats.window(0, N_FRAMES);
            let enc = self.encode(&mut w, 1)?;
            let code = self.detect_languages(&enc)?.swap_remove(0);
            job.language = Some(code);
        }
        self.run_windows(&mut job)?;
        Ok(job.finish())
    }

    /// Checks the options and computes the features: a recording ready for
    /// its first window (language still `None` when it is to be detected).
    fn begin<'o>(&self, pcm: &[f32], opts: &'o DecodeOptions) -> Result<Job<'o>, BackendError> {
        if pcm.is_empty() {
            return Err(invalid_input("audio is empty"));
        }
        if opts.translate && !self.multilingual {
            return Err(invalid_input(
                "this model is English-only; translation needs a multilingual Whisper model",
            ));
        }
        if opts.temperatures.is_empty()
            || opts
                .temperatures
                .iter()
                .any(|t| !(t.is_finite() && (0.0..=2.0).contains(t)))
        {
            return Err(invalid_input("temperature must be between 0 and 2"));
        }
        if !(1..=16).contains(&opts.beam_size) {
            return Err(invalid_input("beam_size must be between 1 and 16"));
        }
        if opts.word_timestamps && !self.has_alignment_heads {
            return Err(invalid_input(
                "word timestamps (timestamp_granularities[]=word) need a model whose \
                 config.json lists alignment_heads; this one lists none",
            ));
        }
        let language = self.resolve_language(opts.language.as_deref())?;
        let duration = pcm.len() as f64 / SAMPLE_RATE as f64;
        let feats = self.features.compute(pcm);
        let content_frames = feats.content_frames();
        let mut all_tokens: Vec<u32> = Vec::new();
        if let Some(p) = opts.prompt.as_deref().map(str::trim) {
            if !p.is_empty() {
                all_tokens.extend(self.encode_ids(&format!(" {p}"))?);
            }
        }
        Ok(Job {
            opts,
            feats,
            content_frames,
            duration,
            language,
            all_tokens,
            prompt_reset_since: 0,
            seek: 0,
            segments: Vec::new(),
            last_speech_timestamp: 0.0,
        })
    }

    /// `<|startoftranscript|>` [language, task] for the job's language.
    fn sot_sequence(&self, job: &Job) -> Vec<u32> {
        let mut sot_sequence = vec![self.sp.sot];
        if self.multilingual {
            let language = job.language.as_deref().unwrap_or("en");
            sot_sequence.extend(self.language_token(language));
            sot_sequence.extend(if job.opts.translate {
                self.sp.translate
            } else {
                self.sp.transcribe
            });
        }
        sot_sequence
    }

    /// The prompt of the job's next window.
    fn window_prompt(&self, job: &Job) -> Vec<u32> {
        let previous = &job.all_tokens[job.prompt_reset_since..];
        self.prompt(previous, &self.sot_sequence(job), job.opts.timestamps)
    }

    /// The length of the job's next window, in frames.
    fn segment_size(job: &Job) -> usize {
        N_FRAMES.min(job.content_frames - job.seek)
    }

    /// faster-whisper's window loop, from the job's `seek` to its end.
    fn run_windows(&self, job: &mut Job) -> Result<(), BackendError> {
        while job.seek < job.content_frames {
            let mut w = job.feats.window(job.seek, Self::segment_size(job));
            let enc = self.encode(&mut w, 1)?;
            let prompt = self.window_prompt(job);
            let d = self.generate_with_fallback(&enc, &prompt, job.opts, None)?;
            self.take_window(job, Some(&enc), d)?;
        }
        Ok(())
    }

    /// What faster-whisper does with one window's decoding: the no-speech
    /// skip, segments from the timestamps, word times, the next seek and
    /// the prompt reset. `enc` (the window's encoder output) is needed for
    /// word timestamps only.
    fn take_window(
        &self,
        job: &mut Job,
        enc: Option<&StorageView>,
        d: Decoded,
    ) -> Result<(), BackendError> {
        let opts = job.opts;
        let time_offset = job.seek as f64 / FRAMES_PER_SECOND;
        let segment_size = Self::segment_size(job);
        let segment_duration = segment_size as f64 / FRAMES_PER_SECOND;
        if let Some(th) = opts.no_speech_threshold {
            let mut skip = d.no_speech_prob > th;
            if opts.log_prob_threshold.is_some_and(|lp| d.avg_logprob > lp) {
                skip = false;
            }
            if skip {
                job.seek += segment_size;
                return Ok(());
            }
        }
        let previous_seek = job.seek;
        let (pieces, next_seek, single_timestamp_ending) = self.split_by_timestamps(
            &d.tokens,
            time_offset,
            segment_size,
            segment_duration,
            job.seek,
        );
        job.seek = next_seek;
        let mut pieces: Vec<(f64, f64, Vec<u32>, Vec<Word>)> = pieces
            .into_iter()
            .map(|(a, b, t)| (a, b, t, Vec::new()))
            .collect();
        if opts.word_timestamps {
            let enc = enc.ok_or_else(|| inference("word timestamps need the encoder output"))?;
            let sot_sequence = self.sot_sequence(job);
            self.add_word_timestamps(
                enc,
                &sot_sequence,
                &mut pieces,
                segment_size,
                previous_seek,
                job.last_speech_timestamp,
            )?;
            // get_end: the last word's end, else the last piece's end.
            let last_word_end = pieces
                .iter()
                .rev()
                .find_map(|p| p.3.last().map(|w| w.end))
                .or_else(|| pieces.last().map(|p| p.1));
            if !single_timestamp_ending {
                if let Some(end) = last_word_end.filter(|&e| e > time_offset) {
                    job.seek = (end * FRAMES_PER_SECOND).round() as usize;
                }
            }
            if let Some(end) = last_word_end {
                job.last_speech_timestamp = end;
            }
        }
        for (start, end, tokens, words) in pieces {
            let text = self.decode_text(&tokens)?;
            if start == end || text.trim().is_empty() {
                continue;
            }
            job.all_tokens.extend_from_slice(&tokens);
            job.segments.push(Segment {
                start,
                end,
                text,
                tokens,
                temperature: d.temperature,
                avg_logprob: d.avg_logprob,
                compression_ratio: d.compression_ratio,
                no_speech_prob: d.no_speech_prob,
                words,
            });
        }
        if !opts.condition_on_previous_text || d.temperature > opts.prompt_reset_on_temperature {
            job.prompt_reset_since = job.all_tokens.len();
        }
        Ok(())
    }

    /// Whether `opts` let a recording share a CTranslate2 batch with others
    /// decoded the same way: greedy at temperature 0 first (what a batch
    /// decodes; the fallback temperatures are redone alone), no word
    /// timestamps (their alignment runs per window on its own encoder
    /// output).
    fn batchable(opts: &DecodeOptions) -> bool {
        opts.beam_size == 1 && opts.temperatures.first() == Some(&0.0) && !opts.word_timestamps
    }

    /// Transcribes several recordings, each as [`Ct2Whisper::transcribe`]
    /// would, but the windows of the recordings that are decoded alike are
    /// encoded and decoded in shared CTranslate2 batches, as
    /// faster-whisper's `BatchedInferencePipeline` does with the pieces of
    /// a long file: the decoder's steps then run as matrix products over
    /// the batch instead of one vector at a time. Round by round: first
    /// every recording's first window (for pieces of up to 30 s, usually
    /// the only one), then the rest of those whose timestamps left the
    /// window unfinished. Per recording, as alone: language detection (on
    /// its own first 30 s), the temperature fallback (a result that fails
    /// the thresholds is redone alone at the next temperatures) and the
    /// no-speech skip; in later rounds the previous text conditioning a
    /// window may be shorter than alone (see `decode_batch`). Recordings
    /// that cannot share a batch (other options, over 30 s, beam search,
    /// word timestamps) go through `transcribe`.
    pub fn transcribe_batch(
        &self,
        items: &[(&[f32], &DecodeOptions)],
    ) -> Vec<Result<Transcript, BackendError>> {
        let mut out: Vec<Option<Result<Transcript, BackendError>>> =
            items.iter().map(|_| None).collect();
        // Groups of item indices whose options match (the language aside:
        // it changes a prompt token, not the prompt's length, which
        // CTranslate2 requires equal across a batch).
        let mut groups: Vec<(DecodeOptions, Vec<(usize, Job)>)> = Vec::new();
        for (i, &(pcm, opts)) in items.iter().enumerate() {
            if !Self::batchable(opts) || pcm.len() > N_FRAMES * HOP {
                continue;
            }
            let job = match self.begin(pcm, opts) {
                Ok(job) => job,
                Err(e) => {
                    out[i] = Some(Err(e));
                    continue;
                }
            };
            let key = DecodeOptions {
                language: None,
                ..opts.clone()
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push((i, job)),
                None => groups.push((key, vec![(i, job)])),
            }
        }
        for (_, group) in groups {
            if group.len() < 2 {
                continue; // alone: the sequential path below, exactly
            }
            let mut rest = group;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(MAX_BATCH));
                let chunk = std::mem::replace(&mut rest, tail);
                let (idx, jobs): (Vec<usize>, Vec<Job>) = chunk.into_iter().unzip();
                match self.decode_batch(jobs) {
                    Ok(done) => {
                        for (i, r) in idx.into_iter().zip(done) {
                            out[i] = Some(r);
                        }
                    }
                    // The batch itself failed (CTranslate2 error): nothing
                    // is known per item, so each is tried alone below.
                    Err(e) => {
                        tracing::warn!("batched Whisper decoding failed, retrying alone: {e}")
                    }
                }
            }
        }
        items
            .iter()
            .zip(out)
            .map(|(&(pcm, opts), r)| r.unwrap_or_else(|| self.transcribe(pcm, opts)))
            .collect()
    }

    /// Jobs with equal options, decoded window by window in shared
    /// CTranslate2 batches.
    fn decode_batch(
        &self,
        mut jobs: Vec<Job>,
    ) -> Result<Vec<Result<Transcript, BackendError>>, BackendError> {
        let opts = jobs[0].opts;
        // Language detection, batched too, on the window sequential
        // transcription detects on (one frame longer than the decoded one).
        let undetected: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].language.is_none())
            .collect();
        if !undetected.is_empty() {
            let mut windows: Vec<f32> = Vec::new();
            for &i in &undetected {
                windows.extend(jobs[i].feats.window(0, N_FRAMES));
            }
            let enc = self.encode(&mut windows, undetected.len())?;
            for (&i, code) in undetected.iter().zip(self.detect_languages(&enc)?) {
                jobs[i].language = Some(code);
            }
        }
        // Rounds: every job still unfinished decodes its next window in one
        // shared batch. The first round is each piece's first (usually only)
        // window; a later round holds the rest of pieces whose timestamps
        // ended the window early (Whisper often stops at a segment boundary
        // some seconds before the window's end, and faster-whisper's loop,
        // like brisk's sequential one, then seeks there and decodes the rest).
        let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
        let mut done: Vec<Option<Result<Transcript, BackendError>>> =
            jobs.iter().map(|_| None).collect();
        let mut active: Vec<usize> = (0..jobs.len()).collect();
        while !active.is_empty() {
            // CTranslate2 decodes a batch only with <|startoftranscript|> at
            // one position, so the previous text that conditions each
            // window is cut to the shortest in the batch (its most recent
            // tokens kept). In the first round every piece has the same
            // (the request's initial prompt, if any); later windows may get
            // less context than sequential decoding would give them.
            let keep = active
                .iter()
                .filter_map(|&i| jobs[i].as_ref())
                .map(|j| self.previous_tokens(j).len())
                .min()
                .unwrap_or(0);
            let mut windows: Vec<f32> = Vec::new();
            let mut prompts: Vec<Vec<u32>> = Vec::new();
            for job in active.iter().filter_map(|&i| jobs[i].as_ref()) {
                windows.extend(job.feats.window(job.seek, Self::segment_size(job)));
                let previous = self.previous_tokens(job);
                let previous = &previous[previous.len() - keep..];
                prompts.push(self.prompt(previous, &self.sot_sequence(job), opts.timestamps));
            }
            let enc = self.encode(&mut windows, active.len())?;
            let first = self.generate_once(&enc, &prompts, opts.temperatures[0], opts)?;
            drop(enc);
            self.batched_windows
                .fetch_add(active.len(), std::sync::atomic::Ordering::Relaxed);
            for ((&i, prompt), d) in active.iter().zip(prompts).zip(first) {
                let Some(job) = jobs[i].as_mut() else {
                    continue;
                };
                let r = (|| {
                    let d = if needs_fallback(&d, opts).0 {
                        // Redone alone from the next temperature on, on this
                        // window's own encoder output.
                        let mut w = job.feats.window(job.seek, Self::segment_size(job));
                        let enc = self.encode(&mut w, 1)?;
                        self.generate_with_fallback(&enc, &prompt, opts, Some(d))?
                    } else {
                        d
                    };
                    self.take_window(job, None, d)
                })();
                if let Err(e) = r {
                    done[i] = Some(Err(e));
                    jobs[i] = None;
                } else if job.seek >= job.content_frames {
                    done[i] = jobs[i].take().map(|j| Ok(j.finish()));
                }
            }
            active.retain(|&i| jobs[i].is_some());
        }
        Ok(done
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(inference("no decoding result"))))
            .collect())
    }

    /// The previous text that conditions a job's next window, as
    /// faster-whisper's `get_prompt` takes it (at most half the decoder's
    /// length).
    fn previous_tokens<'j>(&self, job: &'j Job) -> &'j [u32] {
        let previous = &job.all_tokens[job.prompt_reset_since..];
        let keep = self.max_length / 2 - 1;
        &previous[previous.len().saturating_sub(keep)..]
    }

    /// faster-whisper's `get_prompt` (no prefix, no hotwords).
    fn prompt(&self, previous: &[u32], sot_sequence: &[u32], timestamps: bool) -> Vec<u32> {
        let mut prompt = Vec::new();
        if !previous.is_empty() {
            if let Some(prev) = self.sp.sot_prev {
                prompt.push(prev);
                let keep = self.max_length / 2 - 1;
                prompt.extend_from_slice(&previous[previous.len().saturating_sub(keep)..]);
            }
        }
        prompt.extend_from_slice(sot_sequence);
        if !timestamps {
            prompt.push(self.sp.no_timestamps);
        }
        prompt
    }

    /// faster-whisper's `generate_with_fallback`. `first`, when given, is
    /// the result at the first temperature, already decoded (in a batch).
    fn generate_with_fallback(
        &self,
        enc: &StorageView,
        prompt: &[u32],
        opts: &DecodeOptions,
        mut first: Option<Decoded>,
    ) -> Result<Decoded, BackendError> {
        let mut all: Vec<Decoded> = Vec::new();
        let mut below_cr: Vec<usize> = Vec::new();
        let mut last_temperature = 0.0;
        for &temperature in &opts.temperatures {
            last_temperature = temperature;
            let d = match first.take() {
                Some(d) => d,
                None => self
                    .generate_once(
                        enc,
                        std::slice::from_ref(&prompt.to_vec()),
                        temperature,
                        opts,
                    )?
                    .pop()
                    .ok_or_else(|| inference("generate returned no result"))?,
            };
            let (fallback, below) = needs_fallback(&d, opts);
            if below {
                below_cr.push(all.len());
            }
            if !fallback {
                return Ok(d);
            }
            all.push(d);
        }
        // All failed: the best average log-probability, preferring results
        // under the compression threshold.
        let pool: Vec<usize> = if below_cr.is_empty() {
            (0..all.len()).collect()
        } else {
            below_cr
        };
        let best = pool
            .into_iter()
            .reduce(|a, b| {
                if all[b].avg_logprob > all[a].avg_logprob {
                    b
                } else {
                    a
                }
            })
            .ok_or_else(|| inference("no decoding result"))?;
        let mut d = all.swap_remove(best);
        d.temperature = last_temperature;
        Ok(d)
    }

    /// One `generate` call at one temperature: a result per prompt, the
    /// prompts decoding the windows of `enc` in order.
    fn generate_once(
        &self,
        enc: &StorageView,
        prompts: &[Vec<u32>],
        temperature: f32,
        opts: &DecodeOptions,
    ) -> Result<Vec<Decoded>, BackendError> {
        let prompt_strings: Vec<Vec<String>> = prompts
            .iter()
            .map(|p| self.token_strings(p))
            .collect::<Result<_, _>>()?;
        let max_initial_timestamp_index =
            (f64::from(opts.max_initial_timestamp) / TIME_PRECISION).round() as usize;
        let mut wo = WhisperOptions {
            max_length: self.max_length,
            return_scores: true,
            return_no_speech_prob: true,
            suppress_blank: opts.suppress_blank,
            suppress_tokens: self.suppress.clone(),
            max_initial_timestamp_index,
            ..Default::default()
        };
        if temperature > 0.0 {
            wo.beam_size = 1;
            wo.num_hypotheses = opts.best_of.max(1);
            wo.sampling_topk = 0;
            wo.sampling_temperature = temperature;
        } else {
            wo.beam_size = opts.beam_size;
            wo.patience = 1.0;
        }
        let results = self
            .model
            .generate(enc, &prompt_strings, &wo)
            .map_err(inference)?;
        if results.len() != prompts.len() {
            return Err(inference(format!(
                "generate returned {} results for {} prompts",
                results.len(),
                prompts.len()
            )));
        }
        results
            .into_iter()
            .map(|r| {
                let tokens: Vec<u32> = r
                    .sequences_ids
                    .first()
                    .map(|s| s.iter().map(|&t| t as u32).collect())
                    .unwrap_or_default();
                let score = r.scores.first().copied().unwrap_or(f32::NEG_INFINITY);
                let seq_len = tokens.len() as f32;
                // Recover the average log-probability from the length-normalised
                // score (length_penalty 1), as faster-whisper does.
                let avg_logprob = score * seq_len / (seq_len + 1.0);
                let text = self.decode_text(&tokens)?;
                Ok(Decoded {
                    tokens,
                    avg_logprob,
                    temperature,
                    compression_ratio: compression_ratio(text.trim()),
                    no_speech_prob: r.no_speech_prob,
                })
            })
            .collect()
    }

    /// faster-whisper's `_split_segments_by_timestamps`: `(start, end,
    /// tokens)` pieces and the next seek position (in frames).
    #[allow(clippy::type_complexity)]
    fn split_by_timestamps(
        &self,
        tokens: &[u32],
        time_offset: f64,
        segment_size: usize,
        segment_duration: f64,
        mut seek: usize,
    ) -> (Vec<(f64, f64, Vec<u32>)>, usize, bool) {
        let tb = self.sp.timestamp_begin();
        let is_ts = |t: u32| t >= tb;
        let n = tokens.len();
        let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
        let consecutive: Vec<usize> = (1..n)
            .filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]))
            .collect();
        let mut out = Vec::new();
        if !consecutive.is_empty() {
            let mut slices = consecutive;
            if single_timestamp_ending {
                slices.push(n);
            }
            let mut last = 0;
            for &cur in &slices {
                let sliced = &tokens[last..cur];
                let start_pos = f64::from(sliced[0].saturating_sub(tb));
                let end_pos = f64::from(sliced[sliced.len() - 1].saturating_sub(tb));
                out.push((
                    time_offset + start_pos * TIME_PRECISION,
                    time_offset + end_pos * TIME_PRECISION,
                    sliced.to_vec(),
                ));
                last = cur;
            }
            if single_timestamp_ending {
                seek += segment_size;
            } else {
                let last_pos = tokens[last - 1].saturating_sub(tb) as usize;
                seek += last_pos * INPUT_STRIDE;
            }
        } else {
            let mut duration = segment_duration;
            if let Some(&last_ts) = tokens.iter().rev().find(|&&t| is_ts(t)) {
                if last_ts != tb {
                    duration = f64::from(last_ts - tb) * TIME_PRECISION;
                }
            }
            out.push((time_offset, time_offset + duration, tokens.to_vec()));
            seek += segment_size;
        }
        (out, seek, single_timestamp_ending)
    }

    /// faster-whisper's `add_word_timestamps` for one window's pieces.
    #[allow(clippy::type_complexity)]
    fn add_word_timestamps(
        &self,
        enc: &StorageView,
        sot_sequence: &[u32],
        pieces: &mut [(f64, f64, Vec<u32>, Vec<Word>)],
        num_frames: usize,
        seek: usize,
        last_speech_timestamp: f64,
    ) -> Result<(), BackendError> {
        let eot = self.sp.eot;
        let per_piece: Vec<usize> = pieces
            .iter()
            .map(|p| p.2.iter().filter(|&&t| t < eot).count())
            .collect();
        let text_tokens: Vec<u32> = pieces
            .iter()
            .flat_map(|p| p.2.iter().copied().filter(|&t| t < eot))
            .collect();
        let alignment = if text_tokens.is_empty() {
            Vec::new()
        } else {
            let start: Vec<usize> = sot_sequence.iter().map(|&t| t as usize).collect();
            let tt: Vec<usize> = text_tokens.iter().map(|&t| t as usize).collect();
            let r = self
                .model
                .align(enc, &start, &[tt], &[num_frames], 7)
                .map_err(inference)?;
            match r.into_iter().next() {
                Some(a) => {
                    let pairs: Vec<(i64, i64)> = a
                        .alignments
                        .iter()
                        .map(|p| (p.token_x, p.frame_x))
                        .collect();
                    crate::words::timings(
                        &self.tokenizer,
                        &text_tokens,
                        eot,
                        &pairs,
                        &a.text_token_probs,
                    )
                }
                None => Vec::new(),
            }
        };
        let time_offset = seek as f64 / FRAMES_PER_SECOND;
        let mut views: Vec<crate::words::Piece<'_>> = pieces
            .iter_mut()
            .zip(&per_piece)
            .map(|(p, &n)| crate::words::Piece {
                start: &mut p.0,
                end: &mut p.1,
                text_tokens: n,
                words: &mut p.3,
            })
            .collect();
        crate::words::assign(alignment, &mut views, time_offset, last_speech_timestamp);
        Ok(())
    }
}

struct Decoded {
    tokens: Vec<u32>,
    avg_logprob: f32,
    temperature: f32,
    compression_ratio: f32,
    no_speech_prob: f32,
}

/// faster-whisper's fallback test of one result: `(redo at the next
/// temperature, under the compression-ratio threshold)`.
fn needs_fallback(d: &Decoded, opts: &DecodeOptions) -> (bool, bool) {
    let mut fallback = false;
    let mut below_cr = false;
    if let Some(th) = opts.compression_ratio_threshold {
        if d.compression_ratio > th {
            fallback = true;
        } else {
            below_cr = true;
        }
    }
    let low_logprob = opts.log_prob_threshold.is_some_and(|lp| d.avg_logprob < lp);
    if low_logprob {
        fallback = true;
    }
    if low_logprob
        && opts
            .no_speech_threshold
            .is_some_and(|ns| d.no_speech_prob > ns)
    {
        fallback = false; // silence
    }
    (fallback, below_cr)
}

/// Most windows in one CTranslate2 batch: bounds the encoder's activations
/// (about 25 MB per window for base in float32) when many pieces queue.
const MAX_BATCH: usize = 16;

/// One recording being transcribed: faster-whisper's loop state.
struct Job<'o> {
    opts: &'o DecodeOptions,
    feats: crate::mel::Features,
    content_frames: usize,
    duration: f64,
    /// `None` until detected (multilingual model, no language asked).
    language: Option<String>,
    all_tokens: Vec<u32>,
    prompt_reset_since: usize,
    /// Next window's first frame.
    seek: usize,
    segments: Vec<Segment>,
    last_speech_timestamp: f64,
}

impl Job<'_> {
    fn finish(self) -> Transcript {
        Transcript {
            segments: self.segments,
            language: self.language.unwrap_or_else(|| "en".into()),
            duration: self.duration,
        }
    }
}

/// CTranslate2's vocabulary file: `vocabulary.json` (a JSON array) or
/// `vocabulary.txt` (one token per line).
fn read_vocabulary(dir: &Path) -> Result<Vec<String>, BackendError> {
    if let Ok(s) = std::fs::read_to_string(dir.join("vocabulary.json")) {
        return serde_json::from_str(&s)
            .map_err(|e| invalid_model(format!("vocabulary.json: {e}")));
    }
    let s = std::fs::read_to_string(dir.join("vocabulary.txt")).map_err(|e| {
        invalid_model(format!(
            "{}: no vocabulary.json or vocabulary.txt: {e}",
            dir.display()
        ))
    })?;
    Ok(s.lines().map(str::to_string).collect())
}

/// `len(text) / len(zlib.compress(text))` in UTF-8 bytes.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    if enc.write_all(bytes).is_err() {
        return 0.0;
    }
    let n = enc.finish().map(|v| v.len()).unwrap_or(1).max(1);
    bytes.len() as f32 / n as f32
}

/// faster-whisper's `get_suppressed_tokens(tokenizer, [-1])`: the
/// non-speech symbols and the special tokens, sorted.
fn suppressed_tokens(tok: &Tokenizer, sp: &Special) -> Vec<i32> {
    let enc = |s: &str| -> Vec<u32> {
        tok.encode(s, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    };
    let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
        .chars()
        .map(String::from)
        .collect();
    symbols.extend(
        "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
            .split_whitespace()
            .map(String::from),
    );
    let misc: Vec<String> = "♩♪♫♬♭♮♯".chars().map(String::from).collect();
    let mut out: Vec<u32> = Vec::new();
    out.extend(enc(" -").first());
    out.extend(enc(" '").first());
    for (s, is_misc) in symbols
        .iter()
        .map(|s| (s, false))
        .chain(misc.iter().map(|s| (s, true)))
    {
        for ids in [enc(s), enc(&format!(" {s}"))] {
            if ids.len() == 1 || (is_misc && !ids.is_empty()) {
                out.push(ids[0]);
            }
        }
    }
    out.extend(sp.transcribe);
    out.extend(sp.translate);
    out.push(sp.sot);
    out.extend(sp.sot_prev);
    out.extend(sp.sot_lm);
    out.extend(sp.no_speech);
    out.sort_unstable();
    out.dedup();
    out.into_iter().map(|t| t as i32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_types() {
        assert!(parse_compute_type("int8").is_ok());
        assert!(parse_compute_type("float32").is_ok());
        assert!(parse_compute_type("int8_float32").is_ok());
        let e = parse_compute_type("float16")
            .expect_err("not on CPU")
            .to_string();
        assert!(e.contains("float16"), "{e}");
    }

    #[test]
    fn compression_ratio_of_repetition_is_high() {
        assert!(compression_ratio(&"the same words again ".repeat(20)) > 2.4);
        assert!(compression_ratio("Ever tried. Ever failed. No matter.") < 2.4);
    }
}
