//! Tempo and beats from the onset envelope, following librosa's
//! `beat_track`: an autocorrelation tempogram (8 s Hann windows) averaged
//! over time and weighted by a log-normal prior around 120 BPM picks the
//! period; Ellis' dynamic program places the beats. No beat-tracking crate
//! was trusted for this: the ones published are real-time onset detectors
//! without a tempo estimate, or bind aubio's C library.

use realfft::RealFftPlanner;

use crate::{Tempo, TempoCandidate};

const AC_SIZE_S: f64 = 8.0;
const START_BPM: f64 = 120.0;
const MAX_TEMPO: f64 = 320.0;
const TIGHTNESS: f64 = 100.0;
const MAX_ALTERNATIVES: usize = 3;

/// `frame_rate` = frames per second of `onset`. None when there is no onset.
pub(crate) fn track(onset: &[f32], frame_rate: f64) -> Option<Tempo> {
    if onset.len() < 2 || onset.iter().all(|&x| x == 0.0) {
        return None;
    }
    let onset: Vec<f64> = onset.iter().map(|&x| f64::from(x)).collect();
    let est = estimate_tempo(&onset, frame_rate)?;
    // The beat tracker gets librosa's whole-lag tempo, so beats match it.
    let beats = beat_frames(&onset, frame_rate, 60.0 * frame_rate / est.lag as f64)
        .into_iter()
        .map(|f| f as f64 / frame_rate)
        .collect();
    Some(Tempo {
        bpm: 60.0 * frame_rate / est.refined,
        confidence: est.confidence,
        alternatives: est.alternatives,
        beats,
    })
}

struct Estimate {
    /// librosa's answer: the best whole lag, frames.
    lag: usize,
    /// The period between frames: librosa stops at the whole lag, which at
    /// 43 frames/s is up to 2.5% off at 120 BPM; a parabola through the
    /// peak and its neighbours finds it.
    refined: f64,
    /// Mean normalized autocorrelation at the best lag.
    confidence: f64,
    alternatives: Vec<TempoCandidate>,
}

fn estimate_tempo(onset: &[f64], frame_rate: f64) -> Option<Estimate> {
    let n = onset.len();
    let win = (AC_SIZE_S * frame_rate).floor() as usize;
    if win < 2 {
        return None;
    }
    let half = win / 2;
    // Linear ramps to zero on both sides (np.pad mode="linear_ramp").
    let mut padded = Vec::with_capacity(n + 2 * half);
    padded.extend((0..half).map(|i| onset[0] * i as f64 / half as f64));
    padded.extend_from_slice(onset);
    let last = onset[n - 1];
    padded.extend((0..half).map(|i| last * (half - 1 - i) as f64 / half as f64));
    padded.resize(n + win, 0.0);
    let window: Vec<f64> = (0..win)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / win as f64).cos())
        .collect();
    let size = (2 * win - 1).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(size);
    let inv = planner.plan_fft_inverse(size);
    let mut x = fwd.make_input_vec();
    let mut spec = fwd.make_output_vec();
    let mut ac = inv.make_output_vec();
    let mut sum = vec![0.0f64; win];
    for t in 0..n {
        x.fill(0.0);
        for ((xi, &o), &w) in x.iter_mut().zip(&padded[t..t + win]).zip(&window) {
            *xi = o * w;
        }
        // Fixed sizes: these cannot fail.
        let _ = fwd.process(&mut x, &mut spec);
        for c in spec.iter_mut() {
            *c = realfft::num_complex::Complex::new(c.norm_sqr(), 0.0);
        }
        let _ = inv.process(&mut spec, &mut ac);
        let max = ac[..win].iter().fold(0.0f64, |a, &b| a.max(b.abs()));
        let scale = if max > f64::MIN_POSITIVE {
            1.0 / max
        } else {
            1.0
        };
        for (s, &a) in sum.iter_mut().zip(&ac[..win]) {
            *s += a * scale;
        }
    }
    let tg: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    // librosa's score: log-compressed autocorrelation plus a log-normal
    // prior around 120 BPM; lags faster than MAX_TEMPO are out.
    let score: Vec<f64> = tg
        .iter()
        .enumerate()
        .map(|(k, &g)| {
            let bpm = 60.0 * frame_rate / k as f64;
            if k == 0 || bpm >= MAX_TEMPO {
                f64::NEG_INFINITY
            } else {
                (1e6 * g.max(0.0)).ln_1p() - 0.5 * (bpm.log2() - START_BPM.log2()).powi(2)
            }
        })
        .collect();
    let k = (1..win)
        .filter(|&k| score[k].is_finite())
        .fold(None, |best: Option<usize>, k| match best {
            Some(b) if score[b] >= score[k] => Some(b),
            _ => Some(k),
        })?;
    // Other periods: the strongest local maxima of the autocorrelation
    // (typically the double and half tempo), best first.
    let mut peaks: Vec<usize> = (2..win - 1)
        .filter(|&j| {
            j != k && score[j].is_finite() && tg[j] > tg[j - 1] && tg[j] >= tg[j + 1] && tg[j] > 0.0
        })
        .collect();
    peaks.sort_by(|a, b| tg[*b].total_cmp(&tg[*a]));
    let alternatives = peaks
        .into_iter()
        .take(MAX_ALTERNATIVES)
        .map(|j| TempoCandidate {
            bpm: 60.0 * frame_rate / refine(&tg, j),
            strength: tg[j].clamp(0.0, 1.0),
        })
        .collect();
    Some(Estimate {
        lag: k,
        refined: refine(&tg, k),
        confidence: tg[k].clamp(0.0, 1.0),
        alternatives,
    })
}

