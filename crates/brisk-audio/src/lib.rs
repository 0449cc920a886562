//! Music and audio analysis for `POST /v1/audio/analysis`, below the HTTP
//! edge: decode with symphonia packet by packet and feed every feature
//! extractor as the audio streams by, so memory stays bounded whatever the
//! file's length (only the onset envelope, 4 bytes per 23 ms, and the beat
//! list grow with it).
//!
//! The frame features follow librosa's defaults (22 050 Hz mono, 2048-point
//! STFT, hop 512, centred frames with zero padding) so the two can be
//! compared number for number; `scripts/analysis-reference` does that.

mod danceability;
mod decode;
mod error;
mod features;
mod frames;
mod key;
mod resample;
mod tempo;

pub use decode::{analyze, analyze_file, AnalyzeOptions};
pub use error::AnalysisError;
pub use features::{Feature, FeatureSet};

use serde::{Deserialize, Serialize};

/// Everything computed for one file. A feature that was not asked for is
/// `None` (omitted from JSON); one that cannot be computed from the audio
/// (e.g. the tempo of a clip shorter than 1 s, the loudness of silence) is
/// `None` as well, never an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Seconds of audio decoded.
    pub duration: f64,
    /// The file's own sample rate, Hz.
    pub sample_rate: u32,
    pub channels: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness: Option<Loudness>,
    /// Requested but not computable (clip shorter than 1 s, no onsets):
    /// `Some(None)`, serialized as `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tempo: Option<Option<Tempo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Option<Key>>,
    /// Mean of the frame RMS (2048-sample frames, hop 512, at 22 050 Hz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral: Option<Spectral>,
    /// Mean zero-crossing rate per sample, over frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_crossing_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfcc: Option<Mfcc>,
    /// Mean of the 12 chroma bins (C, C#, ... B), each frame scaled so its
    /// largest bin is 1 (librosa `chroma_stft`, tuning 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chroma: Option<Vec<f64>>,
    /// Essentia's `Danceability` (detrended fluctuation analysis of the
    /// 10 ms loudness; about 0 to 3, higher for a strong regular pulse).
    /// `null` for audio under 1 s and for silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub danceability: Option<Option<f64>>,
}

/// EBU R128 / ITU BS.1770-4 loudness (libebur128's algorithm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loudness {
    /// Gated integrated loudness, LUFS; `null` for silence.
    pub integrated_lufs: Option<f64>,
    /// Loudness range, LU.
    pub loudness_range_lu: f64,
    /// Largest true (4× oversampled) peak over the channels, dBTP; `null` for silence.
    pub true_peak_dbtp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tempo {
    pub bpm: f64,
    /// The averaged, normalized onset autocorrelation at the chosen beat
    /// period, in [0, 1]: near 1 for a steady pulse, near 0 for none.
    pub confidence: f64,
    /// Beat times, seconds (librosa's dynamic-programming beat tracker).
    pub beats: Vec<f64>,
    /// Other likely tempi (usually half and double), strongest first.
    pub alternatives: Vec<TempoCandidate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TempoCandidate {
    pub bpm: f64,
    /// Mean normalized onset autocorrelation at this period, in [0, 1].
    pub strength: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    /// Tonic: "C", "C#", ... "B".
    pub key: String,
    /// "major" or "minor".
    pub scale: String,
    /// Pearson correlation of the chroma means with the best
    /// Krumhansl-Kessler key profile, in [-1, 1].
    pub strength: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectral {
    /// Mean spectral centroid, Hz.
    pub centroid_hz: f64,
    /// Mean frequency below which 85% of the magnitude lies, Hz.
    pub rolloff_hz: f64,
    /// Mean spectral flatness (geometric over arithmetic mean of power), [0, 1].
    pub flatness: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mfcc {
    /// Per-coefficient mean over frames (13 coefficients, 128 mel bands).
    pub mean: Vec<f64>,
    /// Per-coefficient population variance over frames.
    pub var: Vec<f64>,
}
