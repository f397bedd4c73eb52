//! Multiscale RealNVP on images (Dinh et al. 2017, arXiv:1605.08803, §3.6). Each level runs
//! `steps` checkerboard-masked couplings (alternating colours), squeezes (2×2 pixels → 4
//! channels), runs `steps` couplings on alternating halves of the channels, and factors half of
//! its channels out to the base; the next level works on the other half. The last level runs
//! `steps + 1` checkerboard couplings instead. Coupling networks are RealNVP's residual
//! networks (`residual_blocks` blocks). Every coupling is followed by per-channel ActNorm
//! (data-initialised) where RealNVP used batch normalisation.

use super::glow::pixel_layer;
use crate::bijection::{ActNorm, AffineCoupling, Chain, ImageShape, OnPrefix, Permutation, Squeeze, Transformer};
use crate::engine::Rng;
use crate::{Bijection, Error, Flow, Result};

/// Configuration of a multiscale RealNVP on rows holding `C×H×W` images of 8-bit values.
///
/// The data side is Glow's (see [`super::GlowConfig`]): pixels scaled to `v/256 − 0.5`, or
/// their logit, with the Jacobian in the density, so bits per dimension are
/// `NLL / (C·H·W · ln 2)`.
///
/// # Example
/// ```
/// use normflow::{bijection::ImageShape, flows::MultiscaleRealNvpConfig, Rng};
/// let image = ImageShape { channels: 1, height: 8, width: 8 };
/// let flow = MultiscaleRealNvpConfig::new(image).with_levels(2).with_hidden(16).init(&mut Rng::new(0)).unwrap();
/// assert_eq!(flow.dim(), 64);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MultiscaleRealNvpConfig {
    /// The image shape of a row.
    pub image: ImageShape,
    /// Levels; every level but the last squeezes, so the height and width must be divisible by
    /// `2^(levels − 1)` (default 2).
    pub levels: usize,
    /// Checkerboard couplings per level, and channel couplings after each squeeze (default 3).
    pub steps: usize,
    /// Hidden channels of the coupling networks (default 64).
    pub hidden: usize,
    /// Additive instead of affine couplings (default false).
    pub additive: bool,
    /// Logit preprocessing with this squeeze (`None`: scaling), as [`super::GlowConfig`].
    pub logit_alpha: Option<f32>,
    /// Residual blocks of each coupling network (default 2; 0 gives Glow's 3×3 → 1×1 → 3×3).
    pub residual_blocks: usize,
    /// Context values per row that every coupling is conditioned on (for example a one-hot
    /// class label; default 0: unconditional).
    pub context_dim: usize,
}

impl MultiscaleRealNvpConfig {
    /// Defaults for images of `image` shape.
    pub fn new(image: ImageShape) -> Self {
        Self { image, levels: 2, steps: 3, hidden: 64, additive: false, logit_alpha: None, residual_blocks: 2, context_dim: 0 }
    }

    /// Sets the residual blocks of each coupling network (0: Glow's network).
    pub fn with_residual_blocks(mut self, blocks: usize) -> Self {
        self.residual_blocks = blocks;
        self
    }

    fn validate(&self) -> Result<()> {
        let side = 1usize.checked_shl(self.levels.saturating_sub(1) as u32).unwrap_or(0);
        if self.levels == 0
            || self.levels > 8
            || self.steps == 0
            || self.steps > 64
            || self.hidden == 0
            || self.hidden > 4096
            || self.context_dim > 4096
        {
            return Err(Error::config(
                "multiscale RealNVP needs 1..=8 levels, 1..=64 steps per level, 1..=4096 hidden channels, at most 64 residual blocks and 4096 context values",
            ));
        }
        if self.image.is_empty()
            || self.image.pixels() < 2
            || side == 0
            || !self.image.height.is_multiple_of(side)
            || !self.image.width.is_multiple_of(side)
        {
            return Err(Error::config(format!(
                "multiscale RealNVP with {} levels needs images of 2+ pixels whose height and width divide by {side}, got {:?}",
                self.levels, self.image
            )));
        }
        let params = self.param_estimate();
        if params > super::MAX_PARAMS {
            return Err(Error::config(format!(
                "this RealNVP would hold about {params} parameters, over the limit of {}; use fewer steps or hidden channels",
                super::MAX_PARAMS
            )));
        }
        Ok(())
    }

