//! UMAP (McInnes, Healy, Melville 2018), following umap-learn's
//! `fit` for a precomputed k-NN graph step by step: smooth k-NN distances,
//! fuzzy simplicial set with fuzzy union, spectral initialisation,
//! epoch-weighted SGD with negative sampling.
//!
//! Why not a crate: the maintained `umap-rs` samples with the thread RNG
//! and updates in parallel (Hogwild), so a seed cannot reproduce an answer,
//! and it leaves k-NN and initialisation to the caller. This module is serial
//! and seeded, as umap-learn is when given a `random_state`.

// Matrix and graph code indexes several arrays with one index; iterator
// chains would hide which array a loop walks.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use ndarray::Array2;

use crate::eigen::top_eigen;
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct UmapParams {
    pub n_neighbors: usize,
    pub n_components: usize,
    pub min_dist: f64,
    pub spread: f64,
    /// `None`: umap-learn's default (500 up to 10,000 points, else 200).
    pub n_epochs: Option<usize>,
    pub negative_sample_rate: usize,
}

impl Default for UmapParams {
    /// BERTopic's UMAP: 15 neighbours, 5 dimensions, min_dist 0.
    fn default() -> Self {
        UmapParams {
            n_neighbors: 15,
            n_components: 5,
            min_dist: 0.0,
            spread: 1.0,
            n_epochs: None,
            negative_sample_rate: 5,
        }
    }
}

const SMOOTH_K_TOLERANCE: f64 = 1e-5;
const MIN_K_DIST_SCALE: f64 = 1e-3;

