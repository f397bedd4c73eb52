//! Coupling layers (Dinh et al. 2015, arXiv:1410.8516; RealNVP, Dinh et al. 2017,
//! arXiv:1605.08803): the first `split` dimensions pass through unchanged and condition an
//! elementwise transformer of the others.

use super::transformer::RecordedPass;
use super::{check_context, check_width, BijectionSpec, Direction, Tape, Transformer, WaveSpec};
use crate::engine::lanes::RowLayout;
use crate::engine::{ImageShape, Matrix, Rng};
use crate::nn::{CheckerboardNet, Conditioner, ConditionerCache, ConvNet, Mlp, ResidualMlp, WaveConditioner};
use crate::{Bijection, Error, Result};

/// Coupling layer `x_A = z_A`, `x_B = τ(z_B; θ(z_A, context))` with an MLP conditioner θ and
/// any [`Transformer`] τ (affine: RealNVP; additive: NICE; spline: NSF-C).
///
/// The conditioner's last layer starts at zero, so a new layer is the identity (with
/// [`Transformer::Contractive`]: a constant scale, Glow's `1/sigmoid(2)`).
///
/// # Shapes
/// Rows of width `dim`; A is columns `0..split`, B is `split..dim`; the conditioner maps
/// `split + context_dim` inputs to `params_per_dim · (dim − split)` outputs (block-major, see
/// [`Transformer`]).
///
/// # Example
/// ```
/// use normflow::{bijection::{AffineCoupling, Transformer}, Bijection, Matrix, Rng};
/// let layer = AffineCoupling::new(4, 2, &[16, 16], 0, Transformer::Affine, &mut Rng::new(0)).unwrap();
/// let z = Matrix::from_vec(1, 4, vec![0.1, -0.2, 0.3, 0.4]);
/// let (x, log_det) = layer.forward_and_log_det(&z, None).unwrap();
/// assert_eq!((x, log_det[0]), (z, 0.0)); // identity at initialisation
/// ```
#[derive(Clone, Debug)]
pub struct AffineCoupling {
    dim: usize,
    split: usize,
    context_dim: usize,
    transformer: Transformer,
    hidden: Vec<usize>,
    residual_blocks: usize,
    /// The image shape of a coupling with a convolutional conditioner.
    image: Option<ImageShape>,
    /// The checkerboard colour that passes through, for a checkerboard-masked coupling.
    checkerboard: Option<usize>,
    /// The WaveNet conditioner's settings, for a WaveGlow coupling.
    wave: Option<WaveSpec>,
    net: Conditioner,
}

struct CouplingCache {
    net: ConditionerCache,
    pass: RecordedPass,
}

impl AffineCoupling {
    /// A coupling layer that keeps columns `0..split` and transforms `split..dim`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `0 < split < dim`.
    pub fn new(dim: usize, split: usize, hidden: &[usize], context_dim: usize, transformer: Transformer, rng: &mut Rng) -> Result<Self> {
        transformer.validate()?;
        if split == 0 || split >= dim {
            return Err(Error::config(format!("coupling split must be in 1..{dim} for {dim} dimensions, got {split}")));
        }
        if hidden.contains(&0) {
            return Err(Error::config("hidden layer sizes must be positive"));
        }
        let mut sizes = vec![split + context_dim];
        sizes.extend_from_slice(hidden);
        sizes.push(transformer.params_per_dim() * (dim - split));
        let net = Conditioner::Mlp(Mlp::new(&sizes, 0.0, None, rng));
        Ok(Self {
            dim,
            split,
            context_dim,
            transformer,
            hidden: hidden.to_vec(),
            residual_blocks: 0,
            image: None,
            checkerboard: None,
            wave: None,
            net,
        })
    }

    /// Glow's affine coupling on image rows: the first half of the channels (`channels / 2`)
    /// passes through and conditions the rest through a [`ConvNet`] of `hidden` channels (3×3 →
    /// 1×1 → zero-initialised 3×3), one transformer parameter block per output channel group.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than 2 channels, no pixels or no hidden channels.
    pub fn with_conv(image: ImageShape, hidden: usize, transformer: Transformer, rng: &mut Rng) -> Result<Self> {
        Self::with_conv_context(image, 0, hidden, transformer, rng)
    }

