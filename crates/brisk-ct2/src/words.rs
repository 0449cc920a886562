//! Word timestamps, as faster-whisper computes them: CTranslate2's `align`
//! (cross-attention of the alignment heads + DTW) gives each text token a
//! frame; tokens are grouped into words (split on spaces and punctuation),
//! punctuation is merged into its neighbour, and overlong words at pauses
//! and sentence ends are trimmed (`add_word_timestamps`, `find_alignment`,
//! `merge_punctuations`).

use tokenizers::Tokenizer;

/// Audio frames per second of alignment output (100 mel frames / stride 2).
const TOKENS_PER_SECOND: f64 = 50.0;
/// faster-whisper's defaults.
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";
const SENTENCE_END_MARKS: &str = ".。!！?？";

/// One word with its time span (seconds from the start of the audio).
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// A word found by the aligner, times relative to the window.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub word: String,
    pub tokens: Vec<u32>,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

fn is_ascii_punctuation(s: &str) -> bool {
    // Python's `s in string.punctuation`: a substring of the ASCII
    // punctuation string (the empty string included).
    const P: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    P.contains(s)
}

fn decode(tok: &Tokenizer, ids: &[u32], eot: u32) -> String {
    // decode_with_timestamps without timestamps: special tokens (>= eot)
    // are dropped by skip_special_tokens, as the Python tokenizer does.
    let _ = eot;
    tok.decode(ids, true).unwrap_or_default()
}

/// `split_tokens_on_spaces` (English and other space-separated languages).
pub(crate) fn split_to_word_tokens(
    tok: &Tokenizer,
    tokens: &[u32],
    eot: u32,
) -> (Vec<String>, Vec<Vec<u32>>) {
    // split_tokens_on_unicode: cut where the decoded text is whole
    // characters (no U+FFFD unless the full text has one there).
    let full = decode(tok, tokens, eot);
    let full_chars: Vec<char> = full.chars().collect();
    let mut subwords = Vec::new();
    let mut subword_tokens: Vec<Vec<u32>> = Vec::new();
    let mut current = Vec::new();
    let mut offset = 0usize;
    for &t in tokens {
        current.push(t);
        let d = decode(tok, &current, eot);
        let repl = d.chars().position(|c| c == '\u{fffd}').map(|i| i + offset);
        let ok = match repl {
            None => true,
            Some(i) => full_chars.get(i) == Some(&'\u{fffd}'),
        };
        if ok {
            offset += d.chars().count();
            subwords.push(d);
            subword_tokens.push(std::mem::take(&mut current));
        }
    }
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<u32>> = Vec::new();
    for (sw, st) in subwords.into_iter().zip(subword_tokens) {
        let special = st.first().is_some_and(|&t| t >= eot);
        let with_space = sw.starts_with(' ');
        let punct = is_ascii_punctuation(sw.trim());
        if special || with_space || punct || words.is_empty() {
            words.push(sw);
            word_tokens.push(st);
        } else if let (Some(w), Some(wt)) = (words.last_mut(), word_tokens.last_mut()) {
            w.push_str(&sw);
            wt.extend(st);
        }
    }
    (words, word_tokens)
}

/// `find_alignment` for one sequence, from CTranslate2's alignment.
pub(crate) fn timings(
    tok: &Tokenizer,
    text_tokens: &[u32],
    eot: u32,
    alignments: &[(i64, i64)],
    token_probs: &[f32],
) -> Vec<Timing> {
    let mut with_eot = text_tokens.to_vec();
    with_eot.push(eot);
    let (words, word_tokens) = split_to_word_tokens(tok, &with_eot, eot);
    if word_tokens.len() <= 1 {
        return Vec::new();
    }
    let mut boundaries = vec![0usize];
    let mut acc = 0;
    for t in &word_tokens[..word_tokens.len() - 1] {
        acc += t.len();
        boundaries.push(acc);
    }
    // jumps: first pair, then every change of text index.
    let jump_times: Vec<f64> = alignments
        .iter()
        .enumerate()
        .filter(|&(i, &(ti, _))| i == 0 || ti != alignments[i - 1].0)
        .map(|(_, &(_, fi))| fi as f64 / TOKENS_PER_SECOND)
        .collect();
    let at = |i: usize| jump_times.get(i).copied().unwrap_or(0.0);
    let mut out = Vec::new();
    for (k, (word, tokens)) in words.into_iter().zip(word_tokens).enumerate() {
        if k + 1 >= boundaries.len() {
            break;
        }
        let (i, j) = (boundaries[k], boundaries[k + 1]);
        let probs = &token_probs[i.min(token_probs.len())..j.min(token_probs.len())];
        let probability = if probs.is_empty() {
            f32::NAN
        } else {
            probs.iter().sum::<f32>() / probs.len() as f32
        };
        out.push(Timing {
            word,
            tokens,
            start: at(i),
            end: at(j),
            probability,
        });
    }
    out
}