/// Per point: `rho` (distance to the nearest neighbour) and `sigma` (the
/// bandwidth that makes the memberships sum to log2(k)); umap-learn's
/// `smooth_knn_dist` with local_connectivity 1.
pub fn smooth_knn_dist(distances: &[Vec<f32>], k: usize) -> (Vec<f64>, Vec<f64>) {
    let target = (k as f64).log2();
    let mean_all: f64 = {
        let count: usize = distances.iter().map(Vec::len).sum();
        distances.iter().flatten().map(|&d| d as f64).sum::<f64>() / count.max(1) as f64
    };
    let mut rhos = Vec::with_capacity(distances.len());
    let mut sigmas = Vec::with_capacity(distances.len());
    for row in distances {
        let row: Vec<f64> = row.iter().map(|&d| d as f64).collect();
        let rho = row.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let psum: f64 = row
                .iter()
                .skip(1)
                .map(|&d| {
                    let d = d - rho;
                    if d > 0.0 {
                        (-(d / mid)).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                if hi.is_infinite() {
                    mid *= 2.0;
                } else {
                    mid = (lo + hi) / 2.0;
                }
            }
        }
        let floor = if rho > 0.0 {
            MIN_K_DIST_SCALE * row.iter().sum::<f64>() / row.len().max(1) as f64
        } else {
            MIN_K_DIST_SCALE * mean_all
        };
        rhos.push(rho);
        sigmas.push(mid.max(floor));
    }
    (rhos, sigmas)
}

/// The symmetric fuzzy graph as COO edges (row-major order, both
/// directions), weights `a + b - a·b` (fuzzy union).
pub fn fuzzy_graph(
    indices: &[Vec<usize>],
    distances: &[Vec<f32>],
    k: usize,
) -> Vec<(u32, u32, f32)> {
    let (rhos, sigmas) = smooth_knn_dist(distances, k);
    let mut pairs: HashMap<(u32, u32), (f64, f64)> = HashMap::new();
    for (i, (row_idx, row_dist)) in indices.iter().zip(distances).enumerate() {
        for (&j, &d) in row_idx.iter().zip(row_dist) {
            if j == i {
                continue;
            }
            let d = d as f64;
            let w = if d - rhos[i] <= 0.0 || sigmas[i] == 0.0 {
                1.0
            } else {
                (-((d - rhos[i]) / sigmas[i])).exp()
            };
            let (key, forward) = if i < j {
                ((i as u32, j as u32), true)
            } else {
                ((j as u32, i as u32), false)
            };
            let e = pairs.entry(key).or_insert((0.0, 0.0));
            if forward {
                e.0 = w;
            } else {
                e.1 = w;
            }
        }
    }
    let mut edges: Vec<(u32, u32, f32)> = Vec::with_capacity(pairs.len() * 2);
    for ((i, j), (a, b)) in pairs {
        let w = (a + b - a * b) as f32;
        if w > 0.0 {
            edges.push((i, j, w));
            edges.push((j, i, w));
        }
    }
    edges.sort_unstable_by_key(|e| (e.0, e.1));
    edges
}

/// The curve `1 / (1 + a·x^(2b))` closest (least squares) to UMAP's target
/// membership for `spread` and `min_dist`: umap-learn's `find_ab_params`
/// (scipy's `curve_fit`), here by Levenberg-Marquardt.
pub fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| spread * 3.0 * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let cost = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let f = 1.0 / (1.0 + a * x.powf(2.0 * b));
                (f - y) * (f - y)
            })
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut lambda = 1e-3;
    let mut current = cost(a, b);
    for _ in 0..500 {
        // Normal equations of the 2-parameter problem.
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let den = 1.0 + a * p;
            let f = 1.0 / den;
            let da = -p / (den * den);
            let db = -a * p * 2.0 * x.ln() / (den * den);
            let r = f - y;
            jtj[0][0] += da * da;
            jtj[0][1] += da * db;
            jtj[1][1] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        jtj[1][0] = jtj[0][1];
        let m00 = jtj[0][0] * (1.0 + lambda);
        let m11 = jtj[1][1] * (1.0 + lambda);
        let det = m00 * m11 - jtj[0][1] * jtj[1][0];
        if det.abs() < 1e-300 {
            break;
        }
        let step_a = -(m11 * jtr[0] - jtj[0][1] * jtr[1]) / det;
        let step_b = -(m00 * jtr[1] - jtj[1][0] * jtr[0]) / det;
        let (na, nb) = (a + step_a, b + step_b);
        let next = if na > 0.0 && nb > 0.0 {
            cost(na, nb)
        } else {
            f64::INFINITY
        };
        if next < current {
            let converged = (current - next) < 1e-15 * current.max(1e-300);
            a = na;
            b = nb;
            current = next;
            lambda = (lambda / 10.0).max(1e-12);
            if converged {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// Connected components of the graph: a label per vertex.
fn components(n: usize, edges: &[(u32, u32, f32)]) -> (usize, Vec<usize>) {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    for &(i, j, _) in edges {
        let (a, b) = (find(&mut parent, i as usize), find(&mut parent, j as usize));
        if a != b {
            parent[a.max(b)] = a.min(b);
        }
    }
    let mut label = vec![usize::MAX; n];
    let mut roots: HashMap<usize, usize> = HashMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        let next = roots.len();
        label[i] = *roots.entry(r).or_insert(next);
    }
    (roots.len(), label)
}

/// Spectral layout: the eigenvectors of the normalised graph Laplacian with
/// the smallest non-zero eigenvalues (umap-learn's `spectral_layout`),
/// computed as the top eigenvectors of (I + D^-½ A D^-½)/2 with the
/// trivial one (∝ D^½·1) projected out.
fn spectral_init(n: usize, dim: usize, edges: &[(u32, u32, f32)], rng: &mut Rng) -> Vec<Vec<f64>> {
    let mut degree = vec![0.0f64; n];
    for &(i, _, w) in edges {
        degree[i as usize] += w as f64;
    }
    let inv_sqrt: Vec<f64> = degree
        .iter()
        .map(|&d| if d > 0.0 { 1.0 / d.sqrt() } else { 0.0 })
        .collect();
    let trivial: Vec<f64> = {
        let v: Vec<f64> = degree.iter().map(|d| d.sqrt()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        v.iter().map(|x| x / norm).collect()
    };
    let apply = |x: &[f64], y: &mut [f64], m: usize| {
        // y = (x + S x)/2, then remove the trivial direction.
        for v in y.iter_mut() {
            *v = 0.0;
        }
        for &(i, j, w) in edges {
            let (i, j) = (i as usize, j as usize);
            let s = w as f64 * inv_sqrt[i] * inv_sqrt[j];
            for c in 0..m {
                y[i * m + c] += s * x[j * m + c];
            }
        }
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv = 0.5 * (*yv + xv);
        }
        for c in 0..m {
            let dot: f64 = (0..n).map(|r| y[r * m + c] * trivial[r]).sum();
            for r in 0..n {
                y[r * m + c] -= dot * trivial[r];
            }
        }
    };
    let (_, vectors) = top_eigen(n, dim, 200, rng, &apply);
    vectors
}

/// PCA of the input (top principal axes), umap-learn's `init="pca"`: used
/// when the k-NN graph falls apart into several components, where one
/// spectral layout of the whole graph is meaningless.
fn pca_init(data: &Array2<f32>, dim: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let (n, d) = data.dim();
    let mean = data
        .mean_axis(ndarray::Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(d));
    let centred = data - &mean;
    let cov = centred.t().dot(&centred);
    let cov: Vec<f64> = cov.iter().map(|&v| v as f64 / n.max(1) as f64).collect();
    let apply = |x: &[f64], y: &mut [f64], m: usize| {
        for r in 0..d {
            for c in 0..m {
                y[r * m + c] = (0..d).map(|t| cov[r * d + t] * x[t * m + c]).sum();
            }
        }
    };
    let (_, axes) = top_eigen(d, dim.min(d), 100, rng, &apply);
    axes.iter()
        .map(|axis| {
            centred
                .outer_iter()
                .map(|row| row.iter().zip(axis).map(|(&a, &b)| a as f64 * b).sum())
                .collect()
        })
        .collect()
}

/// Embed the points given by their k-NN graph into `n_components`
/// dimensions. `unit` is the (normalised) input, used only for PCA
/// initialisation of a disconnected graph. `progress(f)` gets the fraction
/// of epochs done; returning false cancels (then `None`).
pub fn embed(
    unit: &Array2<f32>,
    indices: &[Vec<usize>],
    distances: &[Vec<f32>],
    params: &UmapParams,
    seed: u64,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Option<Vec<Vec<f32>>> {
    let n = indices.len();
    let dim = params.n_components;
    let mut rng = Rng::new(seed);
    let k = indices.first().map_or(0, Vec::len);
    let mut edges = fuzzy_graph(indices, distances, k);
    let n_epochs = params
        .n_epochs
        .unwrap_or(if n <= 10_000 { 500 } else { 200 });
    let max_w = edges.iter().map(|e| e.2).fold(0.0f32, f32::max);
    edges.retain(|e| e.2 >= max_w / n_epochs as f32);

    let (n_comp, _) = components(n, &edges);
    let init = if n_comp == 1 && n > dim + 1 {
        spectral_init(n, dim, &edges, &mut rng)
    } else {
        pca_init(unit, dim, &mut rng)
    };
    let max_abs = init
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-300);
    let mut emb: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..dim)
                .map(|c| {
                    init.get(c).map_or(0.0, |col| col[i]) * 10.0 / max_abs + 1e-4 * rng.normal()
                })
                .collect()
        })
        .collect();
    for c in 0..dim {
        let (lo, hi) = emb
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[c]), hi.max(p[c]))
            });
        let range = (hi - lo).max(1e-12);
        for p in emb.iter_mut() {
            p[c] = 10.0 * (p[c] - lo) / range;
        }
    }

    let (a, b) = find_ab_params(params.spread, params.min_dist);
    let (a, b) = (a as f32, b as f32);
    let sgd = Sgd {
        edges: &edges,
        max_w,
        a,
        b,
        n_epochs,
        negative_sample_rate: params.negative_sample_rate.max(1),
    };
    // The points are padded to a fixed width so that the per-sample vector
    // arithmetic compiles to a few SIMD instructions instead of loops over
    // a run-time length (the padding stays 0, so distances are unchanged).
    match dim {
        0..=8 => sgd.run::<8>(&emb, dim, &mut rng, progress),
        9..=16 => sgd.run::<16>(&emb, dim, &mut rng, progress),
        17..=32 => sgd.run::<32>(&emb, dim, &mut rng, progress),
        _ => sgd.run::<64>(&emb, dim, &mut rng, progress),
    }
}

