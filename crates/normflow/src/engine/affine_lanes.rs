//! The elementwise affine transformer `x = z·exp(s) + t`, shared by coupling and autoregressive
//! layers, with a soft-clipped log-scale.
//!
//! A raw `exp` of an unbounded network output lets deep stacks diverge; instead the conditioner's
//! raw output `r` becomes `s = r / (1 + |r| / ln 1000)`, so `|s| < ln 1000` and the scale stays
//! within `[1e-3, 1e3]`, with `s ≈ r` near zero ([`ScaleForm::SoftClip`]).
//!
//! Deep image flows need more: a rare input can push every one of dozens of couplings to its
//! largest expansion, and the factors compound (1e3 per coupling) until the latent overflows.
//! [`ScaleForm::Contractive`] is Glow's `sigmoid(r + 2)` scale: the density direction
//! `z = (x − t)·e^−s` only contracts (`s = softplus(−r − 2) ≥ 0`, soft-clipped below ln 1000 the
//! same way), so no input can be amplified by the couplings' scales.

use super::isa::{self, Kernel};
use super::lanes::{LaneKernel, Lanes, RowLayout};
use super::Direction;
use crate::engine::fastmath::{self, LANES};

/// Bound of the soft-clipped log-scale: `|s| < ln 1000`.
pub(crate) const LOG_SCALE_BOUND: f32 = 6.907_755_4;

/// `s = r / (1 + |r|/B)` and `ds/dr = 1 / (1 + |r|/B)²`.
#[inline(always)]
pub(crate) fn soft_clip(r: f32) -> (f32, f32) {
    // A multiply by the bound's reciprocal (a division by the constant compiles to a second
    // `vdivps`).
    let q = 1.0 + r.abs() * (1.0 / LOG_SCALE_BOUND);
    (r / q, 1.0 / (q * q))
}

/// `s = softplus(−r − 2)` soft-clipped below the bound, and `ds/dr`: `e^−s` is Glow's
/// `sigmoid(r + 2)` (0.88 at `r = 0`), so `s` is never negative.
#[inline(always)]
pub(crate) fn contractive<const FMA: bool>(r: f32) -> (f32, f32) {
    let a = -r - 2.0;
    // softplus(a) = max(a, 0) + ln(1 + e^−|a|) and sigmoid(a) without overflow for any `a`.
    let e = fastmath::exp::<FMA>(-a.abs());
    let softplus = a.max(0.0) + fastmath::ln::<FMA>(1.0 + e);
    let sigmoid = fastmath::pick(a >= 0.0, 1.0, e) / (1.0 + e);
    let q = 1.0 + softplus * (1.0 / LOG_SCALE_BOUND);
    (softplus / q, -sigmoid / (q * q))
}

/// How a conditioner's raw output `r` becomes the log-scale `s` of `x = z·e^s + t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleForm {
    /// `s = r / (1 + |r|/B)`: either sign, `|s| < B` ([`soft_clip`]).
    SoftClip,
    /// `0 ≤ s < B`: the density direction only contracts ([`contractive`]).
    Contractive,
}

/// The affine (or, with one parameter, additive) transformer as a [`LaneKernel`]: shifts `t`
/// then raw scales `r` per element, the log-scales [`ScaleForm::Contractive`] when
/// `CONTRACTIVE`, else [`ScaleForm::SoftClip`]. The form is a type parameter, not a field, so
/// that each kernel's lane loop holds one form's code and no per-block match: against the field,
/// a MAF's S log-prob 0.75× and coupling S 0.87× on AVX-512
/// (`bench/results/2026-12-08-ab-affine-form-type-parameter-xeon.txt`).
pub(crate) struct AffineLanes<const CONTRACTIVE: bool> {
    theta: [Lanes; 2],
    additive: bool,
}

impl<const CONTRACTIVE: bool> AffineLanes<CONTRACTIVE> {
    /// Scratch for the affine transformer, or the additive one when `additive` (built with the
    /// soft clip).
    pub(crate) fn new(additive: bool) -> Self {
        Self { theta: [[0.0; LANES]; 2], additive }
    }
}

