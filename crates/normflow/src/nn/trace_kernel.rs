//! The exact trace of a velocity field's Jacobian `tr(∂v/∂x)` from its hidden slopes alone, for
//! fields with one or two hidden layers: no tangents.
//!
//! With two hidden layers, `v = W₂ σ(W₁ σ(W₀ u + b₀) + b₁) + b₂`, and `X` the columns of `W₀`
//! that read the state `x` (the time features and the context do not move with `x`), the
//! Jacobian is `W₂ S₂ W₁ S₁ X` with `Sₗ = diag(σ'(aₗ))`, the slopes of each row. The trace is
//! invariant under cyclic shifts, so
//!
//! `tr(W₂ S₂ W₁ S₁ X) = tr(S₂ W₁ S₁ (X W₂)) = Σⱼₖ s₂ⱼ · W₁[j,k] · (X W₂)[k,j] · s₁ₖ = s₂ᵀ K s₁`
//!
//! with `K[j,k] = W₁[j,k] · (X W₂)[k,j]`, a matrix of the hidden widths that depends on the
//! weights alone. Per row the trace then costs one product with `K` (the size of the middle
//! layer's) instead of `d` tangents through the middle and output layers: 33 products of the
//! middle layer's size become one at `d = 32`. With one hidden layer the same shift gives
//! `tr(W₁ S₁ X) = Σₖ s₁ₖ · (X W₁)[k,k]`, a dot product per row.

use crate::engine::fastmath;
use crate::engine::kept::Kept;
use crate::engine::{matmul_a_bt, Matrix};

/// A field's [`TraceKernel`], kept between parameter changes (an ODE solve evaluates the
/// trace a hundred times between them; see [`Kept`]).
pub(crate) type KeptTraceKernel = Kept<TraceKernel>;

/// The fixed part of the trace for a field's current weights.
#[derive(Debug)]
pub(crate) enum TraceKernel {
    /// One hidden layer: `diag(X W₁)`, to be dotted with each row's slopes.
    Diagonal(Vec<f32>),
    /// Two hidden layers: `K` as `[h₂, h₁]` (the middle weight's layout).
    Bilinear { kernel: Vec<f32>, inner: usize, outer: usize },
}

impl TraceKernel {
    /// The kernel of a field whose layers are `layers` (each weight `[out, in]` row-major, input
    /// first), whose first `dim` inputs are the state, or `None` for a depth other than one or
    /// two hidden layers (those take the tangents).
    pub(crate) fn new(layers: &[(&[f32], usize, usize)], dim: usize) -> Option<Self> {
        let (w0, fan_in, h1) = layers[0];
        match *layers {
            // diag(X W₁)[k] = Σᵢ W₀[k, i] · W₁[i, k].
            [_, (wo, _, _)] => Some(TraceKernel::Diagonal(
                (0..h1).map(|k| (0..dim).map(|i| w0[k * fan_in + i] as f64 * wo[i * h1 + k] as f64).sum::<f64>() as f32).collect(),
            )),
            [_, (w1, _, h2), (wo, _, _)] => {
                let mut kernel = vec![0.0f32; h2 * h1];
                let mut row = vec![0.0f64; h2];
                for k in 0..h1 {
                    // Row k of X W₂, in f64: row k of X is the first `dim` values of row k of W₀.
                    row.iter_mut().for_each(|v| *v = 0.0);
                    for (i, &x) in w0[k * fan_in..k * fan_in + dim].iter().enumerate() {
                        row.iter_mut().zip(&wo[i * h2..(i + 1) * h2]).for_each(|(v, &w)| *v += x as f64 * w as f64);
                    }
                    for (j, &a) in row.iter().enumerate() {
                        kernel[j * h1 + k] = (w1[j * h1 + k] as f64 * a) as f32;
                    }
                }
                Some(TraceKernel::Bilinear { kernel, inner: h1, outer: h2 })
            }
            _ => None,
        }
    }

    /// The trace per row from the hidden layers' slopes (`slopes[l]`: rows × width of layer l).
    pub(crate) fn trace(&self, slopes: &[Matrix]) -> Vec<f32> {
        match self {
            TraceKernel::Diagonal(diag) => slopes[0].as_slice().chunks_exact(diag.len()).map(|s| fastmath::dot(s, diag)).collect(),
            TraceKernel::Bilinear { kernel, inner, outer } => {
                let rows = slopes[0].rows();
                let mut through = Matrix::scratch(rows, *outer);
                matmul_a_bt(through.as_mut_slice(), slopes[0].as_slice(), kernel, rows, *outer, *inner, false);
                through
                    .as_slice()
                    .chunks_exact(*outer)
                    .zip(slopes[1].as_slice().chunks_exact(*outer))
                    .map(|(a, s)| fastmath::dot(a, s))
                    .collect()
            }
        }
    }
}
