//! Cache keys: a blake3 hash of everything that determines a response.
//!
//! The key covers the model name, the model's revision (a fingerprint of its
//! files, so replacing weights never serves stale results) and a canonical
//! encoding of the request: inputs plus only those parameters that change
//! the output. Every field is length-prefixed, so no two different requests
//! can encode to the same bytes.

use std::path::{Path, PathBuf};

use brisk_core::{ModelSource, Prompt, Request, Response};

/// 32-byte blake3 digest.
pub type Key = [u8; 32];

/// Bumped whenever the encoding below or the stored value format changes,
/// so old persistent/Redis entries are simply never found again.
const VERSION: &[u8] = b"brisk-cache-v2";

struct Encoder(blake3::Hasher);

impl Encoder {
    fn new() -> Self {
        let mut h = blake3::Hasher::new();
        h.update(VERSION);
        Self(h)
    }
    fn tag(&mut self, t: u8) {
        self.0.update(&[t]);
    }
    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.update(&v.to_bits().to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.update(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }
    fn samples(&mut self, audio: &[f32]) {
        self.u64(audio.len() as u64);
        // Hash in chunks: one `update` per sample would be ~10x slower.
        let mut buf = Vec::with_capacity(4096 * 4);
        for chunk in audio.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            self.0.update(&buf);
        }
    }
    fn finish(self) -> Key {
        *self.0.finalize().as_bytes()
    }
}

/// The key of `request` for `model` at `revision`, or `None` when the request
/// is not deterministic (sampling with a temperature and no seed): such
/// requests are never cached.
pub fn cache_key(model: &str, revision: &str, request: &Request) -> Option<Key> {
    let mut e = Encoder::new();
    e.str(model);
    e.str(revision);
    match request {
        Request::Embed { texts, truncate } => {
            e.tag(1);
            e.tag(u8::from(*truncate));
            e.u64(texts.len() as u64);
            for t in texts {
                e.str(t);
            }
        }
        Request::Generate(g) => {
            if !deterministic(request) {
                return None;
            }
            let p = &g.params;
            let greedy = p.temperature <= 0.0;
            e.tag(2);
            match &g.prompt {
                Prompt::Chat(messages) => {
                    e.tag(1);
                    e.u64(messages.len() as u64);
                    for m in messages {
                        e.str(&m.role);
                        e.str(&m.content);
                        e.u64(m.tool_calls.len() as u64);
                        for c in &m.tool_calls {
                            e.str(&c.id);
                            e.str(&c.name);
                            e.str(&c.arguments);
                        }
                        e.opt_str(m.tool_call_id.as_deref());
                        e.opt_str(m.name.as_deref());
                    }
                }
                Prompt::Text(t) => {
                    e.tag(2);
                    e.str(t);
                }
            }
            e.u64(p.max_tokens as u64);
            e.u64(p.stop.len() as u64);
            for s in &p.stop {
                e.str(s);
            }
            // Penalties and the output format change greedy text too.
            e.f64(f64::from(p.presence_penalty));
            e.f64(f64::from(p.frequency_penalty));
            e.u64(p.logprobs.map_or(0, |n| n as u64 + 1));
            // The model id (`X:NAME`) names the adapter already; this keeps
            // requests built in code, which set it directly, apart too.
            match &p.adapter {
                None => e.tag(0),
                Some(a) => {
                    e.tag(1);
                    e.str(a);
                }
            }
            match &p.response_format {
                None => e.tag(0),
                Some(brisk_core::ResponseFormat::JsonObject) => e.tag(1),
                Some(brisk_core::ResponseFormat::JsonSchema(schema)) => {
                    e.tag(2);
                    e.str(schema);
                }
            }
            // Tools change the prompt and the grammar; a bias changes any
            // decoding.
            e.u64(p.tools.len() as u64);
            for t in &p.tools {
                e.str(&t.name);
                e.opt_str(t.description.as_deref());
                e.str(&t.parameters);
            }
            match &p.tool_choice {
                brisk_core::ToolChoice::Auto => e.tag(0),
                brisk_core::ToolChoice::None => e.tag(1),
                brisk_core::ToolChoice::Required => e.tag(2),
                brisk_core::ToolChoice::Function(f) => {
                    e.tag(3);
                    e.str(f);
                }
            }
            e.tag(u8::from(p.parallel_tool_calls));
            e.u64(p.logit_bias.len() as u64);
            for &(token, bias) in &p.logit_bias {
                e.u64(u64::from(token as u32));
                e.f64(f64::from(bias));
            }
            // Greedy decoding ignores the sampling knobs; leaving them out
            // lets `temperature=0, seed=1` hit what `temperature=0` stored.
            if !greedy {
                e.f64(p.temperature);
                e.f64(p.top_p.unwrap_or(1.0));
                e.u64(p.top_k.unwrap_or(0) as u64);
                e.u64(p.seed.unwrap_or(0));
            }
        }
        Request::Transcribe(t) => {
            // Whisper samples at a temperature > 0 and has no seed here.
            if !deterministic(request) {
                return None;
            }
            e.tag(3);
            e.samples(&t.audio);
            e.opt_str(t.language.as_deref());
            e.opt_str(t.prompt.as_deref());
            e.tag(u8::from(t.translate));
            e.tag(u8::from(t.word_timestamps));
            e.u64(t.beam_size.map_or(0, |b| b as u64));
        }
        Request::Vad(v) => {
            e.tag(4);
            e.samples(&v.audio);
            e.f64(f64::from(v.params.threshold));
            e.u64(u64::from(v.params.min_silence_ms));
            e.u64(u64::from(v.params.min_speech_ms));
            e.u64(u64::from(v.params.speech_pad_ms));
        }
        Request::Speak(t) => {
            e.tag(5);
            e.str(&t.text);
            e.opt_str(t.voice.as_deref());
            e.f64(f64::from(t.speed));
        }
        Request::Rerank {
            query,
            documents,
            truncate,
        } => {
            e.tag(7);
            e.tag(u8::from(*truncate));
            e.str(query);
            e.u64(documents.len() as u64);
            for d in documents {
                e.str(d);
            }
        }
        Request::Translate { texts } => {
            e.tag(8);
            e.u64(texts.len() as u64);
            for t in texts {
                e.str(t);
            }
        }
        Request::Ocr(o) => {
            e.tag(6);
            e.u64(u64::from(o.width));
            e.u64(u64::from(o.height));
            e.u64(o.rgb.len() as u64);
            e.0.update(&o.rgb);
        }
    }
    Some(e.finish())
}

