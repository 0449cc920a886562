//! The Whisper model: CTranslate2 weights loaded into candle's Whisper, and
//! window-by-window decoding.

use std::collections::HashMap;
use std::path::Path;

use brisk_core::{Backend, BackendError, Request, Response, Task};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{self as w, model::Whisper};
use tokenizers::Tokenizer;

use super::ct2::{Ct2DType, Ct2Model, Ct2Variable};
use super::decode::{self, Rng, SpecialTokens};
use super::decoder::TextDecoder;
use super::{mel, Segment, TranscribeOptions, Transcript};

/// Tokens generated per 30 s window at most (Whisper's `sample_len`).
pub const MAX_NEW_TOKENS: usize = 224;
/// Skip a window as silence when `<|nospeech|>` is this likely and the
/// text is this unlikely (Whisper's thresholds).
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
/// A trailing piece shorter than this (in samples) is not worth a window.
const MIN_TAIL_SAMPLES: usize = w::SAMPLE_RATE / 10;

fn invalid_model(msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(msg.to_string())
}

fn inference(e: candle_core::Error) -> BackendError {
    BackendError::Inference(e.to_string())
}

fn tensor(name: &str, v: &Ct2Variable, dev: &Device) -> Result<Tensor, BackendError> {
    let dtype = match v.dtype {
        Ct2DType::F16 => DType::F16,
        Ct2DType::BF16 => DType::BF16,
        Ct2DType::F32 => DType::F32,
        other => {
            return Err(invalid_model(format!(
                "{name}: {other:?} weights (quantized CTranslate2 models) are not supported"
            )))
        }
    };
    Tensor::from_raw_buffer(&v.data, dtype, &v.shape, dev)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| invalid_model(format!("{name}: {e}")))
}

/// Renames CTranslate2 Whisper variables to candle's names (splitting fused
/// projections) and converts them to f32.
struct Converter<'a> {
    ct2: &'a Ct2Model,
    dev: &'a Device,
    out: HashMap<String, Tensor>,
}

impl Converter<'_> {
    fn get(&self, name: &str) -> Result<Tensor, BackendError> {
        let v = self
            .ct2
            .get(name)
            .ok_or_else(|| invalid_model(format!("model.bin has no variable {name}")))?;
        tensor(name, v, self.dev)
    }

    fn copy(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        let t = self.get(src)?;
        self.out.insert(dst.to_string(), t);
        Ok(())
    }

    fn linear(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        self.copy(&format!("{src}/weight"), &format!("{dst}.weight"))?;
        self.copy(&format!("{src}/bias"), &format!("{dst}.bias"))
    }

    fn layer_norm(&mut self, src: &str, dst: &str) -> Result<(), BackendError> {
        self.copy(&format!("{src}/gamma"), &format!("{dst}.weight"))?;
        self.copy(&format!("{src}/beta"), &format!("{dst}.bias"))
    }

    /// A fused projection of `parts.len()` equal blocks (q|k|v or k|v);
    /// `k_proj` gets no bias (Whisper's key projection has none).
    fn fused(&mut self, src: &str, dst: &str, parts: &[&str]) -> Result<(), BackendError> {
        let weight = self.get(&format!("{src}/weight"))?;
        let bias = self.get(&format!("{src}/bias"))?;
        let rows = weight.dim(0).map_err(invalid_model)?;
        let n = rows / parts.len();
        if n * parts.len() != rows {
            return Err(invalid_model(format!(
                "{src}: {rows} rows do not split in {}",
                parts.len()
            )));
        }
        for (i, part) in parts.iter().enumerate() {
            let wt = weight.narrow(0, i * n, n).map_err(invalid_model)?;
            self.out.insert(format!("{dst}.{part}.weight"), wt);
            if *part != "k_proj" {
                let b = bias.narrow(0, i * n, n).map_err(invalid_model)?;
                self.out.insert(format!("{dst}.{part}.bias"), b);
            }
        }
        Ok(())
    }
}

fn count_layers(ct2: &Ct2Model, prefix: &str) -> usize {
    ct2.variables
        .keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .split('/')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
}

