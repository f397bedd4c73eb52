//! Bijections: invertible maps with a tractable log-determinant, composed into flows.
//!
//! # Direction convention
//! `forward` is the generative direction, base z → data x; `inverse` is inference, x → z.
//! Every bijection computes its map and its log|det J| in one fused pass, in both directions;
//! the inverse log-det of a row is minus the forward log-det of its image.
//!
//! # Training
//! Layers have no autograd. [`Bijection::train_forward`] runs a pass in a chosen direction and
//! pushes what its backward pass needs onto a [`Tape`]; [`Bijection::backward`] pops it and
//! writes parameter gradients into a flat slice laid out as [`Bijection::params`] visits them.

mod actnorm;
mod batchnorm;
mod bounds;
mod chain;
mod continuous;
mod conv1x1;
mod coupling;
mod dequantize;
mod invert;
mod lu_linear;
mod made_sampler;
mod masked_autoregressive;
mod permutation;
mod prefix;
mod spec;
mod squeeze;
mod standardize;
mod tape;
mod transformer;
pub(crate) mod whitening;

pub use crate::engine::ImageShape;
pub use crate::engine::{Direction, SplineShape};
pub use actnorm::ActNorm;
pub use batchnorm::BatchNorm;
pub use bounds::{Bounds, Interval, LOGIT_ALPHA};
pub use chain::Chain;
pub use continuous::{ContinuousFlow, ContinuousSpec};
pub use conv1x1::Conv1x1;
pub use coupling::AffineCoupling;
pub use dequantize::Dequantize;
pub use invert::Invert;
pub use lu_linear::LuLinear;
pub use masked_autoregressive::MaskedAutoregressive;
pub use permutation::Permutation;
pub use prefix::OnPrefix;
pub use spec::{BijectionSpec, WaveSpec};
pub use squeeze::Squeeze;
pub use standardize::Standardize;
pub use tape::Tape;
pub use transformer::Transformer;

use crate::engine::Matrix;
use crate::io::TensorSource;
use crate::Result;

/// An invertible map `x = f(z)` with fused log|det J| in both directions.
///
/// # Shapes
/// Inputs and outputs are `[batch, dim]`; log-dets are one value per row. `context`, when the
/// bijection is conditional, is `[batch, context_dim]`; unconditional bijections ignore it.
pub trait Bijection: Send + Sync + std::fmt::Debug {
    /// Width of the rows this bijection maps.
    fn dim(&self) -> usize;

    /// Width of the context it expects (0 when unconditional).
    fn context_dim(&self) -> usize {
        0
    }

