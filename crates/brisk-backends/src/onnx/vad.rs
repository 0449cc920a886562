//! Voice activity detection with silero VAD (v5/v6 ONNX graph).
//!
//! The model scores 32 ms windows (512 samples at 16 kHz, each preceded by
//! the previous window's last 64 samples as context) and carries a
//! recurrent state across windows. [`speech_segments`] turns the scores into
//! segments the way silero's `get_speech_timestamps` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use brisk_core::{
    Backend, BackendError, Request, Response, SpeechSegment, Task, VadParams, VadResult,
};
use ort::session::Session;
use ort::value::Tensor;

use super::{ort_err, runtime};

pub const SAMPLE_RATE: usize = 16_000;
/// Samples scored at a time (silero's fixed window at 16 kHz).
pub const WINDOW: usize = 512;
const CONTEXT: usize = 64;
const STATE_LEN: usize = 2 * 128;
const MODEL_FILE: &str = "silero_vad.onnx";

pub fn looks_like_silero(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file()
}

/// What silero carries from one window to the next: its recurrent state
/// and the input, whose last 64 samples are the next window's context.
struct Recurrent {
    state: Vec<f32>,
    input: Vec<f32>,
}

impl Default for Recurrent {
    fn default() -> Self {
        Self {
            state: vec![0f32; STATE_LEN],
            input: vec![0f32; CONTEXT + WINDOW],
        }
    }
}

/// Silero on live audio, window by window: the state a whole-file
/// [`SileroVad::probabilities`] keeps in a loop is kept here between calls,
/// so a live stream scores exactly as the same audio sent at once.
pub struct SileroStream {
    vad: SileroVad,
    rec: Recurrent,
}

impl SileroStream {
    pub fn new(vad: SileroVad) -> Self {
        Self {
            vad,
            rec: Recurrent::default(),
        }
    }

    /// Speech probability of the next window of at most [`WINDOW`] samples.
    pub fn next(&mut self, window: &[f32]) -> Result<f32, BackendError> {
        if window.len() > WINDOW {
            return Err(BackendError::InvalidInput(format!(
                "silero scores {WINDOW} samples at a time, got {}",
                window.len()
            )));
        }
        self.vad.window(&mut self.rec, window)
    }
}

pub struct SileroVad {
    session: Session,
    bytes: u64,
}

impl SileroVad {
    pub fn load(dir: &Path, options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let file: PathBuf = dir.join(MODEL_FILE);
        let env = runtime::environment(dir, options)?;
        // One thread: the graph is tiny and sequential, more only adds overhead.
        let threads = runtime::threads_option(options)?.or(Some(1));
        let session = runtime::session(&env, &file, threads)?;
        for name in ["input", "state", "sr"] {
            if !session.inputs().iter().any(|i| i.name() == name) {
                return Err(BackendError::InvalidModel(format!(
                    "{}: no input '{name}'; expected silero VAD v5 or later",
                    file.display()
                )));
            }
        }
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        Ok(Self { session, bytes })
    }

    /// Speech probability of every 512-sample window (the last one zero-padded).
    pub fn probabilities(&mut self, audio: &[f32]) -> Result<Vec<f32>, BackendError> {
        let mut rec = Recurrent::default();
        let mut probs = Vec::with_capacity(audio.len().div_ceil(WINDOW));
        for chunk in audio.chunks(WINDOW) {
            probs.push(self.window(&mut rec, chunk)?);
        }
        Ok(probs)
    }

    /// Scores one window of at most [`WINDOW`] samples (zero-padded),
    /// carrying `rec` from the previous window.
    fn window(&mut self, rec: &mut Recurrent, chunk: &[f32]) -> Result<f32, BackendError> {
        let Recurrent { state, input } = rec;
        // Context = last 64 samples of the previous window's input.
        input.copy_within(WINDOW.., 0);
        input[CONTEXT..CONTEXT + chunk.len()].copy_from_slice(chunk);
        input[CONTEXT + chunk.len()..].fill(0.0);
        let x = Tensor::from_array(([1usize, CONTEXT + WINDOW], input.clone()))
            .map_err(ort_err("vad input"))?;
        let s =
            Tensor::from_array(([2usize, 1, 128], state.clone())).map_err(ort_err("vad state"))?;
        let sr = Tensor::from_array(((), vec![SAMPLE_RATE as i64]))
            .map_err(ort_err("vad sample rate"))?;
        let out = self
            .session
            .run(ort::inputs!["input" => x, "state" => s, "sr" => sr])
            .map_err(ort_err("vad run"))?;
        let (_, p) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("vad output"))?;
        let (_, st) = out[1]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("vad state output"))?;
        if st.len() != STATE_LEN || p.is_empty() {
            return Err(BackendError::Inference(format!(
                "unexpected silero output sizes {} and {}",
                p.len(),
                st.len()
            )));
        }
        state.copy_from_slice(st);
        Ok(p[0])
    }

    pub fn detect(&mut self, audio: &[f32], params: &VadParams) -> Result<VadResult, BackendError> {
        validate(params)?;
        let probs = self.probabilities(audio)?;
        Ok(VadResult {
            duration: audio.len() as f64 / SAMPLE_RATE as f64,
            segments: speech_segments(&probs, audio.len(), params),
        })
    }
}

fn validate(p: &VadParams) -> Result<(), BackendError> {
    if !(p.threshold > 0.0 && p.threshold < 1.0) {
        return Err(BackendError::InvalidInput(format!(
            "threshold must be in (0, 1), got {}",
            p.threshold
        )));
    }
    Ok(())
}

