//! Exact k nearest neighbours under cosine distance (what BERTopic's UMAP
//! uses), as blocked matrix products of the L2-normalised embeddings.
//! Exact search is affordable at the corpus sizes the server accepts
//! (10,000 × 384 is about 4·10¹⁰ multiply-adds) and, unlike approximate
//! search, needs no randomness to stay reproducible.

use ndarray::{s, Array2};

/// Rows of `data` scaled to unit length (zero rows stay zero).
pub fn normalised(data: &[Vec<f32>]) -> Array2<f32> {
    let dim = data.first().map_or(0, Vec::len);
    let mut out = Array2::<f32>::zeros((data.len(), dim));
    for (i, row) in data.iter().enumerate() {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (o, x) in out.row_mut(i).iter_mut().zip(row) {
                *o = x / norm;
            }
        }
    }
    out
}

/// Per point: neighbour indices and their distances, nearest first.
pub type Neighbours = (Vec<Vec<usize>>, Vec<Vec<f32>>);

/// For each row, its `k` nearest rows (itself first) and their cosine
/// distances, sorted by distance then index.
pub fn cosine_knn(
    unit: &Array2<f32>,
    k: usize,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Option<Neighbours> {
    let n = unit.nrows();
    let k = k.min(n);
    let mut indices = Vec::with_capacity(n);
    let mut distances = Vec::with_capacity(n);
    const BLOCK: usize = 512;
    let t = unit.t();
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        let sims = unit.slice(s![start..end, ..]).dot(&t);
        for (r, row) in sims.outer_iter().enumerate() {
            let i = start + r;
            let mut cand: Vec<(f32, usize)> = row
                .iter()
                .enumerate()
                .map(|(j, &sim)| (if j == i { 0.0 } else { (1.0 - sim).max(0.0) }, j))
                .collect();
            let by_distance =
                |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if k < n {
                cand.select_nth_unstable_by(k - 1, by_distance);
                cand.truncate(k);
            }
            // Self first even when a duplicate document ties at distance 0.
            cand.sort_by(|a, b| (a.1 != i).cmp(&(b.1 != i)).then(by_distance(a, b)));
            indices.push(cand.iter().map(|c| c.1).collect());
            distances.push(cand.iter().map(|c| c.0).collect());
        }
        start = end;
        if !progress(start as f32 / n as f32) {
            return None;
        }
    }
    Some((indices, distances))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_brute_force() {
        let mut rng = crate::rng::Rng::new(3);
        let data: Vec<Vec<f32>> = (0..700)
            .map(|_| (0..16).map(|_| rng.normal() as f32).collect())
            .collect();
        let unit = normalised(&data);
        let (idx, dist) = cosine_knn(&unit, 5, &mut |_| true).expect("not cancelled");
        for i in [0, 1, 511, 512, 699] {
            let mut all: Vec<(f32, usize)> = (0..data.len())
                .map(|j| {
                    let dot: f32 = unit.row(i).dot(&unit.row(j));
                    (if i == j { 0.0 } else { 1.0 - dot }, j)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(idx[i][0], i);
            for r in 0..5 {
                assert_eq!(idx[i][r], all[r].1, "row {i} rank {r}");
                assert!((dist[i][r] - all[r].0).abs() < 1e-5);
            }
        }
    }
}