    /// As [`AffineCoupling::with_conv`], conditioned on `context_dim` context values per row
    /// (for example a one-hot class), which enter the conditioner as constant planes.
    ///
    /// # Errors
    /// As [`AffineCoupling::with_conv`].
    pub fn with_conv_context(
        image: ImageShape,
        context_dim: usize,
        hidden: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::with_conv_blocks(image, context_dim, hidden, 0, transformer, rng)
    }

    /// RealNVP's checkerboard-masked coupling on rows holding `image` images, in the layout
    /// [`crate::nn::checkerboard_order`] gives: the values of colour `parity` first (they pass
    /// through), then the other colour's, transformed with parameters from a
    /// [`crate::nn::CheckerboardNet`] of `hidden` channels. Put it between the permutations of
    /// [`super::Permutation::checkerboard`].
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for images of fewer than 2 pixels or no hidden channels.
    pub fn with_checkerboard(image: ImageShape, parity: usize, hidden: usize, transformer: Transformer, rng: &mut Rng) -> Result<Self> {
        Self::with_checkerboard_context(image, parity, 0, hidden, transformer, rng)
    }

    /// As [`AffineCoupling::with_checkerboard`], conditioned on `context_dim` context values per
    /// row, which enter the conditioner as constant planes.
    ///
    /// # Errors
    /// As [`AffineCoupling::with_checkerboard`].
    pub fn with_checkerboard_context(
        image: ImageShape,
        parity: usize,
        context_dim: usize,
        hidden: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::with_checkerboard_blocks(image, parity, context_dim, hidden, 0, transformer, rng)
    }

    /// As [`AffineCoupling::with_conv_context`] with RealNVP's residual conditioner of `blocks`
    /// blocks (0: Glow's network; see [`ConvNet::residual`]).
    ///
    /// # Errors
    /// As [`AffineCoupling::with_conv`].
    pub fn with_conv_blocks(
        image: ImageShape,
        context_dim: usize,
        hidden: usize,
        blocks: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        transformer.validate()?;
        if image.channels < 2 || image.pixels() == 0 || hidden == 0 {
            return Err(Error::config(format!(
                "a convolutional coupling needs 2+ channels, pixels and hidden channels, got {image:?}, {hidden}"
            )));
        }
        let kept = image.channels / 2;
        let input = ImageShape { channels: kept, ..image };
        let out = transformer.params_per_dim() * (image.channels - kept);
        Ok(Self {
            dim: image.len(),
            split: kept * image.pixels(),
            context_dim,
            transformer,
            hidden: vec![hidden],
            residual_blocks: blocks,
            image: Some(image),
            checkerboard: None,
            wave: None,
            net: Conditioner::Conv(ConvNet::residual(input, context_dim, hidden, blocks, out, rng)),
        })
    }

    /// As [`AffineCoupling::with_checkerboard_context`] with RealNVP's residual conditioner of
    /// `blocks` blocks (0: Glow's network).
    ///
    /// # Errors
    /// As [`AffineCoupling::with_checkerboard`].
    pub fn with_checkerboard_blocks(
        image: ImageShape,
        parity: usize,
        context_dim: usize,
        hidden: usize,
        blocks: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        transformer.validate()?;
        if image.pixels() < 2 || image.channels == 0 || hidden == 0 {
            return Err(Error::config(format!("a checkerboard coupling needs 2+ pixels and hidden channels, got {image:?}, {hidden}")));
        }
        let net = CheckerboardNet::new(image, parity % 2, context_dim, hidden, blocks, transformer.params_per_dim(), rng);
        Ok(Self {
            dim: image.len(),
            split: net.kept_len(),
            context_dim,
            transformer,
            hidden: vec![hidden],
            residual_blocks: blocks,
            image: Some(image),
            checkerboard: Some(parity % 2),
            wave: None,
            net: Conditioner::Checkerboard(net),
        })
    }

