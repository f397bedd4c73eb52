//! RealNVP (Dinh et al. 2017, arXiv:1605.08803): affine coupling layers with reversals between.

use crate::bijection::{ActNorm, AffineCoupling, Transformer};
use crate::engine::Rng;
use crate::{Bijection, Error, Flow, Result};

/// Configuration of a RealNVP flow: `layers` affine couplings, each keeping the first half of the
/// dimensions, with the order of dimensions reversed between layers.
///
/// # Example
/// ```
/// use normflow::{flows::RealNvpConfig, Rng};
/// let flow = RealNvpConfig::new(2).with_layers(4).with_hidden(vec![32, 32]).init(&mut Rng::new(0)).unwrap();
/// assert_eq!(flow.dim(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RealNvpConfig {
    /// Data dimension (at least 2).
    pub dim: usize,
    /// Number of coupling layers (default 6).
    pub layers: usize,
    /// Hidden sizes of each conditioner MLP (default `[128, 128]`).
    pub hidden: Vec<usize>,
    /// Context width for a conditional flow (default 0).
    pub context_dim: usize,
    /// Additive (volume-preserving, NICE) instead of affine couplings (default false).
    pub additive: bool,
    /// Standardise the data with training-split statistics (default true).
    pub standardize: bool,
    /// Start from the full-covariance Gaussian of the training data: a learned LU-linear layer
    /// on the data side, initialised as the data's whitening map (default true).
    pub whiten: bool,
    /// Add an ActNorm layer after every coupling (default false).
    pub actnorm: bool,
    /// Mix dimensions between couplings with a learned LU-linear layer (starting as the
    /// reversal) instead of a fixed reversal (default false).
    pub lu_linear: bool,
    /// Batch normalisation after every layer (default false).
    pub batch_norm: bool,
}

super::common_builders!(RealNvpConfig);

impl RealNvpConfig {
    /// Defaults for `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            layers: 6,
            hidden: vec![128, 128],
            context_dim: 0,
            additive: false,
            standardize: true,
            whiten: true,
            actnorm: false,
            lu_linear: false,
            batch_norm: false,
        }
    }

    /// Turns ActNorm layers on or off.
    pub fn with_actnorm(mut self, on: bool) -> Self {
        self.actnorm = on;
        self
    }

    /// Uses additive couplings.
    pub fn with_additive(mut self, on: bool) -> Self {
        self.additive = on;
        self
    }

    /// Builds the flow (every layer starts as the identity).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than 2 dimensions, no layers, or bad hidden sizes.
    pub fn init(&self, rng: &mut Rng) -> Result<Flow> {
        if self.dim == 1 {
            return Err(Error::config(super::ONE_COLUMN_AFFINE));
        }
        let kind = if self.additive { Transformer::Additive } else { Transformer::Affine };
        let step = super::mlp_params(self.dim / 2 + self.context_dim, &self.hidden, kind.params_per_dim() * (self.dim - self.dim / 2));
        self.assembly("realnvp", super::Mixing::Reversal, step).build(|_| {
            let coupling: Box<dyn Bijection> =
                Box::new(AffineCoupling::new(self.dim, self.dim / 2, &self.hidden, self.context_dim, kind, rng)?);
            Ok(if self.actnorm { vec![coupling, Box::new(ActNorm::new(self.dim))] } else { vec![coupling] })
        })
    }
}
