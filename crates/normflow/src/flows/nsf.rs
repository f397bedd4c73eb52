//! Neural spline flows (Durkan et al. 2019, arXiv:1906.04032): rational-quadratic spline
//! transformers in coupling layers (NSF-C) or MADE autoregressive layers (NSF-AR).

use crate::bijection::{AffineCoupling, MaskedAutoregressive, SplineShape, Transformer};
use crate::engine::Rng;
use crate::{Bijection, Error, Flow, Result};

/// Configuration of a neural spline flow.
///
/// # Example
/// ```
/// use normflow::{flows::NsfConfig, Rng};
/// let flow = NsfConfig::new(2).with_layers(3).with_hidden(vec![32, 32]).init(&mut Rng::new(0)).unwrap();
/// let x = normflow::Matrix::from_vec(1, 2, vec![0.3, -0.7]);
/// assert!(flow.log_prob(&x, None).unwrap()[0].is_finite());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NsfConfig {
    /// Data dimension.
    pub dim: usize,
    /// Number of spline layers (default 5).
    pub layers: usize,
    /// Conditioner hidden sizes (default `[128, 128]`).
    pub hidden: Vec<usize>,
    /// Spline bins and tail bound (default 8 bins on `[−5, 5]`).
    pub spline: SplineShape,
    /// Autoregressive (MADE) conditioners instead of coupling (default false: coupling).
    pub autoregressive: bool,
    /// Context width for a conditional flow (default 0).
    pub context_dim: usize,
    /// Standardise the data with training-split statistics (default true).
    pub standardize: bool,
    /// Start from the full-covariance Gaussian of the training data: a learned LU-linear layer
    /// on the data side, initialised as the data's whitening map (default true).
    pub whiten: bool,
    /// Learned LU-linear mixing between layers instead of a fixed reversal (default false).
    pub lu_linear: bool,
    /// Residual blocks in each coupling conditioner (default 0: a plain MLP with `hidden`
    /// sizes; n > 0: a residual MLP of width `hidden[0]`). Coupling variant only.
    pub residual_blocks: usize,
    /// Batch normalisation after every layer (default false).
    pub batch_norm: bool,
}

super::common_builders!(NsfConfig);

impl NsfConfig {
    /// Defaults for `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            layers: 5,
            hidden: vec![128, 128],
            spline: SplineShape::default(),
            autoregressive: false,
            context_dim: 0,
            standardize: true,
            whiten: true,
            lu_linear: false,
            residual_blocks: 0,
            batch_norm: false,
        }
    }

    /// Sets the number of spline bins.
    pub fn with_bins(mut self, bins: usize) -> Self {
        self.spline.bins = bins;
        self
    }

    /// Sets the tail bound `B` (the spline acts on `[−B, B]`).
    pub fn with_bound(mut self, bound: f32) -> Self {
        self.spline.bound = bound;
        self
    }

    /// Uses MADE autoregressive conditioners (NSF-AR) instead of coupling (NSF-C).
    pub fn with_autoregressive(mut self, on: bool) -> Self {
        self.autoregressive = on;
        self
    }

    /// Uses residual conditioners with `blocks` blocks (coupling variant).
    pub fn with_residual_blocks(mut self, blocks: usize) -> Self {
        self.residual_blocks = blocks;
        self
    }

    /// Builds the flow (every layer starts as the identity).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad sizes, bins or bound, or residual conditioners with
    /// autoregressive layers (which 1-D data always uses).
    pub fn init(&self, rng: &mut Rng) -> Result<Flow> {
        let transformer = Transformer::Spline(self.spline);
        transformer.validate()?;
        // One column leaves a coupling nothing to condition on: its layers are autoregressive,
        // which for one column are learned (unconditional, or context-conditioned) splines.
        let autoregressive = self.autoregressive || self.dim == 1;
        if self.residual_blocks > 0 {
            if autoregressive {
                return Err(Error::config("residual conditioners are available for the coupling NSF on 2 or more columns only"));
            }
            if self.hidden.iter().any(|&h| h != self.hidden[0]) {
                return Err(Error::config(format!(
                    "a residual conditioner has one width: give equal hidden sizes (got {:?})",
                    self.hidden
                )));
            }
        }
        let name = if self.autoregressive { "nsf-ar" } else { "nsf" };
        let mixing = if autoregressive { super::Mixing::LuLinearOnly } else { super::Mixing::Reversal };
        let per_dim = transformer.params_per_dim();
        let step = if autoregressive {
            super::mlp_params(self.dim + self.context_dim, &self.hidden, per_dim * self.dim)
        } else if self.residual_blocks > 0 {
            // Input and output layers, and two square layers per block.
            let width = self.hidden.first().copied().unwrap_or(0);
            super::mlp_params(self.dim / 2 + self.context_dim, &[width], per_dim * (self.dim - self.dim / 2))
                + 2 * self.residual_blocks as u128 * super::mlp_params(width, &[], width)
        } else {
            super::mlp_params(self.dim / 2 + self.context_dim, &self.hidden, per_dim * (self.dim - self.dim / 2))
        };
        self.assembly(name, mixing, step).build(|k| -> Result<Vec<Box<dyn Bijection>>> {
            Ok(vec![if autoregressive {
                let order: Vec<usize> = if k % 2 == 1 { (0..self.dim).rev().collect() } else { (0..self.dim).collect() };
                Box::new(MaskedAutoregressive::new(self.dim, &self.hidden, order, self.context_dim, transformer, rng)?)
            } else if self.residual_blocks > 0 {
                let width = self.hidden.first().copied().unwrap_or(0);
                Box::new(AffineCoupling::with_residual(
                    self.dim,
                    self.dim / 2,
                    width,
                    self.residual_blocks,
                    self.context_dim,
                    transformer,
                    rng,
                )?)
            } else {
                Box::new(AffineCoupling::new(self.dim, self.dim / 2, &self.hidden, self.context_dim, transformer, rng)?)
            }])
        })
    }
}
