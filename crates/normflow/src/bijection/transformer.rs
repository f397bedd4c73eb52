//! The elementwise monotone maps ("transformers") that coupling and autoregressive layers apply,
//! kept apart from the conditioners that produce their parameters.

use serde::{Deserialize, Serialize};

use super::Direction;
use crate::engine::affine_lanes::{self as affine, AffineGradients, AffineLanes, ScaleForm};
use crate::engine::lanes::{self, Gradients, RowLayout};
use crate::engine::spline::{self, SplineShape};
use crate::engine::spline_lanes::SplineLanes;
use crate::engine::{pool, Matrix};

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
    /// `x = z·exp(s) + t` with `0 ≤ s < ln 1000` from Glow's `sigmoid(r + 2)`: the density
    /// direction `z = (x − t)·exp(−s)` only contracts, so however many couplings are stacked,
    /// no input can be blown up by their scales (image flows).
    Contractive,
    /// Rational-quadratic spline on `[−B, B]`, identity outside (neural spline flows).
    Spline(SplineShape),
}

impl Transformer {
    /// Unconstrained parameters per transformed element.
    pub fn params_per_dim(&self) -> usize {
        match self {
            Transformer::Affine | Transformer::Contractive => 2,
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

    /// Applies the transformer to the `layout` part of `input`'s rows with parameters `theta`
    /// (one row each); the other entries of the output are `input`'s. Returns the output and
    /// each row's log-det.
    pub(crate) fn apply(&self, direction: Direction, layout: RowLayout, input: &Matrix, theta: &Matrix) -> (Matrix, Vec<f32>) {
        self.pass(direction, layout, input, theta, &mut [])
    }

    /// [`Transformer::apply`] for training: also returns what [`Transformer::backward`] needs.
    pub(crate) fn train_apply(
        &self,
        direction: Direction,
        layout: RowLayout,
        input: &Matrix,
        theta: Matrix,
    ) -> (Matrix, Vec<f32>, RecordedPass) {
        let size = self.record_size(input.rows() * layout.n);
        // Every recorded value is written: no need to clear the buffer.
        let mut record = Matrix::from_vec(1, size, pool::scratch(size));
        let (out, ld) = self.pass(direction, layout, input, &theta, record.as_mut_slice());
        let pass = RecordedPass { layout, theta, input: input.clone(), output: out.clone(), record };
        (out, ld, pass)
    }

    fn pass(&self, direction: Direction, layout: RowLayout, input: &Matrix, theta: &Matrix, record: &mut [f32]) -> (Matrix, Vec<f32>) {
        // Entries outside the layout pass through; when it covers the rows, all are written.
        let mut out = if covers_rows(layout) { Matrix::scratch(input.rows(), input.cols()) } else { input.clone() };
        let mut ld = pool::zeroed(input.rows());
        self.runner().apply_rows(direction, layout, input.as_slice(), theta.as_slice(), out.as_mut_slice(), record, &mut ld);
        (out, ld)
    }

    /// Backward of a [`Transformer::train_apply`] pass: the gradient with respect to its input
    /// (`grad_out` passed through outside the layout) and to its parameters.
    pub(crate) fn backward(&self, direction: Direction, pass: &RecordedPass, grad_out: &Matrix, grad_log_det: &[f32]) -> (Matrix, Matrix) {
        let rows = grad_out.rows();
        let mut g_in = if covers_rows(pass.layout) { Matrix::scratch(rows, grad_out.cols()) } else { grad_out.clone() };
        // Written in full by the backward pass.
        let mut g_theta = Matrix::scratch(rows, pass.theta.cols());
        self.runner().backward_rows(
            direction,
            pass.layout,
            pass.input.as_slice(),
            pass.output.as_slice(),
            pass.theta.as_slice(),
            grad_out.as_slice(),
            grad_log_det,
            g_in.as_mut_slice(),
            g_theta.as_mut_slice(),
            pass.record.as_slice(),
        );
        (g_in, g_theta)
    }

    /// Per-batch state (scratch buffers) for applying this transformer row by row.
    pub(crate) fn runner(&self) -> Elementwise {
        Elementwise {
            kind: *self,
            pass: match self {
                Transformer::Affine => Pass::Affine(AffineLanes::new(false)),
                Transformer::Contractive => Pass::Contractive(AffineLanes::new(false)),
                Transformer::Additive => Pass::Affine(AffineLanes::new(true)),
                Transformer::Spline(shape) => Pass::Spline(SplineLanes::new(*shape)),
            },
        }
    }
}

/// Whether a layout's parts are the whole rows.
fn covers_rows(layout: RowLayout) -> bool {
    layout.offset == 0 && layout.n == layout.stride
}

/// A training pass of a transformer, kept for its backward pass.
pub(crate) struct RecordedPass {
    layout: RowLayout,
    theta: Matrix,
    input: Matrix,
    output: Matrix,
    /// What the transformer recorded (see [`Transformer::record_size`]).
    record: Matrix,
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
    Affine(AffineLanes<false>),
    Contractive(AffineLanes<true>),
    Spline(SplineLanes),
}

impl Elementwise {
    /// Maps the elements of `ld.len()` rows laid out as `layout` from `input` into `out`
    /// (entries outside the layout are left alone) with parameters `theta` (one row of
    /// `params_per_dim · n` per row), adding each row's log-det into `ld`. `record`
    /// ([`Transformer::record_size`] values, or empty for none) receives what
    /// [`Elementwise::backward_rows`] can reuse instead of recomputing.
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
            Pass::Contractive(kernel) => lanes::apply_rows(kernel, direction, layout, input, theta, out, record, ld),
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
        match &mut self.pass {
            Pass::Spline(kernel) => {
                let x = if direction == Direction::Forward { input } else { output };
                lanes::backward_rows(kernel, direction, layout, Gradients { x, g_out, g_ld, record, g_in, g_theta });
            }
            Pass::Affine(_) | Pass::Contractive(_) => {
                let form = if self.kind == Transformer::Contractive { ScaleForm::Contractive } else { ScaleForm::SoftClip };
                let g = AffineGradients { output, theta, g_out, g_ld, g_in, g_theta };
                affine::backward_rows(form, self.kind == Transformer::Additive, direction, layout, g);
            }
        }
    }
}