/// umap-learn's layout optimisation (`optimize_layout_euclidean`): for each
/// edge when its epoch comes, pull its two ends together, then push the
/// head away from random points.
///
/// On two threads, deterministically: the points are split into two halves
/// along the first axis of the initial layout (the spectral layout's
/// leading direction, which separates the graph's two sides), and each
/// epoch runs the edges inside each half at the same time, then the few
/// edges across the halves. A half writes only its own points, and its
/// negative samples read the other half as it was when the epoch began, so
/// the answer depends on the seed only, never on timing. Within a half the
/// updates are sequential, as in umap-learn; across halves they are at most
/// one epoch stale (umap-learn's own parallel mode lets threads race).
struct Sgd<'a> {
    edges: &'a [(u32, u32, f32)],
    max_w: f32,
    a: f32,
    b: f32,
    n_epochs: usize,
    negative_sample_rate: usize,
}

/// The edges one phase of an epoch runs, with their sampling schedules.
#[derive(Default)]
struct Part {
    edges: Vec<(u32, u32)>,
    epochs_per_sample: Vec<f64>,
    epochs_per_negative: Vec<f64>,
    next_sample: Vec<f64>,
    next_negative: Vec<f64>,
}

impl Part {
    fn push(&mut self, head: usize, tail: usize, epochs_per_sample: f64, neg_rate: f64) {
        self.edges.push((head as u32, tail as u32));
        self.epochs_per_sample.push(epochs_per_sample);
        self.epochs_per_negative.push(epochs_per_sample / neg_rate);
        self.next_sample.push(epochs_per_sample);
        self.next_negative.push(epochs_per_sample / neg_rate);
    }

