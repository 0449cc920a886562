//! Keywords per topic by class-based TF-IDF, as BERTopic computes them:
//! scikit-learn's `CountVectorizer` tokenisation (lowercase, tokens of two or
//! more word characters, optional stop words), all documents of a topic
//! counted as one, then `tf · ln(1 + avg_words / f_word)` with `tf` the
//! L1-normalised count in the topic and `f_word` the word's count over all
//! topics.

use std::collections::{BTreeMap, HashMap};

use crate::rng::Rng;

/// Which words never become keywords.
#[derive(Debug, Clone, PartialEq)]
pub enum StopWords {
    /// scikit-learn's English list.
    English,
    /// These words (compared lowercased).
    List(Vec<String>),
    None,
}

impl StopWords {
    fn contains(&self, word: &str) -> bool {
        match self {
            StopWords::English => crate::stop_words::ENGLISH.binary_search(&word).is_ok(),
            StopWords::List(list) => list.iter().any(|w| w.to_lowercase() == word),
            StopWords::None => false,
        }
    }
}

/// scikit-learn's default analyser: lowercase, then maximal runs of word
/// characters (`(?u)\b\w\w+\b`), at least two long.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| t.chars().count() >= 2)
        .map(str::to_owned)
        .collect()
}

/// Documents as sparse word counts over a sorted vocabulary.
pub struct Counts {
    pub vocabulary: Vec<String>,
    /// Per document: (word id, count), sorted by word id.
    pub docs: Vec<Vec<(u32, f64)>>,
}

impl Counts {
    pub fn new(documents: &[String], stop_words: &StopWords) -> Self {
        let tokenized: Vec<Vec<String>> = documents
            .iter()
            .map(|d| {
                tokenize(d)
                    .into_iter()
                    .filter(|t| !stop_words.contains(t))
                    .collect()
            })
            .collect();
        let mut vocab: BTreeMap<&str, u32> = BTreeMap::new();
        for t in tokenized.iter().flatten() {
            vocab.insert(t, 0);
        }
        for (i, v) in vocab.values_mut().enumerate() {
            *v = i as u32;
        }
        let docs = tokenized
            .iter()
            .map(|tokens| {
                let mut counts: BTreeMap<u32, f64> = BTreeMap::new();
                for t in tokens {
                    *counts.entry(vocab[t.as_str()]).or_default() += 1.0;
                }
                counts.into_iter().collect()
            })
            .collect();
        Counts {
            vocabulary: vocab.keys().map(|s| (*s).to_owned()).collect(),
            docs,
        }
    }
}

/// c-TF-IDF of a set of classes (topics).
pub struct ClassTfidf {
    idf: Vec<f64>,
    /// Per class, sorted by class id: sparse c-TF-IDF row.
    pub rows: BTreeMap<i64, Vec<(u32, f64)>>,
}

fn l1_times_idf(counts: &[(u32, f64)], idf: &[f64]) -> Vec<(u32, f64)> {
    let total: f64 = counts.iter().map(|c| c.1).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    counts
        .iter()
        .map(|&(w, c)| (w, c / total * idf[w as usize]))
        .collect()
}

impl ClassTfidf {
    /// `labels[i]` is document i's class.
    pub fn fit(counts: &Counts, labels: &[i64]) -> Self {
        let mut per_class: BTreeMap<i64, HashMap<u32, f64>> = BTreeMap::new();
        for (doc, &label) in counts.docs.iter().zip(labels) {
            let row = per_class.entry(label).or_default();
            for &(w, c) in doc {
                *row.entry(w).or_default() += c;
            }
        }
        let mut df = vec![0.0f64; counts.vocabulary.len()];
        let mut row_sums = Vec::with_capacity(per_class.len());
        for row in per_class.values() {
            row_sums.push(row.values().sum::<f64>());
            for (&w, &c) in row {
                df[w as usize] += c;
            }
        }
        // BERTopic truncates the average to an integer.
        let avg = (row_sums.iter().sum::<f64>() / row_sums.len().max(1) as f64).trunc();
        let idf: Vec<f64> = df
            .iter()
            .map(|&f| if f > 0.0 { (avg / f + 1.0).ln() } else { 0.0 })
            .collect();
        let rows = per_class
            .into_iter()
            .map(|(label, row)| {
                let mut sparse: Vec<(u32, f64)> = row.into_iter().collect();
                sparse.sort_unstable_by_key(|e| e.0);
                (label, l1_times_idf(&sparse, &idf))
            })
            .collect();
        ClassTfidf { idf, rows }
    }

