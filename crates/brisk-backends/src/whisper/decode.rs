//! Token-level decoding rules, independent of the network: suppression,
//! Whisper's timestamp rules, greedy/temperature choice, and splitting
//! timestamped token streams into segments.

/// Special token ids of one Whisper tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialTokens {
    pub sot: u32,
    pub eot: u32,
    pub transcribe: Option<u32>,
    /// `<|translate|>` (multilingual models): translate to English.
    pub translate: Option<u32>,
    pub no_timestamps: u32,
    /// First timestamp token (`<|0.00|>`), right after `<|notimestamps|>`.
    pub timestamp_begin: u32,
    pub no_speech: Option<u32>,
    pub start_of_prev: Option<u32>,
}

/// Seconds per timestamp token step.
pub const TIME_PRECISION: f64 = 0.02;

/// Largest first timestamp allowed (Whisper's `max_initial_timestamp`, 1 s).
const MAX_INITIAL_TIMESTAMP_STEPS: u32 = 50;

/// Applies Whisper's timestamp rules to `logits` (in place, suppressed
/// entries become -inf). `sampled` are the tokens generated so far in this
/// window (without the prompt prefix).
pub fn apply_timestamp_rules(logits: &mut [f32], sampled: &[u32], sp: &SpecialTokens) {
    let ts = sp.timestamp_begin as usize;
    let eot = sp.eot as usize;
    let n = logits.len();
    if ts >= n {
        return;
    }
    let is_ts = |t: u32| t >= sp.timestamp_begin;
    let last_was_ts = sampled.last().is_some_and(|&t| is_ts(t));
    let penultimate_was_ts = sampled.len() < 2 || is_ts(sampled[sampled.len() - 2]);
    if last_was_ts {
        if penultimate_was_ts {
            // A pair closed: next is text (no timestamp).
            logits[ts..].fill(f32::NEG_INFINITY);
        } else {
            // A text run ended with a timestamp: next is a timestamp or eot.
            logits[..eot].fill(f32::NEG_INFINITY);
        }
    }
    // Timestamps never go backwards (and a closing one is after its opening one).
    if let Some(&last_ts) = sampled.iter().rev().find(|&&t| is_ts(t)) {
        let floor = if last_was_ts && !penultimate_was_ts {
            last_ts as usize
        } else {
            last_ts as usize + 1
        };
        logits[ts..floor.min(n)].fill(f32::NEG_INFINITY);
    }
    if sampled.is_empty() {
        // Start with a timestamp, at most 1 s in.
        logits[..ts].fill(f32::NEG_INFINITY);
        let max = ts + MAX_INITIAL_TIMESTAMP_STEPS as usize + 1;
        if max < n {
            logits[max..].fill(f32::NEG_INFINITY);
        }
        return;
    }
    // If timestamps are together more likely than any text token, pick one.
    let lse = log_sum_exp(logits);
    let ts_lse = log_sum_exp(&logits[ts..]) - lse;
    let max_text = logits[..ts]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
        - lse;
    if ts_lse > max_text {
        logits[..ts].fill(f32::NEG_INFINITY);
    }
}

/// `log(sum(exp(x)))`, -inf for an empty or all -inf slice.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return m;
    }
    m + x.iter().map(|&v| (v - m).exp()).sum::<f32>().ln()
}

/// Index of the largest value (first one on ties); 0 for an empty slice.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// A small deterministic random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Picks the next token: argmax at temperature 0, otherwise a sample from
/// `softmax(logits / temperature)`.
pub fn choose(logits: &[f32], temperature: f32, rng: &mut Rng) -> usize {
    if temperature <= 0.0 {
        return argmax(logits);
    }
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !m.is_finite() {
        return argmax(logits);
    }
    let weights: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - m) / temperature).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let mut r = rng.next_f32() * total;
    for (i, &w) in weights.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    argmax(logits)
}

