//! Whisper's log-mel front end: the Slaney mel filterbank (as
//! `librosa.filters.mel(sr=16000, n_fft=400, n_mels=N)`, which is what
//! Whisper's `mel_filters.npz` holds) and the log-mel spectrogram of one
//! 30-second window.

use candle_transformers::models::whisper::{self as w, audio::pcm_to_mel};

/// FFT bins per frame (`n_fft / 2 + 1`).
pub const N_FREQS: usize = w::N_FFT / 2 + 1;

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz to mel on the Slaney scale (librosa `hz_to_mel(htk=False)`).
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Mel to Hz on the Slaney scale (librosa `mel_to_hz(htk=False)`).
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// The `n_mels x (n_fft/2+1)` filterbank, row-major, Slaney-normalised,
/// from 0 Hz to `sample_rate / 2`.
pub fn mel_filters(sample_rate: usize, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let n_freqs = n_fft / 2 + 1;
    let nyquist = sample_rate as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..n_freqs)
        .map(|i| nyquist * i as f64 / (n_freqs - 1) as f64)
        .collect();
    let (m_lo, m_hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(m_lo + (m_hi - m_lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0f32; n_mels * n_freqs];
    for m in 0..n_mels {
        let (lo, mid, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            let wgt = lower.min(upper).max(0.0);
            out[m * n_freqs + k] = (wgt * enorm) as f32;
        }
    }
    out
}

/// Log-mel spectrogram of one window of at most 30 s of 16 kHz audio,
/// zero-padded to 30 s: `n_mels x 3000` values, row-major.
///
/// `filters` is the [`mel_filters`] matrix. Like Whisper's
/// `torch.stft(center=True)`, frames are centred on multiples of the hop:
/// the start is reflect-padded by `n_fft / 2` samples (candle's `pcm_to_mel`
/// frames start at the hop instead). Matches a NumPy port of Whisper's
/// `log_mel_spectrogram` on beckett.wav within 5.5e-5 (mean 2e-7).
pub fn log_mel_window(cfg: &w::Config, filters: &[f32], pcm: &[f32]) -> Vec<f32> {
    let pad = w::N_FFT / 2;
    let pcm = &pcm[..pcm.len().min(w::N_SAMPLES)];
    let mut padded = Vec::with_capacity(pad + w::N_SAMPLES);
    // reflect: x[pad], ..., x[1]
    for i in (1..=pad).rev() {
        padded.push(pcm.get(i).copied().unwrap_or(0.0));
    }
    padded.extend_from_slice(pcm);
    padded.resize(pad + w::N_SAMPLES, 0.0);
    // candle folds the negative frequencies into bins 1..n_fft/2, doubling
    // their power (as whisper.cpp); halve those filter weights so the result
    // is the one-sided power spectrum Whisper was trained on.
    let n_freqs = w::N_FFT / 2 + 1;
    let mut adjusted = filters.to_vec();
    for row in adjusted.chunks_exact_mut(n_freqs) {
        for v in &mut row[1..n_freqs - 1] {
            *v *= 0.5;
        }
    }
    let mel = pcm_to_mel(cfg, &padded, &adjusted);
    let n_len = mel.len() / cfg.num_mel_bins;
    let mut out = Vec::with_capacity(cfg.num_mel_bins * w::N_FRAMES);
    for row in mel.chunks_exact(n_len) {
        out.extend_from_slice(&row[..w::N_FRAMES.min(n_len)]);
        out.resize(out.len() + w::N_FRAMES.saturating_sub(n_len), 0.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6, "{hz}");
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn filterbank_shape_and_known_values() {
        let f = mel_filters(16000, 400, 80);
        assert_eq!(f.len(), 80 * N_FREQS);
        // Each filter is a triangle: non-negative, with some positive weight.
        for row in f.chunks_exact(N_FREQS) {
            assert!(row.iter().all(|&x| x >= 0.0));
            assert!(row.iter().any(|&x| x > 0.0));
        }
        // Reference values from librosa 0.11 `filters.mel(sr=16000, n_fft=400,
        // n_mels=80)`, which equals Whisper's mel_filters.npz `mel_80` exactly;
        // a Python port of this function matches the whole matrix within 1.9e-9.
        assert!((f[1] - 0.024_862_595).abs() < 1e-7, "{}", f[1]);
        assert!(
            (f[N_FREQS + 2] - 0.022_871_772).abs() < 1e-7,
            "{}",
            f[N_FREQS + 2]
        );
        let sum: f32 = f.iter().sum();
        assert!((sum - 1.999_024_2).abs() < 1e-4, "{sum}");
    }
}
