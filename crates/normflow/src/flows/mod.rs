//! Preset flows with validated configurations.
//!
//! Every preset ends (on the data side) with a whitening [`crate::bijection::LuLinear`] layer and
//! a [`crate::bijection::Standardize`] layer unless turned off, so that an untrained preset is
//! the full-covariance Gaussian of the training data (its other layers start as the identity)
//! and training, which keeps the best validation weights, starts from there. Models fit raw
//! data and carry their preprocessing; its statistics come from the training split when
//! [`crate::train::fit`] starts.

/// The builder methods both image presets share (fields `levels`, `steps`, `hidden`,
/// `additive`, `logit_alpha`, `context_dim`), written once.
macro_rules! image_builders {
    ($config:ty) => {
        impl $config {
            /// Sets the number of levels.
            pub fn with_levels(mut self, levels: usize) -> Self {
                self.levels = levels;
                self
            }

            /// Sets the steps per level.
            pub fn with_steps(mut self, steps: usize) -> Self {
                self.steps = steps;
                self
            }

            /// Sets the coupling networks' hidden channels.
            pub fn with_hidden(mut self, hidden: usize) -> Self {
                self.hidden = hidden;
                self
            }

            /// Uses additive (volume-preserving) couplings.
            pub fn with_additive(mut self, on: bool) -> Self {
                self.additive = on;
                self
            }

            /// Logit preprocessing with squeeze `alpha` (`None`: scaling).
            pub fn with_logit(mut self, alpha: Option<f32>) -> Self {
                self.logit_alpha = alpha;
                self
            }

            /// Conditions every coupling on `context_dim` context values per row (0: unconditional).
            pub fn with_context(mut self, context_dim: usize) -> Self {
                self.context_dim = context_dim;
                self
            }
        }
    };
}

mod assignment;
mod flow_matching;
mod flow_matching_fit;
mod glow;
mod maf;
mod nsf;
mod realnvp;
mod realnvp_image;
mod waveglow;

pub use flow_matching::{Coupling, FlowMatching, FlowMatchingConfig, TimeSampling};
pub use flow_matching_fit::fit_flow_matching;
pub use glow::GlowConfig;
image_builders!(GlowConfig);
pub use maf::{MafConfig, Ordering};
pub use nsf::NsfConfig;
pub use realnvp::RealNvpConfig;
pub use realnvp_image::MultiscaleRealNvpConfig;
pub use waveglow::WaveGlowConfig;
image_builders!(MultiscaleRealNvpConfig);

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

            /// The settings of the shared assembler, for a preset called `name`.
            pub(crate) fn assembly(&self, name: &'static str, mixing: super::Mixing, step_params: u128) -> super::Assembly<'_> {
                super::Assembly {
                    step_params,
                    name,
                    mixing,
                    dim: self.dim,
                    layers: self.layers,
                    hidden: &self.hidden,
                    lu_linear: self.lu_linear,
                    batch_norm: self.batch_norm,
                    whiten: self.whiten,
                    standardize: self.standardize,
                }
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

/// How consecutive steps of a preset are mixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mixing {
    /// Couplings: a fixed reversal between steps, or a learned LU-linear layer that starts as
    /// it when `lu_linear` is on.
    Reversal,
    /// Autoregressive steps order their own inputs: an LU-linear layer between steps only when
    /// `lu_linear` is on.
    LuLinearOnly,
}

/// The most trainable parameters a preset may have: 5·10⁸ (2 GB of f32, 8 GB with Adam's two
/// moments and the gradient). Larger settings are refused before anything is allocated, so no
/// flag value can make training abort on an allocation.
pub const MAX_PARAMS: u128 = 500_000_000;

/// Parameters of an MLP from `inputs` through `hidden` to `outputs` (weights and biases).
pub(crate) fn mlp_params(inputs: usize, hidden: &[usize], outputs: usize) -> u128 {
    let sizes: Vec<u128> = std::iter::once(inputs).chain(hidden.iter().copied()).chain([outputs]).map(|v| v as u128).collect();
    sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
}

/// The settings every preset shares: the one assembler builds every preset from them and the
/// preset's own steps.
pub(crate) struct Assembly<'a> {
    /// Trainable parameters of one step (an upper bound), for the budget check.
    pub step_params: u128,
    pub name: &'static str,
    pub mixing: Mixing,
    pub dim: usize,
    pub layers: usize,
    pub hidden: &'a [usize],
    pub lu_linear: bool,
    pub batch_norm: bool,
    pub whiten: bool,
    pub standardize: bool,
}

