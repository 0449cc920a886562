//! Whisper's log-mel features, computed as faster-whisper's
//! `FeatureExtractor` does, so that both feed CTranslate2 the same input:
//!
//! * the whole recording at once (not window by window): 160 zero samples
//!   are appended, the signal is reflect-padded by `n_fft / 2` on both sides
//!   (`center=True`), framed every 160 samples with a periodic Hann window,
//!   and the last frame is dropped;
//! * power spectrum → Slaney mel filterbank → `log10(max(x, 1e-10))`;
//! * the floor `max - 8` uses the maximum over the *whole recording*, then
//!   `(x + 4) / 4`.
//!
//! Windows of 3000 frames are then cut from this matrix and zero-padded in
//! the log-mel domain ([`Features::window`]), as faster-whisper's
//! `pad_or_trim` does (Whisper's reference pads the audio instead).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Frames in one 30-second window.
pub const N_FRAMES: usize = 3000;
const N_FREQS: usize = N_FFT / 2 + 1;

/// The Slaney-scale mel filterbank of faster-whisper's `get_mel_filters`
/// (equal to librosa's and to Whisper's `mel_filters.npz`), as
/// `(first nonzero bin, weights)` per mel band: each triangle covers a few
/// bins only, which makes the projection ~20x cheaper than a dense matmul.
#[derive(Debug, Clone)]
pub struct MelFilters {
    bands: Vec<(usize, Vec<f32>)>,
}

impl MelFilters {
    pub fn new(n_mels: usize) -> Self {
        let sr = SAMPLE_RATE as f64;
        let fftfreqs: Vec<f64> = (0..N_FREQS).map(|i| i as f64 * sr / N_FFT as f64).collect();
        let (min_mel, max_mel) = (0.0f64, 45.245_640_471_924_965f64);
        let f_sp = 200.0 / 3.0;
        let min_log_hz = 1000.0;
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        let freqs: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let m = min_mel + (max_mel - min_mel) * i as f64 / (n_mels + 1) as f64;
                if m >= min_log_mel {
                    min_log_hz * (logstep * (m - min_log_mel)).exp()
                } else {
                    f_sp * m
                }
            })
            .collect();
        let bands = (0..n_mels)
            .map(|m| {
                let enorm = 2.0 / (freqs[m + 2] - freqs[m]);
                let w: Vec<f32> = fftfreqs
                    .iter()
                    .map(|&f| {
                        let lower = -(freqs[m] - f) / (freqs[m + 1] - freqs[m]);
                        let upper = (freqs[m + 2] - f) / (freqs[m + 2] - freqs[m + 1]);
                        (lower.min(upper).max(0.0) * enorm) as f32
                    })
                    .collect();
                let first = w.iter().position(|&x| x != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|&x| x != 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].to_vec())
            })
            .collect();
        Self { bands }
    }

    pub fn n_mels(&self) -> usize {
        self.bands.len()
    }
}

/// Log-mel features of one recording: `n_mels` rows of `frames` values.
#[derive(Debug, Clone)]
pub struct Features {
    pub n_mels: usize,
    pub frames: usize,
    /// Row-major `n_mels x frames`.
    pub data: Vec<f32>,
}

impl Features {
    /// Frames that hold audio (faster-whisper's `content_frames`).
    pub fn content_frames(&self) -> usize {
        self.frames.saturating_sub(1)
    }

    /// Frames `[start, start + len)` zero-padded (or cut) to `N_FRAMES`:
    /// a `1 x n_mels x 3000` input for the encoder.
    pub fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.n_mels * N_FRAMES];
        let end = (start + len.min(N_FRAMES)).min(self.frames);
        if start >= end {
            return out;
        }
        for m in 0..self.n_mels {
            let row = &self.data[m * self.frames..(m + 1) * self.frames];
            out[m * N_FRAMES..m * N_FRAMES + (end - start)].copy_from_slice(&row[start..end]);
        }
        out
    }
}

/// Computes [`Features`] for mono 16 kHz samples.
pub struct FeatureExtractor {
    filters: MelFilters,
    window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("n_mels", &self.filters.n_mels())
            .finish()
    }
}

impl FeatureExtractor {
    pub fn new(n_mels: usize) -> Self {
        // np.hanning(n_fft + 1)[:-1]: the periodic Hann window.
        let window = (0..N_FFT)
            .map(|i| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Self {
            filters: MelFilters::new(n_mels),
            window,
            fft,
        }
    }

    pub fn n_mels(&self) -> usize {
        self.filters.n_mels()
    }

    pub fn compute(&self, pcm: &[f32]) -> Features {
        let pad = N_FFT / 2;
        // waveform + 160 zeros, then reflect padding of n_fft/2 on each side.
        let mut x = Vec::with_capacity(pcm.len() + HOP + 2 * pad);
        let mut signal = Vec::with_capacity(pcm.len() + HOP);
        signal.extend_from_slice(pcm);
        signal.resize(pcm.len() + HOP, 0.0);
        let n = signal.len();
        for i in (1..=pad).rev() {
            x.push(signal[i.min(n - 1)]);
        }
        x.extend_from_slice(&signal);
        for i in 0..pad {
            x.push(signal[n.saturating_sub(2 + i)]);
        }
        // n_frames = 1 + (len - n_fft) / hop, minus the dropped last frame.
        let frames = (x.len() - N_FFT) / HOP;
        let n_mels = self.n_mels();
        let mut data = vec![0f32; n_mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; N_FREQS];
        let mut max = f32::NEG_INFINITY;
        for t in 0..frames {
            let frame = &x[t * HOP..t * HOP + N_FFT];
            for ((d, &s), &w) in input.iter_mut().zip(frame).zip(&self.window) {
                *d = s * w;
            }
            // A planned size-400 transform on valid buffers cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (m, (first, w)) in self.filters.bands.iter().enumerate() {
                let s: f32 = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
                let v = s.max(1e-10).log10();
                max = max.max(v);
                data[m * frames + t] = v;
            }
        }
        let floor = max - 8.0;
        for v in &mut data {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        Features {
            n_mels,
            frames,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_matches_faster_whisper() {
        let fe = FeatureExtractor::new(80);
        // faster-whisper: 16000 samples -> 101 frames, content_frames 100.
        let f = fe.compute(&vec![0.1f32; 16000]);
        assert_eq!(f.frames, 101);
        assert_eq!(f.content_frames(), 100);
        assert_eq!(f.data.len(), 80 * 101);
        let w = f.window(50, 3000);
        assert_eq!(w.len(), 80 * 3000);
        assert_eq!(w[51], 0.0);
        assert_eq!(w[50], f.data[100]);
    }

    #[test]
    fn filterbank_known_values() {
        // librosa filters.mel(sr=16000, n_fft=400, n_mels=80)[0, 1] and [1, 2].
        let fb = MelFilters::new(80);
        let at = |m: usize, k: usize| {
            let (first, w) = &fb.bands[m];
            if k < *first || k >= first + w.len() {
                0.0
            } else {
                w[k - first]
            }
        };
        assert!((at(0, 1) - 0.024_862_595).abs() < 1e-7);
        assert!((at(1, 2) - 0.022_871_772).abs() < 1e-7);
    }
}
