//! Uniform dequantisation of integer-valued columns (Theis et al. 2016, arXiv:1511.01844).
//!
//! A flow is a density on the real line, so an integer column needs noise: training fits
//! `p(v + u)` with fresh `u ~ U(0, 1)` per batch, and `−E[log p(v + u)]` bounds the discrete
//! `−log P(v)` from above. This layer records which columns are integer-valued so that the
//! saved model carries it; as a map it is the identity (the flow lives in the dequantised,
//! continuous space, and uniform noise has Jacobian 1). [`crate::train::fit`] adds the noise;
//! scoring and sampling helpers on [`crate::Flow`] add it or floor it back.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{pool, Matrix};
use crate::{Bijection, Error, Result};

/// Marks integer-valued columns for uniform dequantisation; the identity map.
#[derive(Clone, Debug, PartialEq)]
pub struct Dequantize {
    dim: usize,
    columns: Vec<usize>,
}

impl Dequantize {
    /// Marks `columns` (0-based) of `dim` as integer-valued.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a column out of range.
    pub fn new(dim: usize, mut columns: Vec<usize>) -> Result<Self> {
        columns.sort_unstable();
        columns.dedup();
        if columns.iter().any(|&c| c >= dim) {
            return Err(Error::config(format!("dequantised column out of range for {dim} columns")));
        }
        Ok(Self { dim, columns })
    }
}

impl Bijection for Dequantize {
    fn dim(&self) -> usize {
        self.dim
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, _direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("dequantised data", input, self.dim)?;
        Ok((input.clone(), pool::zeroed(input.rows())))
    }

    fn backward(
        &self,
        _direction: Direction,
        _tape: &mut Tape,
        grad_out: Matrix,
        _grad_log_det: &[f32],
        _grads: &mut [f32],
    ) -> Result<Matrix> {
        Ok(grad_out)
    }

    fn dequantized_columns(&self) -> Vec<usize> {
        self.columns.clone()
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Dequantize { dim: self.dim, columns: self.columns.clone() }
    }
}
