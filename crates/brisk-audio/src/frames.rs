//! Frame features at 22 050 Hz mono, as librosa computes them with its
//! defaults: centred 2048-sample frames (zero padding; edge padding for the
//! zero-crossing rate), hop 512, periodic Hann window. Each frame is reduced
//! to running sums as it passes, so memory does not grow with the length,
//! except for the onset envelope (one `f32` per frame) kept for the tempo.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::danceability::Dfa;
use crate::features::{Feature, FeatureSet};

pub(crate) const SR: u32 = 22_050;
pub(crate) const N_FFT: usize = 2048;
pub(crate) const HOP: usize = 512;
const N_BINS: usize = N_FFT / 2 + 1;
const N_MELS: usize = 128;
const N_MFCC: usize = 13;
const TOP_DB: f32 = 80.0;
const AMIN: f32 = 1e-10;

/// Sums over frames, turned into means at the end.
#[derive(Default)]
struct Sums {
    frames: u64,
    rms: f64,
    centroid: f64,
    rolloff: f64,
    flatness: f64,
    zcr: f64,
    mfcc: [f64; N_MFCC],
    mfcc_sq: [f64; N_MFCC],
    chroma: [f64; 12],
}

pub(crate) struct FrameResult {
    pub rms: f64,
    pub centroid: f64,
    pub rolloff: f64,
    pub flatness: f64,
    pub zcr: f64,
    pub mfcc_mean: Vec<f64>,
    pub mfcc_var: Vec<f64>,
    pub chroma: Vec<f64>,
    /// librosa `onset_strength(aggregate=np.median)`, one value per frame.
    pub onset: Vec<f32>,
    /// When asked for: the danceability of the stream (see [`Dfa`]).
    pub danceability: Option<f64>,
}

pub(crate) struct FrameAnalyzer {
    want: FeatureSet,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// Samples from the start of the next frame on (the first frame starts
    /// with N_FFT/2 padding samples).
    buf: Vec<f32>,
    /// Index (in the unpadded signal) of `buf[0]`.
    buf_start: i64,
    /// Samples received so far.
    n: u64,
    first: Option<f32>,
    last: f32,
    scratch: Vec<f32>,
    zscratch: Vec<f32>,
    spec: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    mag: Vec<f32>,
    power: Vec<f32>,
    freqs: Vec<f32>,
    mel: Vec<(usize, Vec<f32>)>,
    chroma_fb: Vec<[f32; 12]>,
    dct: Vec<[f32; N_MELS]>,
    mel_db: Vec<f32>,
    prev_db: Vec<f32>,
    flux: Vec<f32>,
    running_max_db: f32,
    have_prev: bool,
    sums: Sums,
    onset: Vec<f32>,
    /// Fed the same samples, framed in 10 ms rather than STFT frames.
    dance: Option<Dfa>,
    /// Frames done (frame t is centred on sample t*HOP).
    t: u64,
}