/// `merge_punctuations`: leading punctuation joins the next word, trailing
/// punctuation the previous one.
pub(crate) fn merge_punctuations(al: &mut [Timing]) {
    if al.len() < 2 {
        return;
    }
    let mut i = al.len() as isize - 2;
    let mut j = al.len() - 1;
    while i >= 0 {
        let iu = i as usize;
        let prev = &al[iu];
        if prev.word.starts_with(' ') && PREPEND_PUNCTUATIONS.contains(prev.word.trim()) {
            let (w, t) = (prev.word.clone(), prev.tokens.clone());
            let f = &mut al[j];
            f.word = format!("{w}{}", f.word);
            let mut nt = t;
            nt.extend(f.tokens.iter().copied());
            f.tokens = nt;
            al[iu].word.clear();
            al[iu].tokens.clear();
        } else {
            j = iu;
        }
        i -= 1;
    }
    let (mut i, mut j) = (0usize, 1usize);
    while j < al.len() {
        if !al[i].word.ends_with(' ') && contains_word(APPEND_PUNCTUATIONS, &al[j].word) {
            let (w, t) = (al[j].word.clone(), al[j].tokens.clone());
            al[i].word.push_str(&w);
            al[i].tokens.extend(t);
            al[j].word.clear();
            al[j].tokens.clear();
        } else {
            i = j;
        }
        j += 1;
    }
}

/// Python's `following["word"] in appended`: substring test (the empty
/// string is in every string).
fn contains_word(set: &str, w: &str) -> bool {
    set.contains(w)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A window's pieces as `add_word_timestamps` sees them.
pub(crate) struct Piece<'a> {
    pub start: &'a mut f64,
    pub end: &'a mut f64,
    pub text_tokens: usize,
    pub words: &'a mut Vec<Word>,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `add_word_timestamps` for the pieces of one window whose alignment is
/// `alignment`; `time_offset` is the window start in seconds.
pub(crate) fn assign(
    mut alignment: Vec<Timing>,
    pieces: &mut [Piece<'_>],
    time_offset: f64,
    mut last_speech_timestamp: f64,
) {
    let durations: Vec<f64> = alignment
        .iter()
        .map(|w| w.end - w.start)
        .filter(|&d| d != 0.0)
        .collect();
    let has = !durations.is_empty();
    let median_duration = median(durations).min(0.7);
    let max_duration = median_duration * 2.0;
    if has {
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                // Python's `word in marks` (a substring test).
                if SENTENCE_END_MARKS.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if SENTENCE_END_MARKS.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment);
    let mut word_index = 0;
    for p in pieces.iter_mut() {
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while word_index < alignment.len() && saved < p.text_tokens {
            let t = &alignment[word_index];
            if !t.word.is_empty() {
                words.push(Word {
                    word: t.word.clone(),
                    start: round2(time_offset + t.start),
                    end: round2(time_offset + t.end),
                    probability: t.probability,
                });
            }
            saved += t.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            let n = words.len();
            if words[0].end - last_speech_timestamp > median_duration * 4.0
                && (words[0].end - words[0].start > max_duration
                    || (n > 1 && words[1].end - words[0].start > max_duration * 2.0))
            {
                if n > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            if *p.start < words[0].end && *p.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median_duration).min(*p.start).max(0.0);
            } else {
                *p.start = words[0].start;
            }
            let last = words.len() - 1;
            if *p.end > words[last].start && *p.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median_duration).max(*p.end);
            } else {
                *p.end = words[last].end;
            }
            last_speech_timestamp = *p.end;
        }
        *p.words = words;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(word: &str, start: f64, end: f64) -> Timing {
        Timing {
            word: word.into(),
            tokens: vec![1],
            start,
            end,
            probability: 1.0,
        }
    }

    #[test]
    fn punctuation_merges_into_neighbours() {
        let mut al = vec![
            t(" \"", 0.0, 0.1),
            t(" Hello", 0.1, 0.5),
            t(",", 0.5, 0.6),
            t(" you", 0.6, 0.9),
        ];
        merge_punctuations(&mut al);
        let words: Vec<&str> = al.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, vec!["", " \" Hello,", "", " you"]);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }
}