fn dims(ct2: &Ct2Model, name: &str) -> Result<Vec<usize>, BackendError> {
    ct2.get(name)
        .map(|v| v.shape.clone())
        .ok_or_else(|| invalid_model(format!("model.bin has no variable {name}")))
}

/// candle's Whisper config from the tensor shapes and CT2 scalars.
fn config_from(ct2: &Ct2Model, suppress: Vec<u32>) -> Result<w::Config, BackendError> {
    let conv1 = dims(ct2, "encoder/conv1/weight")?;
    let emb = dims(ct2, "decoder/embeddings/weight")?;
    let dec_pos = dims(ct2, "decoder/position_encodings/encodings")?;
    let (d_model, n_mels) = match conv1[..] {
        [d, m, 3] => (d, m),
        _ => {
            return Err(invalid_model(format!(
                "encoder/conv1/weight has shape {conv1:?}"
            )))
        }
    };
    let heads = |name: &str| {
        ct2.int(name)
            .and_then(|h| usize::try_from(h).ok())
            .filter(|&h| h > 0 && d_model % h == 0)
            .unwrap_or((d_model / 64).max(1))
    };
    let enc_pos = ct2
        .get("encoder/position_encodings/encodings")
        .and_then(|v| v.shape.first().copied())
        .unwrap_or(w::N_FRAMES / 2);
    Ok(w::Config {
        num_mel_bins: n_mels,
        max_source_positions: enc_pos,
        d_model,
        encoder_attention_heads: heads("encoder/num_heads"),
        encoder_layers: count_layers(ct2, "encoder/layer_"),
        vocab_size: emb.first().copied().unwrap_or(0),
        max_target_positions: dec_pos.first().copied().unwrap_or(448),
        decoder_attention_heads: heads("decoder/num_heads"),
        decoder_layers: count_layers(ct2, "decoder/layer_"),
        suppress_tokens: suppress,
    })
}

/// A loaded Whisper model (backend `candle-whisper`).
pub struct WhisperModel {
    /// candle's Whisper: its encoder is used (its decoder shares the weights
    /// with `decoder`).
    model: Whisper,
    /// The text decoder with a self-attention cache.
    decoder: TextDecoder,
    config: w::Config,
    tokenizer: Tokenizer,
    filters: Vec<f32>,
    device: Device,
    sp: SpecialTokens,
    /// Tokens never generated (config `suppress_ids` and special tokens;
    /// timestamp tokens are handled per request).
    suppress: Vec<u32>,
    /// Tokens not allowed as the first generated token.
    suppress_begin: Vec<u32>,
    multilingual: bool,
    /// `(code, token id)` of every language token.
    languages: Vec<(String, u32)>,
    memory_bytes: u64,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("config", &self.config)
            .field("multilingual", &self.multilingual)
            .finish_non_exhaustive()
    }
}

fn ids(v: Option<&serde_json::Value>) -> Vec<u32> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect()
        })
        .unwrap_or_default()
}