/// Whether a request's answer is determined by its inputs (the condition
/// for [`cache_key`] to return a key).
pub fn deterministic(request: &Request) -> bool {
    match request {
        Request::Embed { .. } => true,
        Request::Generate(g) => g.params.temperature <= 0.0 || g.params.seed.is_some(),
        Request::Transcribe(t) => t.temperature <= 0.0,
        // Piper samples noise, but one rendering of a sentence is as good as
        // another: caching repeated phrases is what the seeds' lru_cache did.
        // Translation is greedy.
        Request::Vad(_)
        | Request::Speak(_)
        | Request::Ocr(_)
        | Request::Rerank { .. }
        | Request::Translate { .. } => true,
    }
}

/// Whether a computed response may be stored: a generation cut short
/// because its client left is not the answer to the request.
pub fn storable(response: &Response) -> bool {
    match response {
        Response::Generate(g) => g.finish_reason != brisk_core::FinishReason::Cancelled,
        Response::Embed { .. }
        | Response::Transcribe(_)
        | Response::Vad(_)
        | Response::Speech(_)
        | Response::Ocr(_)
        | Response::Rerank { .. }
        | Response::Translate { .. }
        | Response::AudioAnalysis(_) => true,
    }
}

/// A content fingerprint of a model: backend, options, and for every file
/// its relative name, size and a hash of its first and last MiB. Content,
/// not modification times, so instances with separately copied files agree
/// (the shared Redis tier depends on that), while any re-export of weights
/// (which changes sizes, headers or tails) gets a new revision.
pub fn revision(source: &ModelSource) -> String {
    let mut e = Encoder::new();
    e.str(&source.backend);
    for (k, v) in &source.options {
        e.str(k);
        e.str(v);
    }
    let mut files = Vec::new();
    collect_files(&source.path, &source.path, 0, &mut files);
    files.sort();
    for (rel, path) in files {
        e.str(&rel);
        hash_file_ends(&mut e, &path);
    }
    let key = e.finish();
    key.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn collect_files(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    if dir.is_file() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, dir.to_path_buf()));
        return;
    }
    // Model folders are shallow; the bound keeps a misconfigured source
    // (say, `/`) from walking the whole disk.
    if depth > 3 || out.len() > 1000 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, depth + 1, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((rel, path));
        }
    }
}

