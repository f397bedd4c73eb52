//! The whitening map of a data set, as LU-linear parameters: `x = C z + μ` with `C` the
//! Cholesky factor of the covariance, so that the inverse maps the rows to zero mean and
//! identity covariance, and a flow that starts with it is exactly the full-covariance Gaussian
//! fitted to those rows.

use crate::engine::Matrix;

/// Mean and covariance of the rows of `x`, accumulated in f64 (population covariance).
fn mean_and_covariance(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let (n, d) = (x.rows().max(1) as f64, x.cols());
    let mut mean = vec![0.0f64; d];
    for i in 0..x.rows() {
        mean.iter_mut().zip(x.row(i)).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut cov = vec![0.0f64; d * d];
    let mut centred = vec![0.0f64; d];
    for i in 0..x.rows() {
        centred.iter_mut().zip(x.row(i)).zip(&mean).for_each(|((c, &v), m)| *c = v as f64 - m);
        for a in 0..d {
            for b in 0..=a {
                cov[a * d + b] += centred[a] * centred[b];
            }
        }
    }
    for a in 0..d {
        for b in 0..=a {
            cov[a * d + b] /= n;
            cov[b * d + a] = cov[a * d + b];
        }
    }
    (mean, cov)
}

/// Lower Cholesky factor of the symmetric `d × d` matrix `a`, or `None` if it is not positive
/// definite.
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut c = vec![0.0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s = a[i * d + j] - (0..j).map(|k| c[i * d + k] * c[j * d + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                c[i * d + i] = s.sqrt();
            } else {
                c[i * d + j] = s / c[j * d + j];
            }
        }
    }
    Some(c)
}

/// Mean and lower Cholesky factor of the covariance of the rows of `x`. A covariance that is
/// singular at f64 precision (collinear columns) gets the smallest ridge, in steps of ten from
/// 1e-9 of its mean variance, that makes it positive definite; one beyond repair (a constant
/// column) gives the identity scaled to the mean variance.
pub(crate) fn gaussian_fit(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let d = x.cols();
    let (mean, mut cov) = mean_and_covariance(x);
    let scale = ((0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64).max(f64::MIN_POSITIVE);
    let mut ridge = 0.0;
    loop {
        if let Some(c) = cholesky(&cov, d) {
            return (mean, c);
        }
        let next = if ridge == 0.0 { 1e-9 * scale } else { ridge * 10.0 };
        (0..d).for_each(|i| cov[i * d + i] += next - ridge);
        ridge = next;
        if ridge > scale {
            return (mean, (0..d * d).map(|p| if p % (d + 1) == 0 { scale.sqrt() } else { 0.0 }).collect());
        }
    }
}

/// Squared Mahalanobis distance of each row of `x` under the Gaussian `(mean, c)` of
/// [`gaussian_fit`].
pub(crate) fn squared_distances(x: &Matrix, mean: &[f64], c: &[f64]) -> Vec<f64> {
    let d = x.cols();
    let mut y = vec![0.0f64; d];
    (0..x.rows())
        .map(|r| {
            for i in 0..d {
                let s: f64 = (0..i).map(|k| c[i * d + k] * y[k]).sum();
                y[i] = (x.get(r, i) as f64 - mean[i] - s) / c[i * d + i];
            }
            y.iter().map(|v| v * v).sum()
        })
        .collect()
}

/// The whitening map of `x` as `(strict lower L by rows, log-diagonal s, bias b)` of
/// `x = L·diag(eˢ)·z + b` (`L` unit lower-triangular): `L·diag(eˢ)` is the Cholesky factor of
/// the covariance ([`gaussian_fit`]).
pub(crate) fn whitening_factors(x: &Matrix) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = x.cols();
    let (mean, c) = gaussian_fit(x);
    let lower = (0..d).flat_map(|i| (0..i).map(move |j| (i, j))).map(|(i, j)| c[i * d + j] / c[j * d + j]).collect();
    let log_diag = (0..d).map(|i| c[i * d + i].ln()).collect();
    (lower, log_diag, mean)
}