impl WhisperModel {
    /// Loads a CTranslate2 Whisper folder (`model.bin`, `tokenizer.json`,
    /// optional `config.json` with `suppress_ids`/`suppress_ids_begin`).
    pub fn load(dir: &Path) -> Result<Self, BackendError> {
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

        let ct2 = Ct2Model::read(&bin)?;
        if ct2.spec != "WhisperSpec" {
            return Err(invalid_model(format!(
                "model.bin is a CTranslate2 {}, not a WhisperSpec",
                ct2.spec
            )));
        }
        let config = config_from(&ct2, ids(cfg_json.get("suppress_ids")))?;
        let device = Device::Cpu;
        let mut conv = Converter {
            ct2: &ct2,
            dev: &device,
            out: HashMap::new(),
        };
        for c in ["conv1", "conv2"] {
            conv.linear(&format!("encoder/{c}"), &format!("model.encoder.{c}"))?;
        }
        conv.layer_norm("encoder/layer_norm", "model.encoder.layer_norm")?;
        conv.layer_norm("decoder/layer_norm", "model.decoder.layer_norm")?;
        conv.copy(
            "decoder/embeddings/weight",
            "model.decoder.embed_tokens.weight",
        )?;
        conv.copy(
            "decoder/position_encodings/encodings",
            "model.decoder.embed_positions.weight",
        )?;
        for (side, n) in [
            ("encoder", config.encoder_layers),
            ("decoder", config.decoder_layers),
        ] {
            for i in 0..n {
                let s = format!("{side}/layer_{i}");
                let d = format!("model.{side}.layers.{i}");
                conv.layer_norm(
                    &format!("{s}/self_attention/layer_norm"),
                    &format!("{d}.self_attn_layer_norm"),
                )?;
                conv.fused(
                    &format!("{s}/self_attention/linear_0"),
                    &format!("{d}.self_attn"),
                    &["q_proj", "k_proj", "v_proj"],
                )?;
                conv.linear(
                    &format!("{s}/self_attention/linear_1"),
                    &format!("{d}.self_attn.out_proj"),
                )?;
                if side == "decoder" {
                    conv.layer_norm(
                        &format!("{s}/attention/layer_norm"),
                        &format!("{d}.encoder_attn_layer_norm"),
                    )?;
                    conv.linear(
                        &format!("{s}/attention/linear_0"),
                        &format!("{d}.encoder_attn.q_proj"),
                    )?;
                    conv.fused(
                        &format!("{s}/attention/linear_1"),
                        &format!("{d}.encoder_attn"),
                        &["k_proj", "v_proj"],
                    )?;
                    conv.linear(
                        &format!("{s}/attention/linear_2"),
                        &format!("{d}.encoder_attn.out_proj"),
                    )?;
                }
                conv.layer_norm(
                    &format!("{s}/ffn/layer_norm"),
                    &format!("{d}.final_layer_norm"),
                )?;
                conv.linear(&format!("{s}/ffn/linear_0"), &format!("{d}.fc1"))?;
                conv.linear(&format!("{s}/ffn/linear_1"), &format!("{d}.fc2"))?;
            }
        }
        let tensors = conv.out;
        drop(ct2);
        let memory_bytes = tensors
            .values()
            .map(|t| (t.elem_count() * t.dtype().size_in_bytes()) as u64)
            .sum();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = Whisper::load(&vb, config.clone()).map_err(invalid_model)?;
        let decoder = TextDecoder::load(vb.pp("model.decoder"), &config).map_err(invalid_model)?;

        let tok = |s: &str| tokenizer.token_to_id(s);
        let need = |s: &str| {
            tok(s).ok_or_else(|| invalid_model(format!("tokenizer.json has no {s} token")))
        };
        let no_timestamps = need(w::NO_TIMESTAMPS_TOKEN)?;
        let sp = SpecialTokens {
            sot: need(w::SOT_TOKEN)?,
            eot: need(w::EOT_TOKEN)?,
            transcribe: tok(w::TRANSCRIBE_TOKEN),
            translate: tok(w::TRANSLATE_TOKEN),
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            no_speech: w::NO_SPEECH_TOKENS.iter().find_map(|t| tok(t)),
            start_of_prev: tok("<|startofprev|>"),
        };
        let vocab = config.vocab_size as u32;
        if sp.eot >= vocab || sp.sot >= vocab || no_timestamps >= vocab {
            return Err(invalid_model(
                "tokenizer special tokens are outside the model vocabulary",
            ));
        }
        // Multilingual checkpoints have 51865+ tokens; English-only ones 51864.
        let multilingual = config.vocab_size >= 51865;
        let mut languages: Vec<(String, u32)> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter_map(|(id, t)| {
                let code = t.content.strip_prefix("<|")?.strip_suffix("|>")?;
                let ok = (2..=3).contains(&code.len())
                    && code.chars().all(|c| c.is_ascii_lowercase())
                    && id > sp.sot
                    && id < sp.no_timestamps;
                ok.then(|| (code.to_string(), id))
            })
            .collect();
        languages.sort_by_key(|&(_, id)| id);

        let mut suppress = config.suppress_tokens.clone();
        // Every special token but eot (timestamps are decided per request).
        suppress.extend(sp.eot + 1..sp.timestamp_begin.min(vocab));
        suppress.retain(|&t| t < vocab && t != sp.eot);
        suppress.sort_unstable();
        suppress.dedup();
        let mut suppress_begin = ids(cfg_json.get("suppress_ids_begin"));
        if suppress_begin.is_empty() {
            suppress_begin = vec![sp.eot];
            suppress_begin.extend(tokenizer.token_to_id("Ġ"));
        }
        suppress_begin.retain(|&t| t < vocab);

        Ok(Self {
            filters: mel::mel_filters(w::SAMPLE_RATE, w::N_FFT, config.num_mel_bins),
            model,
            decoder,
            config,
            tokenizer,
            device,
            sp,
            suppress,
            suppress_begin,
            multilingual,
            languages,
            memory_bytes,
        })
    }