    /// Trainable parameters, counted (generously) before anything is allocated.
    fn param_estimate(&self) -> u128 {
        let h = self.hidden as u128;
        // A coupling network from c_in to 2·c_out channels: 3×3, 1×1, 3×3.
        let blocks = self.residual_blocks as u128;
        let net = |c_in: u128, c_out: u128| 9 * c_in * h + h + h * h + h + blocks * 2 * (9 * h * h + h) + 9 * h * 2 * c_out + 2 * c_out;
        let (mut c, steps) = (self.image.channels as u128, self.steps as u128);
        let mut total = 0u128;
        for level in 0..self.levels {
            total += (steps + 1) * (net(c, c) + 2 * c);
            if level + 1 < self.levels {
                total += steps * (net(2 * c, 2 * c) + 8 * c);
                c *= 2;
            }
        }
        total
    }

    /// Level `level` on images of `image` shape, in forward (generative) order.
    fn level(&self, image: ImageShape, level: usize, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        // Contractive scales: dozens of stacked couplings must not compound expansions on rare inputs.
        let transformer = if self.additive { Transformer::Additive } else { Transformer::Contractive };
        let last = level + 1 == self.levels;
        // Built in density order (data → base), reversed at the end.
        let mut density: Vec<Box<dyn Bijection>> = Vec::new();
        let checkerboards = if last { self.steps + 1 } else { self.steps };
        for i in 0..checkerboards {
            let (to_coupling, to_image) = Permutation::checkerboard(image, i % 2);
            density.push(Box::new(to_image));
            let coupling = AffineCoupling::with_checkerboard_blocks(
                image,
                i % 2,
                self.context_dim,
                self.hidden,
                self.residual_blocks,
                transformer,
                rng,
            )?;
            density.push(Box::new(coupling));
            density.push(Box::new(to_coupling));
            density.push(Box::new(ActNorm::per_channel(image.channels, image.pixels())));
        }
        if !last {
            density.push(Box::new(Squeeze::new(image)?));
            let squeezed = image.squeezed();
            for i in 0..self.steps {
                if i > 0 {
                    density.push(Box::new(reverse_channels(squeezed)));
                }
                density.push(Box::new(AffineCoupling::with_conv_blocks(
                    squeezed,
                    self.context_dim,
                    self.hidden,
                    self.residual_blocks,
                    transformer,
                    rng,
                )?));
                density.push(Box::new(ActNorm::per_channel(squeezed.channels, squeezed.pixels())));
            }
            // Half of the channels go to the base; the next level takes the other half.
            let kept = ImageShape { channels: squeezed.channels / 2, ..squeezed };
            density.push(Box::new(OnPrefix::new(squeezed.len(), self.level(kept, level + 1, rng)?)?));
        }
        density.reverse();
        Ok(Box::new(Chain::new(density)?))
    }

    /// The flow's bijection (forward: base → images).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for sizes out of range or images the squeezes cannot halve.
    pub fn bijection(&self, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        Ok(Box::new(Chain::new(vec![self.levels(rng)?, pixel_layer(self.image, self.logit_alpha)?])?))
    }

    /// The levels alone, without the pixel layer of the data side.
    pub(crate) fn levels(&self, rng: &mut Rng) -> Result<Box<dyn Bijection>> {
        self.validate()?;
        self.level(self.image, 0, rng)
    }

    /// Builds the flow (couplings start with zero shifts and Glow's constant scale `1/sigmoid(2)`
    /// in the generative direction, ActNorm from the first batch).
    ///
    /// # Errors
    /// As [`MultiscaleRealNvpConfig::bijection`].
    pub fn init(&self, rng: &mut Rng) -> Result<Flow> {
        let mut flow = Flow::new(self.bijection(rng)?);
        flow.meta.name = "realnvp".into();
        Ok(flow)
    }
}

/// Reverses the order of the channels (so that consecutive channel couplings alternate halves).
fn reverse_channels(image: ImageShape) -> Permutation {
    let p = image.pixels();
    Permutation::new((0..image.len()).map(|i| (image.channels - 1 - i / p) * p + i % p).collect())
        .expect("a channel reversal is a permutation")
}
