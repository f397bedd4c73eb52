//! The serialisable architecture of a bijection: what a model file records so that the layers
//! can be rebuilt before their weights are loaded.

use serde::{Deserialize, Serialize};

use super::{
    ActNorm, AffineCoupling, BatchNorm, Bounds, Chain, Conv1x1, Dequantize, ImageShape, Invert, LuLinear, MaskedAutoregressive, OnPrefix,
    Permutation, Squeeze, Standardize, Transformer,
};
use crate::engine::Rng;
use crate::nn::HiddenDegrees;
use crate::{Bijection, Result};

/// The WaveNet conditioner of a WaveGlow coupling layer (see [`AffineCoupling::with_wavenet`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSpec {
    /// Mel bands of the context (0: unconditional).
    pub mel_bands: usize,
    /// Mel frames per segment; each covers `length / frames` steps of the grouped signal.
    pub frames: usize,
    /// Dilated layers.
    pub layers: usize,
    /// Taps of the dilated convolutions.
    pub kernel: usize,
}

/// Architecture of a bijection, without weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BijectionSpec {
    /// [`Chain`].
    Chain {
        /// Layers in forward order.
        layers: Vec<BijectionSpec>,
    },
    /// [`Invert`].
    Invert {
        /// The inverted bijection.
        inner: Box<BijectionSpec>,
    },
    /// [`AffineCoupling`].
    Coupling {
        /// Row width.
        dim: usize,
        /// Number of pass-through columns.
        split: usize,
        /// Conditioner hidden sizes.
        hidden: Vec<usize>,
        /// Context width.
        context_dim: usize,
        /// Elementwise map.
        transformer: Transformer,
        /// Residual blocks of the conditioner (0: a plain MLP with `hidden` sizes; else a
        /// residual MLP of width `hidden[0]`).
        residual_blocks: usize,
        /// The image shape of a convolutional coupling (conditioner: [`crate::nn::ConvNet`] of
        /// `hidden[0]` channels); none for tabular rows.
        image: Option<ImageShape>,
        /// The colour that passes through a checkerboard-masked coupling (conditioner:
        /// [`crate::nn::CheckerboardNet`]); none for a channel split.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkerboard: Option<usize>,
        /// The WaveNet conditioner of a WaveGlow coupling on grouped audio (`image` is then
        /// `group × 1 × length`, `hidden[0]` the WaveNet's channels); none otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wave: Option<WaveSpec>,
    },
    /// [`MaskedAutoregressive`].
    MaskedAutoregressive {
        /// Row width.
        dim: usize,
        /// MADE hidden sizes.
        hidden: Vec<usize>,
        /// Autoregressive position of each dimension.
        order: Vec<usize>,
        /// Context width.
        context_dim: usize,
        /// Elementwise map.
        transformer: Transformer,
        /// Layout of the hidden units' degrees.
        hidden_degrees: HiddenDegrees,
    },
    /// [`Permutation`].
    Permutation {
        /// `x_j = z_{perm[j]}`.
        perm: Vec<usize>,
    },
    /// [`ActNorm`].
    ActNorm {
        /// Channels (columns of tabular rows).
        channels: usize,
        /// Values per channel (1 for tabular rows, H·W for images).
        pixels: usize,
    },
    /// [`OnPrefix`].
    OnPrefix {
        /// Row width.
        dim: usize,
        /// The layer on the first columns.
        inner: Box<BijectionSpec>,
    },
    /// [`Conv1x1`].
    Conv1x1 {
        /// Image shape.
        shape: ImageShape,
        /// The LU factors' pivot order (absent: the reversal of the channels).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        perm: Option<Vec<usize>>,
    },
    /// [`Squeeze`].
    Squeeze {
        /// The full-resolution image shape (data side).
        shape: ImageShape,
    },
    /// [`LuLinear`].
    LuLinear {
        /// Row permutation `P`.
        perm: Vec<usize>,
        /// Initialised from data as the whitening map ([`LuLinear::whitening`]).
        #[serde(default)]
        whitens: bool,
    },
    /// [`BatchNorm`].
    BatchNorm {
        /// Row width.
        dim: usize,
    },
    /// [`Dequantize`].
    Dequantize {
        /// Row width.
        dim: usize,
        /// Integer-valued columns (0-based).
        columns: Vec<usize>,
    },
    /// [`Bounds`].
    Bounds {
        /// Interval per column (`None`: unbounded).
        bounds: Vec<Option<super::Interval>>,
        /// Squeeze before the logit.
        #[serde(default = "default_logit_alpha")]
        alpha: f32,
    },
    /// [`super::ContinuousFlow`].
    Continuous(super::ContinuousSpec),
    /// [`Standardize`].
    Standardize {
        /// Row width.
        dim: usize,
    },
}

