//! WaveNet's gated activation, `tanh(a) · sigmoid(b)` element by element, and its backward pass,
//! compiled per instruction set ([`isa::dispatch`]): every layer of a WaveGlow coupling network
//! runs it on every sample.

use super::fastmath;
use super::isa::{self, Kernel};

/// `out[i] = tanh(a[i]) · sigmoid(b[i])`; with `record`, also writes `tanh(a)` and `sigmoid(b)`
/// there for [`gated_backward`].
///
/// # Panics
/// If the lengths differ.
pub(crate) fn gated(out: &mut [f32], a: &[f32], b: &[f32], record: Option<(&mut [f32], &mut [f32])>) {
    assert!(out.len() == a.len() && a.len() == b.len(), "one output per pair");
    if let Some((t, s)) = &record {
        assert!(t.len() == a.len() && s.len() == a.len(), "one record per output");
    }
    isa::dispatch(Gated { out, a, b, record });
}

/// Given the output's gradient `g` and the recorded `tanh(a)` and `sigmoid(b)`, writes the
/// gradients with respect to `a` and `b`: `g·(1 − t²)·s` and `g·t·s·(1 − s)`.
///
/// # Panics
/// If the lengths differ.
pub(crate) fn gated_backward(grad_a: &mut [f32], grad_b: &mut [f32], g: &[f32], tanh: &[f32], sigmoid: &[f32]) {
    let n = g.len();
    assert!(grad_a.len() == n && grad_b.len() == n && tanh.len() == n && sigmoid.len() == n, "one gradient per output");
    isa::dispatch(GatedBackward { grad_a, grad_b, g, tanh, sigmoid });
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`: finite everywhere, ±1 in the tails.
#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    1.0 - 2.0 / (fastmath::exp::<FMA>(2.0 * x) + 1.0)
}

#[inline(always)]
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + fastmath::exp::<FMA>(-x))
}

/// [`gated`] as a kernel.
struct Gated<'a> {
    out: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
    record: Option<(&'a mut [f32], &'a mut [f32])>,
}

impl Kernel for Gated<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Gated { out, a, b, record } = self;
        match record {
            None => {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    *o = tanh::<FMA>(a) * sigmoid::<FMA>(b);
                }
            }
            Some((ts, ss)) => {
                for ((((o, &a), &b), t), s) in out.iter_mut().zip(a).zip(b).zip(ts.iter_mut()).zip(ss.iter_mut()) {
                    (*t, *s) = (tanh::<FMA>(a), sigmoid::<FMA>(b));
                    *o = *t * *s;
                }
            }
        }
    }
}

/// [`gated_backward`] as a kernel.
struct GatedBackward<'a> {
    grad_a: &'a mut [f32],
    grad_b: &'a mut [f32],
    g: &'a [f32],
    tanh: &'a [f32],
    sigmoid: &'a [f32],
}

impl Kernel for GatedBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let GatedBackward { grad_a, grad_b, g, tanh, sigmoid } = self;
        for ((((ga, gb), &g), &t), &s) in grad_a.iter_mut().zip(grad_b.iter_mut()).zip(g).zip(tanh).zip(sigmoid) {
            *ga = g * (1.0 - t * t) * s;
            *gb = g * t * s * (1.0 - s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::isa::Isa;

    #[test]
    fn every_instruction_set_matches_f64_and_its_gradient_matches_finite_differences() {
        let a: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) * 0.061).chain([-1e4, 1e4, 0.0, -90.0]).collect();
        let b: Vec<f32> = a.iter().rev().map(|v| v * 0.7 + 0.3).collect();
        let g: Vec<f32> = (0..a.len()).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let f = |a: f64, b: f64| a.tanh() / (1.0 + (-b).exp());
        for isa in Isa::supported() {
            let n = a.len();
            let (mut out, mut plain, mut t, mut s) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let (mut ga, mut gb) = (vec![0.0; n], vec![0.0; n]);
            isa::with_isa(isa, || {
                gated(&mut plain, &a, &b, None);
                gated(&mut out, &a, &b, Some((&mut t, &mut s)));
                gated_backward(&mut ga, &mut gb, &g, &t, &s);
            });
            assert_eq!(out, plain, "{isa:?}");
            for i in 0..n {
                let (x, y) = (f64::from(a[i]), f64::from(b[i]));
                assert!((f64::from(out[i]) - f(x, y)).abs() < 1e-6, "{isa:?} at ({x}, {y}): {} vs {}", out[i], f(x, y));
                let h = 1e-4;
                let da = f64::from(g[i]) * (f(x + h, y) - f(x - h, y)) / (2.0 * h);
                let db = f64::from(g[i]) * (f(x, y + h) - f(x, y - h)) / (2.0 * h);
                assert!((f64::from(ga[i]) - da).abs() < 1e-4 * (1.0 + da.abs()), "{isa:?} d/da at ({x}, {y}): {} vs {da}", ga[i]);
                assert!((f64::from(gb[i]) - db).abs() < 1e-4 * (1.0 + db.abs()), "{isa:?} d/db at ({x}, {y}): {} vs {db}", gb[i]);
                assert!(out[i].is_finite() && ga[i].is_finite() && gb[i].is_finite());
            }
        }
    }
}