/// One lane block of the affine map with the log-scale function `scale` (a separate
/// instantiation per form keeps the loop branch-free).
#[inline(always)]
fn affine_lanes<const FMA: bool>(
    direction: Direction,
    x: &Lanes,
    t: &Lanes,
    r: &Lanes,
    scale: impl Fn(f32) -> (f32, f32),
) -> (Lanes, Lanes) {
    let (mut y, mut ld) = ([0.0; LANES], [0.0; LANES]);
    if direction == Direction::Forward {
        for l in 0..LANES {
            let s = scale(r[l]).0;
            y[l] = fastmath::mul_add::<FMA>(x[l], fastmath::exp::<FMA>(s), t[l]);
            ld[l] = s;
        }
    } else {
        for l in 0..LANES {
            let s = -scale(r[l]).0;
            y[l] = (x[l] - t[l]) * fastmath::exp::<FMA>(s);
            ld[l] = s;
        }
    }
    (y, ld)
}

impl<const CONTRACTIVE: bool> LaneKernel for AffineLanes<CONTRACTIVE> {
    #[inline(always)]
    fn theta_mut(&mut self) -> &mut [Lanes] {
        &mut self.theta[..if self.additive { 1 } else { 2 }]
    }

    #[inline(always)]
    fn record_len(&self) -> usize {
        0
    }

    #[inline(always)]
    fn eval<const FMA: bool>(&mut self, direction: Direction, x: &Lanes) -> (Lanes, Lanes) {
        let [t, r] = &self.theta;
        // Forward `y = x·e^s + t`, inverse `y = (x − t)·e^−s`, log-det `±s`: one loop per
        // direction, each branch-free (a branch in the lane loop keeps it from vectorising).
        // The additive transformer's raw scales stay at their initial zeros (`theta_mut` hands
        // out the shifts only), and it is built with the soft clip, so its `s` is 0 with no
        // multiply by a flag.
        if CONTRACTIVE {
            affine_lanes::<FMA>(direction, x, t, r, contractive::<FMA>)
        } else {
            affine_lanes::<FMA>(direction, x, t, r, soft_clip)
        }
    }

    #[inline(always)]
    fn save(&self, _rec: &mut [Lanes]) {}
}

/// What [`backward_rows`] reads and writes, for `g_ld.len()` rows laid out as `layout`.
pub(crate) struct AffineGradients<'a> {
    /// The pass's output, laid out as its input.
    pub output: &'a [f32],
    /// Parameters: per row, the shifts then (unless additive) the raw scales.
    pub theta: &'a [f32],
    /// `∂L/∂output`, laid out as the output.
    pub g_out: &'a [f32],
    /// `∂L/∂log-det` per row.
    pub g_ld: &'a [f32],
    /// `∂L/∂input` (only the layout's entries are written).
    pub g_in: &'a mut [f32],
    /// `∂L/∂θ`, laid out as `theta` (overwritten).
    pub g_theta: &'a mut [f32],
}

/// Backward of the affine transformer ([`AffineLanes`], additive when `additive`) with
/// log-scales of `form`, from the pass's output, with the widest vectors the CPU has.
pub(crate) fn backward_rows(form: ScaleForm, additive: bool, direction: Direction, layout: RowLayout, g: AffineGradients<'_>) {
    isa::dispatch(AffineBackward { form, additive, direction, layout, g });
}

/// [`backward_rows`] as a kernel for [`isa::dispatch`].
struct AffineBackward<'a> {
    form: ScaleForm,
    additive: bool,
    direction: Direction,
    layout: RowLayout,
    g: AffineGradients<'a>,
}

impl Kernel for AffineBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let AffineBackward { form, additive, direction, layout: RowLayout { stride, offset, n }, g } = self;
        let per = if additive { n } else { 2 * n };
        for (r, &g_ld) in g.g_ld.iter().enumerate() {
            let values = r * stride + offset..r * stride + offset + n;
            let (th, g_th) = (&g.theta[r * per..(r + 1) * per], &mut g.g_theta[r * per..(r + 1) * per]);
            let (out, g_o, g_i) = (&g.output[values.clone()], &g.g_out[values.clone()], &mut g.g_in[values]);
            if additive {
                backward::<FMA>(form, direction, out, th, &[], g_o, g_ld, g_i, g_th, &mut []);
            } else {
                let (g_t, g_r) = g_th.split_at_mut(n);
                backward::<FMA>(form, direction, out, &th[..n], &th[n..], g_o, g_ld, g_i, g_t, g_r);
            }
        }
    }
}