    /// One epoch of this part's edges. `mine` holds points `offset..` (both
    /// ends of every edge are among them); a negative sample outside them
    /// is read from `others` (all `n` points as the epoch began).
    #[allow(clippy::too_many_arguments)]
    fn epoch<const W: usize>(
        &mut self,
        mine: &mut [[f32; W]],
        offset: usize,
        others: &[[f32; W]],
        (a, b): (f32, f32),
        epoch: usize,
        alpha: f32,
        rng: &mut Rng,
    ) {
        let n = others.len();
        let e = epoch as f64;
        let own = offset..offset + mine.len();
        for (s, &(head, tail)) in self.edges.iter().enumerate() {
            if self.next_sample[s] > e {
                continue;
            }
            let (j, k) = (head as usize - offset, tail as usize - offset);
            let mut current = mine[j];
            let other = mine[k];
            let d2 = dist2(&current, &other);
            let coeff = if d2 > 0.0 {
                let pb = pow_b(d2, b);
                -2.0 * a * b * (pb / d2) / (a * pb + 1.0)
            } else {
                0.0
            };
            let mut moved = other;
            for c in 0..W {
                let g = clip(coeff * (current[c] - other[c])) * alpha;
                current[c] += g;
                moved[c] -= g;
            }
            mine[k] = moved;
            self.next_sample[s] += self.epochs_per_sample[s];
            let n_neg =
                ((e - self.next_negative[s]) / self.epochs_per_negative[s]).max(0.0) as usize;
            // The repulsions of this sample's negatives are all computed
            // from the same position of the point and applied together.
            // umap-learn applies each before computing the next, which makes
            // one long chain of dependent float operations (distance, power,
            // division, update) per negative; summed this way the negatives
            // are independent and overlap in the CPU. The difference is
            // second order in the step (each repulsion is clipped and scaled
            // by the learning rate) and leaves the topic quality unchanged
            // (BENCHMARKS.md).
            let mut push = [0.0f32; W];
            for _ in 0..n_neg {
                let o = rng.below(n);
                if o == head as usize {
                    continue; // the point itself: no repulsion
                }
                let other = if own.contains(&o) {
                    mine[o - offset]
                } else {
                    others[o]
                };
                let d2 = dist2(&current, &other);
                if d2 > 0.0 {
                    let pb = pow_b(d2, b);
                    let coeff = 2.0 * b / ((0.001 + d2) * (a * pb + 1.0));
                    for c in 0..W {
                        push[c] += clip(coeff * (current[c] - other[c])) * alpha;
                    }
                }
            }
            for c in 0..W {
                current[c] += push[c];
            }
            self.next_negative[s] += n_neg as f64 * self.epochs_per_negative[s];
            mine[j] = current;
        }
    }
}

