//! The elementwise monotone maps ("transformers") that coupling and autoregressive layers apply,
//! kept apart from the conditioners that produce their parameters.

use serde::{Deserialize, Serialize};

use super::affine::AffineLanes;
use super::lanes::{self, Gradients, RowLayout};
use super::spline::{self, SplineShape};
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
            Transformer::Spline(shape) => spline::record_len(*shape),
            _ => 0,
        }
    }

    /// Floats a training pass over `elements` elements records (see [`lanes::record_size`]).
    pub(crate) fn record_size(&self, elements: usize) -> usize {
        lanes::record_size(elements, self.record_len())
    }

    /// Per-batch state (scratch buffers) for applying this transformer row by row.
    pub(crate) fn runner(&self) -> Elementwise {
        Elementwise {
            kind: *self,
            pass: match self {
                Transformer::Affine => Pass::Affine(AffineLanes::new(false)),
                Transformer::Additive => Pass::Affine(AffineLanes::new(true)),
                Transformer::Spline(shape) => Pass::Spline(SplineLanes::new(*shape)),
            },
        }
    }
}

/// A [`Transformer`] with its scratch space, applied to row parts.
pub(crate) struct Elementwise {
    kind: Transformer,
    pass: Pass,
}

/// The kernel of a transformer's passes. (Unboxed although the spline's is larger: a runner
/// lives for one pass, and boxing would allocate in every training step.)
#[allow(clippy::large_enum_variant)]
enum Pass {
    Affine(AffineLanes),
    Spline(SplineLanes),
}

impl Elementwise {
    /// Maps the elements of `ld.len()` rows laid out as `layout` from `input` into `out`
    /// (entries outside the layout are left alone) with parameters `theta` (one row of
    /// `params_per_dim · n` per row), adding each row's log-det into `ld`. `record`
    /// ([`Transformer::record_size`] values, or empty for none) receives what
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
            Pass::Spline(kernel) => lanes::apply_rows(kernel, direction, layout, input, theta, out, record, ld),
        }
    }

    /// Backward of [`Elementwise::apply_rows`] for `g_ld.len()` rows: writes `∂L/∂input` into
    /// `g_in` (laid out as the input; only the layout's entries) and `∂L/∂θ` into `g_theta`
    /// (laid out as `theta`, overwritten), given the pass's `input` and `output`, the gradients
    /// of its output and of each row's log-det, and the `record` its
    /// [`Elementwise::apply_rows`] wrote (required for splines: their knots are read back).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward_rows(
        &mut self,
        direction: Direction,
        layout: RowLayout,
        input: &[f32],
        output: &[f32],
        theta: &[f32],
        g_out: &[f32],
        g_ld: &[f32],
        g_in: &mut [f32],
        g_theta: &mut [f32],
        record: &[f32],
    ) {
        let RowLayout { stride, offset, n } = layout;
        match &mut self.pass {
            Pass::Spline(kernel) => {
                let x = if direction == Direction::Forward { input } else { output };
                lanes::backward_rows(kernel, direction, layout, Gradients { x, g_out, g_ld, record, g_in, g_theta });
            }
            Pass::Affine(_) => {
                let per = self.kind.params_per_dim() * n;
                for (r, &g_ld) in g_ld.iter().enumerate() {
                    let values = r * stride + offset..r * stride + offset + n;
                    let (th, g_th) = (&theta[r * per..(r + 1) * per], &mut g_theta[r * per..(r + 1) * per]);
                    let (out, g_o, g_i) = (&output[values.clone()], &g_out[values.clone()], &mut g_in[values]);
                    if self.kind == Transformer::Additive {
                        affine::backward(direction, out, th, &[], g_o, g_ld, g_i, g_th, &mut []);
                    } else {
                        let (g_t, g_r) = g_th.split_at_mut(n);
                        affine::backward(direction, out, &th[..n], &th[n..], g_o, g_ld, g_i, g_t, g_r);
                    }
                }
            }
        }
    }
}
