//! Text to speech with a piper voice (VITS exported to ONNX).
//!
//! A voice folder holds `<name>.onnx` and `<name>.onnx.json` (sample rate,
//! espeak voice, inference scales and the phoneme → id map). Phonemes come
//! from the `espeak-ng` program, run as a separate process (it is GPL: brisk
//! does not link it), exactly as piper feeds its own models: IPA without
//! ties, one clause at a time, with the clause's punctuation appended.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use brisk_core::{Backend, BackendError, Request, Response, SpeakRequest, SpeechAudio, Task};
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use super::{ort_err, runtime};

const PAD: &str = "_";
const BOS: &str = "^";
const EOS: &str = "$";
/// Longest input accepted, in characters (OpenAI's limit for `input`).
pub const MAX_INPUT_CHARS: usize = 4096;

#[derive(Debug, Deserialize)]
struct VoiceConfig {
    audio: AudioConfig,
    espeak: EspeakConfig,
    #[serde(default)]
    inference: InferenceConfig,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: usize,
    #[serde(default)]
    speaker_id_map: HashMap<String, i64>,
}

#[derive(Debug, Deserialize)]
struct AudioConfig {
    sample_rate: u32,
}

#[derive(Debug, Deserialize)]
struct EspeakConfig {
    voice: String,
}