/// A piece of one window's output: time span in seconds relative to the
/// window start, and its text tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSegment {
    pub start_s: f64,
    pub end_s: f64,
    pub tokens: Vec<u32>,
    /// Ended by a timestamp (rather than by the end of the output).
    pub closed: bool,
}

/// Splits a timestamped token stream (`<|t0|> text <|t1|><|t1|> text <|t2|>`)
/// into segments. Text without a closing timestamp ends at `window_s`.
pub fn split_timestamped(tokens: &[u32], sp: &SpecialTokens, window_s: f64) -> Vec<TokenSegment> {
    let time = |t: u32| f64::from(t - sp.timestamp_begin) * TIME_PRECISION;
    let mut out = Vec::new();
    let mut start: Option<f64> = None;
    let mut text: Vec<u32> = Vec::new();
    for &t in tokens {
        if t >= sp.timestamp_begin {
            let at = time(t);
            match start {
                Some(s) if !text.is_empty() => {
                    out.push(TokenSegment {
                        start_s: s,
                        end_s: at.max(s),
                        tokens: std::mem::take(&mut text),
                        closed: true,
                    });
                    start = None;
                }
                _ => start = Some(at),
            }
        } else if t < sp.eot {
            text.push(t);
        }
    }
    if !text.is_empty() {
        let s = start.unwrap_or(0.0);
        out.push(TokenSegment {
            start_s: s,
            end_s: window_s.max(s),
            tokens: text,
            closed: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> SpecialTokens {
        SpecialTokens {
            sot: 5,
            eot: 4,
            transcribe: None,
            translate: None,
            no_timestamps: 6,
            timestamp_begin: 7,
            no_speech: None,
            start_of_prev: None,
        }
    }

    #[test]
    fn first_token_is_an_early_timestamp() {
        let mut l = vec![0.0f32; 7 + 100];
        apply_timestamp_rules(&mut l, &[], &sp());
        assert!(l[..7].iter().all(|v| v.is_infinite()));
        assert!(l[7..=57].iter().all(|v| v.is_finite()));
        assert!(l[58..].iter().all(|v| v.is_infinite()));
    }

    #[test]
    fn after_text_and_timestamp_comes_timestamp_or_eot() {
        let mut l = vec![0.0f32; 20];
        l[4] = 5.0; // eot likelier than all timestamps together
        apply_timestamp_rules(&mut l, &[7, 1, 9], &sp());
        assert!(l[..4].iter().all(|v| v.is_infinite()));
        assert!(l[4].is_finite());
        assert!(l[7..9].iter().all(|v| v.is_infinite()));
        assert!(l[9].is_finite());
    }

    #[test]
    fn splits_segments() {
        let segs = split_timestamped(&[7, 1, 2, 17, 17, 3, 27, 4], &sp(), 30.0);
        assert_eq!(segs.len(), 2);
        assert!(segs[0].closed && segs[1].closed);
        let open = split_timestamped(&[7, 1, 17, 17, 3], &sp(), 30.0);
        assert!(open[0].closed && !open[1].closed);
        assert_eq!(open[1].end_s, 30.0);
        assert_eq!(segs[0].tokens, vec![1, 2]);
        assert!((segs[0].end_s - 0.2).abs() < 1e-9);
        assert!((segs[1].start_s - 0.2).abs() < 1e-9 && (segs[1].end_s - 0.4).abs() < 1e-9);
    }

    #[test]
    fn sampling_is_deterministic_and_greedy_at_zero() {
        let l = [0.0, 5.0, 1.0];
        assert_eq!(choose(&l, 0.0, &mut Rng::new(1)), 1);
        let a: Vec<usize> = {
            let mut r = Rng::new(7);
            (0..20).map(|_| choose(&l, 1.0, &mut r)).collect()
        };
        let b: Vec<usize> = {
            let mut r = Rng::new(7);
            (0..20).map(|_| choose(&l, 1.0, &mut r)).collect()
        };
        assert_eq!(a, b);
    }
}
