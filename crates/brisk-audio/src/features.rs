use std::fmt;
use std::str::FromStr;

use crate::error::{invalid, AnalysisError};

/// One group of outputs that the caller can ask for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Loudness,
    Tempo,
    Key,
    Rms,
    Spectral,
    ZeroCrossingRate,
    Mfcc,
    Chroma,
    Danceability,
}

impl Feature {
    pub const ALL: [Feature; 9] = [
        Feature::Loudness,
        Feature::Tempo,
        Feature::Key,
        Feature::Rms,
        Feature::Spectral,
        Feature::ZeroCrossingRate,
        Feature::Mfcc,
        Feature::Chroma,
        Feature::Danceability,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Loudness => "loudness",
            Feature::Tempo => "tempo",
            Feature::Key => "key",
            Feature::Rms => "rms",
            Feature::Spectral => "spectral",
            Feature::ZeroCrossingRate => "zero_crossing_rate",
            Feature::Mfcc => "mfcc",
            Feature::Chroma => "chroma",
            Feature::Danceability => "danceability",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Feature {
    type Err = AnalysisError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feature::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Feature::ALL.iter().map(|f| f.name()).collect();
                invalid(format!(
                    "unknown feature '{s}'; known: {}",
                    names.join(", ")
                ))
            })
    }
}

/// A set of [`Feature`]s (all of them by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeatureSet(u16);

impl Default for FeatureSet {
    fn default() -> Self {
        FeatureSet::all()
    }
}

impl FeatureSet {
    pub fn all() -> Self {
        FeatureSet(Feature::ALL.iter().fold(0, |acc, f| acc | f.bit()))
    }

    pub fn empty() -> Self {
        FeatureSet(0)
    }

    pub fn with(self, f: Feature) -> Self {
        FeatureSet(self.0 | f.bit())
    }

    pub fn has(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses a comma- or space-separated list of names, or a JSON array
    /// of strings; an empty list is refused (ask for nothing, get nothing
    /// is more likely a mistake).
    pub fn parse(list: &str) -> Result<Self, AnalysisError> {
        let trimmed = list.trim();
        let inner = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        let mut set = FeatureSet::empty();
        for name in inner
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
        {
            set = set.with(name.parse()?);
        }
        if set.is_empty() {
            return Err(invalid("'features' names no feature"));
        }
        Ok(set)
    }

    /// The names in the set, in canonical order (for cache keys).
    pub fn names(self) -> Vec<&'static str> {
        Feature::ALL
            .into_iter()
            .filter(|f| self.has(*f))
            .map(Feature::name)
            .collect()
    }

    /// Whether any feature needs the 22 050 Hz frame analysis (all but loudness).
    pub(crate) fn needs_frames(self) -> bool {
        Feature::ALL
            .into_iter()
            .any(|f| f != Feature::Loudness && self.has(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_refuses_unknown_names() {
        let s = FeatureSet::parse("tempo, key").expect("parse");
        assert!(s.has(Feature::Tempo) && s.has(Feature::Key) && !s.has(Feature::Mfcc));
        let j = FeatureSet::parse(r#"["mfcc","loudness"]"#).expect("parse");
        assert_eq!(j.names(), vec!["loudness", "mfcc"]);
        assert!(FeatureSet::parse("tempo,bogus").is_err());
        assert!(FeatureSet::parse(" ").is_err());
        assert_eq!(FeatureSet::all().names().len(), 9);
        assert!(!FeatureSet::empty().with(Feature::Loudness).needs_frames());
    }
}