    /// The candle Whisper configuration (layers, heads, vocabulary).
    pub fn config(&self) -> &w::Config {
        &self.config
    }

    /// Whether the model transcribes languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    fn language_token(&self, code: &str) -> Option<u32> {
        self.languages
            .iter()
            .find(|(c, _)| c == code)
            .map(|&(_, id)| id)
    }

    /// Transcribes mono 16 kHz samples (see
    /// [`super::audio::decode_to_mono_16k`]), in 30-second windows.
    pub fn transcribe(
        &mut self,
        pcm16k: &[f32],
        opts: &TranscribeOptions,
    ) -> Result<Transcript, BackendError> {
        if pcm16k.is_empty() {
            return Err(BackendError::InvalidInput("audio is empty".into()));
        }
        if opts.translate && !self.multilingual {
            return Err(BackendError::InvalidInput(
                "this model is English-only; translation needs a multilingual Whisper model".into(),
            ));
        }
        let task_token = if opts.translate {
            Some(self.sp.translate.ok_or_else(|| {
                invalid_model("tokenizer.json has no <|translate|> token; cannot translate")
            })?)
        } else {
            self.sp.transcribe
        };
        if !(opts.temperature.is_finite() && (0.0..=2.0).contains(&opts.temperature)) {
            return Err(BackendError::InvalidInput(
                "temperature must be between 0 and 2".into(),
            ));
        }
        let mut language = match opts
            .language
            .as_deref()
            .map(|l| l.trim().to_ascii_lowercase())
        {
            None => None,
            Some(l) if l.is_empty() => None,
            Some(l) => {
                let code = if l == "english" { "en".to_string() } else { l };
                if !self.multilingual {
                    if code != "en" {
                        return Err(BackendError::InvalidInput(format!(
                            "this model transcribes English only, not '{code}'"
                        )));
                    }
                } else if self.language_token(&code).is_none() {
                    return Err(BackendError::InvalidInput(format!(
                        "unknown language '{code}'"
                    )));
                }
                Some(code)
            }
        };
        if !self.multilingual {
            language = Some("en".into());
        }
        let prompt_tokens = match opts.prompt.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => {
                let enc = self.tokenizer.encode(format!(" {p}"), false).map_err(|e| {
                    BackendError::InvalidInput(format!("cannot tokenize prompt: {e}"))
                })?;
                let ids = enc.get_ids();
                let keep = self.config.max_target_positions / 2 - 1;
                ids[ids.len().saturating_sub(keep)..].to_vec()
            }
            _ => Vec::new(),
        };

        let sr = w::SAMPLE_RATE as f64;
        let total_s = pcm16k.len() as f64 / sr;
        let mut segments = Vec::new();
        let mut offset = 0usize;
        let mut window_index = 0u64;
        while offset < pcm16k.len() {
            let end = (offset + w::N_SAMPLES).min(pcm16k.len());
            if end - offset < MIN_TAIL_SAMPLES && offset > 0 {
                break;
            }
            let window = &pcm16k[offset..end];
            let mel = mel::log_mel_window(&self.config, &self.filters, window);
            let mel = Tensor::from_vec(
                mel,
                (1, self.config.num_mel_bins, w::N_FRAMES),
                &self.device,
            )
            .map_err(inference)?;
            let features = self.model.encoder.forward(&mel, true).map_err(inference)?;
            if language.is_none() {
                language = Some(self.detect_language(&features)?);
            }
            let mut prefix = Vec::new();
            if !prompt_tokens.is_empty() {
                if let Some(prev) = self.sp.start_of_prev {
                    prefix.push(prev);
                    prefix.extend_from_slice(&prompt_tokens);
                }
            }
            let sot_index = prefix.len();
            prefix.push(self.sp.sot);
            if self.multilingual {
                if let Some(id) = language.as_deref().and_then(|l| self.language_token(l)) {
                    prefix.push(id);
                }
                prefix.extend(task_token);
            }
            if !opts.timestamps {
                prefix.push(self.sp.no_timestamps);
            }
            let mut rng = Rng::new(0x5EED_0000 ^ window_index);
            let out = self.decode_window(&features, &prefix, sot_index, opts, &mut rng)?;
            let skip =
                out.no_speech_prob > NO_SPEECH_THRESHOLD && out.avg_logprob < LOGPROB_THRESHOLD;
            let mut advance = end - offset;
            if !skip {
                let start = offset as f64 / sr;
                let window_s = (end - offset) as f64 / sr;
                let mut pieces = if opts.timestamps {
                    decode::split_timestamped(&out.tokens, &self.sp, window_s)
                } else {
                    vec![decode::TokenSegment {
                        start_s: 0.0,
                        end_s: window_s,
                        tokens: out.tokens.clone(),
                        closed: false,
                    }]
                };
                // As Whisper: text the window cut off (no closing timestamp)
                // is decoded again from the next window, which starts at the
                // last closing timestamp.
                if opts.timestamps
                    && end < pcm16k.len()
                    && pieces.len() > 1
                    && pieces.last().is_some_and(|p| !p.closed)
                {
                    let last_end = pieces[pieces.len() - 2].end_s;
                    let samples = (last_end * sr).round() as usize;
                    if samples >= MIN_TAIL_SAMPLES && samples < advance {
                        pieces.pop();
                        advance = samples;
                    }
                }
                for p in pieces {
                    let text = self
                        .tokenizer
                        .decode(&p.tokens, true)
                        .map_err(|e| BackendError::Inference(format!("detokenize: {e}")))?;
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    // Millisecond precision (timestamps are 20 ms steps).
                    let ms = |t: f64| (t * 1000.0).round() / 1000.0;
                    segments.push(Segment {
                        start_s: ms(start + p.start_s.min(window_s)),
                        end_s: ms(start + p.end_s.min(window_s)).min(total_s),
                        text: text.to_string(),
                    });
                }
            }
            offset += advance;
            window_index += 1;
        }
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            language: language.unwrap_or_else(|| "en".into()),
            duration_s: total_s,
        })
    }

    fn detect_language(&mut self, features: &Tensor) -> Result<String, BackendError> {
        let tokens = Tensor::new(&[self.sp.sot], &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(inference)?;
        self.decoder.reset();
        let ys = self
            .decoder
            .forward(&tokens, features, 0)
            .map_err(inference)?;
        let logits = self.project(&ys, 0)?;
        let best = self
            .languages
            .iter()
            .filter(|&&(_, id)| (id as usize) < logits.len())
            .max_by(|a, b| logits[a.1 as usize].total_cmp(&logits[b.1 as usize]));
        Ok(best.map_or_else(|| "en".to_string(), |(c, _)| c.clone()))
    }

    fn project(&self, ys: &Tensor, position: usize) -> Result<Vec<f32>, BackendError> {
        let run = || -> candle_core::Result<Vec<f32>> {
            let h = ys.i((..1, position..position + 1))?;
            self.decoder.final_linear(&h)?.i(0)?.i(0)?.to_vec1::<f32>()
        };
        run().map_err(inference)
    }

    fn decode_window(
        &mut self,
        features: &Tensor,
        prefix: &[u32],
        sot_index: usize,
        opts: &TranscribeOptions,
        rng: &mut Rng,
    ) -> Result<WindowOutput, BackendError> {
        let mut tokens = prefix.to_vec();
        let sample_begin = tokens.len();
        let n_ctx = self.config.max_target_positions;
        let mut sum_logprob = 0f32;
        let mut no_speech_prob = 0f32;
        self.decoder.reset();
        for step in 0..MAX_NEW_TOKENS {
            if tokens.len() >= n_ctx {
                break;
            }
            // The whole prefix first, then only the token chosen last.
            let offset = self.decoder.cached_len();
            let t = Tensor::new(&tokens[offset..], &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(inference)?;
            let ys = self
                .decoder
                .forward(&t, features, offset)
                .map_err(inference)?;
            if step == 0 {
                if let Some(ns) = self.sp.no_speech {
                    let l = self.project(&ys, sot_index)?;
                    if let Some(&v) = l.get(ns as usize) {
                        no_speech_prob = (v - decode::log_sum_exp(&l)).exp();
                    }
                }
            }
            let mut logits = self.project(&ys, tokens.len() - 1 - offset)?;
            for &s in &self.suppress {
                logits[s as usize] = f32::NEG_INFINITY;
            }
            if step == 0 {
                for &s in &self.suppress_begin {
                    logits[s as usize] = f32::NEG_INFINITY;
                }
            }
            let ts = self.sp.timestamp_begin as usize;
            if opts.timestamps {
                decode::apply_timestamp_rules(&mut logits, &tokens[sample_begin..], &self.sp);
            } else if ts < logits.len() {
                logits[ts..].fill(f32::NEG_INFINITY);
            }
            let next = decode::choose(&logits, opts.temperature, rng);
            let lse = decode::log_sum_exp(&logits);
            let logprob = logits[next] - lse;
            if next as u32 == self.sp.eot {
                break;
            }
            if logprob.is_finite() {
                sum_logprob += logprob;
            }
            tokens.push(next as u32);
        }
        let generated = tokens.split_off(sample_begin);
        let avg_logprob = sum_logprob / (generated.len() + 1) as f32;
        Ok(WindowOutput {
            tokens: generated,
            avg_logprob,
            no_speech_prob,
        })
    }
}

struct WindowOutput {
    tokens: Vec<u32>,
    avg_logprob: f32,
    no_speech_prob: f32,
}

impl Backend for WhisperModel {
    fn task(&self) -> Task {
        Task::Transcription
    }

    fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        batch
            .into_iter()
            .map(|r| match r {
                Request::Transcribe(t) if t.word_timestamps => Err(BackendError::InvalidInput(
                    "word timestamps (timestamp_granularities[]=word) are not available on \
                     the candle Whisper engine; serve the model with backend ct2-whisper"
                        .into(),
                )),
                Request::Transcribe(t) if t.beam_size.is_some_and(|b| b > 1) => {
                    Err(BackendError::InvalidInput(
                        "beam_size: the candle Whisper engine decodes greedily only; \
                         serve the model with backend ct2-whisper for beam search"
                            .into(),
                    ))
                }
                Request::Transcribe(t) => {
                    let opts = TranscribeOptions {
                        language: t.language,
                        prompt: t.prompt,
                        temperature: t.temperature,
                        // Timestamp tokens give real segment times (srt, vtt)
                        // and clean cuts between 30 s windows.
                        timestamps: true,
                        translate: t.translate,
                    };
                    self.transcribe(&t.audio, &opts).map(|tr| {
                        Response::Transcribe(brisk_core::Transcript {
                            text: tr.text,
                            language: Some(tr.language),
                            duration: tr.duration_s,
                            segments: tr
                                .segments
                                .into_iter()
                                .enumerate()
                                .map(|(id, s)| brisk_core::Segment {
                                    id,
                                    start: s.start_s,
                                    end: s.end_s,
                                    text: s.text,
                                })
                                .collect(),
                            words: Vec::new(),
                        })
                    })
                }
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn models_dir() -> PathBuf {
        std::env::var_os("BRISK_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
    }

    /// Logits `(n, vocab)` of hidden states `(1, n, n_state)`.
    fn rows(logits: candle_core::Result<Tensor>) -> Vec<Vec<f32>> {
        logits
            .and_then(|l| l.i(0)?.to_vec2::<f32>())
            .expect("logits")
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The cached decoder (prefix at once, then one token per step, or
    /// chunks at an offset) gives the logits of candle's decoder, which
    /// reruns the whole sequence: beckett.wav's first window, tiny.en.
    #[test]
    fn cached_decoder_matches_candle_decoder() {
        let dir = models_dir();
        let model_dir = dir.join("whisper-tiny-en");
        let wav = dir.join("testdata/beckett.wav");
        assert!(
            model_dir.join("model.bin").is_file() && wav.is_file(),
            "run scripts/fetch-models whisper-tiny-en testdata first"
        );
        let mut m = WhisperModel::load(&model_dir).expect("load whisper-tiny-en");
        let bytes = std::fs::read(&wav).expect("read beckett.wav");
        let pcm =
            super::super::audio::decode_to_mono_16k(&bytes, 60.0).expect("decode beckett.wav");
        let window = &pcm[..pcm.len().min(w::N_SAMPLES)];
        let mel = mel::log_mel_window(&m.config, &m.filters, window);
        let mel = Tensor::from_vec(mel, (1, m.config.num_mel_bins, w::N_FRAMES), &m.device)
            .expect("mel tensor");
        let features = m.model.encoder.forward(&mel, true).expect("encoder");
        let seq = |t: &[u32]| {
            Tensor::new(t, &m.device)
                .and_then(|t| t.unsqueeze(0))
                .expect("tokens")
        };

        // Greedy, one token per step after the prefix.
        let mut tokens = vec![m.sp.sot, m.sp.no_timestamps];
        let mut worst = 0f32;
        m.decoder.reset();
        for step in 0..8 {
            let offset = m.decoder.cached_len();
            let ys = m
                .decoder
                .forward(&seq(&tokens[offset..]), &features, offset)
                .expect("decoder");
            let cached = rows(m.decoder.final_linear(&ys));
            let all = m
                .model
                .decoder
                .forward(&seq(&tokens), &features, step == 0)
                .expect("decoder");
            let reference = rows(m.model.decoder.final_linear(&all));
            assert_eq!(cached.len(), tokens.len() - offset);
            for (i, row) in cached.iter().enumerate() {
                worst = worst.max(max_abs_diff(row, &reference[offset + i]));
            }
            let last = cached.last().expect("a row");
            let next = decode::argmax(&last[..m.sp.eot as usize]) as u32;
            tokens.push(next);
        }
        eprintln!("stepwise: max |logit difference| {worst:e}");
        assert!(worst < 1e-4, "max |logit difference| {worst}");
        assert_eq!(m.decoder.cached_len(), tokens.len() - 1);
        let text = m.tokenizer.decode(&tokens[2..], true).expect("detokenize");
        assert!(text.to_lowercase().contains("ever"), "{text:?}");

        // The same tokens in uneven chunks (causal mask at an offset).
        let all = m
            .model
            .decoder
            .forward(&seq(&tokens), &features, false)
            .expect("decoder");
        let reference = rows(m.model.decoder.final_linear(&all));
        m.decoder.reset();
        let mut worst = 0f32;
        for (a, b) in [(0, 3), (3, 4), (4, 7), (7, tokens.len())] {
            let ys = m
                .decoder
                .forward(&seq(&tokens[a..b]), &features, a)
                .expect("decoder");
            for (i, row) in rows(m.decoder.final_linear(&ys)).iter().enumerate() {
                worst = worst.max(max_abs_diff(row, &reference[a + i]));
            }
        }
        eprintln!("chunked: max |logit difference| {worst:e}");
        assert!(worst < 1e-4, "chunked: max |logit difference| {worst}");

        // A wrong offset is an error, not a silently shifted position.
        assert!(m.decoder.forward(&seq(&[m.sp.sot]), &features, 0).is_err());
    }
}