/// Speech segments from per-window probabilities over `n_samples` of
/// 16 kHz audio, following silero's `get_speech_timestamps`: speech starts
/// at a window scoring `threshold`, ends after `min_silence_ms` below
/// `threshold - 0.15`, is dropped when shorter than `min_speech_ms`, and is
/// padded by `speech_pad_ms` (half the gap when neighbours are closer).
pub fn speech_segments(probs: &[f32], n_samples: usize, p: &VadParams) -> Vec<SpeechSegment> {
    let ms = |v: u32| SAMPLE_RATE * v as usize / 1000;
    let (min_speech, min_silence, pad) = (
        ms(p.min_speech_ms),
        ms(p.min_silence_ms),
        ms(p.speech_pad_ms),
    );
    let neg_threshold = (p.threshold - 0.15).max(0.01);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut temp_end = 0usize;
    for (i, &prob) in probs.iter().enumerate() {
        let cur = i * WINDOW;
        if prob >= p.threshold {
            temp_end = 0;
            if start.is_none() {
                start = Some(cur);
            }
            continue;
        }
        let Some(s) = start else { continue };
        if prob < neg_threshold {
            if temp_end == 0 {
                temp_end = cur;
            }
            if cur - temp_end < min_silence {
                continue;
            }
            if temp_end - s > min_speech {
                spans.push((s, temp_end));
            }
            start = None;
            temp_end = 0;
        }
    }
    if let Some(s) = start {
        if n_samples.saturating_sub(s) > min_speech {
            spans.push((s, n_samples));
        }
    }
    // Padding, splitting a too-short gap between neighbours.
    let n = spans.len();
    for i in 0..n {
        if i == 0 {
            spans[0].0 = spans[0].0.saturating_sub(pad);
        }
        if i + 1 < n {
            let gap = spans[i + 1].0.saturating_sub(spans[i].1);
            if gap < 2 * pad {
                spans[i].1 += gap / 2;
                spans[i + 1].0 = spans[i + 1].0.saturating_sub(gap / 2);
            } else {
                spans[i].1 = (spans[i].1 + pad).min(n_samples);
                spans[i + 1].0 = spans[i + 1].0.saturating_sub(pad);
            }
        } else {
            spans[i].1 = (spans[i].1 + pad).min(n_samples);
        }
    }
    spans
        .into_iter()
        .map(|(s, e)| SpeechSegment {
            start: s as f64 / SAMPLE_RATE as f64,
            end: e as f64 / SAMPLE_RATE as f64,
        })
        .collect()
}

impl Backend for SileroVad {
    fn task(&self) -> Task {
        Task::Vad
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        batch
            .into_iter()
            .map(|r| match r {
                Request::Vad(v) => self.detect(&v.audio, &v.params).map(Response::Vad),
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> VadParams {
        VadParams::default()
    }

    /// `n` windows of probability `p`.
    fn run(n: usize, p: f32) -> Vec<f32> {
        vec![p; n]
    }

    #[test]
    fn silence_has_no_segments() {
        assert!(speech_segments(&run(100, 0.02), 100 * WINDOW, &params()).is_empty());
    }

    #[test]
    fn speech_island_is_found_and_padded() {
        // 1.6 s of silence, 1.6 s of speech, 1.6 s of silence.
        let probs = [run(50, 0.05), run(50, 0.9), run(50, 0.05)].concat();
        let segs = speech_segments(&probs, 150 * WINDOW, &params());
        assert_eq!(segs.len(), 1, "{segs:?}");
        let (s, e) = (segs[0].start, segs[0].end);
        assert!((s - (50.0 * 512.0 - 480.0) / 16000.0).abs() < 1e-9, "{s}");
        assert!((e - (100.0 * 512.0 + 480.0) / 16000.0).abs() < 1e-9, "{e}");
    }

    #[test]
    fn short_pause_does_not_split_and_long_pause_does() {
        // 2 windows (64 ms) of silence < 100 ms: one segment.
        let probs = [run(20, 0.9), run(2, 0.05), run(20, 0.9), run(20, 0.05)].concat();
        assert_eq!(speech_segments(&probs, 62 * WINDOW, &params()).len(), 1);
        // 10 windows (320 ms) of silence: two segments.
        let probs = [run(20, 0.9), run(10, 0.05), run(20, 0.9), run(20, 0.05)].concat();
        assert_eq!(speech_segments(&probs, 70 * WINDOW, &params()).len(), 2);
    }

    #[test]
    fn blips_shorter_than_min_speech_are_dropped() {
        let probs = [run(20, 0.05), run(3, 0.9), run(20, 0.05)].concat();
        assert!(speech_segments(&probs, 43 * WINDOW, &params()).is_empty());
    }

    #[test]
    fn hysteresis_keeps_speech_between_thresholds() {
        // 0.4 is below threshold 0.5 but above 0.35: speech continues.
        let probs = [run(20, 0.9), run(30, 0.4), run(20, 0.9), run(20, 0.05)].concat();
        let segs = speech_segments(&probs, 90 * WINDOW, &params());
        assert_eq!(segs.len(), 1, "{segs:?}");
    }

    #[test]
    fn speech_until_the_end_is_closed_at_the_end() {
        let probs = [run(20, 0.05), run(20, 0.9)].concat();
        let segs = speech_segments(&probs, 40 * WINDOW, &params());
        assert_eq!(segs.len(), 1);
        assert!((segs[0].end - 40.0 * 512.0 / 16000.0).abs() < 1e-9);
    }
}
