//! Stop strings: generated text is held back while it could still be the
//! start of a stop string, and cut before the first one found.

/// A seed from the process's random hasher keys and the clock, for
/// requests that give none.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// What [`StopScanner::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// No stop string yet; this text is final and may be shown (maybe empty).
    Continue(String),
    /// A stop string was found; this text is the last to show, and the
    /// generated text ends there.
    Stop(String),
}

/// Collects the generated text and finds stop strings in it.
///
/// Text that could be the start of a stop string is held back until the
/// next pieces show whether it is one, so a stop string is never shown,
/// even in part.
#[derive(Debug, Default)]
pub struct StopScanner {
    stops: Vec<String>,
    text: String,
    /// Bytes of `text` already handed out.
    emitted: usize,
}

impl StopScanner {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds a piece of generated text.
    pub fn push(&mut self, piece: &str) -> Scan {
        self.text.push_str(piece);
        // A stop string cannot start in the text already handed out: the
        // part of it there would have been held back.
        let tail = &self.text[self.emitted..];
        let hit = self
            .stops
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min();
        if let Some(at) = hit {
            let end = self.emitted + at;
            let out = self.text[self.emitted..end].to_string();
            self.text.truncate(end);
            self.emitted = end;
            return Scan::Stop(out);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_prefix_suffix(tail, s))
            .max()
            .unwrap_or(0);
        let end = self.text.len() - hold;
        let out = self.text[self.emitted..end].to_string();
        self.emitted = end;
        Scan::Continue(out)
    }

    /// Hands out the text held back (generation ended without a stop).
    pub fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_string();
        self.emitted = self.text.len();
        out
    }

    /// All the text so far (up to a stop string, when one was found).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with.
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopScanner::new(&stops);
        let mut shown = Vec::new();
        for p in pieces {
            match s.push(p) {
                Scan::Continue(out) => shown.push(out),
                Scan::Stop(out) => {
                    shown.push(out);
                    return (shown, s.into_text(), true);
                }
            }
        }
        shown.push(s.finish());
        (shown, s.into_text(), false)
    }

    #[test]
    fn stop_string_inside_one_piece() {
        let (shown, text, stopped) = run(&["\n\n"], &["Hello", " world\n\nmore"]);
        assert!(stopped);
        assert_eq!(text, "Hello world");
        assert_eq!(shown.concat(), text);
    }

    #[test]
    fn stop_string_across_pieces_is_never_shown() {
        let (shown, text, stopped) = run(&["STOP"], &["ab", "S", "T", "O", "P", "x"]);
        assert!(stopped);
        assert_eq!(text, "ab");
        assert_eq!(shown, vec!["ab", "", "", "", ""]);
    }

    #[test]
    fn false_start_is_released() {
        let (shown, text, stopped) = run(&["STOP"], &["ST", "AR", "T"]);
        assert!(!stopped);
        assert_eq!(text, "START");
        assert_eq!(shown, vec!["", "STAR", "T", ""]);
        // Held back at the end, then flushed.
        let (shown, text, _) = run(&["STOP"], &["go", "ST"]);
        assert_eq!(text, "goST");
        assert_eq!(shown, vec!["go", "", "ST"]);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (_, text, stopped) = run(&["c", "ab", ""], &["xxabc"]);
        assert!(stopped);
        assert_eq!(text, "xx");
        let (shown, text, stopped) = run(&[], &["a", "b"]);
        assert!(!stopped);
        assert_eq!(text, "ab");
        assert_eq!(shown.concat(), "ab");
    }

    #[test]
    fn multibyte_stop_strings() {
        let (shown, text, stopped) = run(&["é!"], &["café", "!"]);
        assert!(stopped);
        assert_eq!(text, "caf");
        assert_eq!(shown.concat(), "caf");
        assert_eq!(longest_prefix_suffix("xé", "éa"), "é".len());
        assert_eq!(longest_prefix_suffix("x", "é"), 0);
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(random_seed(), random_seed());
    }
}