fn hash_file_ends(e: &mut Encoder, path: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    const SPAN: u64 = 1 << 20;
    let Ok(mut f) = std::fs::File::open(path) else {
        e.tag(0);
        return;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    e.u64(len);
    let mut buf = Vec::new();
    let _ = (&mut f).take(SPAN).read_to_end(&mut buf);
    e.0.update(&buf);
    if len > 2 * SPAN && f.seek(SeekFrom::Start(len - SPAN)).is_ok() {
        buf.clear();
        let _ = f.take(SPAN).read_to_end(&mut buf);
        e.0.update(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brisk_core::{ChatMessage, GenerateParams, GenerateRequest, TranscribeRequest};

    fn embed(texts: &[&str]) -> Request {
        Request::Embed {
            texts: texts.iter().map(|s| s.to_string()).collect(),
            truncate: false,
        }
    }

    fn chat(text: &str, params: GenerateParams) -> Request {
        Request::Generate(GenerateRequest {
            prompt: Prompt::Chat(vec![ChatMessage::new("user".into(), text.into())]),
            params,
            sink: None,
        })
    }

    #[test]
    fn same_request_same_key_and_inputs_matter() {
        let a = cache_key("m", "r", &embed(&["a", "b"])).expect("cacheable");
        assert_eq!(Some(a), cache_key("m", "r", &embed(&["a", "b"])));
        assert_ne!(Some(a), cache_key("m", "r", &embed(&["ab"])));
        assert_ne!(Some(a), cache_key("m", "r", &embed(&["a", "b", ""])));
        assert_ne!(Some(a), cache_key("other", "r", &embed(&["a", "b"])));
        assert_ne!(Some(a), cache_key("m", "r2", &embed(&["a", "b"])));
        let truncated = Request::Embed {
            texts: vec!["a".into(), "b".into()],
            truncate: true,
        };
        assert_ne!(Some(a), cache_key("m", "r", &truncated));
    }

    #[test]
    fn sampling_without_seed_is_not_cached() {
        let sampled = GenerateParams {
            temperature: 0.7,
            ..Default::default()
        };
        assert!(cache_key("m", "r", &chat("hi", sampled.clone())).is_none());
        let seeded = GenerateParams {
            seed: Some(3),
            ..sampled
        };
        let k = cache_key("m", "r", &chat("hi", seeded.clone())).expect("seeded is cacheable");
        let other_seed = GenerateParams {
            seed: Some(4),
            ..seeded
        };
        assert_ne!(Some(k), cache_key("m", "r", &chat("hi", other_seed)));
        let greedy = cache_key("m", "r", &chat("hi", GenerateParams::default()));
        let greedy_seeded = GenerateParams {
            seed: Some(9),
            ..Default::default()
        };
        assert_eq!(greedy, cache_key("m", "r", &chat("hi", greedy_seeded)));
        let longer = GenerateParams {
            max_tokens: 7,
            ..Default::default()
        };
        assert_ne!(greedy, cache_key("m", "r", &chat("hi", longer)));
    }

    #[test]
    fn transcription_keys_cover_audio_and_options() {
        let t = |audio: Vec<f32>, temperature: f32, translate: bool| {
            Request::Transcribe(TranscribeRequest {
                audio,
                language: None,
                prompt: None,
                temperature,
                translate,
                word_timestamps: false,
                beam_size: None,
            })
        };
        let a = cache_key("w", "r", &t(vec![0.1; 100], 0.0, false));
        assert!(a.is_some());
        assert_eq!(a, cache_key("w", "r", &t(vec![0.1; 100], 0.0, false)));
        assert_ne!(a, cache_key("w", "r", &t(vec![0.1; 101], 0.0, false)));
        assert_ne!(a, cache_key("w", "r", &t(vec![0.1; 100], 0.0, true)));
        assert!(cache_key("w", "r", &t(vec![0.1; 100], 0.4, false)).is_none());
        let with = |word_timestamps: bool, beam_size: Option<usize>| {
            let Request::Transcribe(mut r) = t(vec![0.1; 100], 0.0, false) else {
                unreachable!()
            };
            r.word_timestamps = word_timestamps;
            r.beam_size = beam_size;
            cache_key("w", "r", &Request::Transcribe(r))
        };
        assert_eq!(a, with(false, None));
        assert_ne!(a, with(true, None));
        assert_ne!(a, with(false, Some(5)));
    }

    #[test]
    fn revision_follows_file_content() {
        let dir = std::env::temp_dir().join(format!("brisk-rev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("w.bin"), b"weights-1").expect("write");
        let src = ModelSource {
            backend: "sim".into(),
            path: dir.clone(),
            options: Default::default(),
            adapters: Default::default(),
        };
        let r1 = revision(&src);
        assert_eq!(r1, revision(&src), "stable");
        std::fs::write(dir.join("w.bin"), b"weights-2").expect("write");
        assert_ne!(r1, revision(&src), "new content, new revision");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