impl BijectionSpec {
    /// Builds the bijection with initial weights (identity where the layer has one); load
    /// weights afterwards.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] if the spec is inconsistent.
    pub fn build(&self) -> Result<Box<dyn Bijection>> {
        let mut rng = Rng::new(0);
        Ok(match self {
            BijectionSpec::Chain { layers } => Box::new(Chain::new(layers.iter().map(|l| l.build()).collect::<Result<_>>()?)?),
            BijectionSpec::Invert { inner } => Box::new(Invert(inner.build()?)),
            BijectionSpec::Coupling { image: Some(image), hidden, transformer, wave: Some(w), .. } => {
                let width = *hidden.first().ok_or_else(|| crate::Error::config("a WaveNet conditioner needs a width"))?;
                Box::new(AffineCoupling::with_wavenet(*image, *w, width, *transformer, &mut rng)?)
            }
            BijectionSpec::Coupling {
                image: Some(image),
                hidden,
                transformer,
                checkerboard: Some(parity),
                context_dim,
                residual_blocks,
                ..
            } => {
                let width = *hidden.first().ok_or_else(|| crate::Error::config("a convolutional conditioner needs a width"))?;
                Box::new(AffineCoupling::with_checkerboard_blocks(
                    *image,
                    *parity,
                    *context_dim,
                    width,
                    *residual_blocks,
                    *transformer,
                    &mut rng,
                )?)
            }
            BijectionSpec::Coupling { image: Some(image), hidden, transformer, context_dim, residual_blocks, .. } => {
                let width = *hidden.first().ok_or_else(|| crate::Error::config("a convolutional conditioner needs a width"))?;
                Box::new(AffineCoupling::with_conv_blocks(*image, *context_dim, width, *residual_blocks, *transformer, &mut rng)?)
            }
            BijectionSpec::Coupling { dim, split, hidden, context_dim, transformer, residual_blocks: 0, image: None, .. } => {
                Box::new(AffineCoupling::new(*dim, *split, hidden, *context_dim, *transformer, &mut rng)?)
            }
            BijectionSpec::Coupling { dim, split, hidden, context_dim, transformer, residual_blocks, image: None, .. } => {
                let width = *hidden.first().ok_or_else(|| crate::Error::config("a residual conditioner needs a width"))?;
                Box::new(AffineCoupling::with_residual(*dim, *split, width, *residual_blocks, *context_dim, *transformer, &mut rng)?)
            }
            BijectionSpec::MaskedAutoregressive { dim, hidden, order, context_dim, transformer, hidden_degrees } => {
                Box::new(MaskedAutoregressive::with_hidden_degrees(
                    *dim,
                    hidden,
                    order.clone(),
                    *context_dim,
                    *transformer,
                    *hidden_degrees,
                    &mut rng,
                )?)
            }
            BijectionSpec::Permutation { perm } => Box::new(Permutation::new(perm.clone())?),
            BijectionSpec::ActNorm { channels, pixels } => Box::new(ActNorm::per_channel(*channels, *pixels)),
            BijectionSpec::Squeeze { shape } => Box::new(Squeeze::new(*shape)?),
            BijectionSpec::Conv1x1 { shape, perm: None } => Box::new(Conv1x1::new(*shape)?),
            BijectionSpec::Conv1x1 { shape, perm: Some(perm) } => Box::new(Conv1x1::with_perm(*shape, perm.clone())?),
            BijectionSpec::OnPrefix { dim, inner } => Box::new(OnPrefix::new(*dim, inner.build()?)?),
            BijectionSpec::Standardize { dim } => Box::new(Standardize::new(*dim)),
            BijectionSpec::Continuous(spec) => Box::new(super::ContinuousFlow::from_spec(spec)?),
            BijectionSpec::LuLinear { perm, whitens: false } => Box::new(LuLinear::new(perm.clone())?),
            BijectionSpec::LuLinear { perm, whitens: true } => Box::new(LuLinear::whitening(perm.len())?),
            BijectionSpec::BatchNorm { dim } => Box::new(BatchNorm::new(*dim)),
            BijectionSpec::Dequantize { dim, columns } => Box::new(Dequantize::new(*dim, columns.clone())?),
            BijectionSpec::Bounds { bounds, alpha } => Box::new(Bounds::new(bounds.clone())?.with_alpha(*alpha)?),
        })
    }
}

/// The squeeze of model files written before [`Bounds::with_alpha`].
fn default_logit_alpha() -> f32 {
    super::LOGIT_ALPHA
}
