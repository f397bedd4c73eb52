//! Monotonic rational-quadratic splines (Durkan et al. 2019, arXiv:1906.04032), the transformer
//! of neural spline flows, with hand-derived gradients.
//!
//! On `[−B, B]` the map is a spline of `K` bins whose widths and heights come from softmaxes of
//! unconstrained parameters (floored at `min_bin`) and whose inner knot derivatives come from a
//! shifted softplus (floored at `min_derivative`); the boundary derivatives are 1, so the map
//! joins the identity tails outside `[−B, B]` smoothly. All-zero parameters give uniform bins
//! and unit derivatives: exactly the identity.
//!
//! Numerical rules (each one cost some library a bug report): inputs outside the bound never
//! enter the spline formulas (they take the identity branch, so no NaN can leak into gradients),
//! the bin search is clamped so the last knot belongs to the last bin, and the inverse uses the
//! stable root `2c / (−b − √disc)` with the discriminant clamped at 0.

use super::Direction;
use crate::engine::pool::Buf;

/// Shape of a spline transformer.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplineShape {
    /// Number of bins `K` (default 8).
    pub bins: usize,
    /// Tail bound `B`: the spline acts on `[−B, B]`, the identity outside (default 5).
    pub bound: f32,
}

impl Default for SplineShape {
    fn default() -> Self {
        Self { bins: 8, bound: 5.0 }
    }
}

/// Smallest bin width and height, as a fraction of the interval.
pub(crate) const MIN_BIN: f32 = 1e-3;
/// Smallest knot derivative.
pub(crate) const MIN_DERIVATIVE: f32 = 1e-3;

/// Fixed part of an element's record (see [`Spline::record_len`]).
pub(crate) const RECORD_HEAD: usize = 10;

impl SplineShape {
    /// Unconstrained parameters per transformed element: `K` widths, `K` heights, `K − 1` inner
    /// derivatives.
    pub fn params_per_dim(&self) -> usize {
        3 * self.bins - 1
    }
}

/// Knots of one element: positions `xs[0..=K]`, `ys[0..=K]`, the softmax probabilities that
/// made the widths and heights (for the backward pass), and the derivatives at the two knots of
/// the bin in use with their softplus slopes (only those two are ever needed, which saves most
/// of the transcendental calls).
struct Knots {
    xs: Buf,
    ys: Buf,
    pw: Buf,
    ph: Buf,
    d: [f32; 2],
    dd: [f32; 2],
}

impl Knots {
    fn new(bins: usize) -> Self {
        let room = |n| Buf::zeroed(n);
        Self { xs: room(bins + 1), ys: room(bins + 1), pw: room(bins), ph: room(bins), d: [1.0; 2], dd: [0.0; 2] }
    }
}

/// Everything the forward formula and its partial derivatives need inside one bin.
struct Local {
    xi: f32,
    w: f32,
    h: f32,
    s: f32,
    d0: f32,
    d1: f32,
    den: f32,
    num: f32,
    n2: f32,
}

fn local(kn: &Knots, k: usize, xi: f32) -> Local {
    let (w, h) = (kn.xs[k + 1] - kn.xs[k], kn.ys[k + 1] - kn.ys[k]);
    let s = h / w;
    let (d0, d1) = (kn.d[0], kn.d[1]);
    let q = xi * (1.0 - xi);
    let den = s + (d1 + d0 - 2.0 * s) * q;
    let num = h * (s * xi * xi + d0 * q);
    let n2 = d1 * xi * xi + 2.0 * s * q + d0 * (1.0 - xi) * (1.0 - xi);
    Local { xi, w, h, s, d0, d1, den, num, n2 }
}

impl Local {
    /// `dy/dx = s²·N₂/den²`.
    fn deriv(&self) -> f32 {
        self.s * self.s * self.n2 / (self.den * self.den)
    }
}

/// The backward pass of a spline transformer applied elementwise (the forward and inverse
/// passes are [`super::spline_lanes::SplineLanes`]); parameters of element `i` of an `n`-element row
/// are at `theta[p·n + i]`, `p` in `0..3K−1` (block-major, as MADE outputs are laid out).
pub(crate) struct Spline {
    shape: SplineShape,
    knots: Knots,
}

impl Spline {
    pub(crate) fn new(shape: SplineShape) -> Self {
        Self { shape, knots: Knots::new(shape.bins) }
    }

    /// Floats a training pass records per element for its backward pass (see
    /// `SplineLanes::save`): whether the element was inside the bound, its bin, the bin's two knots
    /// in x and in y, the two knot derivatives and their softplus slopes, and the width and
    /// height probabilities.
    pub(crate) fn record_len(shape: SplineShape) -> usize {
        RECORD_HEAD + 2 * shape.bins
    }

