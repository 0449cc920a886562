//! Leading eigenvectors of a symmetric operator, for UMAP's spectral
//! initialisation (and PCA when the neighbour graph is disconnected).
//!
//! No maintained pure-Rust crate offers a sparse symmetric eigensolver
//! (scipy's `eigsh`), so this is block subspace iteration with a
//! Rayleigh-Ritz step solved by cyclic Jacobi: a few dozen lines, tested
//! against dense matrices with known spectra below.

use crate::rng::Rng;

/// `apply(x, y, m)`: y = A·x for a row-major `n×m` block x.
pub type Operator<'a> = &'a dyn Fn(&[f64], &mut [f64], usize);

/// Eigen-decomposition of a small dense symmetric matrix (row-major `n×n`)
/// by cyclic Jacobi rotations. Returns (values, vectors as columns,
/// row-major `n×n`), sorted by descending value.
pub fn jacobi_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>() + 1e-300;
        if off <= 1e-22 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| a[y * n + y].total_cmp(&a[x * n + x]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + col] = v[k * n + i];
        }
    }
    (values, vectors)
}

/// Orthonormalise the `k` columns of the row-major `n×k` block in place
/// (modified Gram-Schmidt); a column that collapses is refilled at random.
fn orthonormalise(x: &mut [f64], n: usize, k: usize, rng: &mut Rng) {
    for j in 0..k {
        for _attempt in 0..3 {
            for i in 0..j {
                let dot: f64 = (0..n).map(|r| x[r * k + i] * x[r * k + j]).sum();
                for r in 0..n {
                    x[r * k + j] -= dot * x[r * k + i];
                }
            }
            let norm = (0..n)
                .map(|r| x[r * k + j] * x[r * k + j])
                .sum::<f64>()
                .sqrt();
            if norm > 1e-12 {
                for r in 0..n {
                    x[r * k + j] /= norm;
                }
                break;
            }
            for r in 0..n {
                x[r * k + j] = rng.normal();
            }
        }
    }
}

/// The `k` eigenpairs of largest eigenvalue of a symmetric positive
/// semi-definite operator of size `n`, given as `apply(x, y)`: y = A·x for a
/// row-major `n×m` block. Block subspace iteration with `k + extra` vectors
/// (the extra ones speed convergence when eigenvalues cluster, as they do
/// for well-separated clusters) and Rayleigh-Ritz at the end.
pub fn top_eigen(
    n: usize,
    k: usize,
    iterations: usize,
    rng: &mut Rng,
    apply: Operator<'_>,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let m = (k + 8).min(n);
    let mut x: Vec<f64> = (0..n * m).map(|_| rng.normal()).collect();
    orthonormalise(&mut x, n, m, rng);
    let mut y = vec![0.0; n * m];
    for _ in 0..iterations {
        apply(&x, &mut y, m);
        std::mem::swap(&mut x, &mut y);
        orthonormalise(&mut x, n, m, rng);
    }
    // Rayleigh-Ritz: H = Xᵀ A X, then rotate X by H's eigenvectors.
    apply(&x, &mut y, m);
    let mut h = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            h[i * m + j] = (0..n).map(|r| x[r * m + i] * y[r * m + j]).sum();
        }
    }
    for i in 0..m {
        for j in i + 1..m {
            let s = 0.5 * (h[i * m + j] + h[j * m + i]);
            h[i * m + j] = s;
            h[j * m + i] = s;
        }
    }
    let (values, rot) = jacobi_eigen(&h, m);
    let k = k.min(m);
    let vectors = (0..k)
        .map(|c| {
            (0..n)
                .map(|r| (0..m).map(|i| x[r * m + i] * rot[i * m + c]).sum())
                .collect()
        })
        .collect();
    (values[..k].to_vec(), vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_a_known_spectrum() {
        // [[2,1],[1,2]] has eigenvalues 3 and 1, vectors (1,1)/√2, (1,-1)/√2.
        let (vals, vecs) = jacobi_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[0].abs() - vecs[2].abs()).abs() < 1e-12);
        assert!((vecs[0] * vecs[2]) > 0.0);
    }

    #[test]
    fn subspace_iteration_matches_a_diagonal_operator_in_a_rotated_basis() {
        // A = Q diag(d) Qᵀ with Q a Householder reflection: the top
        // eigenvectors are Q's columns for the largest d.
        let n = 40;
        let d: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
        let u: Vec<f64> = (0..n).map(|i| ((i * 7 % 11) as f64) - 5.0).collect();
        let uu: f64 = u.iter().map(|x| x * x).sum();
        let q = |r: usize, c: usize| (if r == c { 1.0 } else { 0.0 }) - 2.0 * u[r] * u[c] / uu;
        let mut a = vec![0.0; n * n];
        for r in 0..n {
            for c in 0..n {
                a[r * n + c] = (0..n).map(|i| q(r, i) * d[i] * q(c, i)).sum();
            }
        }
        let apply = |x: &[f64], y: &mut [f64], m: usize| {
            for r in 0..n {
                for j in 0..m {
                    y[r * m + j] = (0..n).map(|c| a[r * n + c] * x[c * m + j]).sum();
                }
            }
        };
        let (vals, vecs) = top_eigen(n, 3, 300, &mut Rng::new(1), &apply);
        for (i, val) in vals.iter().enumerate() {
            assert!((val - d[i]).abs() < 1e-6, "{vals:?}");
            let dot: f64 = (0..n).map(|r| vecs[i][r] * q(r, i)).sum();
            assert!((dot.abs() - 1.0).abs() < 1e-5, "vector {i}: {dot}");
        }
    }
}