fn dist2<const W: usize>(x: &[f32; W], y: &[f32; W]) -> f32 {
    let mut d = [0.0f32; W];
    for c in 0..W {
        d[c] = (x[c] - y[c]) * (x[c] - y[c]);
    }
    d.iter().sum()
}

impl Sgd<'_> {
    /// Points of at most `W` dimensions (`dim` used, `W >= dim`, the rest
    /// zero). None when `progress` cancels.
    fn run<const W: usize>(
        &self,
        init: &[Vec<f64>],
        dim: usize,
        rng: &mut Rng,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Option<Vec<Vec<f32>>> {
        assert!(dim <= W, "UMAP supports at most {W} dimensions");
        let n = init.len();
        // The halves: points ordered along the initial layout's first axis
        // (ties by index), the first n/2 and the rest. Points are stored in
        // that order, so each half is one contiguous slice.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| {
            let (x, y) = (init[i].first(), init[j].first());
            x.partial_cmp(&y)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(i.cmp(&j))
        });
        let half = n / 2;
        let mut slot = vec![0usize; n];
        for (p, &i) in order.iter().enumerate() {
            slot[i] = p;
        }
        // Optimise in f32, as umap-learn does (float32).
        let mut points: Vec<[f32; W]> = order
            .iter()
            .map(|&i| {
                let mut q = [0.0f32; W];
                for (d, v) in q.iter_mut().zip(&init[i]) {
                    *d = *v as f32;
                }
                q
            })
            .collect();
        let neg_rate = self.negative_sample_rate as f64;
        let mut parts: [Part; 3] = Default::default();
        for &(head, tail, w) in self.edges {
            let (h, t) = (slot[head as usize], slot[tail as usize]);
            let part = match (h < half, t < half) {
                (true, true) => 0,
                (false, false) => 1,
                _ => 2,
            };
            parts[part].push(h, t, self.max_w as f64 / w as f64, neg_rate);
        }
        let ab = (self.a, self.b);
        let mut rngs = [
            Rng::new(rng.next_u64()),
            Rng::new(rng.next_u64()),
            Rng::new(rng.next_u64()),
        ];
        let [first, second, across] = &mut parts;
        let [rng_first, rng_second, rng_across] = &mut rngs;
        for epoch in 0..self.n_epochs {
            let alpha = 1.0 - epoch as f32 / self.n_epochs as f32;
            let start = points.clone();
            let (low, high) = points.split_at_mut(half);
            std::thread::scope(|s| {
                s.spawn(|| second.epoch(high, half, &start, ab, epoch, alpha, rng_second));
                first.epoch(low, 0, &start, ab, epoch, alpha, rng_first);
            });
            across.epoch(&mut points, 0, &start, ab, epoch, alpha, rng_across);
            if epoch % 10 == 9 && !progress((epoch + 1) as f32 / self.n_epochs as f32) {
                return None;
            }
        }
        let mut out = vec![Vec::new(); n];
        for (i, &p) in slot.iter().enumerate() {
            out[i] = points[p][..dim].to_vec();
        }
        Some(out)
    }
}

/// umap-learn's gradient clip.
#[inline(always)]
fn clip(v: f32) -> f32 {
    v.clamp(-4.0, 4.0)
}

