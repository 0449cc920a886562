//! Sentence splitting for texts longer than one model input.
//!
//! The pieces keep everything: each sentence carries the whitespace that
//! follows it, so `pieces.concat() == text` and a caller can translate the
//! trimmed pieces and put the original spacing (paragraph breaks included)
//! back between them.

/// Abbreviations (lower-cased, without their dot) after which a period does
/// not end a sentence: English and Portuguese titles and common short forms.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "sra", "srta", "jr", "st", "vs", "etc", "e.g", "i.e",
    "eg", "ie", "no", "nº", "fig", "p", "pp", "vol", "cap", "ex", "obs", "av", "dra", "profa",
    "approx", "min", "máx", "max",
];

fn is_terminal(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？')
}

/// Closing marks that stay with the sentence they end (`He said "no."`).
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | ')' | ']' | '}' | '”' | '’' | '»')
}

/// Whether the word ending right before the dot at `dot` is an abbreviation
/// or a single letter (an initial such as "J."), where a period is no break.
fn abbreviation_before(text: &str, dot: usize) -> bool {
    let before = &text[..dot];
    let word_start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| c.is_whitespace() || matches!(c, '(' | '"' | '“' | '«'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = before[word_start..].to_lowercase();
    if word.chars().count() == 1 && word.chars().all(char::is_alphabetic) {
        return true;
    }
    ABBREVIATIONS.contains(&word.as_str())
}

/// Splits `text` into sentences; joining the pieces gives `text` back.
/// A sentence ends at `.`, `!`, `?` or `…` (plus closing quotes/brackets)
/// followed by whitespace, unless the period ends a known abbreviation or an
/// initial, and at every line break (lists and paragraphs are not one
/// sentence). Runs of whitespace stay with the piece before them.
pub fn split_sentences(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let mut boundary = None;
        if c == '\n' {
            boundary = Some(i + 1);
        } else if is_terminal(c) && !(c == '.' && abbreviation_before(text, pos)) {
            let mut j = i + 1;
            while j < chars.len() && (is_terminal(chars[j].1) || is_closer(chars[j].1)) {
                j += 1;
            }
            if j == chars.len() || chars[j].1.is_whitespace() {
                boundary = Some(j);
            }
        }
        if let Some(mut j) = boundary {
            // Trailing whitespace belongs to the sentence it follows.
            while j < chars.len() && chars[j].1.is_whitespace() {
                j += 1;
            }
            let end = chars.get(j).map_or(text.len(), |&(p, _)| p);
            if end > start {
                pieces.push(&text[start..end]);
            }
            start = end;
            i = j;
        } else {
            i += 1;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_round_trips() {
        let text = "Hello there. How are you? I'm fine!  Thanks.\n\nNew paragraph";
        let p = split_sentences(text);
        assert_eq!(
            p,
            vec![
                "Hello there. ",
                "How are you? ",
                "I'm fine!  ",
                "Thanks.\n\n",
                "New paragraph"
            ]
        );
        assert_eq!(p.concat(), text);
    }

    #[test]
    fn keeps_abbreviations_decimals_and_quotes() {
        let text = "Dr. Silva paid 3.50 dollars, e.g. for J. Smith. She said \"go.\" Then left…";
        let p = split_sentences(text);
        assert_eq!(
            p,
            vec![
                "Dr. Silva paid 3.50 dollars, e.g. for J. Smith. ",
                "She said \"go.\" ",
                "Then left…"
            ]
        );
        assert_eq!(p.concat(), text);
    }

    #[test]
    fn portuguese_and_edge_cases() {
        let text = "A Sra. Costa chegou. Ela trouxe 2 livros?! Sim.";
        assert_eq!(
            split_sentences(text),
            vec!["A Sra. Costa chegou. ", "Ela trouxe 2 livros?! ", "Sim."]
        );
        assert!(split_sentences("").is_empty());
        assert_eq!(split_sentences("   "), vec!["   "]);
        assert_eq!(split_sentences("no end"), vec!["no end"]);
        let lines = "one\ntwo\n";
        assert_eq!(split_sentences(lines), vec!["one\n", "two\n"]);
    }
}
