//! The elementwise affine transformer `x = z·exp(s) + t`, shared by coupling and autoregressive
//! layers, with a soft-clipped log-scale.
//!
//! A raw `exp` of an unbounded network output lets deep stacks diverge; instead the conditioner's
//! raw output `r` becomes `s = r / (1 + |r| / ln 1000)`, so `|s| < ln 1000` and the scale stays
//! within `[1e-3, 1e3]`, with `s ≈ r` near zero.

use super::Direction;

/// Bound of the soft-clipped log-scale: `|s| < ln 1000`.
pub(crate) const LOG_SCALE_BOUND: f32 = 6.907_755_4;

/// `s = r / (1 + |r|/B)` and `ds/dr = 1 / (1 + |r|/B)²`.
#[inline]
pub(crate) fn soft_clip(r: f32) -> (f32, f32) {
    let q = 1.0 + r.abs() / LOG_SCALE_BOUND;
    (r / q, 1.0 / (q * q))
}

/// Applies the transformer to one row part: `input`, shifts `t` and raw scales `r` (empty for an
/// additive transformer) of equal length. Writes `out` and returns the row's log-det.
#[inline]
pub(crate) fn apply(direction: Direction, input: &[f32], t: &[f32], r: &[f32], out: &mut [f32]) -> f32 {
    if r.is_empty() {
        for ((o, &x), &t) in out.iter_mut().zip(input).zip(t) {
            *o = match direction {
                Direction::Forward => x + t,
                Direction::Inverse => x - t,
            };
        }
        return 0.0;
    }
    let mut ld = 0.0;
    for (((o, &x), &t), &r) in out.iter_mut().zip(input).zip(t).zip(r) {
        let s = soft_clip(r).0;
        match direction {
            Direction::Forward => {
                *o = x * s.exp() + t;
                ld += s;
            }
            Direction::Inverse => {
                *o = (x - t) * (-s).exp();
                ld -= s;
            }
        }
    }
    ld
}

/// Backward of [`apply`] for one row part, from the pass's `output`. Writes the gradients with
/// respect to the input, the shifts and the raw scales (`g_r` is ignored when `r` is empty).
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
    for i in 0..output.len() {
        let (s, ds) = soft_clip(r[i]);
        let g = g_out[i];
        let g_s = match direction {
            // x = z e^s + t: dx/dz = e^s, dx/dt = 1, dx/ds = z e^s = x − t; d ld/ds = 1.
            Direction::Forward => {
                g_in[i] = g * s.exp();
                g_t[i] = g;
                g * (output[i] - t[i]) + g_ld
            }
            // z = (x − t) e^−s: dz/dx = e^−s, dz/dt = −e^−s, dz/ds = −z; d ld/ds = −1.
            Direction::Inverse => {
                let e = (-s).exp();
                g_in[i] = g * e;
                g_t[i] = -g * e;
                -g * output[i] - g_ld
            }
        };
        g_r[i] = g_s * ds;
    }
}
