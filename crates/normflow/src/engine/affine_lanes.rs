//! The elementwise affine transformer `x = z·exp(s) + t`, shared by coupling and autoregressive
//! layers, with a soft-clipped log-scale.
//!
//! A raw `exp` of an unbounded network output lets deep stacks diverge; instead the conditioner's
//! raw output `r` becomes `s = r / (1 + |r| / ln 1000)`, so `|s| < ln 1000` and the scale stays
//! within `[1e-3, 1e3]`, with `s ≈ r` near zero.

use super::lanes::{LaneKernel, Lanes};
use super::Direction;
use crate::engine::fastmath::{self, LANES};

/// Bound of the soft-clipped log-scale: `|s| < ln 1000`.
pub(crate) const LOG_SCALE_BOUND: f32 = 6.907_755_4;

/// `s = r / (1 + |r|/B)` and `ds/dr = 1 / (1 + |r|/B)²`.
#[inline]
pub(crate) fn soft_clip(r: f32) -> (f32, f32) {
    // A multiply by the bound's reciprocal (a division by the constant compiles to a second
    // `vdivps`).
    let q = 1.0 + r.abs() * (1.0 / LOG_SCALE_BOUND);
    (r / q, 1.0 / (q * q))
}

/// The affine (or, with one parameter, additive) transformer as a [`LaneKernel`]: shifts `t`
/// then raw scales `r` per element.
pub(crate) struct AffineLanes {
    theta: [Lanes; 2],
    additive: bool,
}

impl AffineLanes {
    /// Scratch for the affine transformer, or the additive one when `additive`.
    pub(crate) fn new(additive: bool) -> Self {
        Self { theta: [[0.0; LANES]; 2], additive }
    }
}

impl LaneKernel for AffineLanes {
    fn theta_mut(&mut self) -> &mut [Lanes] {
        &mut self.theta[..if self.additive { 1 } else { 2 }]
    }

    fn record_len(&self) -> usize {
        0
    }

    #[inline(always)]
    fn eval(&mut self, direction: Direction, x: &Lanes) -> (Lanes, Lanes) {
        let [t, r] = self.theta;
        // Forward `y = x·e^s + t`, inverse `y = (x − t)·e^−s`, log-det `±s`: one loop per
        // direction, each branch-free (a branch in the lane loop keeps it from vectorising).
        // The additive transformer's raw scales stay at their initial zeros (`theta_mut` hands
        // out the shifts only), so its `s` is 0 with no multiply by a flag.
        let (mut y, mut ld) = ([0.0; LANES], [0.0; LANES]);
        if direction == Direction::Forward {
            for l in 0..LANES {
                let s = soft_clip(r[l]).0;
                y[l] = fastmath::mul_add(x[l], fastmath::exp(s), t[l]);
                ld[l] = s;
            }
        } else {
            for l in 0..LANES {
                let s = -soft_clip(r[l]).0;
                y[l] = (x[l] - t[l]) * fastmath::exp(s);
                ld[l] = s;
            }
        }
        (y, ld)
    }

    fn save(&self, _rec: &mut [Lanes]) {}
}

/// Backward of the transformer ([`AffineLanes`]) for one row part, from the pass's `output`.
/// Writes the gradients with respect to the input, the shifts and the raw scales (`g_r` is
/// ignored when `r` is empty).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn backward(
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
    // One loop per direction, on slices cut to one length, with the vectorising `exp` (the
    // forward pass's): libm's scalar `exp` and a branch inside the loop kept it scalar.
    let n = output.len();
    let (t, r, g_out, g_in, g_t, g_r) = (&t[..n], &r[..n], &g_out[..n], &mut g_in[..n], &mut g_t[..n], &mut g_r[..n]);
    match direction {
        // x = z e^s + t: dx/dz = e^s, dx/dt = 1, dx/ds = z e^s = x − t; d ld/ds = 1.
        Direction::Forward => {
            for i in 0..n {
                let (s, ds) = soft_clip(r[i]);
                let g = g_out[i];
                g_in[i] = g * fastmath::exp(s);
                g_t[i] = g;
                g_r[i] = (g * (output[i] - t[i]) + g_ld) * ds;
            }
        }
        // z = (x − t) e^−s: dz/dx = e^−s, dz/dt = −e^−s, dz/ds = −z; d ld/ds = −1.
        Direction::Inverse => {
            for i in 0..n {
                let (s, ds) = soft_clip(r[i]);
                let (g, e) = (g_out[i], fastmath::exp(-s));
                g_in[i] = g * e;
                g_t[i] = -g * e;
                g_r[i] = (-g * output[i] - g_ld) * ds;
            }
        }
    }
}
