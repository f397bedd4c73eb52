//! The standard normal base distribution.

use crate::engine::{fill_normal_blocks, Matrix, Rng};

/// Rows per independently seeded block of [`StandardNormal::sample`].
const SAMPLE_BLOCK: usize = 1024;

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

    /// `n` draws, generated in parallel: blocks of 1024 rows, each from its own
    /// stream seeded in order from `rng`, so the draws depend on the seed only, not on the
    /// number of threads.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Matrix {
        let mut data = vec![0.0f32; n * self.dim];
        fill_normal_blocks(&mut data, SAMPLE_BLOCK * self.dim, rng);
        Matrix::from_vec(n, self.dim, data)
    }

    /// Differential entropy `d/2 · ln(2πe)`.
    pub fn entropy(&self) -> f64 {
        self.dim as f64 * (HALF_LN_TWO_PI + 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_draws_are_reproducible_standard_normal_and_distinct_across_blocks() {
        let base = StandardNormal::new(3);
        let a = base.sample(5000, &mut Rng::new(9));
        assert_eq!(a, base.sample(5000, &mut Rng::new(9)), "same seed, same draws");
        assert_ne!(a, base.sample(5000, &mut Rng::new(10)));
        // Blocks of 1024 rows come from different streams.
        assert_ne!(a.row(0), a.row(SAMPLE_BLOCK));
        let v = a.as_slice();
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        // 15,000 draws: standard errors 0.008 (mean) and 0.012 (variance).
        assert!(mean.abs() < 0.04 && (var - 1.0).abs() < 0.06, "mean {mean}, variance {var}");
    }
}
