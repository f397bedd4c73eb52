//! MAF (Papamakarios et al. 2017, arXiv:1705.07057): masked autoregressive affine layers.

use crate::bijection::{MaskedAutoregressive, Transformer};
use crate::engine::Rng;
use crate::{Flow, Result};

/// How each layer orders the dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    /// Natural order, reversed in every other layer (the classic choice).
    Alternating,
    /// A fresh seeded random order per layer.
    Random,
}

/// Configuration of a MAF: `layers` MADE-conditioned autoregressive affine layers.
///
/// Density evaluation is one pass per layer; sampling takes `dim` passes per layer.
///
/// # Example
/// ```
/// use normflow::{flows::MafConfig, Rng};
/// let flow = MafConfig::new(3).with_layers(2).init(&mut Rng::new(0)).unwrap();
/// assert_eq!(flow.num_params() > 0, true);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MafConfig {
    /// Data dimension.
    pub dim: usize,
    /// Number of autoregressive layers (default 5).
    pub layers: usize,
    /// MADE hidden sizes (default `[128, 128]`).
    pub hidden: Vec<usize>,
    /// Orders of the layers (default alternating).
    pub ordering: Ordering,
    /// Context width for a conditional flow (default 0).
    pub context_dim: usize,
    /// Standardise the data with training-split statistics (default true).
    pub standardize: bool,
    /// Start from the full-covariance Gaussian of the training data: a learned LU-linear layer
    /// on the data side, initialised as the data's whitening map (default true).
    pub whiten: bool,
    /// Learned LU-linear mixing between layers (default false).
    pub lu_linear: bool,
    /// Batch normalisation after every layer (default false).
    pub batch_norm: bool,
}

super::common_builders!(MafConfig);

impl MafConfig {
    /// Defaults for `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            layers: 5,
            hidden: vec![128, 128],
            ordering: Ordering::Alternating,
            context_dim: 0,
            standardize: true,
            whiten: true,
            lu_linear: false,
            batch_norm: false,
        }
    }

    /// Sets the ordering.
    pub fn with_ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// Builds the flow (every layer starts as the identity).
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] for no columns, one column (an affine flow on one column is a
    /// Gaussian), no layers or bad hidden sizes.
    pub fn init(&self, rng: &mut Rng) -> Result<Flow> {
        if self.dim == 1 {
            return Err(crate::Error::config(super::ONE_COLUMN_AFFINE));
        }
        let step = super::mlp_params(self.dim + self.context_dim, &self.hidden, 2 * self.dim);
        self.assembly("maf", super::Mixing::LuLinearOnly, step).build(|k| {
            let order: Vec<usize> = match self.ordering {
                Ordering::Alternating if k % 2 == 1 => (0..self.dim).rev().collect(),
                Ordering::Alternating => (0..self.dim).collect(),
                Ordering::Random => rng.permutation(self.dim),
            };
            Ok(vec![Box::new(MaskedAutoregressive::new(self.dim, &self.hidden, order, self.context_dim, Transformer::Affine, rng)?)])
        })
    }
}
