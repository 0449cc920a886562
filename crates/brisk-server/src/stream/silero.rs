//! The silero VAD model as the live stream's voice detector.
//!
//! Each session gets its own [`SileroStream`]: silero carries a recurrent
//! state from one 32 ms window to the next, so two sessions cannot share
//! one. Loading it is an ONNX Runtime session over a 2 MB graph (the
//! runtime library itself is loaded once per process).

use brisk_backends::onnx::vad::{SileroStream, SileroVad, WINDOW};
use brisk_backends::onnx::VAD;
use brisk_engine::speech::energy_vad::VoiceDetector;

use crate::AppState;

struct Silero {
    stream: SileroStream,
    threshold: f32,
    model: String,
}

impl VoiceDetector for Silero {
    fn frame_len(&self) -> usize {
        WINDOW
    }

    fn is_speech(&mut self, frame: &[f32]) -> bool {
        match self.stream.next(frame) {
            Ok(p) => p >= self.threshold,
            Err(e) => {
                // A window that cannot be scored counts as silence: the
                // utterance ends rather than the session.
                tracing::warn!(model = %self.model, error = %e, "silero failed on a window");
                false
            }
        }
    }
}

/// Silero for one session: the model named `want`, or with `auto` the
/// first silero model by name. `None` (the caller falls back to the energy
/// detector) when there is none or it does not load.
pub fn detector(state: &AppState, want: &str) -> Option<(Box<dyn VoiceDetector>, String)> {
    let specs = match state.config.model_specs() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "stream: cannot list models for the VAD");
            return None;
        }
    };
    let spec = specs
        .into_iter()
        .filter(|s| s.source.backend == VAD && (want == "auto" || s.name == want))
        .min_by(|a, b| a.name.cmp(&b.name));
    let Some(spec) = spec else {
        if want != "auto" {
            tracing::warn!(
                model = want,
                "stream: [stream] vad names no silero model; using the energy detector"
            );
        }
        return None;
    };
    match SileroVad::load(&spec.source.path, &spec.source.options) {
        Ok(vad) => Some((
            Box::new(Silero {
                stream: SileroStream::new(vad),
                threshold: state.config.stream.vad_threshold,
                model: spec.name.clone(),
            }),
            spec.name,
        )),
        Err(e) => {
            tracing::warn!(model = %spec.name, error = %e, "stream: silero did not load; using the energy detector");
            None
        }
    }
}
