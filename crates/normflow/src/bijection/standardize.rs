//! Standardisation as a bijection, so that a model carries its preprocessing and its
//! log-probabilities are those of the raw data.

use super::actnorm::column_moments;
use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{pool, Matrix};
use crate::io::TensorSource;
use crate::{Bijection, Error, Result};

/// `x = z·σ + μ` per column, with `μ`, `σ` fixed from the training split (not trained).
///
/// Put it last in a chain (the data side). [`Bijection::data_init`] sets the statistics;
/// a constant column is an error ([`Error::ConstantColumn`]), since its density is degenerate.
#[derive(Clone, Debug)]
pub struct Standardize {
    mean: Vec<f32>,
    std: Vec<f32>,
    initialized: bool,
}

impl Standardize {
    /// An identity standardisation of `dim` columns, to be fitted by [`Bijection::data_init`].
    pub fn new(dim: usize) -> Self {
        Self { mean: vec![0.0; dim], std: vec![1.0; dim], initialized: false }
    }

    /// Fixed statistics.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the lengths differ or a scale is not positive and finite.
    pub fn from_stats(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.len() != std.len() || std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::config("standardisation needs finite means and positive scales of equal length"));
        }
        Ok(Self { mean, std, initialized: true })
    }

    /// Per-column means.
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-column standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }
}

/// Whether column `j` of `x`, with standard deviation `std`, is constant at f32 resolution: its
/// spread is below a few units in the last place of its own largest magnitude (each column on
/// its own scale, so a column of money beside a column of fractions is judged fairly).
fn is_constant(x: &Matrix, j: usize, std: f64) -> bool {
    let largest = (0..x.rows()).map(|i| x.get(i, j).abs() as f64).fold(0.0, f64::max);
    std == 0.0 || std <= 4.0 * f32::EPSILON as f64 * largest
}

impl Bijection for Standardize {
    fn dim(&self) -> usize {
        self.mean.len()
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("data", input, self.mean.len())?;
        let mut out = input.clone();
        for i in 0..input.rows() {
            for ((o, &m), &s) in out.row_mut(i).iter_mut().zip(&self.mean).zip(&self.std) {
                *o = match direction {
                    Direction::Forward => *o * s + m,
                    Direction::Inverse => (*o - m) / s,
                };
            }
        }
        let log_scale: f32 = self.std.iter().map(|s| s.ln()).sum();
        let ld = if direction == Direction::Forward { log_scale } else { -log_scale };
        Ok((out, pool::filled(input.rows(), ld)))
    }

    fn backward(
        &self,
        direction: Direction,
        _tape: &mut Tape,
        mut grad_out: Matrix,
        _grad_log_det: &[f32],
        _grads: &mut [f32],
    ) -> Result<Matrix> {
        for i in 0..grad_out.rows() {
            for (g, &s) in grad_out.row_mut(i).iter_mut().zip(&self.std) {
                *g = match direction {
                    Direction::Forward => *g * s,
                    Direction::Inverse => *g / s,
                };
            }
        }
        Ok(grad_out)
    }

    fn data_init(&mut self, x: &Matrix, _context: Option<&Matrix>) -> Result<Matrix> {
        check_width("data", x, self.mean.len())?;
        if !self.initialized {
            if x.rows() < 2 {
                return Err(Error::NotEnoughData("standardisation needs at least 2 training rows".into()));
            }
            let (mean, std) = column_moments(x);
            if let Some(j) = (0..x.cols()).find(|&j| is_constant(x, j, std[j])) {
                return Err(Error::ConstantColumn { column: j + 1 });
            }
            self.mean = mean.iter().map(|&m| m as f32).collect();
            self.std = std.iter().map(|&s| s as f32).collect();
            self.initialized = true;
        }
        Ok(self.transform(x, None, Direction::Inverse)?.0)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Standardize { dim: self.mean.len() }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        out.push((format!("{prefix}mean"), self.mean.clone()));
        out.push((format!("{prefix}std"), self.std.clone()));
        out.push((format!("{prefix}initialized"), vec![f32::from(u8::from(self.initialized))]));
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        let d = self.mean.len();
        let mean = src.take(&format!("{prefix}mean"), d)?;
        let std = src.take(&format!("{prefix}std"), d)?;
        let initialized = src.take(&format!("{prefix}initialized"), 1)?[0] != 0.0;
        *self = Self::from_stats(mean, std).map_err(|_| src.error("standardisation statistics are not finite and positive"))?;
        self.initialized = initialized;
        Ok(())
    }
}
