//! A hidden layer's bias and SiLU over a block of rows, in place: `v ← silu(v + b)` with
//! `silu(a) = a·sigmoid(a)`, and optionally its derivative `s + a·s·(1 − s)` (`s = sigmoid(a)`)
//! for the backward and tangent passes. Compiled per instruction set ([`isa::dispatch`]): the
//! continuous flows' velocity field runs it on every hidden layer of every ODE evaluation.

use super::fastmath;
use super::isa::{self, Kernel};

/// Adds `bias` to each row of `values` (rows `bias.len()` wide) and applies SiLU in place;
/// writes the derivative at each pre-activation into `slopes` when given (same length).
///
/// # Panics
/// If `values` is not whole rows, or `slopes` differs from it in length.
pub(crate) fn bias_silu(values: &mut [f32], bias: &[f32], slopes: Option<&mut [f32]>) {
    let width = bias.len().max(1);
    assert_eq!(values.len() % width, 0, "whole rows of the bias's width");
    if let Some(s) = &slopes {
        assert_eq!(s.len(), values.len(), "one slope per value");
    }
    isa::dispatch(BiasSilu { values, bias, slopes });
}

/// [`bias_silu`] as a kernel.
struct BiasSilu<'a> {
    values: &'a mut [f32],
    bias: &'a [f32],
    slopes: Option<&'a mut [f32]>,
}

impl Kernel for BiasSilu<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let BiasSilu { values, bias, slopes } = self;
        let width = bias.len().max(1);
        match slopes {
            None => {
                for row in values.chunks_exact_mut(width) {
                    for (v, &b) in row.iter_mut().zip(bias) {
                        let a = *v + b;
                        *v = a * (1.0 / (1.0 + fastmath::exp::<FMA>(-a)));
                    }
                }
            }
            Some(slopes) => {
                for (row, srow) in values.chunks_exact_mut(width).zip(slopes.chunks_exact_mut(width)) {
                    for ((v, d), &b) in row.iter_mut().zip(srow).zip(bias) {
                        let a = *v + b;
                        let s = 1.0 / (1.0 + fastmath::exp::<FMA>(-a));
                        *v = a * s;
                        *d = s + a * s * (1.0 - s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::isa::Isa;

    #[test]
    fn every_instruction_set_matches_the_formula_in_f64() {
        let bias = [0.5f32, -1.0, 2.0];
        let input: Vec<f32> = (0..3 * 40).map(|i| (i as f32 - 60.0) * 0.37).chain([-200.0, 0.0, 200.0]).collect();
        for isa in Isa::supported() {
            let (mut v, mut w, mut d) = (input.clone(), input.clone(), vec![0.0; input.len()]);
            isa::with_isa(isa, || {
                bias_silu(&mut v, &bias, None);
                bias_silu(&mut w, &bias, Some(&mut d));
            });
            for (i, &x) in input.iter().enumerate() {
                let a = x as f64 + bias[i % 3] as f64;
                let s = 1.0 / (1.0 + (-a).exp());
                let (want, slope) = (a * s, s + a * s * (1.0 - s));
                assert!((v[i] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{isa:?} silu({a}) = {} vs {want}", v[i]);
                assert_eq!(v[i], w[i]);
                assert!((d[i] as f64 - slope).abs() <= 1e-5, "{isa:?} slope at {a}: {} vs {slope}", d[i]);
                assert!(v[i].is_finite() && d[i].is_finite());
            }
        }
    }
}