/// The peak of the parabola through `tg[k - 1..=k + 1]`.
fn refine(tg: &[f64], k: usize) -> f64 {
    let mut refined = k as f64;
    if k >= 2 && k + 1 < tg.len() {
        let (a, b, c) = (tg[k - 1], tg[k], tg[k + 1]);
        let den = a - 2.0 * b + c;
        if den < 0.0 {
            refined += (0.5 * (a - c) / den).clamp(-0.5, 0.5);
        }
    }
    refined
}

/// numpy's round: halves to even.
fn round_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

fn beat_frames(onset: &[f64], frame_rate: f64, bpm: f64) -> Vec<usize> {
    let n = onset.len();
    let fpb = round_even(frame_rate * 60.0 / bpm).max(1.0);
    // Normalize by the standard deviation (ddof = 1).
    let mean = onset.iter().sum::<f64>() / n as f64;
    let var = onset.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let norm = var.sqrt() + f64::MIN_POSITIVE;
    let fpb_i = fpb as usize;
    let window: Vec<f64> = (0..2 * fpb_i + 1)
        .map(|j| {
            let k = j as f64 - fpb;
            (-0.5 * (k * 32.0 / fpb).powi(2)).exp()
        })
        .collect();
    let kk = window.len();
    let half = kk / 2;
    // Same-mode convolution, exactly as librosa's loop bounds.
    let local: Vec<f64> = (0..n)
        .map(|i| {
            let lo = (i + half + 1).saturating_sub(n);
            let hi = (i + half).min(kk);
            (lo..hi)
                .map(|k| window[k] * onset[i + half - k] / norm)
                .sum()
        })
        .collect();

    // Dynamic program.
    let max_local = local.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let score_thresh = 0.01 * max_local;
    let mut backlink = vec![-1i64; n];
    let mut cum = vec![0.0f64; n];
    let mut first_beat = true;
    let r = round_even(fpb / 2.0) as i64;
    let ln_fpb = fpb.ln();
    for i in 0..n {
        let mut best = f64::NEG_INFINITY;
        let mut loc_best = -1i64;
        let mut loc = i as i64 - r;
        let stop = i as i64 - 2 * fpb as i64 - 1;
        while loc > stop {
            if loc < 0 {
                break;
            }
            let d = ((i as i64 - loc) as f64).ln() - ln_fpb;
            let score = cum[loc as usize] - TIGHTNESS * d * d;
            if score > best {
                best = score;
                loc_best = loc;
            }
            loc -= 1;
        }
        cum[i] = if loc_best >= 0 {
            local[i] + best
        } else {
            local[i]
        };
        if first_beat && local[i] < score_thresh {
            backlink[i] = -1;
        } else {
            backlink[i] = loc_best;
            first_beat = false;
        }
    }

    // Last beat: the last local maximum of the cumulative score above half
    // the median of all its local maxima.
    let is_max = |i: usize| {
        let prev = if i == 0 { cum[0] } else { cum[i - 1] };
        let next = if i + 1 == n { cum[i] } else { cum[i + 1] };
        cum[i] > prev && cum[i] >= next
    };
    let mut maxima: Vec<f64> = (0..n).filter(|&i| is_max(i)).map(|i| cum[i]).collect();
    let mut tail = n - 1;
    if !maxima.is_empty() {
        maxima.sort_unstable_by(|a, b| a.total_cmp(b));
        let m = maxima.len();
        let median = if m % 2 == 1 {
            maxima[m / 2]
        } else {
            0.5 * (maxima[m / 2 - 1] + maxima[m / 2])
        };
        let thresh = 0.5 * median;
        if let Some(i) = (0..n).rev().find(|&i| is_max(i) && cum[i] >= thresh) {
            tail = i;
        }
    }
    let mut beats = vec![false; n];
    let mut at = tail as i64;
    while at >= 0 {
        beats[at as usize] = true;
        at = backlink[at as usize];
    }

    // Trim weak leading and trailing beats: below half the RMS of the
    // smoothed beat strengths.
    let strengths: Vec<f64> = (0..n).filter(|&i| beats[i]).map(|i| local[i]).collect();
    let w = [0.0, 0.5, 1.0, 0.5, 0.0];
    let nb = strengths.len();
    let smooth: Vec<f64> = (0..nb)
        .map(|j| {
            (0..5)
                .filter_map(|k| {
                    (j + 2)
                        .checked_sub(k)
                        .filter(|&s| s < nb)
                        .map(|s| w[k] * strengths[s])
                })
                .sum()
        })
        .collect();
    let thresh = if nb > 0 {
        0.5 * (smooth.iter().map(|x| x * x).sum::<f64>() / nb as f64).sqrt()
    } else {
        0.0
    };
    let mut i = 0;
    while i < n && local[i] <= thresh {
        beats[i] = false;
        i += 1;
    }
    let mut i = n;
    while i > 0 && local[i - 1] <= thresh {
        beats[i - 1] = false;
        i -= 1;
    }
    (0..n).filter(|&i| beats[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even_like_numpy() {
        assert_eq!(round_even(10.5), 10.0);
        assert_eq!(round_even(11.5), 12.0);
        assert_eq!(round_even(21.53), 22.0);
    }

    #[test]
    fn impulse_train_gives_its_period() {
        let fr = 22_050.0 / 512.0;
        // An onset every 21 frames = 123.0 BPM, 60 s long.
        let onset: Vec<f32> = (0..2584)
            .map(|i| if i % 21 == 5 { 1.0 } else { 0.0 })
            .collect();
        let t = track(&onset, fr).expect("tempo");
        assert!((t.bpm - 60.0 * fr / 21.0).abs() < 0.01, "{}", t.bpm);
        assert!(t.confidence > 0.5);
        let gaps: Vec<f64> = t.beats.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|g| (g - 21.0 / fr).abs() < 1e-9),
            "{gaps:?}"
        );
        assert!(track(&[0.0; 500], fr).is_none());
    }
}
