//! Gaussian noise regularisation: training on `x + h·σ⊙ε`, ε ~ N(0, I), fits the data's
//! density convolved with a Gaussian kernel (Rothfuss et al. 2019, "Noise Regularization for
//! Conditional Density Estimation", arXiv:1907.08982). On a small table this keeps a flow from
//! piling density onto single rows and point masses, which is what an anomaly score needs; the
//! price is a wider density, so plain density estimation leaves it off by default.

use crate::engine::{Matrix, Rng};
use crate::{Error, Result};

/// Scott's rule of thumb for the kernel width of an `dim`-dimensional density estimate from
/// `rows` points, in units of each column's standard deviation: `rows^(−1/(dim+4))`.
pub fn scott_factor(rows: usize, dim: usize) -> f64 {
    (rows.max(1) as f64).powf(-1.0 / (dim as f64 + 4.0))
}

/// Per-column noise scales: `factor` times each column's standard deviation over `x`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Smoothing {
    scales: Vec<f32>,
}

impl Smoothing {
    /// Scales for `x`'s columns, or `None` when `factor` is 0.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite factor.
    pub(super) fn new(factor: f64, x: &Matrix) -> Result<Option<Self>> {
        if !(factor >= 0.0 && factor.is_finite()) {
            return Err(Error::config(format!("the smoothing factor must be finite and at least 0, got {factor}")));
        }
        if factor == 0.0 {
            return Ok(None);
        }
        let n = x.rows().max(1) as f64;
        let scales = (0..x.cols())
            .map(|j| {
                let mean = (0..x.rows()).map(|i| x.get(i, j) as f64).sum::<f64>() / n;
                let var = (0..x.rows()).map(|i| (x.get(i, j) as f64 - mean).powi(2)).sum::<f64>() / n;
                (factor * var.sqrt()) as f32
            })
            .collect();
        Ok(Some(Self { scales }))
    }

    /// `x` with fresh Gaussian noise of the column scales added.
    pub(super) fn apply(&self, x: &Matrix, rng: &mut Rng) -> Matrix {
        let mut out = x.clone();
        for i in 0..x.rows() {
            for (j, &s) in self.scales.iter().enumerate() {
                out.set(i, j, x.get(i, j) + s * rng.normal() as f32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_requested_scale_per_column() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let mut x = Matrix::zeros(n, 2);
        for i in 0..n {
            x.set(i, 0, rng.normal() as f32);
            x.set(i, 1, 100.0 * rng.normal() as f32);
        }
        let s = Smoothing::new(0.5, &x).unwrap().unwrap();
        let y = s.apply(&x, &mut rng);
        for (j, want) in [(0, 0.5), (1, 50.0)] {
            let d: Vec<f64> = (0..n).map(|i| (y.get(i, j) - x.get(i, j)) as f64).collect();
            let sd = (d.iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt();
            assert!((sd / want - 1.0).abs() < 0.03, "column {j}: noise sd {sd}, want {want}");
        }
    }

    #[test]
    fn zero_is_off_and_bad_factors_are_refused() {
        let x = Matrix::zeros(4, 1);
        assert!(Smoothing::new(0.0, &x).unwrap().is_none());
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(Smoothing::new(bad, &x).is_err());
        }
    }

    #[test]
    fn scott_factor_shrinks_with_rows_and_grows_with_dimension() {
        assert!((scott_factor(460, 8) - 460f64.powf(-1.0 / 12.0)).abs() < 1e-12);
        assert!(scott_factor(10_000, 8) < scott_factor(100, 8));
        assert!(scott_factor(100, 20) > scott_factor(100, 2));
    }
}
