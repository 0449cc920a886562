//! Key and mode from the mean chroma vector, by correlation with the 24
//! rotations of the Krumhansl-Kessler probe-tone profiles.

use crate::Key;

const MAJOR: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
const MINOR: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];
pub(crate) const NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

fn pearson(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let ma = a.iter().sum::<f64>() / 12.0;
    let mb = b.iter().sum::<f64>() / 12.0;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        num += (x - ma) * (y - mb);
        da += (x - ma) * (x - ma);
        db += (y - mb) * (y - mb);
    }
    if da <= 0.0 || db <= 0.0 {
        return 0.0;
    }
    num / (da * db).sqrt()
}

/// None for a flat (toneless or silent) chroma.
pub(crate) fn estimate(chroma: &[f64]) -> Option<Key> {
    let c: [f64; 12] = chroma.try_into().ok()?;
    let mean = c.iter().sum::<f64>() / 12.0;
    if c.iter().all(|&v| (v - mean).abs() < 1e-9) {
        return None;
    }
    let mut best: Option<(f64, usize, bool)> = None;
    for tonic in 0..12 {
        for (profile, minor) in [(&MAJOR, false), (&MINOR, true)] {
            let mut rotated = [0.0; 12];
            for (i, r) in rotated.iter_mut().enumerate() {
                *r = profile[(i + 12 - tonic) % 12];
            }
            let r = pearson(&c, &rotated);
            if best.is_none_or(|(b, _, _)| r > b) {
                best = Some((r, tonic, minor));
            }
        }
    }
    let (strength, tonic, minor) = best?;
    Some(Key {
        key: NAMES[tonic].to_string(),
        scale: if minor { "minor" } else { "major" }.to_string(),
        strength,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_find_themselves() {
        // The D major profile itself is D major with strength 1.
        let mut c = [0.0; 12];
        for (i, v) in c.iter_mut().enumerate() {
            *v = MAJOR[(i + 12 - 2) % 12];
        }
        let k = estimate(&c).expect("key");
        assert_eq!((k.key.as_str(), k.scale.as_str()), ("D", "major"));
        assert!((k.strength - 1.0).abs() < 1e-9);
        assert!(estimate(&[0.5; 12]).is_none());
    }
}
