//! OpenAI's `chunking_strategy` for transcription: cut long audio at the
//! silences a VAD model finds instead of at fixed 30 s marks, transcribe the
//! pieces (they queue and batch like any requests) and stitch the results.
//!
//! Accepted values: `auto`, or a JSON object
//! `{"type": "server_vad", "threshold", "silence_duration_ms", "prefix_padding_ms"}`
//! (OpenAI's names; all but `type` optional). The VAD model is the first
//! model serving the `vad` task, by name.

use brisk_core::{Segment, SpeechSegment, Transcript, VadParams};
use serde::Deserialize;

/// Whisper's window: pieces up to this long are transcribed in one window.
pub const MAX_CHUNK_S: f64 = 30.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerVad {
    r#type: String,
    threshold: Option<f32>,
    silence_duration_ms: Option<u32>,
    prefix_padding_ms: Option<u32>,
}

/// The VAD parameters a `chunking_strategy` field asks for; the error says
/// what is wrong with the field.
pub fn parse(value: &str) -> Result<VadParams, String> {
    let value = value.trim();
    if value == "auto" {
        return Ok(VadParams::default());
    }
    let s: ServerVad = serde_json::from_str(value)
        .map_err(|e| format!("chunking_strategy must be \"auto\" or a server_vad object: {e}"))?;
    if s.r#type != "server_vad" {
        return Err(format!(
            "chunking_strategy type must be server_vad, got '{}'",
            s.r#type
        ));
    }
    let mut p = VadParams::default();
    if let Some(t) = s.threshold {
        if !(t > 0.0 && t < 1.0) {
            return Err(format!("threshold must be in (0, 1), got {t}"));
        }
        p.threshold = t;
    }
    if let Some(ms) = s.silence_duration_ms {
        p.min_silence_ms = ms;
    }
    if let Some(ms) = s.prefix_padding_ms {
        p.speech_pad_ms = ms;
    }
    Ok(p)
}

/// Groups speech segments into pieces of at most [`MAX_CHUNK_S`] (a single
/// longer segment stays whole: Whisper then windows it itself). Each piece is
/// `(start, end)` in seconds; silence between pieces is never transcribed.
pub fn plan(segments: &[SpeechSegment]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for s in segments {
        match out.last_mut() {
            Some(last) if s.end - last.0 <= MAX_CHUNK_S => last.1 = s.end,
            _ => out.push((s.start, s.end)),
        }
    }
    out
}

/// One transcript from the pieces' transcripts, times shifted to the
/// original audio.
pub fn stitch(pieces: Vec<((f64, f64), Transcript)>, duration: f64) -> Transcript {
    let mut text = Vec::new();
    let mut segments = Vec::new();
    let mut words = Vec::new();
    let mut language = None;
    for ((start, _), t) in pieces {
        language = language.or(t.language);
        let piece = t.text.trim();
        if !piece.is_empty() {
            text.push(piece.to_string());
        }
        for s in t.segments {
            segments.push(Segment {
                id: segments.len(),
                start: start + s.start,
                end: start + s.end,
                text: s.text,
            });
        }
        words.extend(t.words.into_iter().map(|w| brisk_core::Word {
            start: start + w.start,
            end: start + w.end,
            ..w
        }));
    }
    Transcript {
        text: text.join(" "),
        language,
        duration,
        segments,
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, end: f64) -> SpeechSegment {
        SpeechSegment { start, end }
    }

    #[test]
    fn parse_auto_and_server_vad() {
        assert_eq!(parse("auto").expect("auto"), VadParams::default());
        let p = parse(r#"{"type":"server_vad","threshold":0.6,"silence_duration_ms":500}"#)
            .expect("server_vad");
        assert_eq!((p.threshold, p.min_silence_ms), (0.6, 500));
        assert!(parse(r#"{"type":"semantic"}"#).is_err());
        assert!(parse(r#"{"type":"server_vad","threshold":3}"#).is_err());
        assert!(parse("sometimes").is_err());
    }

    #[test]
    fn plan_groups_up_to_thirty_seconds() {
        let segs = [
            seg(1.0, 10.0),
            seg(12.0, 25.0),
            seg(26.0, 40.0),
            seg(41.0, 120.0),
        ];
        assert_eq!(plan(&segs), vec![(1.0, 25.0), (26.0, 40.0), (41.0, 120.0)]);
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn stitch_shifts_times_and_joins_text() {
        let t = |text: &str, end: f64| Transcript {
            text: text.into(),
            language: Some("en".into()),
            duration: end,
            segments: vec![Segment {
                id: 0,
                start: 0.5,
                end,
                text: text.into(),
            }],
            words: vec![brisk_core::Word {
                word: text.into(),
                start: 0.5,
                end,
                probability: 0.9,
            }],
        };
        let out = stitch(
            vec![
                ((2.0, 5.0), t(" Ever tried.", 3.0)),
                ((40.0, 44.0), t(" Fail better.", 4.0)),
            ],
            60.0,
        );
        assert_eq!(out.text, "Ever tried. Fail better.");
        assert_eq!(out.duration, 60.0);
        assert_eq!(out.segments.len(), 2);
        assert_eq!(
            (
                out.segments[1].id,
                out.segments[1].start,
                out.segments[1].end
            ),
            (1, 40.5, 44.0)
        );
        let words: Vec<_> = out.words.iter().map(|w| (w.start, w.end)).collect();
        assert_eq!(words, vec![(2.5, 5.0), (40.5, 44.0)]);
    }
}
