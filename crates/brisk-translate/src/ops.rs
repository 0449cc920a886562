//! Numeric kernels: matrix product, layer normalisation, softmax, sigmoid.
//! Formulas follow Marian's CPU kernels (eps, the sigmoid split), so the
//! float path stays as close to the reference as f32 allows.

/// A dense layer with its weights stored one row per output (`[out][in]`),
/// the layout of the model file.
#[derive(Debug)]
pub(crate) struct Linear {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
}

impl Linear {
    /// `y[m][n_out] = x[m][n_in] · Wᵀ + b`.
    pub fn forward(&self, x: &[f32], m: usize, threads: usize) -> Vec<f32> {
        let mut y = vec![0.0; m * self.n_out];
        matmul_nt(
            x,
            m,
            self.n_in,
            &self.w,
            self.n_out,
            Some(&self.b),
            &mut y,
            threads,
        );
        y
    }
}

/// Products below this many multiply-adds run on one thread: splitting a
/// decoder step's small product costs more than it gains.
const PARALLEL_MIN_FLOPS: usize = 1 << 20;

/// `out[m][n] = x[m][k] · w[n][k]ᵀ (+ bias[n])`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_nt(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    threads: usize,
) {
    assert!(x.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if let Some(b) = bias {
        assert!(b.len() >= n);
        for row in out[..m * n].chunks_exact_mut(n) {
            row.copy_from_slice(&b[..n]);
        }
    }
    if k == 0 {
        return;
    }
    let par = if threads > 1 && m * n * k >= PARALLEL_MIN_FLOPS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: gemm reads `m*k` values of `x` (row stride k, column stride 1),
    // `k*n` values of `w` read as the k×n matrix wᵀ (element (p, j) at
    // j*k + p) and writes `m*n` values of `out` (row stride n); the assert
    // above guarantees all three slices are at least that long, the strides
    // keep every index inside them, and `out` does not alias the inputs
    // (it is a distinct `&mut`). This is the crate's only unsafe: the gemm
    // crate's AVX2/AVX-512 kernels have no safe entry point.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            bias.is_some(),
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Marian's `layerNorm` default epsilon.
const LN_EPS: f32 = 1e-9;

/// In place over each row of width `gamma.len()`: `gamma * (x - mean) /
/// sqrt(var + eps) + beta` (Marian's CPU LayerNormalization).
pub(crate) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32]) {
    let d = gamma.len();
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let sigma = (var + LN_EPS).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = g * ((*v - mean) / sigma) + b;
        }
    }
}

/// `x += y`, then layer norm: the "dan" post-processing of every sublayer
/// (dropout is inactive at inference).
pub(crate) fn add_norm(x: &mut [f32], y: &[f32], gamma: &[f32], beta: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += *b;
    }
    layer_norm(x, gamma, beta);
}

pub(crate) fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// Marian's numerically stable sigmoid (two branches, no overflow).
pub(crate) fn sigmoid(x: f32) -> f32 {
    if x > 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Dot product with eight independent partial sums: unlike one running sum
/// (a strict chain of dependent adds the compiler may not reorder), the
/// lanes vectorise. The summation order differs from a sequential sum only
/// in the last bits.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

pub(crate) fn relu_in_place(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_with_bias() {
        let (m, k, n) = (3, 5, 4);
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.91).cos()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 - 1.5).collect();
        for threads in [1, 2] {
            let mut out = vec![f32::NAN; m * n];
            matmul_nt(&x, m, k, &w, n, Some(&b), &mut out, threads);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = b[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>();
                    assert!((out[i * n + j] - want).abs() < 1e-5, "{i},{j}");
                }
            }
        }
    }

    #[test]
    fn dot_matches_sequential_sum() {
        for n in [0, 3, 8, 19, 256] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.3).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn layer_norm_normalises_rows() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        layer_norm(&mut x, &[2.0; 4], &[0.5; 4]);
        let r0: f32 = x[..4].iter().sum::<f32>() / 4.0;
        assert!((r0 - 0.5).abs() < 1e-6);
        // (1 - 2.5) / sqrt(1.25) * 2 + 0.5
        assert!((x[0] - (-1.5 / 1.25f32.sqrt() * 2.0 + 0.5)).abs() < 1e-6);
        // A constant row has zero variance: eps keeps it finite (= beta).
        assert!(x[4..].iter().all(|v| (*v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn softmax_and_sigmoid() {
        let mut s = vec![1.0, 2.0, 3.0, -1e8];
        softmax_in_place(&mut s);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(s[3], 0.0);
        assert!(s[2] > s[1] && s[1] > s[0]);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(3.0) + sigmoid(-3.0) - 1.0).abs() < 1e-6);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
    }
}
