//! Glow (Kingma & Dhariwal 2018, arXiv:1807.03039): a multiscale flow on images. Each level
//! squeezes the image (2×2 pixels → 4 channels), runs `steps` of per-channel ActNorm → invertible
//! 1×1 convolution → convolutional affine coupling, and (but the last) splits off half of its
//! channels through a learned Gaussian conditioned on the other half (the split prior, itself an
//! affine coupling); the next level works on the half that is kept.

use crate::bijection::{
    ActNorm, AffineCoupling, Bounds, Chain, Conv1x1, ImageShape, Interval, OnPrefix, Squeeze, Standardize, Transformer,
};
use crate::engine::Rng;
use crate::{Bijection, Error, Flow, Result};

/// Configuration of a Glow flow on rows holding `C×H×W` images of 8-bit values (0..=255,
/// dequantised by training).
///
/// The flow's data side maps pixel values `v` to `v/256 − 0.5` (or their logit, see
/// [`GlowConfig::logit_alpha`]) with its Jacobian, so its NLL is that of the dequantised 8-bit
/// data and bits per dimension are `NLL / (C·H·W · ln 2)`.
///
/// # Example
/// ```
/// use normflow::{bijection::ImageShape, flows::GlowConfig, Rng};
/// let image = ImageShape { channels: 1, height: 8, width: 8 };
/// let flow = GlowConfig::new(image).with_levels(2).with_steps(2).with_hidden(16).init(&mut Rng::new(0)).unwrap();
/// assert_eq!(flow.dim(), 64);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GlowConfig {
    /// The image shape of a row.
    pub image: ImageShape,
    /// Levels (squeezes); the height and width must be divisible by `2^levels` (default 2).
    pub levels: usize,
    /// Steps per level (default 4).
    pub steps: usize,
    /// Hidden channels of the coupling networks (default 64).
    pub hidden: usize,
    /// Additive instead of affine couplings (default false).
    pub additive: bool,
    /// Pixel preprocessing on the data side: `None` scales pixels to `v/256 − 0.5` (Glow);
    /// `Some(α)` takes the logit of `α + (1 − 2α)·v/256` (RealNVP; α = 1e-6 for MNIST in MAF's
    /// experiments, 0.05 for CIFAR-10 in RealNVP's). Either way the Jacobian is part of the
    /// density, so bits per dimension stay those of the 8-bit data.
    pub logit_alpha: Option<f32>,
    /// Context values per row that every coupling is conditioned on (for example a one-hot
    /// class label; default 0: unconditional).
    pub context_dim: usize,
}

impl GlowConfig {
    /// Defaults for images of `image` shape.
    pub fn new(image: ImageShape) -> Self {
        Self { image, levels: 2, steps: 4, hidden: 64, additive: false, logit_alpha: None, context_dim: 0 }
    }

    fn validate(&self) -> Result<()> {
        let side = 1usize.checked_shl(self.levels as u32).unwrap_or(0);
        if self.levels == 0
            || self.levels > 8
            || self.steps == 0
            || self.steps > 256
            || self.hidden == 0
            || self.hidden > 4096
            || self.context_dim > 4096
        {
            return Err(Error::config(
                "Glow needs 1..=8 levels, 1..=256 steps per level, 1..=4096 hidden channels and at most 4096 context values",
            ));
        }
        if self.image.is_empty() || side == 0 || !self.image.height.is_multiple_of(side) || !self.image.width.is_multiple_of(side) {
            return Err(Error::config(format!(
                "Glow with {} levels needs images whose height and width divide by {side}, got {:?}",
                self.levels, self.image
            )));
        }
        let params = self.param_estimate();
        if params > super::MAX_PARAMS {
            return Err(Error::config(format!(
                "this Glow would hold about {params} parameters, over the limit of {}; use fewer steps or hidden channels",
                super::MAX_PARAMS
            )));
        }
        Ok(())
    }

    /// Trainable parameters, counted before anything is allocated.
    fn param_estimate(&self) -> u128 {
        let h = self.hidden as u128;
        // A coupling on c channels: 3×3 from c/2 to h, 1×1 from h to h, 3×3 from h to c.
        let coupling = |c: u128| 9 * (c / 2) * h + h + h * h + h + 9 * h * c + c;
        let mut channels = self.image.channels as u128 * 4;
        let mut total = 0u128;
        for level in 0..self.levels {
            total += self.steps as u128 * (coupling(channels) + channels * channels + 4 * channels);
            if level + 1 < self.levels {
                total += coupling(channels);
                channels = channels / 2 * 4;
            }
        }
        total
    }

    /// Level `level` on images of `image` shape, in forward order (generative direction).
    fn level(&self, image: ImageShape, level: usize, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        let squeezed = image.squeezed();
        // Contractive scales: dozens of stacked couplings must not compound expansions on rare inputs.
        let transformer = if self.additive { Transformer::Additive } else { Transformer::Contractive };
        let mut layers: Vec<Box<dyn Bijection>> = Vec::new();
        if level + 1 < self.levels {
            let kept = ImageShape { channels: squeezed.channels / 2, ..squeezed };
            layers.push(Box::new(OnPrefix::new(squeezed.len(), self.level(kept, level + 1, rng)?)?));
            // The split prior: the factored-out half as a Gaussian given the kept half.
            layers.push(Box::new(AffineCoupling::with_conv_context(squeezed, self.context_dim, self.hidden, Transformer::Affine, rng)?));
        }
        for _ in 0..self.steps {
            // Density direction: ActNorm, then 1×1 convolution, then coupling.
            layers.push(Box::new(AffineCoupling::with_conv_context(squeezed, self.context_dim, self.hidden, transformer, rng)?));
            layers.push(Box::new(Conv1x1::rotation(squeezed, rng)?));
            layers.push(Box::new(ActNorm::per_channel(squeezed.channels, squeezed.pixels())));
        }
        layers.push(Box::new(Squeeze::new(image)?));
        Ok(Box::new(Chain::new(layers)?))
    }

    /// The flow's bijection (forward: base → images).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for sizes out of range or images that `levels` squeezes cannot
    /// halve.
    pub fn bijection(&self, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        Ok(Box::new(Chain::new(vec![self.levels(rng)?, pixel_layer(self.image, self.logit_alpha)?])?))
    }

    /// The levels alone, without the pixel scaling of the data side.
    pub(crate) fn levels(&self, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        self.validate()?;
        self.level(self.image, 0, rng)
    }

    /// Builds the flow (couplings start with zero shifts and Glow's constant scale `1/sigmoid(2)`
    /// in the generative direction, ActNorm from the first batch).
    ///
    /// # Errors
    /// As [`GlowConfig::bijection`].
    pub fn init(&self, rng: &mut Rng) -> Result<Flow> {
        let mut flow = Flow::new(self.bijection(rng)?);
        flow.meta.name = "glow".into();
        Ok(flow)
    }
}

/// The data side of an image flow: pixel values `v` scaled to `v/256 − 0.5`, or (with
/// `logit_alpha`) taken to `logit(α + (1 − 2α)·v/256)`.
pub(crate) fn pixel_layer(image: ImageShape, logit_alpha: Option<f32>) -> Result<Box<dyn Bijection>> {
    let d = image.len();
    Ok(match logit_alpha {
        None => Box::new(Standardize::from_stats(vec![128.0; d], vec![256.0; d])?),
        Some(alpha) => Box::new(Bounds::new(vec![Some(Interval { lo: 0.0, hi: 256.0 }); d])?.with_alpha(alpha)?),
    })
}