    /// Restores what `SplineLanes::save` wrote: the bin, with its knots in place; None for an
    /// element that was outside the bound.
    fn load(&mut self, rec: &[f32]) -> Option<usize> {
        if rec[0] == 0.0 {
            return None;
        }
        let k = rec[1] as usize;
        let (bins, kn) = (self.shape.bins, &mut self.knots);
        (kn.xs[k], kn.xs[k + 1], kn.ys[k], kn.ys[k + 1]) = (rec[2], rec[3], rec[4], rec[5]);
        (kn.d, kn.dd) = ([rec[6], rec[7]], [rec[8], rec[9]]);
        kn.pw.copy_from_slice(&rec[RECORD_HEAD..RECORD_HEAD + bins]);
        kn.ph.copy_from_slice(&rec[RECORD_HEAD + bins..RECORD_HEAD + 2 * bins]);
        Some(k)
    }

    /// Backward of element `i` in `direction`. `x` is the spline's domain-side value (the input
    /// of a forward pass, the output of an inverse pass); `g_out` and `g_ld` are the loss
    /// gradients with respect to the pass's output and log-det. Adds `∂L/∂θ` into `g_theta` and
    /// returns the gradient with respect to the pass's input.
    ///
    /// The inverse pass `x = F⁻¹(y)` reuses the forward partials: with `c = (g_x − g_ld·∂ℓ/∂x)/F′`
    /// (ℓ = log F′), `∂L/∂y = c` and `∂L/∂θ = −c·∂F/∂θ − g_ld·∂ℓ/∂θ`.
    ///
    /// `rec` is what the pass recorded for this element (see `SplineLanes::save`): the knots are
    /// read back, not rebuilt.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        direction: Direction,
        x: f32,
        n: usize,
        i: usize,
        g_out: f32,
        g_ld: f32,
        g_theta: &mut [f32],
        rec: &[f32],
    ) -> f32 {
        let bins = self.shape.bins;
        let Some(kb) = self.load(rec) else { return g_out };
        let kn = &self.knots;
        let w = kn.xs[kb + 1] - kn.xs[kb];
        let xi = ((x - kn.xs[kb]) / w).clamp(0.0, 1.0);
        let l = local(kn, kb, xi);
        let Local { xi, w, h, s, d0, d1, den, num, n2, .. } = l;
        let q = xi * (1.0 - xi);
        let dq = 1.0 - 2.0 * xi;
        let t = d1 + d0 - 2.0 * s;
        let den2 = den * den;
        // Partials of y and of ld = log dy/dx with respect to ξ, s, h (direct), d0, d1.
        let y_xi = (h * (2.0 * s * xi + d0 * dq) * den - num * t * dq) / den2;
        let y_s = (h * xi * xi * den - num * (1.0 - 2.0 * q)) / den2;
        let y_h = (s * xi * xi + d0 * q) / den;
        let y_d0 = (h * q * den - num * q) / den2;
        let y_d1 = -num * q / den2;
        let l_xi = (2.0 * d1 * xi + 2.0 * s * dq - 2.0 * d0 * (1.0 - xi)) / n2 - 2.0 * t * dq / den;
        let l_s = 2.0 / s + 2.0 * q / n2 - 2.0 * (1.0 - 2.0 * q) / den;
        let l_d0 = (1.0 - xi) * (1.0 - xi) / n2 - 2.0 * q / den;
        let l_d1 = xi * xi / n2 - 2.0 * q / den;
        let (gy, gl, g_in) = match direction {
            Direction::Forward => (g_out, g_ld, None),
            Direction::Inverse => {
                // The pass's log-det is −ℓ, so its gradient enters with the opposite sign.
                let c = (g_out - g_ld * l_xi / w) / l.deriv();
                (-c, -g_ld, Some(c))
            }
        };
        let g_xi = gy * y_xi + gl * l_xi;
        let g_s = gy * y_s + gl * l_s;
        let g_h = gy * y_h + g_s / w;
        let g_w = -g_xi * xi / w - g_s * s / w;
        let g_xk = -g_xi / w;
        let g_yk = gy;
        let g_d0 = gy * y_d0 + gl * l_d0;
        let g_d1 = gy * y_d1 + gl * l_d1;
        // Knot k sits at −B + Σ_{j<k} width_j: its gradient reaches every earlier width.
        let scale = 2.0 * self.shape.bound * (1.0 - MIN_BIN * bins as f32);
        for (probs, g_own, g_start, off) in [(&kn.pw, g_w, g_xk, 0), (&kn.ph, g_h, g_yk, bins)] {
            // ∂L/∂width_j for j < kb is g_start; for j = kb it is g_own. Softmax backward.
            let g_width = |j: usize| {
                if j < kb {
                    g_start
                } else if j == kb {
                    g_own
                } else {
                    0.0
                }
            };
            let dot: f32 = (0..bins).map(|j| probs[j] * g_width(j)).sum();
            for j in 0..bins {
                g_theta[(off + j) * n + i] += scale * probs[j] * (g_width(j) - dot);
            }
        }
        for (slot, knot, g) in [(0, kb, g_d0), (1, kb + 1, g_d1)] {
            if knot > 0 && knot < bins {
                g_theta[(2 * bins + knot - 1) * n + i] += g * kn.dd[slot];
            }
        }
        g_in.unwrap_or(g_xi / w)
    }
}
