//! Swapping a bijection's directions.

use super::{BijectionSpec, Direction, Tape};
use crate::engine::Matrix;
use crate::io::TensorSource;
use crate::{Bijection, Result};

/// `Invert(b)`: forward is `b`'s inverse and vice versa, so the fast direction of a layer can be
/// chosen per use. `Invert(MaskedAutoregressive)` is an inverse autoregressive flow (IAF):
/// one-pass sampling, sequential density evaluation.
#[derive(Debug)]
pub struct Invert(pub Box<dyn Bijection>);

impl Bijection for Invert {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn context_dim(&self) -> usize {
        self.0.context_dim()
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.0.transform(input, context, direction.flip())
    }

    fn num_params(&self) -> usize {
        self.0.num_params()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        self.0.params(f);
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.0.params_mut(f);
    }

    fn train_forward(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction, tape: &mut Tape) -> Result<(Matrix, Vec<f32>)> {
        self.0.train_forward(input, context, direction.flip(), tape)
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        self.0.backward(direction.flip(), tape, grad_out, grad_log_det, grads)
    }

    /// The inner layer's data side is this layer's base side: the inner layer is initialised on
    /// the rows it maps `x` to, and the rows it maps `x` to afterwards are passed on.
    fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        let inner_data = self.0.forward_and_log_det(x, context)?.0;
        self.0.data_init(&inner_data, context)?;
        Ok(self.0.forward_and_log_det(x, context)?.0)
    }

    fn tracks_statistics(&self) -> bool {
        self.0.tracks_statistics()
    }

    /// As [`Invert::data_init`]: the inner layer re-estimates on the rows at its own data side.
    fn recalibrate(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        let inner_data = self.0.forward_and_log_det(x, context)?.0;
        self.0.recalibrate(&inner_data, context)?;
        Ok(self.0.forward_and_log_det(x, context)?.0)
    }

    fn set_training(&mut self, on: bool) {
        self.0.set_training(on);
    }

    fn apply(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<Matrix> {
        self.0.apply(input, context, direction.flip())
    }

    fn set_solver(&mut self, solver: crate::ode::Solver) -> bool {
        self.0.set_solver(solver)
    }

    fn dequantized_columns(&self) -> Vec<usize> {
        self.0.dequantized_columns()
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Invert { inner: Box::new(self.0.spec()) }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        self.0.tensors(prefix, out);
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.0.load_tensors(prefix, src)
    }
}