#[derive(Debug, Deserialize)]
struct InferenceConfig {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// The voice's `.onnx` file that has a `.onnx.json` next to it.
fn voice_file(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx") && json_of(p).is_file())
        .collect();
    found.sort();
    found.into_iter().next()
}

fn json_of(onnx: &Path) -> PathBuf {
    let mut s = onnx.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

pub fn looks_like_piper(dir: &Path) -> bool {
    let Some(file) = voice_file(dir) else {
        return false;
    };
    std::fs::read_to_string(json_of(&file))
        .map(|t| t.contains("phoneme_id_map"))
        .unwrap_or(false)
}

pub struct PiperVoice {
    session: Session,
    config: VoiceConfig,
    espeak: PathBuf,
    has_sid: bool,
    bytes: u64,
}

impl PiperVoice {
    /// Options: `espeak` (the espeak-ng program, default `espeak-ng` on
    /// PATH), `threads`, `onnxruntime` (see [`runtime`]).
    pub fn load(dir: &Path, options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let file = voice_file(dir).ok_or_else(|| {
            BackendError::NotFound(format!(
                "{}: no <voice>.onnx with a <voice>.onnx.json",
                dir.display()
            ))
        })?;
        let json = std::fs::read_to_string(json_of(&file))
            .map_err(|e| BackendError::NotFound(format!("{}: {e}", json_of(&file).display())))?;
        let config: VoiceConfig = serde_json::from_str(&json).map_err(|e| {
            BackendError::InvalidModel(format!("{}: {e}", json_of(&file).display()))
        })?;
        for sym in [PAD, BOS, EOS] {
            if !config.phoneme_id_map.contains_key(sym) {
                return Err(BackendError::InvalidModel(format!(
                    "phoneme_id_map has no '{sym}'"
                )));
            }
        }
        let espeak = PathBuf::from(options.get("espeak").map_or("espeak-ng", String::as_str));
        // Fail at load, not at the first request, when espeak-ng is missing.
        phonemize(&espeak, &config.espeak.voice, "test")?;
        let env = runtime::environment(dir, options)?;
        let session = runtime::session(&env, &file, runtime::threads_option(options)?)?;
        let has_sid = session.inputs().iter().any(|i| i.name() == "sid");
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            session,
            config,
            espeak,
            has_sid,
            bytes,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.config.audio.sample_rate
    }

    pub fn speak(&mut self, req: &SpeakRequest) -> Result<SpeechAudio, BackendError> {
        let text = req.text.trim();
        if text.is_empty() {
            return Err(BackendError::InvalidInput(
                "'input' must contain text".into(),
            ));
        }
        if text.chars().count() > MAX_INPUT_CHARS {
            return Err(BackendError::InvalidInput(format!(
                "'input' is longer than {MAX_INPUT_CHARS} characters"
            )));
        }
        if !(0.25..=4.0).contains(&req.speed) {
            return Err(BackendError::InvalidInput(format!(
                "speed must be between 0.25 and 4.0, got {}",
                req.speed
            )));
        }
        let sid = self.speaker_id(req.voice.as_deref())?;
        let mut samples = Vec::new();
        for sentence in sentences(text) {
            let mut phonemes = String::new();
            for (clause, punct) in sentence {
                let ipa = phonemize(&self.espeak, &self.config.espeak.voice, &clause)?;
                if ipa.is_empty() {
                    continue;
                }
                if !phonemes.is_empty() {
                    phonemes.push(' ');
                }
                phonemes.push_str(&ipa);
                if let Some(p) = punct {
                    phonemes.push(p);
                }
            }
            if phonemes.is_empty() {
                continue;
            }
            let ids = self.phoneme_ids(&phonemes);
            samples.extend(self.synthesize(&ids, req.speed, sid)?);
        }
        if samples.is_empty() {
            return Err(BackendError::InvalidInput(
                "'input' has nothing pronounceable".into(),
            ));
        }
        Ok(SpeechAudio {
            sample_rate: self.sample_rate(),
            samples,
        })
    }

    fn speaker_id(&self, voice: Option<&str>) -> Result<Option<i64>, BackendError> {
        if !self.has_sid || self.config.num_speakers <= 1 {
            // Single-speaker voices accept any voice name: OpenAI clients
            // always send one (`alloy`, ...).
            return Ok(None);
        }
        Ok(Some(match voice {
            None => 0,
            Some(v) => match self.config.speaker_id_map.get(v) {
                Some(id) => *id,
                None => {
                    let mut known: Vec<&String> = self.config.speaker_id_map.keys().collect();
                    known.sort();
                    return Err(BackendError::InvalidInput(format!(
                        "unknown voice '{v}'; this model has: {}",
                        known
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            },
        }))
    }

    /// piper's mapping: BOS, then every known phoneme followed by PAD, then EOS.
    fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let map = &self.config.phoneme_id_map;
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend(&map[BOS]);
        ids.extend(&map[PAD]);
        let mut buf = [0u8; 4];
        for c in phonemes.chars() {
            if let Some(v) = map.get(c.encode_utf8(&mut buf) as &str) {
                ids.extend(v);
                ids.extend(&map[PAD]);
            }
        }
        ids.extend(&map[EOS]);
        ids
    }

    fn synthesize(
        &mut self,
        ids: &[i64],
        speed: f32,
        sid: Option<i64>,
    ) -> Result<Vec<f32>, BackendError> {
        let inf = &self.config.inference;
        let input = Tensor::from_array(([1usize, ids.len()], ids.to_vec()))
            .map_err(ort_err("tts input"))?;
        let lengths = Tensor::from_array(([1usize], vec![ids.len() as i64]))
            .map_err(ort_err("tts lengths"))?;
        let scales = Tensor::from_array((
            [3usize],
            vec![inf.noise_scale, inf.length_scale / speed, inf.noise_w],
        ))
        .map_err(ort_err("tts scales"))?;
        let out = match sid {
            Some(id) => {
                let sid = Tensor::from_array(([1usize], vec![id])).map_err(ort_err("tts sid"))?;
                self.session.run(ort::inputs![
                    "input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => sid
                ])
            }
            None => self.session.run(ort::inputs![
                "input" => input, "input_lengths" => lengths, "scales" => scales
            ]),
        }
        .map_err(ort_err("tts run"))?;
        let (_, audio) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("tts output"))?;
        Ok(audio.iter().map(|s| s.clamp(-1.0, 1.0)).collect())
    }
}

/// Splits text into sentences of clauses, each with the punctuation that
/// ended it (piper's model was trained with it: it shapes the prosody).
fn sentences(text: &str) -> Vec<Vec<(String, Option<char>)>> {
    let mut out = Vec::new();
    let mut sentence = Vec::new();
    let mut clause = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let ends = matches!(c, '.' | ',' | ';' | ':' | '!' | '?')
            && chars.peek().is_none_or(|n| n.is_whitespace());
        if !ends {
            clause.push(c);
            continue;
        }
        let body = clause.trim().to_string();
        clause.clear();
        if !body.is_empty() {
            sentence.push((body, Some(c)));
        }
        if matches!(c, '.' | '!' | '?') && !sentence.is_empty() {
            out.push(std::mem::take(&mut sentence));
        }
    }
    let body = clause.trim().to_string();
    if !body.is_empty() {
        sentence.push((body, None));
    }
    if !sentence.is_empty() {
        out.push(sentence);
    }
    out
}

/// IPA phonemes of `text` from espeak-ng (no ties, lines joined by spaces).
pub fn phonemize(espeak: &Path, voice: &str, text: &str) -> Result<String, BackendError> {
    let mut child = Command::new(espeak)
        .args(["-q", "--ipa", "-b", "1", "-v", voice])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            BackendError::NotFound(format!(
                "cannot run {} ({e}); install espeak-ng (scripts/install-deps)",
                espeak.display()
            ))
        })?;
    // Text goes through stdin: no argument parsing surprises (leading '-').
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()))
        .transpose();
    let out = child
        .wait_with_output()
        .map_err(|e| BackendError::Inference(format!("espeak-ng: {e}")))?;
    written.map_err(|e| BackendError::Inference(format!("espeak-ng stdin: {e}")))?;
    if !out.status.success() {
        return Err(BackendError::Inference(format!(
            "espeak-ng failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let ipa = String::from_utf8_lossy(&out.stdout);
    Ok(strip_language_flags(
        &ipa.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    ))
}

/// Drops espeak-ng's language switch marks such as `(en)` and `(fr)`: they
/// are not phonemes, and `(`/`)` are in piper's map as punctuation.
fn strip_language_flags(ipa: &str) -> String {
    let mut out = String::with_capacity(ipa.len());
    let mut rest = ipa;
    while let Some(open) = rest.find('(') {
        let after = &rest[open + 1..];
        match after.find(')') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-') =>
            {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Backend for PiperVoice {
    fn task(&self) -> Task {
        Task::Speech
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        batch
            .into_iter()
            .map(|r| match r {
                Request::Speak(s) => self.speak(&s).map(Response::Speech),
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_keep_clause_punctuation() {
        let s = sentences("Hello world, this is brisk. Is it? Yes 3.5 times");
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(
            s[0],
            vec![
                ("Hello world".to_string(), Some(',')),
                ("this is brisk".to_string(), Some('.'))
            ]
        );
        assert_eq!(s[1], vec![("Is it".to_string(), Some('?'))]);
        // A dot inside a number does not end a clause.
        assert_eq!(s[2], vec![("Yes 3.5 times".to_string(), None)]);
    }

    #[test]
    fn language_flags_are_dropped() {
        assert_eq!(
            strip_language_flags("də- (en)njˈuː jˈɔːk sˈɪti(fr) e"),
            "də- njˈuː jˈɔːk sˈɪti e"
        );
        assert_eq!(strip_language_flags("a (b c) ( d"), "a (b c) ( d");
    }

    #[test]
    fn espeak_gives_ipa() {
        let ipa = phonemize(Path::new("espeak-ng"), "en-us", "Ever tried.")
            .expect("espeak-ng installed (scripts/install-deps)");
        assert!(ipa.contains("ɛvɚ") && ipa.contains("tɹ"), "{ipa}");
    }
}