/// `d2^b` for the SGD's gradients (~20 million times for 1,200
/// documents). fast-math's approximate `log2`/`exp2` served here while
/// libm's `logf`/`expf` were 38% of the SGD's profile; once the negatives
/// stopped forming one dependent chain, `powf` measured as fast (UMAP step
/// 0.41 s against 0.43 s) and gave the same topic quality over 100 seeds
/// (BENCHMARKS.md), so the exact power is back.
#[inline(always)]
fn pow_b(d2: f32, b: f32) -> f32 {
    d2.powf(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab_params_match_umap_learn() {
        // umap-learn 0.5 find_ab_params(1.0, 0.1) and (1.0, 0.0), via scipy.
        let (a, b) = find_ab_params(1.0, 0.1);
        assert!(
            (a - 1.576_943_5).abs() < 1e-3 && (b - 0.895_060_6).abs() < 1e-3,
            "{a} {b}"
        );
        let (a, b) = find_ab_params(1.0, 0.0);
        assert!(
            (a - 1.932_808_4).abs() < 2e-3 && (b - 0.790_495_0).abs() < 1e-3,
            "{a} {b}"
        );
    }

    #[test]
    fn smooth_knn_dist_hits_log2_k() {
        let d = vec![vec![0.0f32, 0.1, 0.2, 0.4, 0.8]];
        let (rho, sigma) = smooth_knn_dist(&d, 5);
        assert!((rho[0] - 0.1).abs() < 1e-6);
        let psum: f64 = d[0][1..]
            .iter()
            .map(|&x| (-((x as f64 - rho[0]).max(0.0) / sigma[0])).exp())
            .sum();
        assert!((psum - 5f64.log2()).abs() < 1e-4, "{psum}");
    }

    /// Three groups of 60 noisy copies of three orthogonal directions.
    fn three_groups(seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        (0..180)
            .map(|i| {
                (0..16)
                    .map(|d| {
                        let centre = if d == i % 3 { 1.0 } else { 0.0 };
                        centre + 0.15 * rng.normal() as f32
                    })
                    .collect()
            })
            .collect()
    }

    fn layout(data: &[Vec<f32>], seed: u64) -> Vec<Vec<f32>> {
        let unit = crate::knn::normalised(data);
        let (idx, dist) = crate::knn::cosine_knn(&unit, 15, &mut |_| true).expect("knn");
        embed(
            &unit,
            &idx,
            &dist,
            &UmapParams::default(),
            seed,
            &mut |_| true,
        )
        .expect("layout")
    }

    #[test]
    fn layout_keeps_groups_apart_and_repeats_with_its_seed() {
        let data = three_groups(1);
        let points = layout(&data, 42);
        assert_eq!(points.len(), 180);
        assert!(points.iter().all(|p| p.len() == 5));
        let d = |a: &[f32], b: &[f32]| -> f32 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        // Every point is nearer its own group's centre than any other's.
        let centre = |g: usize| -> Vec<f32> {
            let members: Vec<&Vec<f32>> = points.iter().skip(g).step_by(3).collect();
            (0..5)
                .map(|c| members.iter().map(|p| p[c]).sum::<f32>() / members.len() as f32)
                .collect()
        };
        let centres: Vec<Vec<f32>> = (0..3).map(centre).collect();
        for (i, p) in points.iter().enumerate() {
            let own = d(p, &centres[i % 3]);
            for (g, c) in centres.iter().enumerate() {
                if g != i % 3 {
                    assert!(own < d(p, c), "point {i} is nearer group {g}");
                }
            }
        }
        // The two threads of the SGD never make the answer depend on timing.
        assert_eq!(points, layout(&data, 42));
        assert_ne!(points, layout(&data, 7));
    }

    #[test]
    fn fuzzy_union_is_symmetric() {
        let idx = vec![vec![0, 1, 2], vec![1, 0, 2], vec![2, 1, 0]];
        let dist = vec![
            vec![0.0, 0.1, 0.5],
            vec![0.0, 0.1, 0.2],
            vec![0.0, 0.2, 0.5],
        ];
        let edges = fuzzy_graph(&idx, &dist, 3);
        let get = |i: u32, j: u32| edges.iter().find(|e| e.0 == i && e.1 == j).map(|e| e.2);
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            assert_eq!(get(i, j), get(j, i));
            let w = get(i, j).expect("edge");
            assert!(w > 0.0 && w <= 1.0);
        }
        // Nearest neighbours have membership 1 on both sides.
        assert_eq!(get(0, 1), Some(1.0));
    }
}