    /// The `top_n` words of a class, best first (ties: vocabulary order).
    pub fn top_words(&self, counts: &Counts, class: i64, top_n: usize) -> Vec<(String, f64)> {
        let mut row: Vec<(u32, f64)> = self.rows.get(&class).cloned().unwrap_or_default();
        row.retain(|e| e.1 > 0.0);
        row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        row.into_iter()
            .take(top_n)
            .map(|(w, s)| (counts.vocabulary[w as usize].clone(), s))
            .collect()
    }

    /// BERTopic's representative documents: among up to 500 documents of
    /// the class (a seeded sample), the `n` whose own c-TF-IDF vector is
    /// most cosine-similar to the class's. Returns document indices.
    pub fn representative(
        &self,
        counts: &Counts,
        labels: &[i64],
        class: i64,
        n: usize,
        rng: &mut Rng,
    ) -> Vec<usize> {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        if members.len() > 500 {
            // Partial Fisher-Yates: a seeded sample of 500, in index order.
            for i in 0..500 {
                let j = i + rng.below(members.len() - i);
                members.swap(i, j);
            }
            members.truncate(500);
            members.sort_unstable();
        }
        let Some(class_row) = self.rows.get(&class) else {
            return Vec::new();
        };
        let class_map: HashMap<u32, f64> = class_row.iter().copied().collect();
        let class_norm = class_row.iter().map(|e| e.1 * e.1).sum::<f64>().sqrt();
        let mut scored: Vec<(f64, usize)> = members
            .into_iter()
            .map(|i| {
                let v = l1_times_idf(&counts.docs[i], &self.idf);
                let norm = v.iter().map(|e| e.1 * e.1).sum::<f64>().sqrt();
                let dot: f64 = v
                    .iter()
                    .map(|(w, s)| s * class_map.get(w).unwrap_or(&0.0))
                    .sum();
                let cos = if norm > 0.0 && class_norm > 0.0 {
                    dot / (norm * class_norm)
                } else {
                    0.0
                };
                (cos, i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(n).map(|s| s.1).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_matches_scikit_learn_default() {
        // CountVectorizer().build_analyzer()("Hello, World! a I'm e-mail x2 Ünïcode_ok 42")
        assert_eq!(
            tokenize("Hello, World! a I'm e-mail x2 Ünïcode_ok 42"),
            ["hello", "world", "mail", "x2", "ünïcode_ok", "42"]
        );
    }

    #[test]
    fn ctfidf_matches_bertopic_formula() {
        // Two classes: class 0 = "apple apple banana", class 1 = "banana cherry".
        let docs: Vec<String> = ["apple apple", "banana", "banana cherry the"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let counts = Counts::new(&docs, &StopWords::English);
        assert_eq!(counts.vocabulary, ["apple", "banana", "cherry"]);
        let model = ClassTfidf::fit(&counts, &[0, 0, 1]);
        // Row sums 3 and 2 → avg = trunc(2.5) = 2; f = apple 2, banana 2, cherry 1.
        let idf = |f: f64| (2.0 / f + 1.0).ln();
        let top = model.top_words(&counts, 0, 5);
        assert_eq!(top[0].0, "apple");
        assert!((top[0].1 - 2.0 / 3.0 * idf(2.0)).abs() < 1e-12);
        assert!((top[1].1 - 1.0 / 3.0 * idf(2.0)).abs() < 1e-12);
        let top1 = model.top_words(&counts, 1, 1);
        assert_eq!(top1, vec![("cherry".to_string(), 0.5 * idf(1.0))]);
        let rep = model.representative(&counts, &[0, 0, 1], 0, 1, &mut Rng::new(0));
        assert_eq!(rep, vec![0]);
    }

    #[test]
    fn custom_stop_words_and_none() {
        let docs = vec!["The cat and the Dog".to_string()];
        let custom = Counts::new(&docs, &StopWords::List(vec!["Dog".into()]));
        assert_eq!(custom.vocabulary, ["and", "cat", "the"]);
        let none = Counts::new(&docs, &StopWords::None);
        assert_eq!(none.vocabulary, ["and", "cat", "dog", "the"]);
    }
}