    /// WaveGlow's affine coupling on grouped audio: rows of `group × 1 × length` values (the
    /// segment's samples squeezed into `group` channels, channel-major), the first half of the
    /// channels passing through and conditioning the rest through a [`crate::nn::WaveNet`] of
    /// `channels` hidden channels, conditioned on the row's context: `wave.mel_bands ×
    /// wave.frames` mel values (band-major), each frame repeated over `length / frames` steps.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for fewer than 2 channels, a height other than 1, frames that do
    /// not divide the length, no hidden channels or layers, or an even kernel.
    pub fn with_wavenet(image: ImageShape, wave: WaveSpec, channels: usize, transformer: Transformer, rng: &mut Rng) -> Result<Self> {
        transformer.validate()?;
        let length = image.width;
        if image.channels < 2 || image.height != 1 || length == 0 {
            return Err(Error::config(format!("a WaveGlow coupling needs 2+ channels of one row of samples, got {image:?}")));
        }
        if wave.mel_bands > 0 && (wave.frames == 0 || !length.is_multiple_of(wave.frames)) {
            return Err(Error::config(format!("{} mel frames do not divide the {length} steps of a segment", wave.frames)));
        }
        if channels == 0 || wave.layers == 0 || wave.kernel.is_multiple_of(2) {
            return Err(Error::config(format!(
                "a WaveNet needs hidden channels, layers and an odd kernel, got {channels}, {}, {}",
                wave.layers, wave.kernel
            )));
        }
        let kept = image.channels / 2;
        let out = transformer.params_per_dim() * (image.channels - kept);
        let context_dim = wave.mel_bands * wave.frames;
        let net = WaveConditioner::new(kept, out, length, wave.mel_bands, wave.frames, channels, wave.layers, wave.kernel, rng);
        Ok(Self {
            dim: image.len(),
            split: kept * length,
            context_dim,
            transformer,
            hidden: vec![channels],
            residual_blocks: 0,
            image: Some(image),
            checkerboard: None,
            wave: Some(wave),
            net: Conditioner::Wave(net),
        })
    }

    /// A coupling layer whose conditioner is a residual MLP of `blocks` blocks of width `width`
    /// (see [`ResidualMlp`]) instead of a plain MLP.
    ///
    /// # Errors
    /// As [`AffineCoupling::new`]; also for `width` 0.
    pub fn with_residual(
        dim: usize,
        split: usize,
        width: usize,
        blocks: usize,
        context_dim: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        let mut layer = Self::new(dim, split, &[width], context_dim, transformer, rng)?;
        let out = transformer.params_per_dim() * (dim - split);
        layer.net = Conditioner::Residual(ResidualMlp::new(split + context_dim, width, blocks, out, 0.0, rng));
        layer.residual_blocks = blocks;
        Ok(layer)
    }

    fn net_input(&self, input: &Matrix, context: Option<&Matrix>) -> Matrix {
        let a = input.slice_cols(0, self.split);
        match context {
            Some(c) if self.context_dim > 0 => a.hcat(c),
            _ => a,
        }
    }

    /// Where the transformed (B) half of each row lies.
    fn layout(&self) -> RowLayout {
        RowLayout { stride: self.dim, offset: self.split, n: self.dim - self.split }
    }

    fn run(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("coupling input", input, self.dim)?;
        check_context(context, self.context_dim, input.rows())?;
        let theta = self.net.forward(&self.net_input(input, context));
        Ok(self.transformer.apply(direction, self.layout(), input, &theta))
    }
}

impl Bijection for AffineCoupling {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.context_dim
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.run(input, context, direction)
    }

    fn num_params(&self) -> usize {
        self.net.params().len()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        f(self.net.params());
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(self.net.params_mut());
    }

    fn train_forward(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction, tape: &mut Tape) -> Result<(Matrix, Vec<f32>)> {
        check_width("coupling input", input, self.dim)?;
        check_context(context, self.context_dim, input.rows())?;
        let (theta, net) = self.net.forward_cached(&self.net_input(input, context));
        let (out, ld, pass) = self.transformer.train_apply(direction, self.layout(), input, theta);
        tape.push(CouplingCache { net, pass });
        Ok((out, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        let cache: CouplingCache = tape.pop()?;
        // The A half passes its output gradient through (plus the conditioner's, below); the B
        // half's input gradient comes from the transformer.
        let (mut g_in, g_theta) = self.transformer.backward(direction, &cache.pass, &grad_out, grad_log_det);
        let g_net_in = self.net.backward(&cache.net, g_theta, grads);
        for i in 0..g_in.rows() {
            for (g, v) in g_in.row_mut(i)[..self.split].iter_mut().zip(g_net_in.row(i)) {
                *g += v;
            }
        }
        Ok(g_in)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Coupling {
            dim: self.dim,
            split: self.split,
            hidden: self.hidden.clone(),
            context_dim: self.context_dim,
            transformer: self.transformer,
            residual_blocks: self.residual_blocks,
            image: self.image,
            checkerboard: self.checkerboard,
            wave: self.wave,
        }
    }
}
