//! The standard normal base distribution.

use crate::engine::{Matrix, Rng};

/// `N(0, I)` in `dim` dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandardNormal {
    dim: usize,
}

/// `ln(2π) / 2`.
const HALF_LN_TWO_PI: f64 = 0.918_938_533_204_672_8;

impl StandardNormal {
    /// The standard normal in `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self { dim }
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `log N(z; 0, I)` of one row, in f64.
    pub fn log_prob_row(&self, z: &[f32]) -> f64 {
        -0.5 * z.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() - self.dim as f64 * HALF_LN_TWO_PI
    }

    /// `log N(z; 0, I)` per row.
    pub fn log_prob(&self, z: &Matrix) -> Vec<f32> {
        (0..z.rows()).map(|i| self.log_prob_row(z.row(i)) as f32).collect()
    }

    /// `n` draws.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Matrix {
        Matrix::from_vec(n, self.dim, (0..n * self.dim).map(|_| rng.normal() as f32).collect())
    }

    /// Differential entropy `d/2 · ln(2πe)`.
    pub fn entropy(&self) -> f64 {
        self.dim as f64 * (HALF_LN_TWO_PI + 0.5)
    }
}
