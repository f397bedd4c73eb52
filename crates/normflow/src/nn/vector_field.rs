//! The velocity field `v(x, t, context)` of a continuous flow: an MLP with SiLU hidden layers
//! (smooth, so that adaptive ODE solvers meet no kinks) on the state, sinusoidal features of
//! the time and the context, with a hand-derived backward pass, and the trace of its Jacobian
//! `tr(∂v/∂x)` exact by forward-mode passes (one tangent per state dimension, pushed through
//! the layers as one product; for one or two hidden layers from the slopes alone, see
//! [`super::trace_kernel`]) or estimated by Hutchinson's `εᵀ(∂v/∂x)ε` with Rademacher probes.

use serde::{Deserialize, Serialize};

use super::trace_kernel::{KeptTraceKernel, TraceKernel};
use crate::engine::small_linear::KeptPanel;
use crate::engine::split_product::PackedWeight;
use crate::engine::{bias_grad, bias_silu, linear, matmul_a_bt, matmul_ab, matmul_at_b, Matrix, Rng};

/// The frequencies of a field's sinusoidal time features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFeatures {
    /// `sin(π·k·t), cos(π·k·t)` for `k = 1 … frequencies` (zuko's). The default: the fields
    /// they give are smoother in time, and an adaptive solver crosses them in fewer steps (91
    /// instead of 109–121 evaluations to sample at the benchmark sizes, at the same NLL).
    #[default]
    Harmonics,
    /// `sin(π·2ᵏ·t), cos(π·2ᵏ·t)` for `k < frequencies`: the features of model files written
    /// before harmonics became the default (their specs name none).
    Octaves,
}

impl TimeFeatures {
    /// What a spec without a `time_features` entry was trained with.
    pub(crate) fn before_harmonics() -> Self {
        TimeFeatures::Octaves
    }

    /// The angular multiple of `π·t` of feature pair `k` (0-based).
    fn multiple(self, k: usize) -> f32 {
        match self {
            TimeFeatures::Harmonics => (k + 1) as f32,
            TimeFeatures::Octaves => (1u32 << k) as f32,
        }
    }
}

/// Sinusoidal time features `t, sin(π·m·t), cos(π·m·t)` for the `frequencies` multiples `m` of
/// `kind`.
fn time_features(t: f32, kind: TimeFeatures, frequencies: usize, out: &mut [f32]) {
    out[0] = t;
    for k in 0..frequencies {
        let (s, c) = (std::f32::consts::PI * kind.multiple(k) * t).sin_cos();
        (out[1 + 2 * k], out[2 + 2 * k]) = (s, c);
    }
}

/// Rows per block in [`VectorField::velocity`]: 256 rows of a 256-wide layer are 256 KiB.
const VELOCITY_BLOCK: usize = 256;

/// What [`VectorField::velocity_cached`] keeps for the backward and tangent passes: each
/// layer's input, and each hidden layer's activation derivative.
#[derive(Debug)]
pub struct FieldCache {
    inputs: Vec<Matrix>,
    slopes: Vec<Matrix>,
}

/// A velocity field over `dim` values with `context_dim` context values.
#[derive(Clone, Debug)]
pub struct VectorField {
    dim: usize,
    context_dim: usize,
    frequencies: usize,
    time_features: TimeFeatures,
    /// Layer widths, input first.
    sizes: Vec<usize>,
    /// Per layer: the weight `[out, in]` (row-major), then the bias `[out]`.
    params: Vec<f32>,
    /// The output layer's weight in the register tiles' layout, when they take its shape; built
    /// on first use after the parameters last changed (an ODE solve evaluates the field hundreds
    /// of times on blocks of 256 rows, and transposing the weight each time cost half as much
    /// as the layer's product).
    output_panel: KeptPanel,
    /// The weights' part of the exact trace, for one or two hidden layers; built on first use
    /// after the parameters last changed.
    trace_kernel: KeptTraceKernel,
}

