//! The elementwise monotone maps ("transformers") that coupling and autoregressive layers apply,
//! kept apart from the conditioners that produce their parameters.

use serde::{Deserialize, Serialize};

use super::affine::AffineLanes;
use super::lanes::{self, RowLayout};
use super::spline::{Spline, SplineShape};
use super::spline_lanes::SplineLanes;
use super::{affine, Direction};

/// An elementwise monotone map with per-element parameters.
///
/// A row part of `n` elements takes `params_per_dim() · n` parameters laid out block-major:
/// parameter `p` of element `i` at `p·n + i` (affine: shifts then raw log-scales).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transformer {
    /// `x = z·exp(s) + t` with a soft-clipped log-scale `s` (RealNVP, MAF).
    Affine,
    /// `x = z + t` (NICE): volume preserving, log-det 0.
    Additive,
    /// Rational-quadratic spline on `[−B, B]`, identity outside (neural spline flows).
    Spline(SplineShape),
}

impl Transformer {
    /// Unconstrained parameters per transformed element.
    pub fn params_per_dim(&self) -> usize {
        match self {
            Transformer::Affine => 2,
            Transformer::Additive => 1,
            Transformer::Spline(shape) => shape.params_per_dim(),
        }
    }

    /// Checks the transformer's own settings.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        match self {
            Transformer::Spline(s) if s.bins < 2 || s.bins > 256 || !(s.bound.is_finite() && s.bound > 0.0) => {
                Err(crate::Error::config("spline bins must be in 2..=256 and the tail bound positive"))
            }
            _ => Ok(()),
        }
    }

    /// Values a training pass records per transformed element for the backward pass (0: the
    /// affine and additive transformers recompute cheaply).
    pub(crate) fn record_len(&self) -> usize {
        match self {
            Transformer::Spline(shape) => Spline::record_len(*shape),
            _ => 0,
        }
    }

    /// Per-batch state (scratch buffers) for applying this transformer row by row.
    pub(crate) fn runner(&self) -> Elementwise {
        Elementwise {
            kind: *self,
            pass: match self {
                Transformer::Affine => Pass::Affine(AffineLanes::new(false)),
                Transformer::Additive => Pass::Affine(AffineLanes::new(true)),
                Transformer::Spline(shape) => Pass::Spline(SplineLanes::new(*shape), Spline::new(*shape)),
            },
        }
    }
}

/// A [`Transformer`] with its scratch space, applied to row parts.
pub(crate) struct Elementwise {
    kind: Transformer,
    pass: Pass,
}

/// The kernel of a transformer's forward and inverse passes and, for splines, the scratch of
/// the backward pass. (Unboxed although the spline's is larger: a runner lives for one pass,
/// and boxing would allocate in every training step.)
#[allow(clippy::large_enum_variant)]
enum Pass {
    Affine(AffineLanes),
    Spline(SplineLanes, Spline),
}

impl Elementwise {
    /// Maps the elements of `ld.len()` rows laid out as `layout` from `input` into `out`
    /// (entries outside the layout are left alone) with parameters `theta` (one row of
    /// `params_per_dim · n` per row), adding each row's log-det into `ld`. `record` (rows ×
    /// `n ·` [`Transformer::record_len`] values, or empty for none) receives what
    /// [`Elementwise::backward`] can reuse instead of recomputing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_rows(
        &mut self,
        direction: Direction,
        layout: RowLayout,
        input: &[f32],
        theta: &[f32],
        out: &mut [f32],
        record: &mut [f32],
        ld: &mut [f32],
    ) {
        match &mut self.pass {
            Pass::Affine(kernel) => lanes::apply_rows(kernel, direction, layout, input, theta, out, record, ld),
            Pass::Spline(kernel, _) => lanes::apply_rows(kernel, direction, layout, input, theta, out, record, ld),
        }
    }

    /// Backward of [`Elementwise::apply_rows`]: writes `∂L/∂input` into `g_in` and `∂L/∂θ` into
    /// `g_theta` (overwritten), given the pass's `input`, `output`, and the gradients of its
    /// output and log-det, and the `record` its [`Elementwise::apply_rows`] wrote (required for
    /// splines: their knots are read back from it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        direction: Direction,
        input: &[f32],
        output: &[f32],
        theta: &[f32],
        g_out: &[f32],
        g_ld: f32,
        g_in: &mut [f32],
        g_theta: &mut [f32],
        record: &[f32],
    ) {
        let n = input.len();
        match (&self.kind, &mut self.pass) {
            (Transformer::Affine, _) => {
                let (g_t, g_r) = g_theta.split_at_mut(n);
                affine::backward(direction, output, &theta[..n], &theta[n..2 * n], g_out, g_ld, g_in, g_t, g_r);
            }
            (Transformer::Additive, _) => affine::backward(direction, output, &theta[..n], &[], g_out, g_ld, g_in, g_theta, &mut []),
            (Transformer::Spline(_), Pass::Spline(_, sp)) => {
                g_theta.fill(0.0);
                let stride = record.len() / n.max(1);
                for i in 0..n {
                    let x = if direction == Direction::Forward { input[i] } else { output[i] };
                    let rec = &record[i * stride..(i + 1) * stride];
                    g_in[i] = sp.backward(direction, x, n, i, g_out[i], g_ld, g_theta, rec);
                }
            }
            (Transformer::Spline(_), Pass::Affine(_)) => unreachable!("runner() builds the spline scratch"),
        }
    }
}
