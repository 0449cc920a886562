//! Danceability: Streich and Herrera's detrended fluctuation analysis (DFA)
//! of the signal's short-time loudness, as Essentia's `Danceability`
//! computes it (defaults minTau 310 ms, maxTau 8800 ms, tauMultiplier 1.1),
//! so the values are on Essentia's scale: about 0 to 3, higher for music
//! with a strong, regular pulse, low for noise and free rhythm.
//!
//! Streaming: only one standard deviation per 10 ms frame is kept (8 bytes
//! per 10 ms, 2.9 MB for an hour of audio); the DFA itself runs at the end,
//! because its windows reach 8.8 s back over the integrated series.
//!
//! Essentia accumulates in float32; here everything is f64, so long files
//! agree with Essentia to rounding, not bit for bit
//! (`tests/reference.rs` checks the tolerance).

/// Per-10-ms standard deviations of the signal, built as samples arrive.
pub(crate) struct Dfa {
    frame_len: usize,
    /// The samples of the frame in progress (fewer than `frame_len`).
    partial: Vec<f32>,
    stds: Vec<f64>,
}

impl Dfa {
    pub fn new(sample_rate: u32) -> Self {
        // Essentia: int(0.01 * sampleRate).
        let frame_len = ((0.01 * f64::from(sample_rate)) as usize).max(2);
        Dfa {
            frame_len,
            partial: Vec::with_capacity(frame_len),
            stds: Vec::new(),
        }
    }

    pub fn push(&mut self, mut samples: &[f32]) {
        while !samples.is_empty() {
            let take = (self.frame_len - self.partial.len()).min(samples.len());
            self.partial.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.partial.len() == self.frame_len {
                self.stds.push(sample_std(&self.partial));
                self.partial.clear();
            }
        }
    }

    /// The danceability, or `None` when the audio is too short for two DFA
    /// window sizes (under 0.34 s) or shows no fluctuation at all (silence,
    /// a constant tone). A trailing partial frame is dropped, as Essentia does.
    pub fn finish(self) -> Option<f64> {
        danceability(self.stds)
    }
}

/// Sample standard deviation (n - 1), two passes.
fn sample_std(x: &[f32]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let ss: f64 = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
    (ss / (n - 1.0)).sqrt()
}

/// Window sizes in 10 ms frames: Essentia's float32 loop from 310 ms,
/// multiplied by 1.1 while ≤ 8800 ms, truncated to whole frames. Kept in
/// f32 so the list is the same as Essentia's (31, 34, 37, 41, ...).
fn taus() -> Vec<usize> {
    let mut out = Vec::new();
    let mut tau = 310.0f32;
    while tau <= 8800.0 {
        out.push((tau / 10.0) as usize);
        tau *= 1.1f32;
    }
    out
}

