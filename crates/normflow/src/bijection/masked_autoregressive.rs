//! Masked autoregressive layer (MAF, Papamakarios et al. 2017, arXiv:1705.07057; with a spline
//! transformer, NSF-AR) with a MADE conditioner. `Invert` of it is an inverse autoregressive
//! flow (IAF).

use std::borrow::Cow;

use super::made_sampler::MadeSampler;
use super::transformer::RecordedPass;
use super::{check_context, check_width, BijectionSpec, Direction, Tape, Transformer};
use crate::engine::lanes::RowLayout;
use crate::engine::{Matrix, Rng};
use crate::io::TensorSource;
use crate::nn::{made_masks, HiddenDegrees, Mlp, MlpCache};
use crate::{Bijection, Error, Result};

/// `x_i = τ(z_i; θ_i(x_<i))`, the `<` taken in a chosen order of the dimensions, for any
/// [`Transformer`] τ (affine: `z·exp(s) + t`, MAF; spline: NSF-AR).
///
/// Density evaluation (the inverse, x → z) is one network pass; sampling (the forward) is
/// sequential over the dimensions but computes each hidden unit once. The last MADE layer starts
/// at zero, so a new layer is the identity.
///
/// # Example
/// ```
/// use normflow::{bijection::{MaskedAutoregressive, Transformer}, Bijection, Matrix, Rng};
/// let layer = MaskedAutoregressive::new(3, &[32, 32], vec![0, 1, 2], 0, Transformer::Affine, &mut Rng::new(0)).unwrap();
/// let x = Matrix::from_vec(2, 3, vec![0.1, 0.2, 0.3, -1.0, 0.0, 1.0]);
/// let (z, _) = layer.inverse_and_log_det(&x, None).unwrap();
/// let (back, _) = layer.forward_and_log_det(&z, None).unwrap();
/// assert!(back.as_slice().iter().zip(x.as_slice()).all(|(a, b)| (a - b).abs() < 1e-5));
/// ```
#[derive(Clone, Debug)]
pub struct MaskedAutoregressive {
    dim: usize,
    context_dim: usize,
    hidden: Vec<usize>,
    order: Vec<usize>,
    transformer: Transformer,
    degrees: HiddenDegrees,
    net: Mlp,
}

struct MafCache {
    net: MlpCache,
    pass: RecordedPass,
}

impl MaskedAutoregressive {
    /// A layer whose autoregressive order puts dimension `i` at position `order[i]`, its hidden
    /// units sorted by degree ([`HiddenDegrees::Sorted`], the fast layout).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `order` is not a permutation of `0..dim` or a hidden size is 0.
    pub fn new(
        dim: usize,
        hidden: &[usize],
        order: Vec<usize>,
        context_dim: usize,
        transformer: Transformer,
        rng: &mut Rng,
    ) -> Result<Self> {
        Self::with_hidden_degrees(dim, hidden, order, context_dim, transformer, HiddenDegrees::Sorted, rng)
    }

    /// [`MaskedAutoregressive::new`] with the hidden units' degrees laid out as `degrees`.
    ///
    /// # Errors
    /// As [`MaskedAutoregressive::new`].
    pub fn with_hidden_degrees(
        dim: usize,
        hidden: &[usize],
        order: Vec<usize>,
        context_dim: usize,
        transformer: Transformer,
        degrees: HiddenDegrees,
        rng: &mut Rng,
    ) -> Result<Self> {
        transformer.validate()?;
        let mut sorted = order.clone();
        sorted.sort_unstable();
        if dim == 0 || sorted != (0..dim).collect::<Vec<_>>() {
            return Err(Error::config(format!("MADE order must be a permutation of 0..{dim}")));
        }
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(Error::config("MADE needs at least one hidden layer, all of positive size"));
        }
        let mut sizes = vec![dim + context_dim];
        sizes.extend_from_slice(hidden);
        let per_dim = transformer.params_per_dim();
        sizes.push(per_dim * dim);
        let masks = made_masks(&order, context_dim, hidden, per_dim, degrees);
        let net = Mlp::new(&sizes, 0.0, Some(masks), rng);
        Ok(Self { dim, context_dim, hidden: hidden.to_vec(), order, transformer, degrees, net })
    }

    /// The MADE's input: the rows themselves, or beside their context (a copy only then).
    fn net_input<'a>(&self, x: &'a Matrix, context: Option<&Matrix>) -> Cow<'a, Matrix> {
        match context {
            Some(c) if self.context_dim > 0 => Cow::Owned(x.hcat(c)),
            _ => Cow::Borrowed(x),
        }
    }

    /// Every element of a row is transformed.
    fn layout(&self) -> RowLayout {
        RowLayout { stride: self.dim, offset: 0, n: self.dim }
    }

    fn inverse(&self, x: &Matrix, context: Option<&Matrix>) -> (Matrix, Vec<f32>) {
        let theta = self.net.forward(&self.net_input(x, context));
        self.transformer.apply(Direction::Inverse, self.layout(), x, &theta)
    }

    /// Sequential sampling pass (see [`MadeSampler`]).
    fn forward(&self, z: &Matrix, context: Option<&Matrix>) -> (Matrix, Vec<f32>) {
        MadeSampler::new(&self.net, &self.order, self.context_dim, self.transformer.params_per_dim(), self.degrees).run(
            z,
            context,
            self.transformer,
        )
    }
}

impl Bijection for MaskedAutoregressive {
    fn dim(&self) -> usize {
        self.dim
    }

    fn context_dim(&self) -> usize {
        self.context_dim
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("autoregressive input", input, self.dim)?;
        check_context(context, self.context_dim, input.rows())?;
        Ok(match direction {
            Direction::Forward => self.forward(input, context),
            Direction::Inverse => self.inverse(input, context),
        })
    }

    fn num_params(&self) -> usize {
        self.net.params().len()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        f(self.net.params());
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        f(self.net.params_mut());
        self.net.apply_masks();
    }

    fn train_forward(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction, tape: &mut Tape) -> Result<(Matrix, Vec<f32>)> {
        if direction == Direction::Forward {
            return Err(Error::Unsupported("gradients through a masked autoregressive layer's sequential forward (sampling) pass; train it in the density direction, or use Invert for an IAF".into()));
        }
        check_width("autoregressive input", input, self.dim)?;
        check_context(context, self.context_dim, input.rows())?;
        let (theta, net) = self.net.forward_cached(&self.net_input(input, context));
        let (out, ld, pass) = self.transformer.train_apply(Direction::Inverse, self.layout(), input, theta);
        tape.push(MafCache { net, pass });
        Ok((out, ld))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        if direction == Direction::Forward {
            return Err(Error::Unsupported("gradients through a masked autoregressive layer's sequential forward pass".into()));
        }
        let cache: MafCache = tape.pop()?;
        let (mut g_in, g_theta) = self.transformer.backward(Direction::Inverse, &cache.pass, &grad_out, grad_log_det);
        let g_net_in = self.net.backward(&cache.net, g_theta, grads, true).expect("input gradient requested");
        for i in 0..g_in.rows() {
            for (g, v) in g_in.row_mut(i).iter_mut().zip(g_net_in.row(i)) {
                *g += v;
            }
        }
        Ok(g_in)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::MaskedAutoregressive {
            dim: self.dim,
            hidden: self.hidden.clone(),
            order: self.order.clone(),
            context_dim: self.context_dim,
            transformer: self.transformer,
            hidden_degrees: self.degrees,
        }
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        let all = src.take(&format!("{prefix}params"), self.num_params())?;
        self.net.params_mut().copy_from_slice(&all);
        self.net.apply_masks();
        Ok(())
    }
}