/// Backward of the transformer for one row, from the pass's `output`. Writes the gradients
/// with respect to the input, the shifts and the raw scales (`g_r` is ignored when `r` is
/// empty).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward<const FMA: bool>(
    form: ScaleForm,
    direction: Direction,
    output: &[f32],
    t: &[f32],
    r: &[f32],
    g_out: &[f32],
    g_ld: f32,
    g_in: &mut [f32],
    g_t: &mut [f32],
    g_r: &mut [f32],
) {
    if r.is_empty() {
        for ((gi, gt), &g) in g_in.iter_mut().zip(g_t.iter_mut()).zip(g_out) {
            *gi = g;
            *gt = match direction {
                Direction::Forward => g,
                Direction::Inverse => -g,
            };
        }
        return;
    }
    match form {
        ScaleForm::SoftClip => backward_scaled::<FMA>(direction, output, t, r, g_out, g_ld, g_in, g_t, g_r, soft_clip),
        ScaleForm::Contractive => backward_scaled::<FMA>(direction, output, t, r, g_out, g_ld, g_in, g_t, g_r, contractive::<FMA>),
    }
}

/// [`backward`] of the affine transformer with the log-scale function `scale` (one
/// instantiation per form keeps the loops branch-free).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_scaled<const FMA: bool>(
    direction: Direction,
    output: &[f32],
    t: &[f32],
    r: &[f32],
    g_out: &[f32],
    g_ld: f32,
    g_in: &mut [f32],
    g_t: &mut [f32],
    g_r: &mut [f32],
    scale: impl Fn(f32) -> (f32, f32),
) {
    // One loop per direction, on slices cut to one length, with the vectorising `exp` (the
    // forward pass's): libm's scalar `exp` and a branch inside the loop kept it scalar.
    let n = output.len();
    let (t, r, g_out, g_in, g_t, g_r) = (&t[..n], &r[..n], &g_out[..n], &mut g_in[..n], &mut g_t[..n], &mut g_r[..n]);
    match direction {
        // x = z e^s + t: dx/dz = e^s, dx/dt = 1, dx/ds = z e^s = x − t; d ld/ds = 1.
        Direction::Forward => {
            for i in 0..n {
                let (s, ds) = scale(r[i]);
                let g = g_out[i];
                g_in[i] = g * fastmath::exp::<FMA>(s);
                g_t[i] = g;
                g_r[i] = (g * (output[i] - t[i]) + g_ld) * ds;
            }
        }
        // z = (x − t) e^−s: dz/dx = e^−s, dz/dt = −e^−s, dz/ds = −z; d ld/ds = −1.
        Direction::Inverse => {
            for i in 0..n {
                let (s, ds) = scale(r[i]);
                let (g, e) = (g_out[i], fastmath::exp::<FMA>(-s));
                g_in[i] = g * e;
                g_t[i] = -g * e;
                g_r[i] = (-g * output[i] - g_ld) * ds;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contractive_log_scale_is_glows_sigmoid_within_the_bound_with_its_derivative() {
        for i in -400..=400 {
            let r = i as f32 * 0.25;
            let (s, ds) = contractive::<false>(r);
            assert!((0.0..LOG_SCALE_BOUND).contains(&s), "s({r}) = {s}");
            // Unclipped, e^−s would be sigmoid(r + 2); the clip only lowers large s.
            let sigmoid = 1.0 / (1.0 + (-(r as f64) - 2.0).exp());
            let unclipped = -sigmoid.ln();
            let clipped = unclipped / (1.0 + unclipped / LOG_SCALE_BOUND as f64);
            assert!((s as f64 - clipped).abs() < 1e-5 * (1.0 + clipped), "s({r}) = {s}, want {clipped}");
            let h = 1e-3;
            let f = |r: f64| {
                let u = -(1.0 / (1.0 + (-r - 2.0).exp())).ln();
                u / (1.0 + u / LOG_SCALE_BOUND as f64)
            };
            let fd = (f(r as f64 + h) - f(r as f64 - h)) / (2.0 * h);
            assert!((ds as f64 - fd).abs() < 1e-4, "ds({r}) = {ds}, finite difference {fd}");
        }
        for r in [f32::MAX, -f32::MAX, 1e30, -1e30] {
            let (s, ds) = contractive::<false>(r);
            assert!(s.is_finite() && ds.is_finite() && (0.0..=LOG_SCALE_BOUND * (1.0 + 1e-6)).contains(&s), "s({r}) = {s}, ds = {ds}");
        }
    }
}
