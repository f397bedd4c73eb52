//! A hidden layer's bias and activation over a block of rows, in place, compiled per
//! instruction set ([`isa::dispatch`]): they run after every product of every network.
//!
//! - SiLU: `v ← silu(v + b)` with `silu(a) = a·sigmoid(a)`, and optionally its derivative
//!   `s + a·s·(1 − s)` (`s = sigmoid(a)`) for the backward and tangent passes (the continuous
//!   flows' velocity field).
//! - ReLU: `v ← max(v + b, 0)` (or the bias alone for an output layer), and the ReLU's gate in
//!   the backward pass: the gradient where the layer's output is positive, zero elsewhere (the
//!   MLP conditioners of the coupling and autoregressive layers).
//! - The bias's gradient: the sum of the output gradient's rows.

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

/// Adds `bias` to each row of `values` (rows `bias.len()` wide), then clips at zero when `relu`.
///
/// # Panics
/// If `values` is not whole rows.
pub(crate) fn bias_relu(values: &mut [f32], bias: &[f32], relu: bool) {
    assert_eq!(values.len() % bias.len().max(1), 0, "whole rows of the bias's width");
    isa::dispatch(BiasRelu { values, bias, relu });
}

/// [`bias_relu`] as a kernel.
struct BiasRelu<'a> {
    values: &'a mut [f32],
    bias: &'a [f32],
    relu: bool,
}

impl Kernel for BiasRelu<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let BiasRelu { values, bias, relu } = self;
        // Rows of a whole number of 8-wide pieces go a piece at a time (one vector operation
        // each): a row-long loop over a narrow layer's 16 or 64 outputs compiled to 4-wide steps.
        if bias.len().is_multiple_of(8) && !bias.is_empty() {
            for row in values.chunks_exact_mut(bias.len()) {
                for (v, b) in row.chunks_exact_mut(8).zip(bias.chunks_exact(8)) {
                    let (v, b): (&mut [f32; 8], &[f32; 8]) = (v.try_into().unwrap(), b.try_into().unwrap());
                    for l in 0..8 {
                        v[l] = if relu { (v[l] + b[l]).max(0.0) } else { v[l] + b[l] };
                    }
                }
            }
            return;
        }
        let rows = values.chunks_exact_mut(bias.len().max(1));
        if relu {
            rows.for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v = (*v + b).max(0.0)));
        } else {
            rows.for_each(|row| row.iter_mut().zip(bias).for_each(|(v, b)| *v += b));
        }
    }
}

/// The ReLU's backward gate: `gated[i] = grad[i]` where `output[i] > 0`, else 0 (`output` is the
/// ReLU's output, or its input: both are positive at the same places).
///
/// # Panics
/// If the three lengths differ.
pub(crate) fn relu_gate(gated: &mut [f32], grad: &[f32], output: &[f32]) {
    assert!(gated.len() == grad.len() && grad.len() == output.len(), "one gradient per output");
    isa::dispatch(ReluGate { gated, grad, output });
}

/// [`relu_gate`] as a kernel.
struct ReluGate<'a> {
    gated: &'a mut [f32],
    grad: &'a [f32],
    output: &'a [f32],
}

impl Kernel for ReluGate<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        // A bit select into a separate buffer: written in place, or as a branch, it compiles to
        // masked loads or stores, which are microcoded and slow on AMD cores.
        for ((m, &g), &x) in self.gated.iter_mut().zip(self.grad).zip(self.output) {
            *m = fastmath::pick(x > 0.0, g, 0.0);
        }
    }
}

/// The gradient of a bias added to every row: `grad_bias[j] = Σ_r grad[r, j]` (overwritten; rows
/// `grad_bias.len()` wide).
///
/// # Panics
/// If `grad` is not whole rows.
pub(crate) fn bias_grad(grad_bias: &mut [f32], grad: &[f32]) {
    assert_eq!(grad.len() % grad_bias.len().max(1), 0, "whole rows of the bias's width");
    isa::dispatch(BiasGrad { grad_bias, grad });
}

/// [`bias_grad`] as a kernel.
struct BiasGrad<'a> {
    grad_bias: &'a mut [f32],
    grad: &'a [f32],
}

impl Kernel for BiasGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        self.grad_bias.fill(0.0);
        for row in self.grad.chunks_exact(self.grad_bias.len().max(1)) {
            self.grad_bias.iter_mut().zip(row).for_each(|(b, g)| *b += g);
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

    #[test]
    fn relu_and_bias_gradient_kernels_match_the_scalar_formula_on_every_instruction_set() {
        let bias = [0.25f32, -1.5, 3.0, 0.0, -0.125];
        let input: Vec<f32> = (0..5 * 37).map(|i| ((i * 7919) % 101) as f32 * 0.07 - 3.5).chain([-1e30, 1e30, 0.0, -0.0, 1.5]).collect();
        let grad: Vec<f32> = (0..input.len()).map(|i| i as f32 - 90.0).collect();
        for isa in Isa::supported() {
            let (mut with_relu, mut linear, mut gated) = (input.clone(), input.clone(), vec![f32::NAN; input.len()]);
            let mut grad_bias = [f32::NAN; 5];
            isa::with_isa(isa, || {
                bias_relu(&mut with_relu, &bias, true);
                bias_relu(&mut linear, &bias, false);
                relu_gate(&mut gated, &grad, &with_relu);
                bias_grad(&mut grad_bias, &grad);
            });
            for (j, &gb) in grad_bias.iter().enumerate() {
                let want: f64 = grad.iter().skip(j).step_by(5).map(|&g| g as f64).sum();
                assert_eq!(gb as f64, want, "{isa:?} bias gradient {j}");
            }
            for (i, &x) in input.iter().enumerate() {
                let a = x + bias[i % bias.len()];
                assert_eq!(linear[i], a, "{isa:?} row {} column {}", i / bias.len(), i % bias.len());
                assert_eq!(with_relu[i], a.max(0.0), "{isa:?} relu({a})");
                assert_eq!(gated[i], if a > 0.0 { grad[i] } else { 0.0 }, "{isa:?} gate at {a}");
            }
        }
    }
}