    /// The map in `direction` with its log|det J| per row, in one fused pass: forward `x = f(z)`
    /// with `log|det ∂f/∂z|`, inverse `z = f⁻¹(x)` with `log|det ∂f⁻¹/∂x|`. The one map every
    /// layer implements; the methods below derive from it.
    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)>;

    /// `x = f(z)` and `log|det ∂f/∂z|` per row.
    fn forward_and_log_det(&self, z: &Matrix, context: Option<&Matrix>) -> Result<(Matrix, Vec<f32>)> {
        self.transform(z, context, Direction::Forward)
    }

    /// `z = f⁻¹(x)` and `log|det ∂f⁻¹/∂x|` per row.
    fn inverse_and_log_det(&self, x: &Matrix, context: Option<&Matrix>) -> Result<(Matrix, Vec<f32>)> {
        self.transform(x, context, Direction::Inverse)
    }

    /// Number of trainable parameters.
    fn num_params(&self) -> usize {
        0
    }

    /// Visits the trainable parameters as consecutive chunks, in gradient layout order.
    fn params(&self, _f: &mut dyn FnMut(&[f32])) {}

    /// Visits the trainable parameters mutably, in the same order as [`Bijection::params`].
    fn params_mut(&mut self, _f: &mut dyn FnMut(&mut [f32])) {}

    /// Runs the map in `direction` like [`Bijection::transform`] and records on `tape` what
    /// [`Bijection::backward`] needs. The default records nothing: right for layers whose
    /// backward pass needs only their parameters (the harness's gradient checks catch a layer
    /// that needs more and keeps the default).
    fn train_forward(
        &self,
        input: &Matrix,
        context: Option<&Matrix>,
        direction: Direction,
        _tape: &mut Tape,
    ) -> Result<(Matrix, Vec<f32>)> {
        self.transform(input, context, direction)
    }

    /// Given the gradient of a loss with respect to the output of the last
    /// [`Bijection::train_forward`] in `direction` and to its per-row log-dets, writes the
    /// parameter gradients into `grads` (length [`Bijection::num_params`], overwritten: each
    /// layer appears once in a pass) and returns the gradient with respect to the input.
    ///
    /// # Errors
    /// [`crate::Error::Unsupported`] where a direction has no practical gradient (a masked
    /// autoregressive layer's sequential forward pass).
    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix>;

    /// Data-dependent initialisation from data-side rows `x` (standardisation statistics,
    /// ActNorm); returns `inverse(x)` so that a chain can pass it on. Layers that need no
    /// initialisation just map the data.
    fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        Ok(self.inverse_and_log_det(x, context)?.0)
    }

    /// Whether the layer keeps statistics that training tracks as running averages
    /// ([`BatchNorm`]'s), which [`Bijection::recalibrate`] re-estimates.
    fn tracks_statistics(&self) -> bool {
        false
    }

    /// Re-estimates exactly, from data-side rows `x`, the statistics that training tracks as
    /// running averages ([`BatchNorm`]'s: noisy, and stale for the best checkpoint that
    /// training restores), leaving the parameters alone; returns `inverse(x)` so that a chain
    /// can pass it on.
    fn recalibrate(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        Ok(self.inverse_and_log_det(x, context)?.0)
    }

    /// Switches training mode (batch statistics in [`BatchNorm`]); a no-op for most layers.
    fn set_training(&mut self, _on: bool) {}

    /// The map alone, without its log-determinant: what encoding, decoding and sampling need.
    /// The same as [`Bijection::transform`]'s rows; layers whose log-det costs extra work (the
    /// trace a [`ContinuousFlow`] integrates) skip it.
    fn apply(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<Matrix> {
        Ok(self.transform(input, context, direction)?.0)
    }

    /// Sets the ODE solver of every continuous layer ([`ContinuousFlow`]); returns whether
    /// there was one.
    fn set_solver(&mut self, _solver: crate::ode::Solver) -> bool {
        false
    }

    /// Integer-valued data columns that training dequantises with uniform noise (see
    /// [`Dequantize`]); empty for most layers.
    fn dequantized_columns(&self) -> Vec<usize> {
        Vec::new()
    }

    /// The serialisable architecture (no weights).
    fn spec(&self) -> BijectionSpec;

    /// Named tensors to save (parameters and buffers), names prefixed by `prefix`.
    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        if self.num_params() > 0 {
            let mut all = Vec::with_capacity(self.num_params());
            self.params(&mut |p| all.extend_from_slice(p));
            out.push((format!("{prefix}params"), all));
        }
    }

    /// Loads the tensors that [`Bijection::tensors`] saved.
    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        if self.num_params() > 0 {
            let all = src.take(&format!("{prefix}params"), self.num_params())?;
            let mut off = 0;
            self.params_mut(&mut |p| {
                p.copy_from_slice(&all[off..off + p.len()]);
                off += p.len();
            });
        }
        Ok(())
    }
}

/// Checks that `input` has `dim` columns.
pub(crate) fn check_width(what: &str, input: &Matrix, dim: usize) -> Result<()> {
    if input.cols() != dim {
        return Err(crate::Error::DimensionMismatch { what: what.into(), expected: dim, got: input.cols() });
    }
    Ok(())
}

/// Checks that a conditional layer got a context of the right shape (none when `context_dim` is 0).
pub(crate) fn check_context(context: Option<&Matrix>, context_dim: usize, rows: usize) -> Result<()> {
    check_context_shape(context.map(|c| (c.rows(), c.cols())), context_dim, rows)
}

/// [`check_context`] for a context given by its shape `(rows, columns)`.
pub(crate) fn check_context_shape(shape: Option<(usize, usize)>, context_dim: usize, rows: usize) -> Result<()> {
    match (shape, context_dim) {
        (None, 0) => Ok(()),
        (Some((_, 0)), 0) => Ok(()),
        (Some(_), 0) => Err(crate::Error::ContextMismatch("this flow is unconditional but a context was given".into())),
        (None, k) => Err(crate::Error::ContextMismatch(format!("this flow needs a context of {k} columns"))),
        (Some((_, cols)), k) if cols != k => Err(crate::Error::ContextMismatch(format!("context has {cols} columns, expected {k}"))),
        (Some((r, _)), _) if r != rows => Err(crate::Error::ContextMismatch(format!("context has {r} rows, data has {rows}"))),
        _ => Ok(()),
    }
}
