//! Preset flows with validated configurations.
//!
//! Every preset ends (on the data side) with a whitening [`crate::bijection::LuLinear`] layer and
//! a [`crate::bijection::Standardize`] layer unless turned off, so that an untrained preset is
//! the full-covariance Gaussian of the training data (its other layers start as the identity)
//! and training, which keeps the best validation weights, starts from there. Models fit raw
//! data and carry their preprocessing; its statistics come from the training split when
//! [`crate::train::fit`] starts.

mod maf;
mod nsf;
mod realnvp;

pub use maf::{MafConfig, Ordering};
pub use nsf::NsfConfig;
pub use realnvp::RealNvpConfig;

use crate::bijection::{BatchNorm, BijectionSpec, LuLinear, Permutation, Standardize};
use crate::{Bijection, Error, Result};

/// The builder methods every preset shares (its fields `layers`, `hidden`, `context_dim`,
/// `lu_linear`, `batch_norm`, `standardize`, `whiten`), written once.
macro_rules! common_builders {
    ($config:ty) => {
        impl $config {
            /// Sets the number of coupling or autoregressive layers.
            pub fn with_layers(mut self, layers: usize) -> Self {
                self.layers = layers;
                self
            }

            /// Sets the conditioner hidden sizes.
            pub fn with_hidden(mut self, hidden: Vec<usize>) -> Self {
                self.hidden = hidden;
                self
            }

            /// Sets the context width (0: unconditional).
            pub fn with_context(mut self, context_dim: usize) -> Self {
                self.context_dim = context_dim;
                self
            }

            /// Mixes dimensions between layers with learned LU-linear layers.
            pub fn with_lu_linear(mut self, on: bool) -> Self {
                self.lu_linear = on;
                self
            }

            /// Adds batch normalisation after every layer.
            pub fn with_batch_norm(mut self, on: bool) -> Self {
                self.batch_norm = on;
                self
            }

            /// Turns the data-initialised whitening layer on or off.
            pub fn with_whiten(mut self, on: bool) -> Self {
                self.whiten = on;
                self
            }

            /// Turns standardisation with training-split statistics on or off.
            pub fn with_standardize(mut self, on: bool) -> Self {
                self.standardize = on;
                self
            }
        }
    };
}
pub(crate) use common_builders;

/// `layer` followed by a batch norm, unless it is a fixed permutation or a linear mixing layer.
pub(crate) fn then_batch_norm(layer: Box<dyn Bijection>, dim: usize) -> Vec<Box<dyn Bijection>> {
    if layer.num_params() == 0 || matches!(layer.spec(), BijectionSpec::LuLinear { .. } | BijectionSpec::ActNorm { .. }) {
        vec![layer]
    } else {
        vec![layer, Box::new(BatchNorm::new(dim))]
    }
}

/// The layer that mixes dimensions between two coupling or autoregressive layers: a fixed
/// reversal, or a learned LU-linear map that starts as that reversal.
pub(crate) fn mixing(dim: usize, lu_linear: bool) -> Result<Box<dyn Bijection>> {
    let reverse: Vec<usize> = (0..dim).rev().collect();
    Ok(if lu_linear { Box::new(LuLinear::new(reverse)?) } else { Box::new(Permutation::new(reverse)?) })
}

/// The data-side layers of a preset, in forward order: the whitening map, then the
/// standardisation (so scoring data standardises first, then decorrelates).
pub(crate) fn data_side(dim: usize, whiten: bool, standardize: bool) -> Result<Vec<Box<dyn Bijection>>> {
    let mut layers: Vec<Box<dyn Bijection>> = Vec::new();
    if whiten {
        layers.push(Box::new(LuLinear::whitening(dim)?));
    }
    if standardize {
        layers.push(Box::new(Standardize::new(dim)));
    }
    Ok(layers)
}

/// Why affine flows refuse one column, and what to use instead.
pub(crate) const ONE_COLUMN_AFFINE: &str =
    "an affine flow on one column is only a Gaussian (an affine map of one); use a neural spline flow (NsfConfig, `--flow nsf`) for 1-D data";

pub(crate) fn validate_common(dim: usize, layers: usize, hidden: &[usize]) -> Result<()> {
    if dim == 0 {
        return Err(Error::config("the data needs at least one column"));
    }
    if layers == 0 || layers > 1000 {
        return Err(Error::config(format!("layers must be in 1..=1000, got {layers}")));
    }
    if hidden.is_empty() || hidden.iter().any(|&h| h == 0 || h > 1 << 16) {
        return Err(Error::config("hidden sizes must be a non-empty list of positive sizes (≤ 65536)"));
    }
    Ok(())
}