impl FrameAnalyzer {
    pub fn new(want: FeatureSet) -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
            .map(|w| w as f32)
            .collect();
        let freqs = (0..N_BINS)
            .map(|k| (k as f64 * f64::from(SR) / N_FFT as f64) as f32)
            .collect();
        let spec = fft.make_output_vec();
        let fft_scratch = fft.make_scratch_vec();
        FrameAnalyzer {
            want,
            fft,
            window,
            buf: vec![0.0; N_FFT / 2],
            buf_start: -((N_FFT / 2) as i64),
            n: 0,
            first: None,
            last: 0.0,
            scratch: vec![0.0; N_FFT],
            zscratch: vec![0.0; N_FFT],
            spec,
            fft_scratch,
            mag: vec![0.0; N_BINS],
            power: vec![0.0; N_BINS],
            freqs,
            mel: mel_filters(),
            chroma_fb: chroma_filters(),
            dct: dct_matrix(),
            mel_db: vec![0.0; N_MELS],
            prev_db: vec![0.0; N_MELS],
            flux: vec![0.0; N_MELS],
            running_max_db: f32::NEG_INFINITY,
            have_prev: false,
            sums: Sums::default(),
            onset: Vec::new(),
            dance: want.has(Feature::Danceability).then(|| Dfa::new(SR)),
            t: 0,
        }
    }

    pub fn push(&mut self, samples: &[f32]) {
        if samples.is_empty() {
            return;
        }
        if self.first.is_none() {
            self.first = Some(samples[0]);
        }
        self.last = samples[samples.len() - 1];
        self.n += samples.len() as u64;
        if let Some(d) = self.dance.as_mut() {
            d.push(samples);
        }
        self.buf.extend_from_slice(samples);
        let mut off = 0;
        while self.buf.len() - off >= N_FFT {
            self.frame(off, None);
            off += HOP;
        }
        self.buf.drain(..off);
        self.buf_start += off as i64;
    }

    /// Pads the end, runs the last frames and returns the means.
    pub fn finish(mut self) -> FrameResult {
        // librosa: 1 + n / hop frames for a centred STFT.
        let total = 1 + self.n / HOP as u64;
        let n = self.n as i64;
        self.buf.resize(self.buf.len() + N_FFT, 0.0);
        let mut off = 0;
        while self.t < total && self.buf.len() - off >= N_FFT {
            self.frame(off, Some(n));
            off += HOP;
        }
        // librosa trims the shifted onset envelope to the frame count.
        self.onset.truncate(self.t as usize);
        let s = &self.sums;
        let f = s.frames.max(1) as f64;
        let mfcc_mean: Vec<f64> = s.mfcc.iter().map(|v| v / f).collect();
        let mfcc_var = s
            .mfcc_sq
            .iter()
            .zip(&mfcc_mean)
            .map(|(sq, m)| (sq / f - m * m).max(0.0))
            .collect();
        FrameResult {
            rms: s.rms / f,
            centroid: s.centroid / f,
            rolloff: s.rolloff / f,
            flatness: s.flatness / f,
            zcr: s.zcr / f,
            mfcc_mean,
            mfcc_var,
            chroma: s.chroma.iter().map(|v| v / f).collect(),
            onset: self.onset,
            danceability: self.dance.and_then(Dfa::finish),
        }
    }

    /// One frame: `buf[off..off + N_FFT]`. `end` is the signal length once
    /// known (for the zero-crossing rate's edge padding at the end).
    fn frame(&mut self, off: usize, end: Option<i64>) {
        let want = self.want;
        let frame = &self.buf[off..off + N_FFT];
        let start = self.buf_start + off as i64;
        self.sums.frames += 1;

        if want.has(Feature::Rms) {
            let e: f64 = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            self.sums.rms += (e / N_FFT as f64).sqrt();
        }
        if want.has(Feature::ZeroCrossingRate) {
            // librosa pads with the edge values here, not zeros.
            let first = self.first.unwrap_or(0.0);
            for (i, (z, &x)) in self.zscratch.iter_mut().zip(frame).enumerate() {
                let pos = start + i as i64;
                *z = if pos < 0 {
                    first
                } else if end.is_some_and(|n| pos >= n) {
                    self.last
                } else {
                    x
                };
            }
            let sign = |x: f32| x.abs() > 1e-10 && x.is_sign_negative();
            let crossings = self
                .zscratch
                .windows(2)
                .filter(|w| sign(w[0]) != sign(w[1]))
                .count();
            self.sums.zcr += crossings as f64 / N_FFT as f64;
        }

        let needs_spec = [
            Feature::Spectral,
            Feature::Mfcc,
            Feature::Chroma,
            Feature::Key,
            Feature::Tempo,
        ]
        .iter()
        .any(|f| want.has(*f));
        if needs_spec {
            for ((s, &x), &w) in self.scratch.iter_mut().zip(frame).zip(&self.window) {
                *s = x * w;
            }
            // Sizes are fixed at construction, so this cannot fail.
            let _ = self.fft.process_with_scratch(
                &mut self.scratch,
                &mut self.spec,
                &mut self.fft_scratch,
            );
            for ((m, p), c) in self
                .mag
                .iter_mut()
                .zip(self.power.iter_mut())
                .zip(&self.spec)
            {
                *p = c.norm_sqr();
                *m = p.sqrt();
            }
            if want.has(Feature::Spectral) {
                self.spectral();
            }
            if want.has(Feature::Chroma) || want.has(Feature::Key) {
                self.chroma();
            }
            if want.has(Feature::Mfcc) || want.has(Feature::Tempo) {
                self.mel_frame();
            }
        }
        self.t += 1;
    }

    fn spectral(&mut self) {
        let total: f64 = self.mag.iter().map(|&m| f64::from(m)).sum();
        // Centroid over the L1-normalized magnitude (0 for silence).
        if total > f64::from(f32::MIN_POSITIVE) {
            let c: f64 = self
                .mag
                .iter()
                .zip(&self.freqs)
                .map(|(&m, &f)| f64::from(m) * f64::from(f))
                .sum();
            self.sums.centroid += c / total;
        }
        // Roll-off: the first bin where the cumulative magnitude reaches 85%.
        let thresh = 0.85 * total;
        let mut cum = 0.0;
        let mut roll = 0.0;
        for (&m, &f) in self.mag.iter().zip(&self.freqs) {
            cum += f64::from(m);
            if cum >= thresh {
                roll = f64::from(f);
                break;
            }
        }
        self.sums.rolloff += roll;
        // Flatness of the power spectrum, floored at 1e-10.
        let (mut logsum, mut sum) = (0.0f64, 0.0f64);
        for &p in &self.power {
            let p = f64::from(p.max(AMIN));
            logsum += p.ln();
            sum += p;
        }
        let n = N_BINS as f64;
        self.sums.flatness += (logsum / n).exp() / (sum / n);
    }

    fn chroma(&mut self) {
        let mut c = [0.0f32; 12];
        for (p, w) in self.power.iter().zip(&self.chroma_fb) {
            for (ci, wi) in c.iter_mut().zip(w) {
                *ci += p * wi;
            }
        }
        let max = c.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        // librosa leaves an all-but-silent frame unnormalized.
        let scale = if max > f32::MIN_POSITIVE {
            1.0 / max
        } else {
            1.0
        };
        for (s, v) in self.sums.chroma.iter_mut().zip(c) {
            *s += f64::from(v * scale);
        }
    }

    fn mel_frame(&mut self) {
        for (db, (start, w)) in self.mel_db.iter_mut().zip(&self.mel) {
            let e: f32 = w
                .iter()
                .zip(&self.power[*start..])
                .map(|(a, b)| a * b)
                .sum();
            *db = 10.0 * e.max(AMIN).log10();
        }
        // librosa clips at (global max - 80 dB); streaming, the max so far
        // stands in for the global one (they differ only in frames more
        // than 80 dB below a louder frame that comes later).
        let frame_max = self.mel_db.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        self.running_max_db = self.running_max_db.max(frame_max);
        let floor = self.running_max_db - TOP_DB;
        for db in self.mel_db.iter_mut() {
            *db = db.max(floor);
        }
        if self.want.has(Feature::Mfcc) {
            for (k, row) in self.dct.iter().enumerate() {
                let c: f32 = row.iter().zip(&self.mel_db).map(|(a, b)| a * b).sum();
                let c = f64::from(c);
                self.sums.mfcc[k] += c;
                self.sums.mfcc_sq[k] += c * c;
            }
        }
        if self.want.has(Feature::Tempo) {
            // Onset strength: median over mel bands of the rectified rise
            // since the previous frame, shifted by lag + n_fft/(2 hop) = 3
            // frames (librosa's centring compensation).
            if self.onset.is_empty() {
                self.onset.extend_from_slice(&[0.0; 3]);
            }
            if self.have_prev {
                for ((f, &a), &b) in self.flux.iter_mut().zip(&self.mel_db).zip(&self.prev_db) {
                    *f = (a - b).max(0.0);
                }
                self.onset.push(median(&mut self.flux));
            }
            self.prev_db.copy_from_slice(&self.mel_db);
            self.have_prev = true;
        }
    }
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney's scale: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128), Slaney-normalized;
/// stored sparse as (first bin, weights).
fn mel_filters() -> Vec<(usize, Vec<f32>)> {
    let fmax = f64::from(SR) / 2.0;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(fmax));
    let pts: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let fft_f: Vec<f64> = (0..N_BINS)
        .map(|k| k as f64 * f64::from(SR) / N_FFT as f64)
        .collect();
    (0..N_MELS)
        .map(|i| {
            let enorm = 2.0 / (pts[i + 2] - pts[i]);
            let w: Vec<f64> = fft_f
                .iter()
                .map(|&f| {
                    let lower = (f - pts[i]) / (pts[i + 1] - pts[i]);
                    let upper = (pts[i + 2] - f) / (pts[i + 2] - pts[i + 1]);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect();
            let start = w.iter().position(|&x| x > 0.0).unwrap_or(0);
            let stop = w.iter().rposition(|&x| x > 0.0).map_or(start, |p| p + 1);
            (start, w[start..stop].iter().map(|&x| x as f32).collect())
        })
        .collect()
}

/// librosa.filters.chroma(sr=22050, n_fft=2048, tuning=0): Gaussian bumps
/// around each pitch class, L2-normalized per FFT bin, weighted by a
/// Gaussian over octaves centred on C5, rows starting at C.
fn chroma_filters() -> Vec<[f32; 12]> {
    let n_chroma = 12.0f64;
    let a440 = 440.0f64;
    // Bin frequencies 1..n_fft (the full, two-sided grid, as librosa).
    let mut frqbins: Vec<f64> = (1..N_FFT)
        .map(|k| {
            let f = k as f64 * f64::from(SR) / N_FFT as f64;
            n_chroma * (f / (a440 / 16.0)).log2()
        })
        .collect();
    frqbins.insert(0, frqbins[0] - 1.5 * n_chroma);
    let mut binwidth: Vec<f64> = frqbins.windows(2).map(|w| (w[1] - w[0]).max(1.0)).collect();
    binwidth.push(1.0);
    let half = (n_chroma / 2.0).round();
    let mut out = Vec::with_capacity(N_BINS);
    for (&fb, &bw) in frqbins.iter().zip(&binwidth).take(N_BINS) {
        let mut col = [0.0f64; 12];
        for (c, v) in col.iter_mut().enumerate() {
            let d = fb - c as f64;
            let d = (d + half + 10.0 * n_chroma).rem_euclid(n_chroma) - half;
            *v = (-0.5 * (2.0 * d / bw).powi(2)).exp();
        }
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        let oct = (-0.5 * ((fb / n_chroma - 5.0) / 2.0).powi(2)).exp();
        let mut row = [0.0f32; 12];
        // base_c: roll by -3 so index 0 is C (the A-based grid starts at A).
        for (c, r) in row.iter_mut().enumerate() {
            let src = (c + 3) % 12;
            let v = if norm > 0.0 {
                col[src] / norm
            } else {
                col[src]
            };
            *r = (v * oct) as f32;
        }
        out.push(row);
    }
    out
}

/// DCT-II with orthonormal scaling, first 13 rows over 128 mel bands.
fn dct_matrix() -> Vec<[f32; N_MELS]> {
    let n = N_MELS as f64;
    (0..N_MFCC)
        .map(|k| {
            let scale = if k == 0 {
                (1.0 / n).sqrt()
            } else {
                (2.0 / n).sqrt()
            };
            let mut row = [0.0f32; N_MELS];
            for (i, r) in row.iter_mut().enumerate() {
                *r = (scale
                    * (std::f64::consts::PI * k as f64 * (2.0 * i as f64 + 1.0) / (2.0 * n)).cos())
                    as f32;
            }
            row
        })
        .collect()
}
