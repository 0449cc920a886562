//! Topic reduction (`nr_topics`), as BERTopic 0.17 does it on its topic
//! embeddings (the mean embedding of each topic's documents).

// Matrix and graph code indexes several arrays with one index; iterator
// chains would hide which array a loop walks.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use ndarray::Array2;
use ndarray016::Array2 as Array2v16;

use crate::NrTopics;

/// New labels after merging topics; −1 stays −1.
pub fn reduce(unit: &Array2<f32>, labels: &[i64], nr_topics: NrTopics) -> Vec<i64> {
    let topics: Vec<i64> = {
        let mut t: Vec<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let has_outliers = labels.iter().any(|&l| l < 0);
    if topics.len() < 2 {
        return labels.to_vec();
    }
    let centroids = centroids(unit, labels, &topics);
    let merged: Vec<i64> = match nr_topics {
        NrTopics::Keep => return labels.to_vec(),
        NrTopics::Auto => {
            // HDBSCAN (min_cluster_size 2) on the L2-normalised centroids;
            // topics it groups merge, the rest stay.
            if topics.len() < 3 {
                return labels.to_vec();
            }
            let dim = centroids[0].len();
            let flat: Vec<f64> = centroids.iter().flatten().copied().collect();
            let Ok(data) = Array2v16::from_shape_vec((topics.len(), dim), flat) else {
                return labels.to_vec();
            };
            let mut hdb = hdbscan_rs::Hdbscan::new(hdbscan_rs::HdbscanParams {
                min_cluster_size: 2,
                ..Default::default()
            });
            let Ok(groups) = hdb.fit_predict(&data.view()) else {
                return labels.to_vec();
            };
            let max_topic = *topics.last().unwrap_or(&0);
            topics
                .iter()
                .zip(groups)
                .map(|(&t, g)| if g >= 0 { max_topic + 1 + g as i64 } else { t })
                .collect()
        }
        NrTopics::Count(n) => {
            let wanted = n.saturating_sub(usize::from(has_outliers)).max(1);
            if wanted >= topics.len() {
                return labels.to_vec();
            }
            average_linkage(&centroids, wanted)
                .into_iter()
                .map(|c| c as i64)
                .collect()
        }
    };
    let map: BTreeMap<i64, i64> = topics.iter().copied().zip(merged).collect();
    labels
        .iter()
        .map(|l| map.get(l).copied().unwrap_or(-1))
        .collect()
}

/// L2-normalised mean embedding per topic.
fn centroids(unit: &Array2<f32>, labels: &[i64], topics: &[i64]) -> Vec<Vec<f64>> {
    let dim = unit.ncols();
    topics
        .iter()
        .map(|&t| {
            let mut sum = vec![0.0f64; dim];
            for (row, _) in unit.outer_iter().zip(labels).filter(|(_, &l)| l == t) {
                for (s, &v) in sum.iter_mut().zip(row.iter()) {
                    *s += v as f64;
                }
            }
            let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            sum.iter().map(|x| x / norm).collect()
        })
        .collect()
}

/// Agglomerative clustering with average linkage on cosine distance, down to
/// `k` clusters (scikit-learn's `AgglomerativeClustering(linkage="average")`
/// on a precomputed matrix). Returns a cluster per item, numbered by first
/// appearance. O(m³) in the number of topics, which is small.
pub fn average_linkage(items: &[Vec<f64>], k: usize) -> Vec<usize> {
    let m = items.len();
    let dist = |a: &[f64], b: &[f64]| 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut clusters: Vec<Vec<usize>> = (0..m).map(|i| vec![i]).collect();
    let mut d: Vec<Vec<f64>> = (0..m)
        .map(|i| (0..m).map(|j| dist(&items[i], &items[j])).collect())
        .collect();
    while clusters.len() > k.max(1) {
        let mut best = (f64::INFINITY, 0, 1);
        for i in 0..clusters.len() {
            for j in i + 1..clusters.len() {
                if d[i][j] < best.0 {
                    best = (d[i][j], i, j);
                }
            }
        }
        let (_, i, j) = best;
        let (ni, nj) = (clusters[i].len() as f64, clusters[j].len() as f64);
        for t in 0..clusters.len() {
            if t != i && t != j {
                let v = (d[i][t] * ni + d[j][t] * nj) / (ni + nj);
                d[i][t] = v;
                d[t][i] = v;
            }
        }
        let moved = clusters.remove(j);
        clusters[i].extend(moved);
        d.remove(j);
        for row in d.iter_mut() {
            row.remove(j);
        }
    }
    let mut out = vec![0; m];
    let mut order: Vec<usize> = (0..clusters.len()).collect();
    order.sort_by_key(|&c| clusters[c].iter().min().copied());
    for (new, &c) in order.iter().enumerate() {
        for &i in &clusters[c] {
            out[i] = new;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_linkage_merges_the_closest() {
        let items = vec![
            vec![1.0, 0.0],
            vec![0.99f64.sqrt(), 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.99f64.sqrt()],
        ];
        assert_eq!(average_linkage(&items, 2), [0, 0, 1, 1]);
        assert_eq!(average_linkage(&items, 4), [0, 1, 2, 3]);
        assert_eq!(average_linkage(&items, 1), [0, 0, 0, 0]);
    }

    #[test]
    fn count_includes_the_outlier_topic() {
        // Four topics along two directions, plus outliers: nr_topics 3 →
        // two topics + −1.
        let rows = [
            [1.0f32, 0.0],
            [0.995, 0.0998],
            [0.0, 1.0],
            [0.0998, 0.995],
            [0.7, 0.7],
        ];
        let unit = Array2::from_shape_fn((5, 2), |(i, j)| rows[i][j]);
        let labels = [0, 1, 2, 3, -1];
        let out = reduce(&unit, &labels, NrTopics::Count(3));
        assert_eq!(out[0], out[1]);
        assert_eq!(out[2], out[3]);
        assert_ne!(out[0], out[2]);
        assert_eq!(out[4], -1);
        assert_eq!(reduce(&unit, &labels, NrTopics::Keep), labels);
    }
}
