//! The conditioner networks a coupling layer can use, behind one interface.

use super::{CheckerboardNet, ConvNet, ConvNetCache, Mlp, MlpCache, ResidualCache, ResidualMlp, WaveConditioner, WaveNetCache};
use crate::engine::Matrix;

/// A plain MLP, a residual MLP, a convolutional network on image rows (channel-split or
/// checkerboard-masked), or a WaveNet on grouped audio.
#[derive(Clone, Debug)]
pub enum Conditioner {
    /// [`Mlp`].
    Mlp(Mlp),
    /// [`ResidualMlp`].
    Residual(ResidualMlp),
    /// [`ConvNet`].
    Conv(ConvNet),
    /// [`CheckerboardNet`].
    Checkerboard(CheckerboardNet),
    /// [`WaveConditioner`].
    Wave(WaveConditioner),
}

/// The backward cache of a [`Conditioner`].
#[derive(Debug)]
pub enum ConditionerCache {
    /// Of an [`Mlp`].
    Mlp(MlpCache),
    /// Of a [`ResidualMlp`].
    Residual(ResidualCache),
    /// Of a [`ConvNet`].
    Conv(ConvNetCache),
    /// Of a [`WaveConditioner`].
    Wave(WaveNetCache),
}

impl Conditioner {
    /// Output for a batch.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        match self {
            Conditioner::Mlp(m) => m.forward(x),
            Conditioner::Residual(m) => m.forward(x),
            Conditioner::Conv(m) => m.forward(x),
            Conditioner::Checkerboard(m) => m.forward(x),
            Conditioner::Wave(m) => m.forward(x),
        }
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, ConditionerCache) {
        match self {
            Conditioner::Mlp(m) => {
                let (y, c) = m.forward_cached(x);
                (y, ConditionerCache::Mlp(c))
            }
            Conditioner::Residual(m) => {
                let (y, c) = m.forward_cached(x);
                (y, ConditionerCache::Residual(c))
            }
            Conditioner::Conv(m) => {
                let (y, c) = m.forward_cached(x);
                (y, ConditionerCache::Conv(c))
            }
            Conditioner::Checkerboard(m) => {
                let (y, c) = m.forward_cached(x);
                (y, ConditionerCache::Conv(c))
            }
            Conditioner::Wave(m) => {
                let (y, c) = m.forward_cached(x);
                (y, ConditionerCache::Wave(c))
            }
        }
    }

    /// Writes parameter gradients into `grads`; returns the input gradient.
    pub fn backward(&self, cache: &ConditionerCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        match (self, cache) {
            (Conditioner::Mlp(m), ConditionerCache::Mlp(c)) => m.backward(c, grad_out, grads, true).expect("input gradient requested"),
            (Conditioner::Residual(m), ConditionerCache::Residual(c)) => m.backward(c, grad_out, grads),
            (Conditioner::Conv(m), ConditionerCache::Conv(c)) => m.backward(c, grad_out, grads),
            (Conditioner::Checkerboard(m), ConditionerCache::Conv(c)) => m.backward(c, grad_out, grads),
            (Conditioner::Wave(m), ConditionerCache::Wave(c)) => m.backward(c, grad_out, grads),
            _ => unreachable!("a conditioner's cache comes from its own forward pass"),
        }
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        match self {
            Conditioner::Mlp(m) => m.params(),
            Conditioner::Residual(m) => m.params(),
            Conditioner::Conv(m) => m.params(),
            Conditioner::Checkerboard(m) => m.params(),
            Conditioner::Wave(m) => m.params(),
        }
    }

    /// The flat parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        match self {
            Conditioner::Mlp(m) => m.params_mut(),
            Conditioner::Residual(m) => m.params_mut(),
            Conditioner::Conv(m) => m.params_mut(),
            Conditioner::Checkerboard(m) => m.params_mut(),
            Conditioner::Wave(m) => m.params_mut(),
        }
    }
}