impl Assembly<'_> {
    /// Validates the shared settings, then builds the flow: `layers` steps, each the layers
    /// `step(k)` returns, with the mixing layer between steps, a batch norm after every
    /// trainable layer when asked, and the data side (whitening, standardisation) last.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for no columns, a layer count outside 1..=1000, bad hidden
    /// sizes, or more than [`MAX_PARAMS`] parameters; any error of `step`.
    pub(crate) fn build(&self, mut step: impl FnMut(usize) -> Result<Vec<Box<dyn Bijection>>>) -> Result<crate::Flow> {
        validate_common(self.dim, self.layers, self.hidden)?;
        // LU-linear layers (the whitening one, and the mixing ones when asked) hold d² each.
        let lu_layers = u128::from(self.whiten) + if self.lu_linear { self.layers as u128 - 1 } else { 0 };
        let total = self.step_params.saturating_mul(self.layers as u128) + lu_layers * (self.dim as u128).pow(2);
        if total > MAX_PARAMS {
            return Err(Error::config(format!(
                "this model ({} layers on {} columns) would hold about {total} parameters, over the limit of {MAX_PARAMS}; use fewer layers or smaller hidden sizes (and no whitening or LU-linear layers, which hold columns² each, for very wide data)",
                self.layers, self.dim
            )));
        }
        let mut layers: Vec<Box<dyn Bijection>> = Vec::new();
        for k in 0..self.layers {
            if k > 0 && (self.lu_linear || self.mixing == Mixing::Reversal) {
                layers.push(mixing(self.dim, self.lu_linear)?);
            }
            layers.extend(step(k)?);
        }
        if self.batch_norm {
            // After every layer in the forward direction: layer, BN, layer, BN, ...
            layers = layers.into_iter().flat_map(|l| then_batch_norm(l, self.dim)).collect();
        }
        layers.extend(data_side(self.dim, self.whiten, self.standardize)?);
        let mut flow = crate::Flow::new(Box::new(crate::bijection::Chain::new(layers)?));
        flow.meta.name = self.name.into();
        Ok(flow)
    }
}

/// `layer` followed by a batch norm, unless it is a fixed permutation or a linear mixing layer.
fn then_batch_norm(layer: Box<dyn Bijection>, dim: usize) -> Vec<Box<dyn Bijection>> {
    if layer.num_params() == 0 || matches!(layer.spec(), BijectionSpec::LuLinear { .. } | BijectionSpec::ActNorm { .. }) {
        vec![layer]
    } else {
        vec![layer, Box::new(BatchNorm::new(dim))]
    }
}

/// The layer that mixes dimensions between two coupling or autoregressive layers: a fixed
/// reversal, or a learned LU-linear map that starts as that reversal.
fn mixing(dim: usize, lu_linear: bool) -> Result<Box<dyn Bijection>> {
    let reverse: Vec<usize> = (0..dim).rev().collect();
    Ok(if lu_linear { Box::new(LuLinear::new(reverse)?) } else { Box::new(Permutation::new(reverse)?) })
}

/// The data-side layers of a preset, in forward order: the whitening map, then the
/// standardisation (so scoring data standardises first, then decorrelates).
fn data_side(dim: usize, whiten: bool, standardize: bool) -> Result<Vec<Box<dyn Bijection>>> {
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

fn validate_common(dim: usize, layers: usize, hidden: &[usize]) -> Result<()> {
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
