//! A bijection applied to the first columns of a row, the rest passing through: the levels of a
//! multiscale flow after a split act on the channels that were kept, while the factored-out
//! ones are already Gaussian.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::Matrix;
use crate::io::TensorSource;
use crate::{Bijection, Error, Result};

/// `x = (f(z_{0..k}), z_{k..dim})`: `inner` maps columns `0..k`; the others pass through with
/// log-det 0.
#[derive(Debug)]
pub struct OnPrefix {
    dim: usize,
    inner: Box<dyn Bijection>,
}

impl OnPrefix {
    /// `inner` on the first `inner.dim()` columns of rows of width `dim`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `inner.dim() <= dim`.
    pub fn new(dim: usize, inner: Box<dyn Bijection>) -> Result<Self> {
        if inner.dim() > dim || inner.dim() == 0 {
            return Err(Error::config(format!("a prefix layer of width {} does not fit rows of width {dim}", inner.dim())));
        }
        Ok(Self { dim, inner })
    }

    fn k(&self) -> usize {
        self.inner.dim()
    }

    /// `(head, tail)` of the rows.
    fn split(&self, input: &Matrix) -> (Matrix, Matrix) {
        (input.slice_cols(0, self.k()), input.slice_cols(self.k(), self.dim))
    }

    /// Runs `f` on the head of `input` (checked) and joins its output with the tail.
    fn on_head<T>(&self, input: &Matrix, f: impl FnOnce(&Matrix) -> Result<(Matrix, T)>) -> Result<(Matrix, T)> {
        check_width("prefix-layer input", input, self.dim)?;
        let (head, tail) = self.split(input);
        let (out, extra) = f(&head)?;
        Ok((out.hcat(&tail), extra))
    }
}

impl Bijection for OnPrefix {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.inner.context_dim()
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.on_head(input, |h| self.inner.transform(h, context, direction))
    }

    fn num_params(&self) -> usize {
        self.inner.num_params()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        self.inner.params(f);
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.inner.params_mut(f);
    }

    fn train_forward(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction, tape: &mut Tape) -> Result<(Matrix, Vec<f32>)> {
        self.on_head(input, |h| self.inner.train_forward(h, context, direction, tape))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let (head, tail) = self.split(&grad_out);
        Ok(self.inner.backward(direction, tape, head, grad_log_det, grads)?.hcat(&tail))
    }

    fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        check_width("prefix-layer input", x, self.dim)?;
        let (head, tail) = self.split(x);
        Ok(self.inner.data_init(&head, context)?.hcat(&tail))
    }

    fn tracks_statistics(&self) -> bool {
        self.inner.tracks_statistics()
    }

    fn recalibrate(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        check_width("prefix-layer input", x, self.dim)?;
        let (head, tail) = self.split(x);
        Ok(self.inner.recalibrate(&head, context)?.hcat(&tail))
    }

    fn set_training(&mut self, on: bool) {
        self.inner.set_training(on);
    }

    fn apply(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<Matrix> {
        Ok(self.on_head(input, |h| Ok((self.inner.apply(h, context, direction)?, ())))?.0)
    }

    fn set_solver(&mut self, solver: crate::ode::Solver) -> bool {
        self.inner.set_solver(solver)
    }

    fn dequantized_columns(&self) -> Vec<usize> {
        self.inner.dequantized_columns()
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::OnPrefix { dim: self.dim, inner: Box::new(self.inner.spec()) }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        self.inner.tensors(prefix, out);
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.inner.load_tensors(prefix, src)
    }
}