impl VectorField {
    /// A field with the given hidden layer widths and time frequencies, its last layer scaled
    /// down so that training starts near the zero field.
    pub fn new(dim: usize, context_dim: usize, hidden: &[usize], frequencies: usize, time_features: TimeFeatures, rng: &mut Rng) -> Self {
        let mut sizes = vec![dim + 1 + 2 * frequencies + context_dim];
        sizes.extend_from_slice(hidden);
        sizes.push(dim);
        let layers = sizes.len() - 1;
        let mut params = Vec::new();
        for (l, w) in sizes.windows(2).enumerate() {
            let bound = 1.0 / (w[0].max(1) as f64).sqrt() * if l + 1 == layers { 0.1 } else { 1.0 };
            params.extend((0..w[0] * w[1]).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32));
            params.extend(std::iter::repeat_n(0.0, w[1]));
        }
        Self {
            dim,
            context_dim,
            frequencies,
            time_features,
            sizes,
            params,
            output_panel: KeptPanel::default(),
            trace_kernel: KeptTraceKernel::default(),
        }
    }

    /// Layer `l`'s weight `[out, in]` and bias.
    fn layer(&self, l: usize) -> (&[f32], &[f32]) {
        let off: usize = self.sizes.windows(2).take(l).map(|w| w[0] * w[1] + w[1]).sum();
        let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
        self.params[off..off + fan_in * fan_out + fan_out].split_at(fan_in * fan_out)
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Context dimension (0 for none).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// Time frequencies of the input features.
    pub fn frequencies(&self) -> usize {
        self.frequencies
    }

    /// Which multiples of `π·t` the time features take.
    pub fn time_features(&self) -> TimeFeatures {
        self.time_features
    }

    /// Hidden layer widths.
    pub fn hidden(&self) -> &[usize] {
        &self.sizes[1..self.sizes.len() - 1]
    }

    /// The network's parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The network's parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.output_panel.clear();
        self.trace_kernel.clear();
        &mut self.params
    }

    /// The output layer (no activation) on `rows` rows `h` into `out`: through the kept panel
    /// when the register tiles take the layer's shape.
    fn output_layer(&self, out: &mut [f32], h: &[f32], rows: usize) {
        let last = self.sizes.len() - 2;
        let (w, b) = self.layer(last);
        match self.output_panel.get(w, b, self.sizes[last]) {
            Some(p) => p.apply(out, h, rows, false),
            None => linear(out, h, w, b, rows, self.sizes[last], false),
        }
    }

    /// The network's input rows: each state row, the time features of its time, its context.
    fn inputs(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>) -> Matrix {
        let (d, f) = (self.dim, 1 + 2 * self.frequencies);
        let width = d + f + self.context_dim;
        let mut out = Matrix::zeros(x.rows(), width);
        for r in 0..x.rows() {
            let row = out.row_mut(r);
            row[..d].copy_from_slice(x.row(r));
            time_features(t[r.min(t.len() - 1)], self.time_features, self.frequencies, &mut row[d..d + f]);
            if let Some(c) = context {
                row[d + f..].copy_from_slice(c.row(r));
            }
        }
        out
    }

    /// The first layer at one time `t` shared by all rows: its weight over the state and
    /// context columns only (`[out, dim + context_dim]`), and its bias plus the product of the
    /// time columns with the time features, so that a pass at one time neither builds the
    /// features per row nor multiplies them.
    fn first_layer_at(&self, t: f32) -> (Vec<f32>, Vec<f32>) {
        let (w, b) = self.layer(0);
        let (d, f, fan_in) = (self.dim, 1 + 2 * self.frequencies, self.sizes[0]);
        let mut features = vec![0.0f32; f];
        time_features(t, self.time_features, self.frequencies, &mut features);
        let mut weight = Vec::with_capacity(b.len() * (fan_in - f));
        let bias = w
            .chunks_exact(fan_in)
            .zip(b)
            .map(|(row, &bias)| {
                weight.extend_from_slice(&row[..d]);
                weight.extend_from_slice(&row[d + f..]);
                bias + row[d..d + f].iter().zip(&features).map(|(a, c)| a * c).sum::<f32>()
            })
            .collect();
        (weight, bias)
    }

    /// `v(x, t)` for each row (`t`: one time per row, or one for all).
    ///
    /// Keeps nothing for a backward pass, and goes through the rows in blocks of
    /// `VELOCITY_BLOCK` so that each block's activations stay in the second-level cache (an
    /// ODE solver calls this a hundred times per sample or encoding). With one time for all
    /// rows (as in an ODE solver) the time enters as the first layer's bias
    /// (`VectorField::first_layer_at`).
    pub fn velocity(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>) -> Matrix {
        let layers = self.sizes.len() - 1;
        let shared = (t.len() == 1).then(|| self.first_layer_at(t[0]));
        // Each layer's weight and bias (the first at the shared time when there is one).
        let params: Vec<(&[f32], &[f32])> = (0..layers)
            .map(|l| match (&shared, l) {
                (Some((w, b)), 0) => (w.as_slice(), b.as_slice()),
                _ => self.layer(l),
            })
            .collect();
        // With split-bf16 products, each hidden layer's weight packed once for all the blocks.
        let packed: Vec<Option<PackedWeight>> = params[..layers - 1]
            .iter()
            .map(|&(w, b)| PackedWeight::new(w, b.len(), w.len() / b.len().max(1), x.rows().min(VELOCITY_BLOCK)))
            .collect();
        let mut out = Matrix::scratch(x.rows(), self.dim);
        for start in (0..x.rows()).step_by(VELOCITY_BLOCK) {
            let end = (start + VELOCITY_BLOCK).min(x.rows());
            let ctx = context.map(|c| c.slice_rows(start, end));
            let mut h = match (&shared, &ctx) {
                (Some(_), None) => x.slice_rows(start, end),
                (Some(_), Some(c)) => x.slice_rows(start, end).hcat(c),
                (None, _) => self.inputs(&x.slice_rows(start, end), &t[start..end], ctx.as_ref()),
            };
            for (l, &(w, b)) in params.iter().enumerate() {
                let (rows, fan_in, fan_out) = (h.rows(), h.cols(), b.len());
                if l + 1 == layers {
                    let dst = &mut out.as_mut_slice()[start * fan_out..end * fan_out];
                    // A one-layer field's only layer may carry the time in its bias: not the kept one.
                    if l == 0 && shared.is_some() {
                        linear(dst, h.as_slice(), w, b, rows, fan_in, false);
                    } else {
                        self.output_layer(dst, h.as_slice(), rows);
                    }
                } else {
                    let mut a = Matrix::scratch(rows, fan_out);
                    if !packed[l].as_ref().is_some_and(|p| p.product(a.as_mut_slice(), h.as_slice(), fan_in, rows)) {
                        matmul_a_bt(a.as_mut_slice(), h.as_slice(), w, rows, fan_out, fan_in, false);
                    }
                    bias_silu(a.as_mut_slice(), b, None);
                    h = a;
                }
            }
        }
        out
    }

    /// `v(x, t)` and the cache [`VectorField::backward`] needs.
    pub fn velocity_cached(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>) -> (Matrix, FieldCache) {
        let (w, b) = self.layer(0);
        self.pass_cached(self.inputs(x, t, context), w, b, false)
    }

    /// The cached pass for the tangent passes: with one time for all rows, through the first
    /// layer of [`VectorField::first_layer_at`] (its cache then cannot serve
    /// [`VectorField::backward`], which needs the time columns).
    fn velocity_cached_for_tangents(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>) -> (Matrix, FieldCache) {
        if t.len() != 1 {
            return self.velocity_cached(x, t, context);
        }
        let (w, b) = self.first_layer_at(t[0]);
        let h = match context {
            Some(c) => x.hcat(c),
            None => x.clone(),
        };
        self.pass_cached(h, &w, &b, true)
    }

    /// The layers on input rows `h`, the first layer's weight and bias given.
    ///
    /// `reuse`: the output layer goes through the kept panel (passes between parameter changes,
    /// such as the trace passes of a log-density); a training pass, whose parameters change
    /// every step, transposes the layer's weight itself instead of making every thread wait for
    /// one of them to rebuild the panel.
    fn pass_cached(&self, mut h: Matrix, first_weight: &[f32], first_bias: &[f32], reuse: bool) -> (Matrix, FieldCache) {
        let layers = self.sizes.len() - 1;
        let (mut inputs, mut slopes) = (Vec::with_capacity(layers), Vec::with_capacity(layers - 1));
        for l in 0..layers {
            let (w, b) = if l == 0 { (first_weight, first_bias) } else { self.layer(l) };
            let (rows, fan_in, fan_out) = (h.rows(), h.cols(), b.len());
            let mut a = Matrix::scratch(rows, fan_out);
            if l + 1 == layers {
                if reuse && l > 0 {
                    self.output_layer(a.as_mut_slice(), h.as_slice(), rows);
                } else {
                    linear(a.as_mut_slice(), h.as_slice(), w, b, rows, fan_in, false);
                }
                inputs.push(h);
                return (a, FieldCache { inputs, slopes });
            }
            matmul_a_bt(a.as_mut_slice(), h.as_slice(), w, rows, fan_out, fan_in, false);
            inputs.push(h);
            let mut slope = Matrix::scratch(rows, fan_out);
            bias_silu(a.as_mut_slice(), b, Some(slope.as_mut_slice()));
            slopes.push(slope);
            h = a;
        }
        unreachable!("a field has at least one layer")
    }

    /// Writes the parameter gradients of a loss with gradient `grad_out` with respect to the
    /// velocity of the cached pass into `grads` (overwritten).
    pub fn backward(&self, cache: &FieldCache, grad_out: Matrix, grads: &mut [f32]) {
        let layers = self.sizes.len() - 1;
        let mut g = grad_out;
        let mut off: usize = self.sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        for l in (0..layers).rev() {
            let (fan_in, fan_out) = (self.sizes[l], self.sizes[l + 1]);
            off -= fan_in * fan_out + fan_out;
            let x = &cache.inputs[l];
            let rows = x.rows();
            let (gw, gb) = grads[off..off + fan_in * fan_out + fan_out].split_at_mut(fan_in * fan_out);
            bias_grad(gb, g.as_slice());
            matmul_at_b(gw, g.as_slice(), x.as_slice(), fan_out, fan_in, rows, false);
            if l == 0 {
                return;
            }
            let (w, _) = self.layer(l);
            let mut gx = Matrix::zeros(rows, fan_in);
            matmul_ab(gx.as_mut_slice(), g.as_slice(), w, rows, fan_in, fan_out, false);
            gx.as_mut_slice().iter_mut().zip(cache.slopes[l - 1].as_slice()).for_each(|(v, d)| *v *= d);
            g = gx;
        }
    }

    /// Pushes tangents through the layers: `tangents` holds, for each of the cache's rows,
    /// `per_row` tangent rows of the first layer's output (before its activation); returns
    /// the output tangents (`rows · per_row × dim`).
    fn push_tangents(&self, cache: &FieldCache, mut tangents: Matrix, per_row: usize) -> Matrix {
        let layers = self.sizes.len() - 1;
        for l in 1..layers {
            let slope = &cache.slopes[l - 1];
            let width = slope.cols();
            for (i, row) in tangents.as_mut_slice().chunks_exact_mut(width).enumerate() {
                row.iter_mut().zip(slope.row(i / per_row)).for_each(|(v, d)| *v *= d);
            }
            let (w, b) = self.layer(l);
            let mut next = Matrix::zeros(tangents.rows(), b.len());
            matmul_a_bt(next.as_mut_slice(), tangents.as_slice(), w, tangents.rows(), b.len(), width, false);
            tangents = next;
        }
        tangents
    }

    /// `v(x, t)` and the exact trace of `∂v/∂x` per row. For one or two hidden layers, from the
    /// hidden slopes `s₁, s₂` and a matrix `K` of the weights alone: `tr(W₂S₂W₁S₁X) = s₂ᵀKs₁`
    /// with `K[j,k] = W₁[j,k]·(XW₂)[k,j]` (`X` the state's columns of the first weight), one
    /// product per evaluation; deeper fields push `dim` forward-mode tangents per row.
    pub fn velocity_and_trace(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>) -> (Matrix, Vec<f32>) {
        let (v, cache) = self.velocity_cached_for_tangents(x, t, context);
        let trace = match self.trace_kernel.get_or_build(|| self.build_trace_kernel()) {
            Some(kernel) => kernel.trace(&cache.slopes),
            None => self.trace_by_tangents(&cache, x.rows()),
        };
        (v, trace)
    }

    /// The trace kernel of the current weights (`None` for depths it does not cover).
    fn build_trace_kernel(&self) -> Option<TraceKernel> {
        let layers: Vec<_> = (0..self.sizes.len() - 1).map(|l| (self.layer(l).0, self.sizes[l], self.sizes[l + 1])).collect();
        TraceKernel::new(&layers, self.dim)
    }

    /// The exact trace per row of the cached pass's `rows` rows, by `dim` forward-mode tangents
    /// per row pushed through the layers as one product.
    fn trace_by_tangents(&self, cache: &FieldCache, rows: usize) -> Vec<f32> {
        let d = self.dim;
        let (w0, b0) = self.layer(0);
        let (fan_in, h) = (self.sizes[0], b0.len());
        // Tangent e_i of the input: the first layer's output moves by column i of W₀.
        let mut tangents = Matrix::zeros(rows * d, h);
        for r in 0..rows {
            for i in 0..d {
                let row = tangents.row_mut(r * d + i);
                row.iter_mut().enumerate().for_each(|(o, v)| *v = w0[o * fan_in + i]);
            }
        }
        let out = self.push_tangents(cache, tangents, d);
        (0..rows).map(|r| (0..d).map(|i| out.get(r * d + i, i)).sum()).collect()
    }

    /// `v(x, t)` and Hutchinson's estimate `εᵀ(∂v/∂x)ε` of the trace per row, for the given
    /// probes `eps` (`rows × dim`, Rademacher ±1 for the smallest variance).
    pub fn velocity_and_trace_estimate(&self, x: &Matrix, t: &[f32], context: Option<&Matrix>, eps: &Matrix) -> (Matrix, Vec<f32>) {
        let (v, cache) = self.velocity_cached_for_tangents(x, t, context);
        let (d, rows) = (self.dim, x.rows());
        let (w0, b0) = self.layer(0);
        let (fan_in, h) = (self.sizes[0], b0.len());
        let mut tangents = Matrix::zeros(rows, h);
        for r in 0..rows {
            let e = eps.row(r);
            for (o, v) in tangents.row_mut(r).iter_mut().enumerate() {
                *v = (0..d).map(|i| w0[o * fan_in + i] * e[i]).sum();
            }
        }
        let out = self.push_tangents(&cache, tangents, 1);
        let trace = (0..rows).map(|r| out.row(r).iter().zip(eps.row(r)).map(|(a, b)| a * b).sum()).collect();
        (v, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(context_dim: usize) -> VectorField {
        field_with(context_dim, &[16, 16])
    }

    fn field_with(context_dim: usize, hidden: &[usize]) -> VectorField {
        let mut rng = Rng::new(3);
        let mut f = VectorField::new(3, context_dim, hidden, 2, TimeFeatures::default(), &mut rng);
        // Larger weights than the initial ones (the last layer's start small), so that the
        // Jacobian is far from zero and the activations far from linear.
        let n = f.params().len();
        let last = hidden.last().map_or(3 + 5 + context_dim, |&h| h);
        f.params_mut().iter_mut().for_each(|p| *p *= 3.0);
        for p in &mut f.params_mut()[n - 3 * last - 3..] {
            *p *= 10.0;
        }
        f
    }

    fn batch(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut rng = Rng::new(seed);
        Matrix::from_vec(rows, cols, (0..rows * cols).map(|_| rng.normal() as f32).collect())
    }

    #[test]
    fn velocity_in_blocks_matches_the_cached_pass_row_by_row() {
        // More rows than a block, one time per row and a context: each block must take its own
        // rows' times and context.
        let rows = 2 * VELOCITY_BLOCK + 37;
        for context_dim in [0, 2] {
            let f = field(context_dim);
            let x = batch(rows, 3, 3);
            let ctx = (context_dim > 0).then(|| batch(rows, context_dim, 4));
            let t: Vec<f32> = (0..rows).map(|r| r as f32 / rows as f32).collect();
            let want = f.velocity_cached(&x, &t, ctx.as_ref()).0;
            let got = f.velocity(&x, &t, ctx.as_ref());
            assert_eq!((got.rows(), got.cols()), (rows, 3));
            for (a, b) in got.as_slice().iter().zip(want.as_slice()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
            // One time for all rows.
            let (got, want) = (f.velocity(&x, &[0.25], ctx.as_ref()), f.velocity_cached(&x, &[0.25], ctx.as_ref()).0);
            assert!(got.as_slice().iter().zip(want.as_slice()).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
        }
    }

    #[test]
    fn exact_trace_matches_a_finite_difference_jacobian() {
        // One time per row, and one for all (the first layer then folds the time in); one and
        // two hidden layers (the trace kernel) and three (the tangents).
        let cases = [(0, vec![0.1, 0.3, 0.5, 0.7, 0.9]), (2, vec![0.1, 0.3, 0.5, 0.7, 0.9]), (0, vec![0.35]), (2, vec![0.35])];
        for hidden in [&[16, 16][..], &[16], &[16, 12, 16]] {
            for (context_dim, t) in &cases {
                let (context_dim, t) = (*context_dim, t.as_slice());
                let f = field_with(context_dim, hidden);
                let x = batch(5, 3, 1);
                let ctx = (context_dim > 0).then(|| batch(5, context_dim, 2));
                let (v, trace) = f.velocity_and_trace(&x, t, ctx.as_ref());
                let plain = f.velocity(&x, t, ctx.as_ref());
                assert!(v.as_slice().iter().zip(plain.as_slice()).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
                let h = 1e-3f32;
                for r in 0..5 {
                    let mut fd = 0.0f64;
                    for i in 0..3 {
                        let (mut up, mut down) = (x.clone(), x.clone());
                        up.row_mut(r)[i] += h;
                        down.row_mut(r)[i] -= h;
                        let (vu, vd) = (f.velocity(&up, t, ctx.as_ref()), f.velocity(&down, t, ctx.as_ref()));
                        fd += (vu.get(r, i) as f64 - vd.get(r, i) as f64) / (2.0 * h as f64);
                    }
                    let got = trace[r] as f64;
                    assert!((got - fd).abs() < 1e-3 * (1.0 + fd.abs()), "{hidden:?} row {r}: exact {got} vs finite differences {fd}");
                }
                assert!(trace.iter().any(|t| t.abs() > 0.1), "a trace far from zero: {trace:?}");
            }
        }
    }

    #[test]
    fn the_trace_kernel_agrees_with_the_tangents_and_follows_parameter_changes() {
        assert!(field_with(0, &[16, 12, 16]).build_trace_kernel().is_none(), "three hidden layers take the tangents");
        for hidden in [&[16, 16][..], &[16], &[24, 8]] {
            let mut f = field_with(2, hidden);
            let (x, ctx) = (batch(40, 3, 11), batch(40, 2, 12));
            assert!(f.build_trace_kernel().is_some(), "{hidden:?} has a kernel");
            for round in 0..2 {
                let (_, cache) = f.velocity_cached_for_tangents(&x, &[0.6], Some(&ctx));
                let tangents = f.trace_by_tangents(&cache, 40);
                let (_, kernel) = f.velocity_and_trace(&x, &[0.6], Some(&ctx));
                for (a, b) in kernel.iter().zip(&tangents) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{hidden:?} round {round}: kernel {a} vs tangents {b}");
                }
                // The kept kernel must be rebuilt after the parameters change.
                f.params_mut().iter_mut().for_each(|p| *p = -*p * 0.8 + 0.01);
            }
        }
    }

    #[test]
    fn parameter_gradients_match_finite_differences() {
        let mut f = field(2);
        let (x, ctx, t) = (batch(4, 3, 6), batch(4, 2, 7), [0.2, 0.4, 0.6, 0.8]);
        let weights = batch(4, 3, 8);
        // L = Σ weights ⊙ v.
        let loss = |f: &VectorField| -> f64 {
            let v = f.velocity(&x, &t, Some(&ctx));
            v.as_slice().iter().zip(weights.as_slice()).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let (_, cache) = f.velocity_cached(&x, &t, Some(&ctx));
        let mut grads = vec![0.0f32; f.params().len()];
        f.backward(&cache, weights.clone(), &mut grads);
        let n = grads.len();
        for i in (0..n).step_by(7).chain([n - 1]) {
            let h = 1e-2 * (1.0 + f.params()[i].abs());
            f.params_mut()[i] += h;
            let up = loss(&f);
            f.params_mut()[i] -= 2.0 * h;
            let down = loss(&f);
            f.params_mut()[i] += h;
            let fd = (up - down) / (2.0 * h as f64);
            assert!((grads[i] as f64 - fd).abs() < 2e-2 * (1.0 + fd.abs()), "parameter {i}: {} vs {fd}", grads[i]);
        }
    }

    #[test]
    fn hutchinson_estimates_are_unbiased() {
        let f = field(0);
        let x = batch(1, 3, 4);
        let (_, exact) = f.velocity_and_trace(&x, &[0.4], None);
        // 1,000 probes of one row at once.
        let rows = 1000;
        let xs = Matrix::from_vec(rows, 3, x.row(0).repeat(rows));
        let mut rng = Rng::new(5);
        let eps = Matrix::from_vec(rows, 3, (0..rows * 3).map(|_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 }).collect());
        let (_, est) = f.velocity_and_trace_estimate(&xs, &[0.4], None, &eps);
        let mean = est.iter().map(|&v| v as f64).sum::<f64>() / rows as f64;
        let var = est.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (rows - 1) as f64;
        let se = (var / rows as f64).sqrt();
        assert!(var > 0.0, "the estimates vary");
        assert!((mean - exact[0] as f64).abs() < 3.0 * se, "mean {mean} ± {se} vs exact {}", exact[0]);
    }

    #[test]
    fn the_kept_output_panel_follows_parameter_changes() {
        // `velocity` (one shared time: the ODE solvers' pass) goes through the kept panel of the
        // output layer; `velocity_cached` (training) through a fresh one. After each change of
        // the parameters both must agree.
        let mut f = field(0);
        let x = Matrix::from_vec(7, 3, (0..21).map(|i| (i % 5) as f32 * 0.4 - 0.8).collect());
        for round in 0..3 {
            let kept = f.velocity(&x, &[0.3], None);
            let fresh = f.velocity_cached(&x, &[0.3; 7], None).0;
            for (a, b) in kept.as_slice().iter().zip(fresh.as_slice()) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "round {round}: {a} vs {b}");
            }
            f.params_mut().iter_mut().for_each(|p| *p = -*p * 1.3 + 0.02);
        }
    }
}
