//! Composition of bijections.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{pool, Matrix};
use crate::io::TensorSource;
use crate::{Bijection, Error, Result};

/// Layers applied in list order in the forward direction (z → x), in reverse order in the
/// inverse; log-dets add up.
///
/// (distrax applies its chain in reverse list order; list order is what readers expect.)
#[derive(Debug)]
pub struct Chain {
    dim: usize,
    layers: Vec<Box<dyn Bijection>>,
    /// Where each layer's parameters start in the chain's gradient layout, plus the total.
    offsets: Vec<usize>,
}

impl Chain {
    /// A chain of `layers`, all of the same width.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the chain is empty or the widths differ.
    pub fn new(layers: Vec<Box<dyn Bijection>>) -> Result<Self> {
        let dim = layers.first().ok_or_else(|| Error::config("a chain needs at least one layer"))?.dim();
        if let Some(l) = layers.iter().find(|l| l.dim() != dim) {
            return Err(Error::config(format!("chain layers differ in width: {dim} and {}", l.dim())));
        }
        let mut offsets = vec![0];
        for l in &layers {
            offsets.push(offsets.last().copied().unwrap_or(0) + l.num_params());
        }
        Ok(Self { dim, layers, offsets })
    }

    /// The layers, in forward order.
    pub fn layers(&self) -> &[Box<dyn Bijection>] {
        &self.layers
    }

    /// The index of the `step`-th layer that `direction` applies.
    fn layer_at(&self, direction: Direction, step: usize) -> usize {
        match direction {
            Direction::Forward => step,
            Direction::Inverse => self.layers.len() - 1 - step,
        }
    }

    fn run(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("chain input", input, self.dim)?;
        let mut ld = pool::zeroed(input.rows());
        let mut h = input.clone();
        for step in 0..self.layers.len() {
            let (out, l) = self.layers[self.layer_at(direction, step)].transform(&h, context, direction)?;
            ld.iter_mut().zip(&l).for_each(|(a, b)| *a += b);
            pool::give(l);
            h = out;
        }
        Ok((h, ld))
    }
}

impl Bijection for Chain {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.layers.iter().map(|l| l.context_dim()).max().unwrap_or(0)
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.run(input, context, direction)
    }

    fn num_params(&self) -> usize {
        self.layers.iter().map(|l| l.num_params()).sum()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        self.layers.iter().for_each(|l| l.params(f));
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.layers.iter_mut().for_each(|l| l.params_mut(f));
    }

    fn train_forward(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction, tape: &mut Tape) -> Result<(Matrix, Vec<f32>)> {
        let mut ld = pool::zeroed(input.rows());
        let mut h = input.clone();
        for step in 0..self.layers.len() {
            let (out, l) = self.layers[self.layer_at(direction, step)].train_forward(&h, context, direction, tape)?;
            ld.iter_mut().zip(&l).for_each(|(a, b)| *a += b);
            pool::give(l);
            h = out;
        }
        Ok((h, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let mut g = grad_out;
        for step in (0..self.layers.len()).rev() {
            let i = self.layer_at(direction, step);
            g = self.layers[i].backward(direction, tape, g, grad_log_det, &mut grads[self.offsets[i]..self.offsets[i + 1]])?;
        }
        Ok(g)
    }

    fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        let mut h = x.clone();
        for layer in self.layers.iter_mut().rev() {
            h = layer.data_init(&h, context)?;
        }
        Ok(h)
    }

    fn tracks_statistics(&self) -> bool {
        self.layers.iter().any(|l| l.tracks_statistics())
    }

    fn recalibrate(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        let mut h = x.clone();
        for layer in self.layers.iter_mut().rev() {
            h = layer.recalibrate(&h, context)?;
        }
        Ok(h)
    }

    fn set_training(&mut self, on: bool) {
        self.layers.iter_mut().for_each(|l| l.set_training(on));
    }

    fn apply(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<Matrix> {
        check_width("chain input", input, self.dim)?;
        let mut h = input.clone();
        for step in 0..self.layers.len() {
            h = self.layers[self.layer_at(direction, step)].apply(&h, context, direction)?;
        }
        Ok(h)
    }

    fn set_solver(&mut self, solver: crate::ode::Solver) -> bool {
        self.layers.iter_mut().fold(false, |any, l| l.set_solver(solver) | any)
    }

    fn dequantized_columns(&self) -> Vec<usize> {
        // Only the data-side layer sees data columns.
        self.layers.last().map(|l| l.dequantized_columns()).unwrap_or_default()
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Chain { layers: self.layers.iter().map(|l| l.spec()).collect() }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        for (i, l) in self.layers.iter().enumerate() {
            l.tensors(&format!("{prefix}{i}."), out);
        }
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.load_tensors(&format!("{prefix}{i}."), src)?;
        }
        Ok(())
    }
}