/// Mean squared residual of the least-squares line through `y` (x = 0..n),
/// from the centred sums: (Syy - Sxy² / Sxx) / n. The direct form of what
/// [`sliding_residuals`] computes; the tests hold one to the other.
#[cfg(test)]
fn residual(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mean_x = (n - 1.0) * 0.5;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (i, &v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        let dy = v - mean_y;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    (syy - sxy * sxy / sxx) / n
}

/// Sum of [`residual`] over the windows `y[k..k + tau]`, k = 0, jump, ...
/// while k < len - tau. The window sums (of y, y² and offset·y) slide by
/// `jump` frames instead of being recomputed over `tau` frames, which makes
/// an hour of audio take milliseconds instead of seconds; they are
/// recomputed from scratch every 256 windows so rounding cannot drift.
fn sliding_residuals(y: &[f64], tau: usize, jump: usize) -> f64 {
    let n = tau as f64;
    let mean_x = (n - 1.0) * 0.5;
    let sxx = n * (n * n - 1.0) / 12.0;
    let sums = |k: usize| {
        let w = &y[k..k + tau];
        let sy: f64 = w.iter().sum();
        let syy: f64 = w.iter().map(|v| v * v).sum();
        let sxy: f64 = w.iter().enumerate().map(|(i, v)| i as f64 * v).sum();
        (sy, syy, sxy)
    };
    let (mut sy, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    let mut total = 0.0;
    for (count, k) in (0..y.len() - tau).step_by(jump).enumerate() {
        if count % 256 == 0 {
            (sy, syy, sxy) = sums(k);
        } else {
            // Slide from k - jump to k: drop the first `jump` values, add the
            // next `jump`, then move the x origin by `jump`.
            let prev = k - jump;
            for (i, &v) in y[prev..k].iter().enumerate() {
                sy -= v;
                syy -= v * v;
                sxy -= i as f64 * v;
            }
            for (i, &v) in y[prev + tau..k + tau].iter().enumerate() {
                sy += v;
                syy += v * v;
                sxy += (tau + i) as f64 * v;
            }
            sxy -= jump as f64 * sy;
        }
        // Centred sums: Σ(x - x̄)(y - ȳ) = Σ x·y - x̄·Σy; Σ(y - ȳ)² = Σy² - (Σy)²/n.
        let cxy = sxy - mean_x * sy;
        let cyy = syy - sy * sy / n;
        total += (cyy - cxy * cxy / sxx) / n;
    }
    total
}

fn danceability(mut s: Vec<f64>) -> Option<f64> {
    let n = s.len();
    if n == 0 {
        return None;
    }
    // Remove the mean, then integrate: the DFA profile.
    let mean = s.iter().sum::<f64>() / n as f64;
    let mut acc = 0.0;
    for v in &mut s {
        acc += *v - mean;
        *v = acc;
    }
    // F(tau): root of the mean residual over windows of tau frames. Windows
    // start every tau/50 frames rather than every frame (Essentia's economy;
    // the estimate barely moves and the cost drops by up to 50×).
    let taus: Vec<usize> = taus().into_iter().take_while(|&t| t <= n).collect();
    let fluct: Vec<f64> = taus
        .iter()
        .map(|&tau| {
            if tau == n {
                return 0.0;
            }
            let jump = (tau / 50).max(1);
            let total = sliding_residuals(&s, tau, jump);
            (total / ((n - tau) as f64 / jump as f64)).sqrt()
        })
        .collect();
    if fluct.len() < 2 {
        return None;
    }
    // Mean DFA exponent (log-log slope between neighbouring sizes, with the
    // small-tau correction of +3 frames from the paper); danceability is
    // its inverse. A zero fluctuation means no usable signal.
    let mut alpha = 0.0;
    for (i, w) in fluct.windows(2).enumerate() {
        if w[0] == 0.0 || w[1] == 0.0 {
            return None;
        }
        let (t0, t1) = (taus[i] as f64 + 3.0, taus[i + 1] as f64 + 3.0);
        alpha += (w[1] / w[0]).log10() / (t1 / t0).log10();
    }
    alpha /= (fluct.len() - 1) as f64;
    // Negative or zero mean exponents are degenerate (Essentia reports 0).
    Some(if alpha > 0.0 { 1.0 / alpha } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tau_list_matches_essentias() {
        let t = taus();
        assert_eq!(&t[..6], &[31, 34, 37, 41, 45, 49]);
        assert!(t.last().is_some_and(|&l| l <= 880) && t.len() > 30);
    }

    #[test]
    fn residual_of_a_line_is_zero_and_of_a_parabola_is_not() {
        let line: Vec<f64> = (0..40).map(|i| 3.0 * i as f64 - 2.0).collect();
        assert!(residual(&line).abs() < 1e-9);
        let para: Vec<f64> = (0..40).map(|i| ((i as f64) - 20.0).powi(2)).collect();
        assert!(residual(&para) > 1.0);
    }

    #[test]
    fn sliding_sums_equal_direct_residuals() {
        // A random walk, as the integrated profile is.
        let mut acc = 0.0;
        let y: Vec<f64> = (0..5_000u64)
            .map(|i| {
                acc += ((i * 2_654_435_761) % 1_000) as f64 / 1_000.0 - 0.5;
                acc
            })
            .collect();
        for (tau, jump) in [(31, 1), (100, 2), (880, 17)] {
            let direct: f64 = (0..y.len() - tau)
                .step_by(jump)
                .map(|k| residual(&y[k..k + tau]))
                .sum();
            let sliding = sliding_residuals(&y, tau, jump);
            assert!(
                (direct - sliding).abs() <= 1e-9 * direct.abs(),
                "tau {tau}: {direct} vs {sliding}"
            );
        }
    }

    #[test]
    fn frames_split_across_pushes_equal_one_push() {
        let x: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut a = Dfa::new(22_050);
        a.push(&x);
        let mut b = Dfa::new(22_050);
        for c in x.chunks(333) {
            b.push(c);
        }
        assert_eq!(a.stds, b.stds);
        assert_eq!(a.stds.len(), 10_000 / 220);
    }

    #[test]
    fn too_short_or_flat_is_none() {
        let mut d = Dfa::new(22_050);
        d.push(&vec![0.1; 22_050 / 10]);
        assert_eq!(d.finish(), None);
        let mut d = Dfa::new(22_050);
        d.push(&vec![0.0; 22_050 * 3]);
        assert_eq!(d.finish(), None);
    }
}
